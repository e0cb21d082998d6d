import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { clock, useClock } from '../lib/protocol/clock.ts'
import { barrier, buildApp, connect, serverSockets, type Client } from './helpers/index.ts'
import { manualClock } from './helpers/clock.ts'

// Expiry, warnings, lifetimes and the heartbeat run on the manual clock: each deadline is reached
// by `tick`, so these tests take milliseconds and cannot race a busy machine. Where a test moves
// time by more than `heartbeatInterval`, the heartbeat is off: a tick of minutes sends pings
// faster than a real client can answer them.

type Msg = Record<string, unknown>
const nowSec = () => Math.floor(Date.now() / 1000)
/** Deadlines fire within this many ms after they are due (lib/server/host.ts). */
const RESOLUTION = 200
const NO_HEARTBEAT = { heartbeatInterval: false } as const

/** A route that echoes and records what its handler saw. */
function echoRoutes (seen: unknown[], routeOptions: Record<string, unknown> = {}, path = '/ws') {
  return (app: FastifyInstance) => {
    app.get(path, { websocket: true, ...routeOptions }, (socket) => {
      socket.on('message', (data) => {
        const text = data.toString()
        seen.push(text)
        socket.send(text)
      })
    })
  }
}

/** Sends `text` and resolves with its echo; rejects if the socket closes first. */
function echo (client: Client, text: string): Promise<unknown> {
  client.send(text)
  return client.messageWhere(m => m === text)
}

t.test('a live socket closes with 4001 "Token expired" once exp passes, not before', async t => {
  const time = manualClock(t)
  const { url, sign } = await buildApp(t, { auth: NO_HEARTBEAT })
  const exp = nowSec() + 60
  const c = connect(url('/ws?token=' + sign({ sub: 'u1', exp })))
  const established = await c.message(1) as Msg
  t.equal(established.expires_at, new Date(exp * 1000).toISOString())
  await time.tick(exp * 1000 - 1 - time.now())
  t.equal(await echo(c, '1 ms before exp'), '1 ms before exp', 'open until exp')
  await time.tick(RESOLUTION)
  t.same(await c.closed, { code: 4001, reason: 'Token expired' })
})

t.test('expiryWarning sends token_expiring that many ms before exp, and does not close', async t => {
  const time = manualClock(t)
  const { url, sign } = await buildApp(t, { auth: { ...NO_HEARTBEAT, expiryWarning: 10_000 } })
  const exp = nowSec() + 60
  const c = connect(url('/ws?token=' + sign({ sub: 'u1', exp })))
  await c.message(1)
  await time.tick(exp * 1000 - 10_000 - 1 - time.now())
  t.equal(await echo(c, 'early'), 'early')
  t.equal(c.messages.length, 2, 'no warning before its time')
  await time.tick(RESOLUTION)
  t.same(await c.message(3), { type: 'token_expiring', expires_at: new Date(exp * 1000).toISOString() })
  t.equal(await echo(c, 'warned'), 'warned', 'still open after the warning')
  await time.tick(exp * 1000 + RESOLUTION - time.now())
  t.same(await c.closed, { code: 4001, reason: 'Token expired' })
  t.equal(c.messages.filter(m => (m as Msg)?.type === 'token_expiring').length, 1, 'warned once')
})

t.test('in-band refresh', async t => {
  t.test('same user: token_refreshed, the expiry timer moves, the handler never sees it', async t => {
    const time = manualClock(t)
    const seen: unknown[] = []
    const { url, sign } = await buildApp(t, { auth: NO_HEARTBEAT, routes: echoRoutes(seen) })
    const first = nowSec() + 60
    const c = connect(url('/ws?token=' + sign({ sub: 'u1', exp: first })))
    await c.message(1)
    const exp = nowSec() + 120
    c.send({ type: 'auth', token: sign({ sub: 'u1', exp }) })
    t.same(await c.message(2), { type: 'token_refreshed', expires_at: new Date(exp * 1000).toISOString() })
    await time.tick(first * 1000 + RESOLUTION - time.now())
    t.equal(await echo(c, 'past the first exp'), 'past the first exp', 'open past the first token\'s exp')
    await time.tick(exp * 1000 + RESOLUTION - time.now())
    t.same(await c.closed, { code: 4001, reason: 'Token expired' }, 'closed at the new exp')
    t.same(seen, ['past the first exp'], 'the refresh message never reached the handler')
  })

  t.test('a refresh is found wherever "type" sits', async t => {
    const seen: unknown[] = []
    const { url, sign } = await buildApp(t, { routes: echoRoutes(seen) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    const token = sign({ sub: 'u1', exp: nowSec() + 60 })
    for (let k = 0; k < 12; k++) c.ws.send(`{"x":"${'h'.repeat(k)}","token":"${token}", "type" :"auth"}`)
    c.ws.send('after')
    await c.message(14) // each answered: token_refreshed (after verification, so in any order) or an echo
    t.equal(c.messages.filter(m => (m as Msg)?.type === 'token_refreshed').length, 12)
    t.same(seen, ['after'])
    c.ws.close()
  })

  t.test('a token of another user closes with 4001', async t => {
    const { url, sign } = await buildApp(t)
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    c.send({ type: 'auth', token: sign({ sub: 'u2' }) })
    t.same(await c.closed, { code: 4001, reason: 'Invalid token' })
  })

  t.test('an invalid token closes with 4001', async t => {
    const { url, sign } = await buildApp(t)
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    c.send({ type: 'auth', token: 'not.a.jwt' })
    t.same(await c.closed, { code: 4001, reason: 'Invalid token' })
  })

  t.test('a user who lost the route\'s role closes with 4003', async t => {
    const { url, sign } = await buildApp(t, { routes: echoRoutes([], { wsAuth: { roles: ['admin'] } }) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1', roles: ['admin'] })))
    await c.message(1)
    c.send({ type: 'auth', token: sign({ sub: 'u1', roles: ['viewer'] }) })
    t.same(await c.closed, { code: 4003, reason: 'Forbidden' })
  })

  t.test('authorize runs again', async t => {
    let allowed = true
    const { url, sign } = await buildApp(t, { routes: echoRoutes([], { wsAuth: { authorize: () => allowed } }) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    allowed = false
    c.send({ type: 'auth', token: sign({ sub: 'u1' }) })
    t.same(await c.closed, { code: 4003, reason: 'Forbidden' })
  })

  // docs/live-sessions.md: "A refused refresh closes with its code (4001, 4002, 4003, 4004)".
  t.test('loadUser answering no user for the new token closes with 4002, and nothing is refreshed', async t => {
    const { url, sign } = await buildApp(t, {
      auth: { loadUser: (claims) => claims.active === false ? null : { id: claims.sub as string, roles: [] } }
    })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    c.send({ type: 'auth', token: sign({ sub: 'u1', active: false }) })
    t.same(await c.closed, { code: 4002, reason: 'User not found or inactive' })
    t.equal(c.messages.length, 1, 'no token_refreshed')
  })

  t.test('authorize answering "not_found" at a refresh closes with 4004', async t => {
    const entries = new Set(['e1'])
    const authorize = (request: { params: unknown }) => entries.has((request.params as { id: string }).id) ? true : 'not_found' as const
    const { url, sign } = await buildApp(t, { routes: echoRoutes([], { wsAuth: { authorize } }, '/ws/entries/:id') })
    const c = connect(url('/ws/entries/e1?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    entries.delete('e1')
    c.send({ type: 'auth', token: sign({ sub: 'u1' }) })
    t.same(await c.closed, { code: 4004, reason: 'Not found' })
    t.equal(c.messages.length, 1, 'no token_refreshed')
  })
})

t.test('maxLifetime', async t => {
  t.test('ends the session with 4010 at maxLifetime, not before', async t => {
    const time = manualClock(t)
    const { url, sign } = await buildApp(t, { auth: { maxLifetime: 1000 } })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    await time.tick(999)
    t.equal(await echo(c, 'at 999 ms'), 'at 999 ms')
    await time.tick(RESOLUTION)
    t.same(await c.closed, { code: 4010, reason: 'Session lifetime exceeded' })
  })

  t.test('route level overrides the plugin', async t => {
    const time = manualClock(t)
    const { url, sign } = await buildApp(t, { auth: { maxLifetime: 60_000 }, routes: echoRoutes([], { wsAuth: { maxLifetime: 100 } }) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    await time.tick(100 + RESOLUTION)
    t.same(await c.closed, { code: 4010, reason: 'Session lifetime exceeded' }, 'long before the plugin\'s 60 s')
  })

  t.test('deadlines past 2^31-1 ms are reached in steps: none fires early, and none is asked of setTimeout', async t => {
    const time = manualClock(t)
    // setTimeout fires at once for a delay over 2^31-1 ms: record every delay the library asks for.
    const delays: number[] = []
    const manual = { ...clock }
    t.teardown(useClock({ ...manual, after: (ms, fn, unref) => { delays.push(ms); return manual.after(ms, fn, unref) } }))
    const lifetime = 2 ** 31 + 5000
    const { url, sign } = await buildApp(t, { auth: { ...NO_HEARTBEAT, maxLifetime: lifetime }, routes: echoRoutes([]) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1', exp: nowSec() + 40 * 24 * 3600 })))
    await c.message(1)
    await time.tick(2 ** 31 - 1)
    t.equal(await echo(c, 'after 2^31-1 ms'), 'after 2^31-1 ms', 'open after the longest single timer')
    await time.tick(lifetime - (2 ** 31 - 1) - 1)
    t.equal(await echo(c, 'just before'), 'just before', 'open 1 ms before maxLifetime')
    await time.tick(RESOLUTION)
    t.same(await c.closed, { code: 4010, reason: 'Session lifetime exceeded' })
    t.ok(delays.length > 0 && delays.every(ms => ms <= 2 ** 31 - 1), `every delay fits setTimeout (longest ${Math.max(...delays)} ms)`)
  })
})

/** Resolves at the client's next ping from the server; rejects if the socket closes first. */
function pingOf (client: Client): Promise<void> {
  return new Promise((resolve, reject) => {
    client.ws.once('ping', () => resolve())
    client.waitForClose().then(c => reject(new Error(`closed with ${c.code} before a ping`)), () => {})
  })
}

t.test('heartbeat terminates a client that stops answering pings, and keeps one that answers', async t => {
  const time = manualClock(t)
  const { app, url, sign } = await buildApp(t, { auth: { heartbeatInterval: 50 } })
  const server = serverSockets(app)
  const answering = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  const silent = connect(url('/ws?client=silent&token=' + sign({ sub: 'u2' })), undefined, { autoPong: false })
  await Promise.all([answering.message(1), silent.message(1)])
  const pinged = Promise.all([pingOf(answering), pingOf(silent)])
  await time.tick(50)
  await pinged
  await barrier(answering) // the server has read the answering client's pong
  t.equal(silent.closedWith, undefined, 'a missed pong is forgiven until the next beat')
  await time.tick(50)
  t.same(await silent.closed, { code: 1006, reason: '' }, 'terminated without a close frame')
  t.equal(await echo(answering, 'still here'), 'still here', 'the answering client stays')
  await server.closed('client=silent')
  t.equal(app.wsAuth.stats().active, 1, 'the terminated session left the registry')
  t.same(app.wsAuth.connections().map(c => c.userId), ['u1'])
  answering.ws.close()
})

t.test('appPing answers {"type":"ping"} with pong, and the handler never sees it', async t => {
  const seen: unknown[] = []
  const { url, sign } = await buildApp(t, { auth: { appPing: true }, routes: echoRoutes(seen) })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  c.send({ type: 'ping' })
  const pong = await c.message(2) as Msg
  t.equal(pong.type, 'pong')
  t.ok(!Number.isNaN(Date.parse(pong.timestamp as string)))
  c.send('after')
  t.equal(await c.message(3), 'after')
  t.same(seen, ['after'])
  c.ws.close()
})

t.test('appPing: a ping is found wherever "type" sits; near misses reach the handler', async t => {
  const seen: string[] = []
  const { url, sign } = await buildApp(t, { auth: { appPing: true }, routes: echoRoutes(seen) })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  // Twelve offsets: the search skips ahead several bytes at a time, so every alignment is tried.
  const pings = Array.from({ length: 12 }, (_, k) => `{"x":"${'a'.repeat(k)}", "type" : "ping"}`)
  pings.push(' \n{"type":"ping","id":7}')
  const apps = ['{"type":"pings"}', '{"type":"PING"}', '{"type":"pin"}', '{"note":"ping"}', '["ping"]',
    '{"type":"message","body":"pinging \\"ping\\""}', 'ping', '"ping"']
  for (const text of [...pings, ...apps]) c.ws.send(text)
  c.ws.send('after')
  // Every message is answered (a pong or its echo), in order: 'after' comes last.
  t.equal(await c.message(1 + pings.length + apps.length + 1), 'after')
  const pongs = c.messages.slice(1).filter(m => (m as Msg)?.type === 'pong')
  t.equal(pongs.length, pings.length, 'one pong per ping')
  t.same(seen, [...apps, 'after'], 'the handler saw every other message, in order')
  c.ws.close()
})

t.test('without appPing, {"type":"ping"} is an app message', async t => {
  const seen: unknown[] = []
  const { url, sign } = await buildApp(t, { routes: echoRoutes(seen) })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  c.send({ type: 'ping' })
  t.same(await c.message(2), { type: 'ping' })
  c.ws.close()
})

t.test('fastify.close() closes every authenticated socket with 1001, whatever the registration order', async t => {
  for (const websocketFirst of [false, true]) {
    const { app, url, sign } = await buildApp(t, { websocketFirst })
    const authenticated = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    const waiting = connect(url('/ws'))
    await Promise.all([authenticated.message(1), waiting.opened])
    await app.close()
    t.same(await authenticated.closed, { code: 1001, reason: 'Server shutting down' }, `websocketFirst: ${websocketFirst}`)
    t.same(await waiting.closed, { code: 1001, reason: 'Server shutting down' })
  }
})
