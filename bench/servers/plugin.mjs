// (4)-(6) This plugin, imported by name as a user would: `fastify-ws-auth` resolves through the
// package's `exports` to the built dist/ (run `npm run build` first).
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import { echo, fastifyOptions, jwtOptions, LISTEN } from './common.mjs'

export async function start (config) {
  const { default: wsAuth } = await import('fastify-ws-auth')
  const app = Fastify(fastifyOptions(config))
  await app.register(jwt, jwtOptions(config))
  await app.register(wsAuth, { sources: [config.source] })
  app.get('/ws', { websocket: true, wsAuth: { roles: ['admin'] } }, (socket) => {
    socket.on('message', echo)
  })
  await app.listen(LISTEN)
  return { server: app.server, close: () => app.close() }
}
