// One connection's life against a real server: each transport, the established payload, control
// messages kept from the app, the queue, and in-band refresh.
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { createClient } from '../../lib/client/index.ts'
import type { ClientOptions, TokenContext, Transport, WebSocketConstructor } from '../../lib/client/index.ts'
import type { WsAuthPluginOptions } from '../../lib/types.ts'
import { deferred } from '../helpers/index.ts'
import { manualClock, type ManualClock } from '../helpers/clock.ts'
import { serve, type ServeOptions, type Served } from './helpers/server.ts'
import { record, sockets } from './helpers/record.ts'

const fast = { initialDelay: 20, maxDelay: 1000, factor: 2, jitter: false }

function start (t: Test, served: Served, options: Partial<ClientOptions> = {}) {
  const tokens: TokenContext[] = []
  const client = createClient({
    url: served.url(),
    token: (ctx) => { tokens.push(ctx); return served.sign({ sub: 'u1', username: 'ann', roles: ['admin'], permissions: ['read'] }) },
    WebSocket,
    reconnect: fast,
    ...options
  })
  const events = record(client)
  t.teardown(() => client.close())
  return { client, events, tokens }
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/

for (const transport of ['protocol', 'message', 'query'] as Transport[]) {
  t.test(`transport ${transport}: established, then an echo`, async t => {
    const served = await serve(t, { auth: { sources: [transport] } })
    const { client, events } = start(t, served, { transport })
    t.equal(client.state, 'connecting')
    const info = await events.next('established')
    t.match(info, {
      type: 'connection_established',
      client_id: /^[0-9a-f-]{36}$/,
      user: { id: 'u1', username: 'ann', roles: ['admin'], permissions: ['read'] },
      timestamp: ISO,
      expires_at: ISO
    })
    t.equal(client.state, 'open')
    t.equal(client.protocol, transport === 'protocol' ? 'bearer' : '')
    client.send({ hello: transport })
    t.equal(await events.next('message'), JSON.stringify({ hello: transport }))
    t.same(events.all('close'), [])
  })
}

t.test('protocolPrefix: the server and the client agree on another prefix, and the client reports it', async t => {
  const served = await serve(t, { auth: { sources: ['protocol'], protocolPrefix: 'jwt' } })
  const { client, events } = start(t, served, { transport: 'protocol', protocolPrefix: 'jwt' })
  t.match(await events.next('established'), { type: 'connection_established', user: { id: 'u1' } })
  t.equal(client.protocol, 'jwt', 'the plain prefix is selected, never the token entry')
  t.same(events.all('close'), [])
})

t.test('protocol transport with app protocols: the server selects the app protocol, never the token entry', async t => {
  const served = await serve(t)
  const { client, events } = start(t, served, { protocols: ['chat.v2'] })
  await events.next('established')
  t.equal(client.protocol, 'chat.v2')
})

t.test('the queue: sent while connecting, flushed in order after connection_established', async t => {
  const order: string[] = []
  const served = await serve(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => {
        socket.on('message', (data, binary) => { order.push(String(data)); socket.send(data, { binary }) })
      })
    }
  })
  const { client, events } = start(t, served, { transport: 'message', queue: 50 })
  for (let i = 0; i < 50; i++) client.send(`m${i}`)
  t.throws(() => client.send('one too many'), {
    name: 'ClientError',
    code: 'FST_WS_AUTH_CLIENT_QUEUE_FULL',
    message: /queue already holds 50 messages \(option "queue"\)/
  })
  await events.next('message', 50)
  const expected = Array.from({ length: 50 }, (_, i) => `m${i}`)
  t.same(order, expected, 'the handler got them in order, and never the auth message')
  t.same(events.all('message'), expected)
  const established = events.events.findIndex(e => e.name === 'established')
  const firstEcho = events.events.findIndex(e => e.name === 'message')
  t.ok(established >= 0 && established < firstEcho, 'established came before any app message')
})

t.test('the queue survives a reconnect: messages sent while reconnecting go out on the next connection', async t => {
  let n = 0
  const received: string[][] = [[], []]
  const served = await serve(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => {
        const mine = received[n++]
        socket.on('message', (data, binary) => { mine.push(String(data)); socket.send(data, { binary }) })
        if (n === 1) socket.close(1012, 'Service restart')
      })
    }
  })
  const { client, events } = start(t, served)
  await events.next('close')
  t.equal(client.state, 'reconnecting')
  client.send('a')
  client.send({ b: 1 })
  client.send(new Uint8Array([1, 2, 3]))
  await events.next('message', 3)
  t.same(received, [[], ['a', '{"b":1}', '\u0001\u0002\u0003']])
  const binary = events.all('message')[2]
  t.ok(Buffer.isBuffer(binary) && binary.equals(Buffer.from([1, 2, 3])), 'binary frames arrive as ws delivers them')
})

t.test('send() while the socket is already closing queues the message for the next connection', async t => {
  const served = await serve(t)
  const spy = sockets()
  const { client, events } = start(t, served, { WebSocket: spy.WebSocket })
  await events.next('established')
  spy.all[0].close(4000, 'gone')
  t.equal(client.state, 'open', 'the close event has not arrived yet')
  client.send('kept')
  t.match(await events.next('close'), { code: 4000, willRetry: true })
  t.equal(await events.next('message'), 'kept', 'sent on the next connection')
  t.same([spy.sent(1), spy.sent(2)], [[], ['kept']], 'never given to the closing socket')
  t.equal(served.attempts.length, 2)
})

t.test('a fatal close hands the queued messages back as unsent', async t => {
  const served = await serve(t, { routes (app) { app.get('/ws', { websocket: true, wsAuth: { roles: ['root'] } }, () => {}) } })
  const { client, events } = start(t, served)
  client.send('x')
  client.send({ y: 2 })
  t.match(await events.final(), { code: 4003, willRetry: false, unsent: ['x', '{"y":2}'] })
})

t.test('control messages never reach "message"', async t => {
  const served = await serve(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => {
        socket.send(JSON.stringify({ type: 'pong', timestamp: new Date().toISOString() }))
        socket.send(JSON.stringify({ type: 'token_refreshed', expires_at: null }))
        socket.send(JSON.stringify({ type: 'chat', text: 'for the app' }))
        socket.send('plain text')
      })
    }
  })
  const { events } = start(t, served)
  await events.next('message', 2)
  t.same(events.all('message'), ['{"type":"chat","text":"for the app"}', 'plain text'])
  t.same(events.all('refreshed'), [{ type: 'token_refreshed', expires_at: null }])
})

const quietServer: ServeOptions = {
  auth: { established: false },
  routes (app) {
    app.get('/ws', { websocket: true }, (socket) => { socket.on('message', (data, binary) => socket.send(data, { binary })) })
  }
}

t.test('established: false on both sides: the queue is flushed at open', async t => {
  for (const transport of ['protocol', 'message'] as Transport[]) {
    const served = await serve(t, quietServer)
    const { client, events } = start(t, served, { established: false, transport })
    client.send('queued')
    t.equal(await events.next('message'), 'queued', transport)
    t.equal(client.state, 'open')
    t.same(events.all('established'), [], 'no established event without the message')
  }
})

t.test('established: false on the server only: the first app message counts as established', async t => {
  const served = await serve(t, {
    auth: { established: false },
    routes (app) { app.get('/ws', { websocket: true }, (socket) => { socket.send('hello'); socket.on('message', (data, binary) => socket.send(data, { binary })) }) }
  })
  const { client, events } = start(t, served)
  client.send('queued')
  t.same(await events.next('message', 2), 'queued')
  t.same(events.all('message'), ['hello', 'queued'])
  t.equal(client.state, 'open')
})

// In-band refresh against the plugin's live sessions (issue 3), on the manual clock: tokens live
// an hour or more (never near their `exp` in real time), and the test moves the library's clock
// to the expiry warning, the client's own refresh time or the expiry itself.
function tokens (served: Served, lifetimes: string[], sub: (n: number) => string = () => 'u1') {
  let n = 0
  const seen: TokenContext[] = []
  const token = (ctx: TokenContext): string => {
    seen.push(ctx)
    const i = n++
    return served.sign({ sub: sub(i) }, { expiresIn: lifetimes[Math.min(i, lifetimes.length - 1)] })
  }
  return { token, seen }
}

const echoesAuth = (m: unknown): boolean => String(m).includes('"type":"auth"')
/**
 * The server for an hour of manual time: no heartbeat, whose pings a tick outruns (the pongs
 * travel in real time), and an expiry warning a minute before `exp` where asked.
 */
const hour = (warn: boolean): WsAuthPluginOptions => ({ heartbeatInterval: false, ...(warn ? { expiryWarning: WARNING } : {}) })
/** The server's expiry warning in these tests: a minute before `exp`. */
const WARNING = 60_000
/** The server files deadlines in slots of this many ms (lib/server/host.ts): one fires at most this late. */
const SLOT = 200
/** Time left until `expiresAt`, on the server's clock as the client reads it. */
const left = (expiresAt: string | null | undefined, time: ManualClock): number => Date.parse(expiresAt!) - time.now()

for (const [margin, rule] of [[30_000, 'refreshMargin before expiry'], [7_200_000, 'half the lifetime, as the margin is longer than the token']] as const) {
  t.test(`refresh with no warning from the server: ${rule}`, async t => {
    const time = manualClock(t)
    const served = await serve(t, { auth: hour(false) })
    const { token, seen } = tokens(served, ['1h', '2h'])
    const { client, events } = start(t, served, { refreshMargin: margin, token })
    const info = await events.next('established')
    const remaining = Date.parse(info.expires_at!) - Date.parse(info.timestamp)
    const due = remaining - Math.min(margin, remaining / 2)
    await time.tick(Math.ceil(due) - 1)
    t.same(seen.map(c => c.reason), ['connect'], 'not asked before its time')
    await time.tick(1)
    t.same(seen.map(c => c.reason), ['connect', 'refresh'], `asked ${due} ms into a ${remaining} ms token`)
    const refreshed = await events.next('refreshed')
    t.match(refreshed, { type: 'token_refreshed', expires_at: ISO })
    t.ok(Date.parse(refreshed.expires_at!) > Date.parse(info.expires_at!), 'the new expiry is later')
    t.same(events.all('message').filter(echoesAuth), [], 'the auth message never reached the handler')
    t.equal(served.attempts.length, 1, 'no reconnect')
    t.equal(client.state, 'open')
  })
}

t.test('refresh on token_expiring, and again on the warning for each refreshed token', async t => {
  const time = manualClock(t)
  const served = await serve(t, { auth: hour(true) })
  const { token, seen } = tokens(served, ['1h', '2h', '3h'])
  // refreshMargin 0: the client's own timer waits for expiry itself; only the warning comes earlier.
  const { events } = start(t, served, { refreshMargin: 0, token })
  let expiresAt = (await events.next('established')).expires_at
  for (let n = 1; n <= 2; n++) {
    // Time stops a minute before expiry, where only the server's warning is due: the client's
    // own timer (refreshMargin 0) would wait for expiry itself.
    await time.tick(left(expiresAt, time) - WARNING + SLOT)
    const refreshed = await events.next('refreshed', n)
    t.ok(Date.parse(refreshed.expires_at!) > Date.parse(expiresAt!), `refresh ${n}: a later expiry`)
    expiresAt = refreshed.expires_at
  }
  t.same(seen.map(c => c.reason), ['connect', 'refresh', 'refresh'])
  t.same(events.all('message'), [], 'token_expiring and token_refreshed never reach "message"')
  t.equal(served.attempts.length, 1)
})

t.test('refresh: false ignores token_expiring; the expiry close then reconnects at once', async t => {
  const time = manualClock(t)
  const served = await serve(t, { auth: hour(true) })
  const { token, seen } = tokens(served, ['1h', '2h'])
  const { events } = start(t, served, { refresh: false, token })
  const info = await events.next('established')
  // The warning, then the expiry: the client sees them in that order on the wire.
  await time.tick(left(info.expires_at, time) + SLOT)
  t.match(await events.next('close'), { code: 4001, reason: 'Token expired', failure: 'token_expired', kind: 'unauthenticated', willRetry: true, delay: 0 })
  await time.tick(0)
  await events.next('established', 2)
  t.same(seen.map(c => c.reason), ['connect', 'reauthenticate'], 'never asked for a refresh')
  t.same(events.all('refreshed'), [])
})

t.test('a refresh the server refuses (another user): 4001, then one reconnect with a fresh token', async t => {
  const time = manualClock(t)
  const served = await serve(t, { auth: hour(true) })
  const { token, seen } = tokens(served, ['1h', '2h'], n => n === 1 ? 'someone-else' : 'u1')
  const { events } = start(t, served, { token })
  const info = await events.next('established')
  await time.tick(left(info.expires_at, time) - WARNING + SLOT)
  t.match(await events.next('close'), { code: 4001, reason: 'Invalid token', willRetry: true, delay: 0 })
  await time.tick(0)
  await events.next('established', 2)
  t.same(seen.map(c => c.reason), ['connect', 'refresh', 'reauthenticate'])
})

t.test('a token() that throws during a refresh is reported, the session goes on', async t => {
  const time = manualClock(t)
  const served = await serve(t, { auth: hour(true) })
  let calls = 0
  const { client, events } = start(t, served, {
    token: () => { if (++calls > 1) throw new Error('refresh endpoint down'); return served.sign({ sub: 'u1' }, { expiresIn: '1h' }) }
  })
  const info = await events.next('established')
  await time.tick(left(info.expires_at, time) - WARNING + SLOT)
  t.match(await events.next('error'), { name: 'WsAuthError', code: null, kind: 'token', retry: 'reauthenticate', cause: { message: 'refresh endpoint down' } })
  t.equal(client.state, 'open')
  client.send('still here')
  t.equal(await events.next('message'), 'still here', 'the connection still carries messages')
  t.same(events.all('close'), [])
})

t.test('a warning sent by the route itself is handled the same way', async t => {
  const served = await serve(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => {
        socket.on('message', () => {})
        socket.send(JSON.stringify({ type: 'token_expiring', expires_at: new Date(Date.now() + 60_000).toISOString() }))
      })
    }
  })
  const { token, seen } = tokens(served, ['1m'])
  const { events } = start(t, served, { refreshMargin: 0, token })
  await events.next('refreshed')
  t.same(seen.map(c => c.reason), ['connect', 'refresh'])
})

t.test('refresh on a push-only route (the handler never listens for messages)', async t => {
  const time = manualClock(t)
  const served = await serve(t, { auth: hour(true), routes (app) { app.get('/ws', { websocket: true }, () => {}) } })
  const { token } = tokens(served, ['1h', '2h'])
  const { events } = start(t, served, { token })
  const info = await events.next('established')
  await time.tick(left(info.expires_at, time) - WARNING + SLOT)
  const outcome = await Promise.race([
    events.next('refreshed').then(() => 'refreshed'),
    events.next('close').then((c) => `closed ${c.code} ${c.reason}`)
  ])
  t.equal(outcome, 'refreshed')
})

t.test('a refresh with no token sends nothing; the session goes on', async t => {
  const asked = deferred()
  const served = await serve(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => {
        socket.on('message', (data) => socket.send(String(data)))
        socket.send(JSON.stringify({ type: 'token_expiring', expires_at: new Date(Date.now() + 60_000).toISOString() }))
      })
    }
  })
  const seen: TokenContext[] = []
  const spy = sockets()
  const { client, events } = start(t, served, {
    WebSocket: spy.WebSocket,
    token: (ctx) => {
      seen.push(ctx)
      if (ctx.reason !== 'refresh') return served.sign({ sub: 'u1' })
      asked.resolve()
      return null
    }
  })
  await asked.promise
  // token() answered null; its answer is read a microtask later.
  await new Promise(resolve => setImmediate(resolve))
  client.send('still here')
  t.equal(await events.next('message'), 'still here', 'the session goes on')
  t.same(spy.sent(1), ['still here'], 'the client sent only the app message on its socket')
  t.same(seen.map(c => c.reason), ['connect', 'refresh'])
  t.same(events.all('refreshed'), [])
})

t.test('off() removes a listener', async t => {
  const served = await serve(t)
  const { client, events } = start(t, served)
  const seen: unknown[] = []
  const listener = (data: unknown): void => { seen.push(data) }
  client.on('message', listener)
  await events.next('established')
  client.send('one')
  await events.next('message')
  client.off('message', listener)
  client.send('two')
  await events.next('message', 2)
  t.same(seen, ['one'])
})

t.test('a WebSocket constructor that throws: fatal, and the token stays out of the error', async t => {
  const token = 'secret.token.value'
  // As a browser does for a subprotocol it cannot send, quoting it (and so the token).
  class Refusing {
    constructor (_url: string, protocols?: string | string[]) {
      throw new SyntaxError(`The subprotocol '${String(protocols)}' is invalid`)
    }
  }
  const client = createClient({ url: 'ws://127.0.0.1:9/ws', token, WebSocket: Refusing as unknown as WebSocketConstructor })
  const events = record(client)
  t.match(await events.final(), { code: null, kind: 'refused', willRetry: false })
  const [error] = events.all('error')
  t.match(error, { name: 'WsAuthError', code: null, kind: 'refused', retry: 'never', message: /the WebSocket constructor refused ws:\/\/127.0.0.1:9\/ws/ })
  t.match((error.cause as Error).message, "The subprotocol 'bearer.[token],bearer' is invalid")
  t.notOk(JSON.stringify([error.message, (error.cause as Error).message]).includes(token))
})

t.test('a static token is never refreshed: the expiry close reconnects once with it', async t => {
  const time = manualClock(t)
  const served = await serve(t, { auth: hour(true) })
  const token = served.sign({ sub: 'u1' }, { expiresIn: '1h' })
  const spy = sockets()
  const { client, events } = start(t, served, { token, WebSocket: spy.WebSocket })
  const info = await events.next('established')
  // The warning, then the expiry.
  await time.tick(left(info.expires_at, time) + SLOT)
  t.match(await events.next('close'), { code: 4001, reason: 'Token expired', kind: 'unauthenticated', willRetry: true, delay: 0 })
  await time.tick(0)
  t.same(spy.all.map((_, i) => spy.offered(i + 1).protocols[0]), [`bearer.${token}`, `bearer.${token}`], 'one reconnection, with the same token')
  // Still valid for jwt (it has an hour of real time left) but past its exp on the library's
  // clock: established, then closed at once, and a second 4001 in a row is final.
  await events.next('established', 2)
  await time.tick(SLOT)
  t.match(await events.final(), { code: 4001, reason: 'Token expired', willRetry: false })
  t.equal(spy.all.length, 2, 'no third attempt')
  t.same(events.all('refreshed'), [], 'never refreshed')
  t.equal(client.state, 'closed')
})
