// (2) THE baseline: bare @fastify/websocket, one route, no auth.
// With `config.lean`, its sockets get what fastify-ws-auth does for its own (lib/server/internals.ts):
// no errors built at close, no upgrade bytes kept. Measured beside the plugin, it shows what
// authentication alone costs.
import Fastify from 'fastify'
import websocket from '@fastify/websocket'
import { echo, fastifyOptions, HELLO, LISTEN } from './common.mjs'

export async function start (config) {
  const lean = config.lean ? await import('../../dist/esm/server/internals.js') : null
  const app = Fastify(fastifyOptions(config))
  await app.register(websocket)
  app.get('/ws', { websocket: true }, (socket, request) => {
    if (lean !== null) {
      lean.quietEnds(socket)
      const raw = request.raw
      for (const key of Object.getOwnPropertySymbols(raw)) if (Buffer.isBuffer(raw[key])) lean.releaseHead(raw, raw[key])
    }
    socket.on('message', echo)
    socket.send(HELLO)
  })
  await app.listen(LISTEN)
  return { server: app.server, close: () => app.close() }
}
