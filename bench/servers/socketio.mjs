// (7) What many users pick instead: socket.io with an `io.use` JWT middleware. It verifies with
// fast-jwt (the verifier inside @fastify/jwt), so the comparison is the framework, not the crypto.
import { createServer } from 'node:http'
import { once } from 'node:events'
import { createVerifier } from 'fast-jwt'
import { Server } from 'socket.io'
import { LISTEN } from './common.mjs'

function echo (message) {
  this.emit('echo', message)
}

export async function start (config) {
  const key = typeof config.secret === 'string' ? config.secret : config.secret.public
  const verify = createVerifier({ key, cache: Boolean(config.cache) })
  const server = createServer()
  const io = new Server(server, { serveClient: false })
  io.use((socket, next) => {
    let claims
    try {
      claims = verify(socket.handshake.auth?.token)
    } catch {
      return next(new Error('Unauthorized'))
    }
    if (!claims.roles?.includes('admin')) return next(new Error('Forbidden'))
    socket.data.user = claims
    next()
  })
  io.on('connection', (socket) => { socket.on('echo', echo) })
  server.listen(LISTEN)
  await once(server, 'listening')
  return { server, close: () => io.close() }
}
