// (1) The floor: `ws` on a bare node:http server, no routing, no auth.
import { createServer } from 'node:http'
import { once } from 'node:events'
import { WebSocketServer } from 'ws'
import { echo, HELLO, LISTEN } from './common.mjs'

export async function start () {
  const server = createServer()
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket) => {
    socket.on('message', echo)
    socket.send(HELLO)
  })
  server.listen(LISTEN)
  await once(server, 'listening')
  return { server, close: () => new Promise((resolve) => { wss.close(); server.close(resolve) }) }
}
