import { connect as tcpConnect } from 'node:net'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { once } from 'node:events'
import WebSocket from 'ws'
import { barrier, buildApp, connect, serverSockets, type Client } from './helpers/index.ts'
import { manualClock } from './helpers/clock.ts'
import { LocalRegistry, type Member } from '../lib/cluster/registry.ts'

type Msg = Record<string, unknown>

function routes (app: FastifyInstance) {
  app.get('/ws/a', { websocket: true }, (socket) => { socket.on('message', () => {}) })
  app.get('/ws/b', { websocket: true }, (socket) => { socket.on('message', () => {}) })
}

t.test('sendToUser reaches every socket of that user, JSON-encoding objects', async t => {
  const { app, url, sign } = await buildApp(t, { routes })
  const a1 = connect(url('/ws/a?token=' + sign({ sub: 'u1' })))
  const a2 = connect(url('/ws/b?token=' + sign({ sub: 'u1' })))
  const b = connect(url('/ws/a?token=' + sign({ sub: 'u2' })))
  await Promise.all([a1.message(1), a2.message(1), b.message(1)])
  t.equal(app.wsAuth.sendToUser('u1', { type: 'note', n: 1 }), 2)
  t.same(await a1.message(2), { type: 'note', n: 1 })
  t.same(await a2.message(2), { type: 'note', n: 1 })
  t.equal(app.wsAuth.sendToUser('u2', 'plain text'), 1)
  t.equal(await b.message(2), 'plain text')
  t.equal(app.wsAuth.sendToUser('nobody', 'x'), 0)
  // The server has answered a ping sent after every call: anything misdirected has arrived by now.
  await Promise.all([a1, a2, b].map(barrier))
  t.same(a1.messages.slice(1), [{ type: 'note', n: 1 }], 'u1 got only its own message')
  t.same(a2.messages.slice(1), [{ type: 'note', n: 1 }])
  t.same(b.messages.slice(1), ['plain text'], 'u2 got only its own message')
  t.throws(() => app.wsAuth.sendToUser({} as unknown as string, 'x'), { code: 'FST_WS_AUTH_INVALID_ARGUMENT' })
  for (const c of [a1, a2, b]) c.ws.close()
})

t.test('broadcast: all, by roles, by permissions, by route, by predicate', async t => {
  const { app, url, sign } = await buildApp(t, { routes, auth: { rolePermissions: { manager: ['stock.manage'] } } })
  const admin = connect(url('/ws/a?token=' + sign({ sub: 'admin', roles: ['admin'] })))
  const manager = connect(url('/ws/b?token=' + sign({ sub: 'mgr', roles: ['manager'] })))
  const viewer = connect(url('/ws/a?token=' + sign({ sub: 'v', roles: ['viewer'], permissions: ['read'] })))
  const all = [admin, manager, viewer]
  await Promise.all(all.map(c => c.message(1)))
  const received = async (n: number) => Promise.all(all.map(c => c.messages.length >= n ? c.messages[n - 1] : undefined))

  t.equal(app.wsAuth.broadcast({ to: 'all' }), 3)
  await Promise.all(all.map(c => c.message(2)))
  t.equal(app.wsAuth.broadcast('roles', { roles: ['admin', 'manager'] }), 2)
  t.equal(app.wsAuth.broadcast('perm', { permissions: ['stock.manage'] }), 1, 'rolePermissions expanded')
  t.equal(app.wsAuth.broadcast('route', { route: '/ws/a' }), 2)
  t.equal(app.wsAuth.broadcast('pred', (user) => user.id === 'v'), 1)
  t.equal(app.wsAuth.broadcast('both', { roles: ['viewer'], permissions: ['read'] }), 1)
  await Promise.all(all.map(barrier))
  t.same(await received(3), ['roles', 'roles', 'route'])
  t.same(admin.messages.slice(1), [{ to: 'all' }, 'roles', 'route'])
  t.same(manager.messages.slice(1), [{ to: 'all' }, 'roles', 'perm'])
  t.same(viewer.messages.slice(1), [{ to: 'all' }, 'route', 'pred', 'both'])
  for (const c of all) c.ws.close()
})

t.test('disconnectUser closes every socket of a user: 4001 "Token revoked" by default, or a given code', async t => {
  const { app, url, sign } = await buildApp(t, { routes })
  const a = connect(url('/ws/a?token=' + sign({ sub: 'u1' })))
  const b = connect(url('/ws/b?token=' + sign({ sub: 'u1' })))
  const other = connect(url('/ws/a?token=' + sign({ sub: 'u2' })))
  await Promise.all([a.message(1), b.message(1), other.message(1)])
  t.equal(app.wsAuth.disconnectUser('u1'), 2)
  t.same(await a.closed, { code: 4001, reason: 'Token revoked' })
  t.same(await b.closed, { code: 4001, reason: 'Token revoked' })
  t.equal(app.wsAuth.disconnectUser('u2', { code: 4000, reason: 'Moved to another device' }), 1)
  t.same(await other.closed, { code: 4000, reason: 'Moved to another device' })
  t.throws(() => app.wsAuth.disconnectUser('u1', { code: 1006 }), { code: 'FST_WS_AUTH_INVALID_ARGUMENT' })
  t.throws(() => app.wsAuth.disconnectUser('u1', { reason: 'é'.repeat(62) }), { code: 'FST_WS_AUTH_INVALID_ARGUMENT' }, '124 bytes')
  t.equal(app.wsAuth.disconnectUser('u1'), 0)
})

t.test('disconnectUser alone lets the same token back in: only revoke keeps it out', async t => {
  const { app, url, sign } = await buildApp(t, { routes })
  const token = sign({ sub: 'u1' })
  const a = connect(url('/ws/a?token=' + token))
  await a.message(1)
  t.equal(app.wsAuth.disconnectUser('u1'), 1)
  t.same(await a.closed, { code: 4001, reason: 'Token revoked' })
  const back = connect(url('/ws/a?token=' + token))
  t.match(await back.message(1), { type: 'connection_established', user: { id: 'u1' } }, 'the same token is accepted again')
  t.equal(app.wsAuth.stats().revocations, 0, 'nothing was revoked')
  back.ws.close()
})

t.test('stats().ended counts the sessions the plugin ended, by close code; refusals and the clients\' own closes are not in it', async t => {
  const time = manualClock(t)
  const { app, url, sign } = await buildApp(t, { routes, auth: { heartbeatInterval: false, maxConnectionsPerUser: 1, onLimit: 'evict-oldest' } })
  const server = serverSockets(app)
  const open = async (sub: string, claims: object = {}) => {
    const c = connect(url(`/ws/a?as=${sub}&token=` + sign({ sub, ...claims })))
    await c.message(1)
    return c
  }
  const exp = Math.floor(Date.now() / 1000) + 60
  const expiring = await open('expiring', { exp })
  const dropped = await open('dropped')
  const moved = await open('moved')
  const revoked = await open('revoked', { jti: 'r1' })
  const evicted = await open('evicted')
  const leaving = await open('leaving')
  const refreshing = await open('refreshing')
  const evictor = await open('evicted')
  t.same(await evicted.closed, { code: 4029, reason: 'Too many connections' })
  t.equal(app.wsAuth.disconnectUser('dropped'), 1)
  t.same(await dropped.closed, { code: 4001, reason: 'Token revoked' })
  t.equal(app.wsAuth.disconnectUser('moved', { code: 4000, reason: 'Moved' }), 1)
  t.same(await moved.closed, { code: 4000, reason: 'Moved' })
  t.equal(app.wsAuth.revoke({ jti: 'r1' }), 1)
  t.same(await revoked.closed, { code: 4001, reason: 'Token revoked' })
  await time.tick(exp * 1000 + 200 - time.now())
  t.same(await expiring.closed, { code: 4001, reason: 'Token expired' })
  refreshing.send({ type: 'auth', token: 'not.a.jwt' })
  t.same(await refreshing.closed, { code: 4001, reason: 'Invalid token' }, 'a refused refresh is a failure')
  leaving.ws.close(1000)
  await leaving.closed
  await server.closed('as=leaving')
  const stats = app.wsAuth.stats()
  t.equal(stats.active, 1, 'only the evictor is left')
  t.same(stats.ended, { 4001: 3, 4000: 1, 4029: 1 })
  t.same(stats.failures, { 4001: 1 })
  evictor.ws.close()
})

t.test('connections() and stats()', async t => {
  // The library's clock an hour behind the real one: connectedAt must come from it.
  const time = manualClock(t, Date.now() - 3_600_000)
  const { app, url, sign } = await buildApp(t, { routes })
  const exp = Math.floor(Date.now() / 1000) + 600
  const a = connect(url('/ws/a?token=' + sign({ sub: 'u1', exp })))
  const b = connect(url('/ws/b?token=' + sign({ sub: 'u2' })))
  const first = await a.message(1) as Msg
  await b.message(1)
  const bad = connect(url('/ws/a?token=bad'))
  await bad.closed
  const waiting = connect(url('/ws/a'))
  // The server tracks a session waiting for its auth message before its 101 leaves: open is the event.
  await waiting.opened
  t.equal(app.wsAuth.stats().authenticating, 1, 'the waiting client is authenticating')

  const [info] = app.wsAuth.connections('u1')
  t.same(info, {
    clientId: first.client_id,
    userId: 'u1',
    route: '/ws/a',
    connectedAt: new Date(time.now()).toISOString(),
    expiresAt: new Date(exp * 1000).toISOString()
  }, 'connectedAt: when the session was made, by the library\'s clock, in ISO form')
  t.same(app.wsAuth.connections().map(c => c.userId).sort(), ['u1', 'u2'])
  t.same(app.wsAuth.stats(), {
    active: 2,
    authenticating: 1,
    users: 2,
    attempts: 4,
    established: 2,
    failures: { 4001: 1 },
    ended: {},
    revocations: 0,
    refused: {},
    subscriptions: 0
  })
  t.equal(app.wsAuth.closeCodes.forbidden.code, 4003)
  for (const c of [a, b, waiting]) c.ws.close()
})

t.test('nothing is left behind after 1,000 connections, including ones that die mid-handshake or before authenticating', async t => {
  const { app, url, sign, httpUrl } = await buildApp(t, { routes, auth: { authTimeout: 2000 } })
  const server = serverSockets(app)
  const port = Number(new URL(httpUrl('/')).port)
  const token = sign({ sub: 'u1' })
  const clients: Client[] = []
  const raw: Promise<void>[] = []
  for (let i = 0; i < 1000; i++) {
    const kind = i % 4
    if (kind === 0 || kind === 1) {
      const c = connect(url(`/ws/${kind === 0 ? 'a' : 'b'}?token=${token}`))
      c.message(1).then(() => c.ws.close())
      clients.push(c)
    } else if (kind === 2) {
      const c = connect(url('/ws/a'))
      c.opened.then(() => c.ws.terminate(), () => {})
      clients.push(c)
    } else {
      raw.push(dieMidHandshake(port, token))
    }
  }
  await Promise.all([...clients.map(c => c.closed), ...raw])
  // A raw client may be gone before the server accepted it, which then still upgrades it: wait
  // until all 1,000 were accepted, then for the server's end of each to close.
  await server.allClosed(undefined, 1000)
  const stats = app.wsAuth.stats()
  t.match(stats, { active: 0, authenticating: 0 }, 'no session left once the server closed every socket')
  t.equal(stats.users, 0)
  t.ok(stats.established >= 500 && stats.established <= 750, 'every good one established (dying ones may or may not)')
  t.same(app.wsAuth.connections(), [])
  t.same(app.wsAuth.connections('u1'), [])
  t.equal(app.websocketServer.clients.size, 0)
})

/** Sends an upgrade request and destroys the socket before reading the answer. */
function dieMidHandshake (port: number, token: string): Promise<void> {
  return new Promise(resolve => {
    const socket = tcpConnect(port, '127.0.0.1', () => {
      socket.write(`GET /ws/a?token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
      socket.destroy()
    })
    socket.on('close', () => resolve())
    socket.on('error', () => {})
  })
}

t.test('broadcast by route params, and a predicate that sees the connection', async t => {
  const { app, url, sign } = await buildApp(t, {
    routes: (app) => {
      app.get('/ws/stations/:station_id', { websocket: true }, (socket) => { socket.on('message', () => {}) })
    }
  })
  const one = connect(url('/ws/stations/1?token=' + sign({ sub: 'cook1' })))
  const two = connect(url('/ws/stations/2?token=' + sign({ sub: 'cook2' })))
  await Promise.all([one.message(1), two.message(1)])
  t.equal(app.wsAuth.broadcast('order for 2', { params: { station_id: '2' } }), 1)
  t.equal(await two.message(2), 'order for 2')
  const seen: unknown[] = []
  t.equal(app.wsAuth.broadcast('route', (_user, connection) => {
    seen.push(connection)
    return connection.params.station_id === '1'
  }), 1)
  t.equal(await one.message(2), 'route')
  await Promise.all([one, two].map(barrier))
  t.match(seen, [
    { route: '/ws/stations/:station_id', params: { station_id: '1' }, clientId: String },
    { route: '/ws/stations/:station_id', params: { station_id: '2' }, clientId: String }
  ])
  t.equal(one.messages.length, 2, 'station 1 got nothing of station 2')
  t.same(two.messages.slice(1), ['order for 2'], 'station 2 got nothing of station 1')
  one.ws.close()
  two.ws.close()
})

t.test('connection_established shows the permissions rolePermissions grants; publicUser receives them', async t => {
  const { url, sign } = await buildApp(t, { routes, auth: { rolePermissions: { manager: ['stock.manage'] } } })
  const c = connect(url('/ws/a?token=' + sign({ sub: 'm', roles: ['manager'], permissions: ['own'] })))
  t.match(await c.message(1), { user: { id: 'm', roles: ['manager'], permissions: ['own', 'stock.manage'] } })
  c.ws.close()

  const custom = await buildApp(t, {
    routes,
    auth: { rolePermissions: { manager: ['stock.manage'] }, publicUser: (user, granted) => ({ id: (user as { id?: string }).id, can: granted.permissions }) }
  })
  const d = connect(custom.url('/ws/a?token=' + custom.sign({ sub: 'm', roles: ['manager'] })))
  t.match(await d.message(1), { user: { id: 'm', can: ['stock.manage'] } })
  d.ws.close()
})

t.test('LocalRegistry.countOf counts the open sessions of a user, as they open and go', async t => {
  const registry = new LocalRegistry(() => new Set(), () => 0)
  const member = (clientId: string, userId: string | undefined) => ({ clientId, userId }) as unknown as Member
  const [a, b, c, anon] = [member('a', 'u1'), member('b', 'u1'), member('c', 'u2'), member('d', undefined)]
  for (const m of [a, b, c, anon]) registry.opened(m)
  t.same([registry.countOf('u1'), registry.countOf('u2'), registry.countOf('nobody')], [2, 1, 0])
  registry.gone(a)
  t.equal(registry.countOf('u1'), 1)
  registry.gone(b)
  registry.gone(c)
  t.same([registry.countOf('u1'), registry.countOf('u2')], [0, 0])
  t.equal(registry.stats().active, 1, 'the session without a user id is still open')
})

t.test('LocalRegistry.openGroups groups open sessions by user, each session without a user id alone', async t => {
  const registry = new LocalRegistry(() => new Set(), () => 0)
  const member = (clientId: string, userId: string | undefined) => ({ clientId, userId }) as unknown as Member
  const [a, b, c, anon1, anon2, pending] = [member('a', 'u1'), member('b', 'u1'), member('c', 'u2'), member('d', undefined),
    member('e', undefined), member('f', 'u3')]
  for (const m of [a, c, anon1, b, anon2]) registry.opened(m)
  registry.track(pending)
  const ids = (groups: Member[][]) => groups.map(g => g.map(m => m.clientId))
  t.same(ids(registry.openGroups()), [['a', 'b'], ['c'], ['d'], ['e']], 'a session still authenticating is in no group')
  registry.gone(a)
  t.same(ids(registry.openGroups()), [['b'], ['c'], ['d'], ['e']])
})

t.test('LocalRegistry.heartbeat: a socket whose ping throws (still connecting) is marked, then terminated at the next beat', async t => {
  const { url } = await buildApp(t, { routes })
  const ws = new WebSocket(url('/ws/a'))
  const errored = once(ws, 'error')
  // once(ws, 'close') would reject at the 'error' event: record the close by hand.
  const closed = new Promise<number>(resolve => ws.on('close', (code: number) => resolve(code)))
  const registry = new LocalRegistry(() => new Set(), () => 0)
  const session = { clientId: 'x', userId: 'u1', ws, alive: true } as unknown as Member
  registry.track(session)
  t.equal(ws.readyState, ws.CONNECTING)
  t.doesNotThrow(() => registry.heartbeat(), 'ping on a connecting socket throws inside; the sweep goes on')
  t.equal(session.alive, false)
  registry.heartbeat()
  t.match((await errored)[0], { message: /closed before the connection was established/ })
  t.equal(await closed, 1006, 'terminated')
})
