// (4)-(6) This plugin, imported by name as a user would: `fastify-ws-auth` resolves through the
// package's `exports` to the built dist/ (run `npm run build` first).
// With `config.direct`, a custom `verify` calls `fastify.jwt.verify` itself (after the plugin's own
// token-shape check): no `request.jwtVerify()`, so no `trusted`, `formatUser` or secret function.
// With `config.messages`, the route has those message policies (`wsAuth.messages`).
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import { echo, fastifyOptions, jwtOptions, LISTEN } from './common.mjs'

export async function start (config) {
  const { default: wsAuth, tokenShapeProblem } = await import('fastify-ws-auth')
  const app = Fastify(fastifyOptions(config))
  await app.register(jwt, jwtOptions(config))
  const verify = config.direct ? (token) => tokenShapeProblem(token) === undefined ? app.jwt.verify(token) : null : undefined
  await app.register(wsAuth, { sources: [config.source], verify })
  const wsAuthRoute = config.messages ? { roles: ['admin'], messages: config.messages } : { roles: ['admin'] }
  app.get('/ws', { websocket: true, wsAuth: wsAuthRoute }, (socket) => {
    socket.on('message', echo)
  })
  await app.listen(LISTEN)
  return { server: app.server, close: () => app.close() }
}
