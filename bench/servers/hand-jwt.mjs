// (3) What users write today: a route-level preValidation hook with @fastify/jwt reading ?token=
// (through the plugin-level `extractToken`, so the global, cacheable verifier is used) and a role check.
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import websocket from '@fastify/websocket'
import { echo, fastifyOptions, HELLO, jwtOptions, LISTEN } from './common.mjs'

async function authenticate (request, reply) {
  try {
    await request.jwtVerify()
  } catch {
    return reply.code(401).send({ error: 'Unauthorized' })
  }
  if (!request.user.roles?.includes('admin')) return reply.code(403).send({ error: 'Forbidden' })
}

export async function start (config) {
  const app = Fastify(fastifyOptions(config))
  await app.register(jwt, jwtOptions(config, { extractToken: (request) => request.query.token }))
  await app.register(websocket)
  app.get('/ws', { websocket: true, preValidation: authenticate }, (socket) => {
    socket.on('message', echo)
    socket.send(HELLO)
  })
  await app.listen(LISTEN)
  return { server: app.server, close: () => app.close() }
}
