import { once } from 'node:events'
import { connect as tcpConnect } from 'node:net'
import t from 'tap'
import rateLimit from '@fastify/rate-limit'
import { buildApp, connect, serverSockets } from './helpers/index.ts'

t.test('maxConnectionsPerUser refuses one more with 4029, and frees slots on close', async t => {
  const { app, url, sign } = await buildApp(t, { auth: { maxConnectionsPerUser: 2 } })
  const server = serverSockets(app)
  const token = sign({ sub: 'u1' })
  const a = connect(url('/ws?client=a&token=' + token))
  const b = connect(url('/ws?token=' + token))
  await Promise.all([a.message(1), b.message(1)])
  const c = connect(url('/ws?token=' + token))
  t.same(await c.closed, { code: 4029, reason: 'Too many connections' })
  t.equal(c.messages.length, 0, 'no connection_established for the refused one')
  const other = connect(url('/ws?token=' + sign({ sub: 'u2' })))
  await other.message(1)
  a.ws.close()
  await a.closed
  await server.closed('client=a')
  t.equal(app.wsAuth.connections('u1').length, 1, 'a left the registry')
  const d = connect(url('/ws?token=' + token))
  t.match(await d.message(1), { type: 'connection_established' }, 'a slot freed by a close is taken again')
  for (const s of [b, d, other]) s.ws.close()
})

t.test('onLimit: "evict-oldest" closes the oldest with 4029 and accepts the new one', async t => {
  const { url, sign } = await buildApp(t, { auth: { maxConnectionsPerUser: 2, onLimit: 'evict-oldest' } })
  const token = sign({ sub: 'u1' })
  const a = connect(url('/ws?token=' + token))
  await a.message(1)
  const b = connect(url('/ws?token=' + token))
  await b.message(1)
  const c = connect(url('/ws?token=' + token))
  t.match(await c.message(1), { type: 'connection_established' })
  t.same(await a.closed, { code: 4029, reason: 'Too many connections' })
  b.send('still here')
  t.equal(await b.message(2), 'still here', 'only the oldest was evicted')
  b.ws.close()
  c.ws.close()
})

t.test('with reject: "http" a connection over the limit gets 429 before the upgrade', async t => {
  const { url, sign } = await buildApp(t, { auth: { maxConnectionsPerUser: 1, reject: 'http' } })
  const token = sign({ sub: 'u1' })
  const a = connect(url('/ws?token=' + token))
  await a.message(1)
  const b = connect(url('/ws?token=' + token))
  t.equal(await b.refusedStatus, 429)
  a.ws.close()
})

t.test('@fastify/rate-limit limits handshakes of a protected route per IP, before the upgrade', async t => {
  let handshakes = 0
  const { url, sign } = await buildApp(t, {
    before: async (app) => { await app.register(rateLimit, { global: false }) },
    routes: (app) => {
      app.get('/ws', { websocket: true, config: { rateLimit: { max: 2, timeWindow: 60_000 } } }, (socket) => {
        handshakes++
        socket.on('message', (data) => socket.send(data.toString()))
      })
    }
  })
  const token = sign({ sub: 'u1' })
  const first = connect(url('/ws?token=' + token))
  const second = connect(url('/ws?token=' + token))
  await Promise.all([first.message(1), second.message(1)])
  const third = connect(url('/ws?token=' + token))
  t.equal(await third.refusedStatus, 429)
  t.equal(handshakes, 2)
  first.ws.close()
  second.ws.close()
})

t.test('an upgrade refused by a hook that runs before @fastify/websocket\'s own is ended by the server', async t => {
  const { url, sign, httpUrl } = await buildApp(t, {
    before: async (app) => { await app.register(rateLimit, { global: true, max: 1, timeWindow: 60_000 }) }
  })
  const token = sign({ sub: 'u1' })
  const first = connect(url('/ws?token=' + token))
  await first.message(1)
  // A client that reads the refusal and keeps its end open: only the server can end the socket.
  const socket = tcpConnect(Number(new URL(httpUrl('/')).port), '127.0.0.1')
  let answer = ''
  socket.on('data', (chunk) => { answer += chunk.toString() })
  socket.write(`GET /ws?token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  await once(socket, 'close')
  t.match(answer, /^HTTP\/1\.1 429 /)
  first.ws.close()
})
