import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import net from 'node:net'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { buildApp, connect } from './helpers/index.ts'

// What the plugin spares its own sockets (lib/lean-sockets.ts), seen against a route that opted
// out (`wsAuth: false`), which is left exactly as @fastify/websocket and ws make it.

type End = (this: EndableStream, ...args: unknown[]) => unknown
interface EndableStream { writableFinished: boolean, destroyed: boolean }
const { Receiver } = WebSocket as unknown as { Receiver: { prototype: { end: End } } }

/**
 * Counts the `end()` calls that reach the stream classes of ws and net for a stream of `watched`
 * already finished or destroyed: each of those builds an error with a stack trace and drops it.
 */
function countRedundantEnds (t: Test, watched: Set<unknown>): () => number {
  let count = 0
  const socketEnd = net.Socket.prototype.end as unknown as End
  const receiverEnd = Receiver.prototype.end
  const counting = (original: End): End => function (this: EndableStream, ...args: unknown[]) {
    if (watched.has(this) && (this.writableFinished || this.destroyed)) count++
    return original.apply(this, args)
  }
  ;(net.Socket.prototype as unknown as { end: End }).end = counting(socketEnd)
  Receiver.prototype.end = counting(receiverEnd)
  t.teardown(() => {
    ;(net.Socket.prototype as unknown as { end: End }).end = socketEnd
    delete (Receiver.prototype as { end?: End }).end // it was Writable's, inherited
  })
  return () => count
}

/** Routes `/guarded` and `/open` (opted out), each recording its server-side socket and raw request. */
async function twoRoutes (t: Test) {
  const seen: Array<{ socket: WebSocket, raw: IncomingMessage }> = []
  /** The server side's TCP sockets and ws receivers. */
  const streams = new Set<unknown>()
  const app = await buildApp(t, {
    routes: app => {
      for (const [path, wsAuth] of [['/guarded', undefined], ['/open', false]] as const) {
        app.get(path, { websocket: true, ...(wsAuth === undefined ? {} : { wsAuth }) }, (socket, request) => {
          seen.push({ socket, raw: request.raw })
          const internals = socket as unknown as { _socket: unknown, _receiver: unknown }
          streams.add(internals._socket).add(internals._receiver)
          socket.send('{"type":"hello"}')
        })
      }
    }
  })
  return { ...app, seen, streams }
}

t.test('a client closing normally: ws ends finished streams again, but not those of a session', async t => {
  const { url, sign, seen, streams } = await twoRoutes(t)
  const redundantEnds = countRedundantEnds(t, streams)
  const token = sign({ sub: 'u1' })
  const counts: number[] = []
  for (const path of ['/guarded', '/open']) {
    const before = redundantEnds()
    const client = connect(url(`${path}?token=${token}`))
    await client.message(1)
    const serverClosed = once(seen[seen.length - 1].socket, 'close')
    client.ws.close(1000, 'bye')
    t.same(await client.closed, { code: 1000, reason: 'bye' }, `${path}: the close handshake completes`)
    await serverClosed
    counts.push(redundantEnds() - before)
  }
  t.equal(counts[0], 0, 'no end() on a finished stream reaches the stream for a session')
  t.ok(counts[1] > 0, `ws does end finished streams on an unguarded socket (${counts[1]} times): the spy sees them`)
})

t.test('the server closing (a refusal) completes the close handshake as before', async t => {
  const { url, sign } = await twoRoutes(t)
  const expired = sign({ sub: 'u1', exp: Math.floor(Date.now() / 1000) - 60 })
  const client = connect(url(`/guarded?token=${expired}`))
  t.same(await client.closed, { code: 4001, reason: 'Token expired' })
})

t.test('once upgraded, the raw request no longer keeps the bytes it came in (the token among them)', async t => {
  const { url, sign, seen } = await twoRoutes(t)
  const token = sign({ sub: 'u1' })
  /** Whether a buffer on the raw request still holds the token's bytes. */
  const keepsToken = (raw: IncomingMessage) => Object.getOwnPropertySymbols(raw)
    .map(key => (raw as unknown as Record<symbol, unknown>)[key])
    .some(value => Buffer.isBuffer(value) && Buffer.from(value.buffer).includes(token))
  for (const path of ['/guarded', '/open']) {
    const client = connect(url(`${path}?token=${token}`))
    await client.message(1)
    client.ws.close()
    await client.closed
  }
  t.equal(keepsToken(seen[0].raw), false, 'a session\'s raw request holds an empty head')
  t.equal(keepsToken(seen[1].raw), true, '@fastify/websocket keeps the request bytes of an unguarded socket: the check sees them')
})

t.test('bytes sent right behind the upgrade request still reach the handler', async t => {
  const { app, sign, seen } = await twoRoutes(t)
  const { port } = app.server.address() as net.AddressInfo
  const token = sign({ sub: 'u1' })
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  const PONG = Buffer.from([0x8a, 0x00])
  let received = Buffer.alloc(0)
  const ponged = new Promise<void>(resolve => socket.on('data', chunk => {
    received = Buffer.concat([received, chunk])
    if (received.includes(PONG)) resolve()
  }))
  // The upgrade request and a masked, empty ping in one write: the ping arrives as the upgrade's head.
  const ping = Buffer.from([0x89, 0x80, 1, 2, 3, 4])
  socket.write(Buffer.concat([Buffer.from(
    `GET /guarded?token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'), ping]))
  await ponged
  t.match(received.toString('latin1'), /^HTTP\/1\.1 101 /, 'upgraded')
  t.ok(received.includes('"type":"connection_established"'), 'authenticated')
  t.equal(seen.length, 1)
})
