// One test per entry of lib/server/internals.ts: each checks, against the installed dependency,
// the private behaviour the entry relies on, so that an upgrade that changes it fails here (run
// `npm run test:latest` to try the newest releases) rather than somewhere nobody looks.
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyRequest } from 'fastify'
import jwt from '@fastify/jwt'
import websocket from '@fastify/websocket'
import t, { type Test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import {
  callJwtVerify, capFramePayload, catchOverCapClose, interceptEmit, isEnclosingScope, pinoSerializers, quietEnds,
  releaseHead, releaseOverCapClose, replaceProtocolHandler, restoreFramePayload, shadowHeaders, unshadowHeaders,
  wrapEveryHandleUpgrade, wrapHandleUpgrade, type JwtRequest
} from '../lib/server/internals.ts'
import { SECRET, connect } from './helpers/index.ts'

/** A bare ws server on 127.0.0.1:0 and a client connected to it: the server-side socket of that client. */
async function pair (t: Test, options: ConstructorParameters<typeof WebSocketServer>[0] = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options })
  t.teardown(() => new Promise(resolve => wss.close(resolve)))
  await once(wss, 'listening')
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`)
  client.on('error', () => {})
  const [server] = await once(wss, 'connection') as [WebSocket, IncomingMessage]
  server.on('error', () => {})
  await once(client, 'open')
  return { wss, server, client }
}

t.test('ws keeps the frame limit in _receiver._maxPayload, and enforces it with close(1009)', async t => {
  const { server, client } = await pair(t, { maxPayload: 1 << 20 })
  const saved = capFramePayload(server, 10)
  t.equal(saved, 1 << 20, 'the limit is read')
  let caught = 0
  catchOverCapClose(server, 1009, () => { caught++; return false })
  const closed = once(client, 'close')
  client.send('x'.repeat(11))
  const [code] = await closed
  t.equal(caught, 1, 'ws closed through the socket\'s own close(1009), no reason')
  t.equal(code, 1009)
  releaseOverCapClose(server)
  t.equal(server.close, WebSocket.prototype.close)
  restoreFramePayload(server, saved!)
})

t.test('without a receiver field nothing is capped', async t => {
  t.equal(capFramePayload({} as WebSocket, 10), undefined)
})

t.test('ws emits every event through the socket\'s emit property', async t => {
  const { server, client } = await pair(t)
  const seen: string[] = []
  const emit = server.emit
  interceptEmit(server, function (this: WebSocket, event: string | symbol, ...args: unknown[]) {
    seen.push(String(event))
    return emit.call(this, event, ...args)
  } as WebSocket['emit'])
  const pong = once(server, 'pong')
  server.ping()
  await pong
  client.ping()
  client.send('hello')
  client.close(1000)
  await once(server, 'close')
  t.ok(seen.includes('message'), 'message')
  t.ok(seen.includes('ping'), 'ping')
  t.ok(seen.includes('pong'), 'pong')
  t.ok(seen.includes('close'), 'close')
})

t.test('ws keeps its receiver and TCP socket in _receiver and _socket, as writable streams', async t => {
  const { server, client } = await pair(t)
  const internals = server as unknown as { _receiver: { end: unknown, writableFinished: unknown }, _socket: { end: unknown, writableFinished: unknown } }
  t.type(internals._receiver.end, 'function')
  t.type(internals._receiver.writableFinished, 'boolean')
  t.type(internals._socket.writableFinished, 'boolean')
  quietEnds(server)
  t.not(internals._receiver.end, Object.getPrototypeOf(internals._receiver).end, 'given the quiet end')
  client.close(1000)
  const [code] = await once(server, 'close')
  t.equal(code, 1000, 'the close handshake still completes')
})

t.test('@fastify/websocket keeps the upgrade head on the raw request under a symbol', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(websocket)
  const found: boolean[] = []
  app.get('/ws', { websocket: true }, (socket, request) => {
    const raw = request.raw as unknown as Record<symbol, unknown>
    const key = Object.getOwnPropertySymbols(raw).find(k => Buffer.isBuffer(raw[k]))
    found.push(key !== undefined)
    if (key !== undefined) {
      releaseHead(request.raw, raw[key] as Buffer)
      found.push((raw[key] as Buffer).length === 0)
    }
    socket.close()
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  await connect(`ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws`).closed
  t.same(found, [true, true])
})

t.test('@fastify/websocket calls wss.handleUpgrade, looked up at each upgrade; ws reads handleProtocols per upgrade', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(websocket)
  let wrapped = 0
  wrapHandleUpgrade(app.websocketServer, (original) => function (this: WebSocketServer, ...args) {
    wrapped++
    return original.apply(this, args)
  })
  replaceProtocolHandler(app.websocketServer, (own) => {
    t.equal(own, undefined, 'no handler of the app')
    return (offered) => offered.has('chosen') ? 'chosen' : false
  })
  app.get('/ws', { websocket: true }, (socket) => { socket.close() })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const client = connect(`ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws`, ['other', 'chosen'])
  await client.opened
  t.equal(client.protocol(), 'chosen')
  t.equal(wrapped, 1)
  await client.closed
})

t.test('another WebSocketServer of the same ws goes through its prototype\'s handleUpgrade', async t => {
  const first = new WebSocketServer({ noServer: true })
  const second = new WebSocketServer({ noServer: true })
  const mark = Symbol('test.mark')
  const proto = Object.getPrototypeOf(first) as { handleUpgrade: unknown }
  const original = proto.handleUpgrade
  t.teardown(() => {
    proto.handleUpgrade = original
    delete (proto as Record<symbol, unknown>)[mark]
  })
  let seen = 0
  t.equal(wrapEveryHandleUpgrade(first, mark, (handleUpgrade) => function (this: WebSocketServer, ...args) {
    seen++
    return handleUpgrade.apply(this, args)
  }), true)
  t.equal(wrapEveryHandleUpgrade(second, mark, (h) => h), false, 'once per prototype')
  t.equal(Object.getPrototypeOf(second), proto)
  t.equal(second.handleUpgrade, proto.handleUpgrade, 'not an own property of the instance')
  t.equal(seen, 0)
})

t.test('Fastify merges an assigned request.headers over the raw ones; shadowing wins over both', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  const seen: unknown[] = []
  app.addHook('onRequest', async (request) => { request.headers = { ...request.headers, 'x-added': '1' } })
  app.get('/', async (request: FastifyRequest) => {
    request.raw.headers.authorization = 'Bearer raw'
    seen.push(request.headers.authorization)
    const before = shadowHeaders(request, 'Bearer lent')
    seen.push(request.headers.authorization, request.headers['x-added'])
    unshadowHeaders(request, before)
    seen.push(request.headers.authorization)
    return 'ok'
  })
  await app.inject({ url: '/', headers: { authorization: 'Bearer copied' } })
  t.same(seen, ['Bearer copied', 'Bearer lent', '1', 'Bearer copied'])
})

t.test('when even an own property cannot lend the token, shadowing throws and puts back what the request had', async t => {
  // A request whose properties cannot be redefined (a Proxy that ignores definitions) stands for
  // any future Fastify whose request.headers we cannot override: verifying would read another
  // token, so the plugin refuses (1011) rather than verify what it did not read.
  const own = { authorization: 'Bearer own' }
  const target = { headers: own }
  const request = new Proxy(target, { defineProperty: () => true }) as unknown as FastifyRequest
  t.throws(() => shadowHeaders(request, 'Bearer lent'), { message: 'fastify-ws-auth: request.headers cannot be given the token to verify' })
  t.equal(request.headers, own, 'the request keeps its own headers')
  t.notMatch(JSON.stringify(request.headers), /lent/)
})

t.test('a Fastify scope is made from its parent', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  let inner: object | undefined
  await app.register(async (child) => {
    await child.register(async (grandchild) => { inner = grandchild })
  })
  await app.ready()
  t.equal(isEnclosingScope(app, inner!), true)
  t.equal(isEnclosingScope(inner!, app), false)
})

t.test('@fastify/jwt reads the Authorization header at once and sets request.user before calling back', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(jwt, { secret: SECRET })
  const token = app.jwt.sign({ sub: 'u2' })
  const seen: unknown[] = []
  app.get('/', async (request) => {
    ;(request as unknown as { user: unknown }).user = { id: 'u1' }
    callJwtVerify(request as JwtRequest, token, 'user', (err, user) => {
      seen.push(err, (user as { sub: string }).sub, (request as unknown as { user: unknown }).user)
    })
    seen.push(request.raw.headers.authorization)
    return 'ok'
  })
  await app.inject('/')
  t.same(seen, [null, 'u2', { id: 'u1' }, undefined], 'answered synchronously, the identity kept, the header taken back')
})

t.test('pino keeps a live serializers object under Symbol(pino.serializers)', async t => {
  const app = Fastify({ logger: true })
  t.teardown(() => app.close())
  const serializers = pinoSerializers(app.log)
  t.type(serializers, 'object')
  t.type(serializers?.req, 'function', 'Fastify\'s req serializer is there')
  t.equal(pinoSerializers({}), undefined, 'not pino')
})
