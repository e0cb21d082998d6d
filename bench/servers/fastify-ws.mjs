// (2) THE baseline: bare @fastify/websocket, one route, no auth.
import Fastify from 'fastify'
import websocket from '@fastify/websocket'
import { echo, fastifyOptions, HELLO, LISTEN } from './common.mjs'

export async function start (config) {
  const app = Fastify(fastifyOptions(config))
  await app.register(websocket)
  app.get('/ws', { websocket: true }, (socket) => {
    socket.on('message', echo)
    socket.send(HELLO)
  })
  await app.listen(LISTEN)
  return { server: app.server, close: () => app.close() }
}
