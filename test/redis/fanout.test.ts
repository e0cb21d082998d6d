import t from 'tap'
import { barrier, connect, WAIT_MS, type Client } from '../helpers/index.ts'
import { startRedis, type RedisServer } from './server.ts'
import { bounded, cluster, inspector, instance, prefix } from './helpers.ts'

type Msg = Record<string, unknown>

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

t.test('sendToUser reaches the user\'s sockets on every instance, and counts them', async t => {
  const [a, b, c] = await cluster(t, redis.url, 3)
  const onA = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  const onB = connect(b.url('/ws/b?token=' + b.sign({ sub: 'u1' })))
  const other = connect(c.url('/ws/a?token=' + c.sign({ sub: 'u2' })))
  await Promise.all([onA.message(1), onB.message(1), other.message(1)])

  t.equal(await c.app.wsAuth.sendToUser('u1', { type: 'note', n: 1 }), 2, 'sent from an instance without a socket of u1')
  t.same(await onA.message(2), { type: 'note', n: 1 })
  t.same(await onB.message(2), { type: 'note', n: 1 })
  t.equal(await a.app.wsAuth.sendToUser('u2', 'plain text'), 1)
  t.equal(await other.message(2), 'plain text')
  t.equal(await b.app.wsAuth.sendToUser('u1', Buffer.from([1, 2, 3])), 2, 'binary data')
  t.same(await onA.message(3), Buffer.from([1, 2, 3]))
  t.equal(await b.app.wsAuth.sendToUser('nobody', 'x'), 0)
  // Whatever an instance sent u2 before it answered the fan-outs has arrived once it answered a ping.
  await barrier(other)
  t.equal(other.messages.length, 2, 'u2 got only its own message')
  for (const client of [onA, onB, other]) client.ws.close()
})

t.test('broadcast with roles, permissions and route filters travels; a predicate stays local', async t => {
  const [a, b] = await cluster(t, redis.url, 2, { auth: { rolePermissions: { manager: ['stock.manage'] } } })
  const admin = connect(a.url('/ws/a?token=' + a.sign({ sub: 'admin', roles: ['admin'] })))
  const manager = connect(b.url('/ws/b?token=' + b.sign({ sub: 'mgr', roles: ['manager'] })))
  const viewer = connect(b.url('/ws/a?token=' + b.sign({ sub: 'v', roles: ['viewer'], permissions: ['read'] })))
  const all = [admin, manager, viewer]
  await Promise.all(all.map(c => c.message(1)))

  t.equal(await a.app.wsAuth.broadcast({ to: 'all' }), 3)
  t.equal(await a.app.wsAuth.broadcast('roles', { roles: ['admin', 'manager'] }), 2)
  t.equal(await a.app.wsAuth.broadcast('perm', { permissions: ['stock.manage'] }), 1, 'rolePermissions expanded on the receiving instance')
  t.equal(await a.app.wsAuth.broadcast('route', { route: '/ws/a' }), 2)
  t.equal(await a.app.wsAuth.broadcast('pred', (user) => user.id === 'v'), 0, 'a predicate applies on the calling instance only')
  t.equal(await b.app.wsAuth.broadcast('pred', (user) => user.id === 'v'), 1)
  await Promise.all([admin.message(4), manager.message(4), viewer.message(4)])
  t.same(admin.messages.slice(1), [{ to: 'all' }, 'roles', 'route'])
  t.same(manager.messages.slice(1), [{ to: 'all' }, 'roles', 'perm'])
  t.same(viewer.messages.slice(1), [{ to: 'all' }, 'route', 'pred'])
  for (const c of all) c.ws.close()
})

t.test('disconnectUser closes the user\'s sockets on every instance', async t => {
  const [a, b] = await cluster(t, redis.url, 2)
  const onA = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  const onB = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))
  const other = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u2' })))
  await Promise.all([onA.message(1), onB.message(1), other.message(1)])
  t.equal(await a.app.wsAuth.disconnectUser('u1'), 2)
  t.same(await onA.closed, { code: 4001, reason: 'Token revoked' })
  t.same(await onB.closed, { code: 4001, reason: 'Token revoked' })
  t.equal(await a.app.wsAuth.disconnectUser('u2', { code: 4000, reason: 'Moved to another device' }), 1)
  t.same(await other.closed, { code: 4000, reason: 'Moved to another device' })
  t.equal(await b.app.wsAuth.disconnectUser('u1'), 0)
})

t.test('connections() and stats() with { cluster: true } ask every instance', async t => {
  const [a, b, c] = await cluster(t, redis.url, 3)
  const exp = Math.floor(Date.now() / 1000) + 600
  const before = Date.now()
  const clients: Client[] = [
    connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1', exp }))),
    connect(b.url('/ws/b?token=' + b.sign({ sub: 'u1' }))),
    connect(b.url('/ws/a?token=' + b.sign({ sub: 'u2' })))
  ]
  const established = await Promise.all(clients.map(c => c.message(1))) as Msg[]
  const after = Date.now()
  const bad = connect(c.url('/ws/a?token=bad'))
  await bad.closed

  const u1 = await c.app.wsAuth.connections('u1', { cluster: true })
  t.same(u1.map(x => x.clientId).sort(), [established[0].client_id, established[1].client_id].sort())
  // Which id is which instance, from another call (stats) than the one under test: a holds one
  // session, b two, c none.
  const ids = Object.entries((await c.app.wsAuth.stats({ cluster: true })).instances)
  const idOf = (active: number) => ids.find(([, s]) => s.active === active)![0]
  t.same(ids.map(([, s]) => s.active).sort(), [0, 1, 2], 'three instances, told apart by their counts')
  const first = u1.find(x => x.clientId === established[0].client_id)!
  const [local] = a.app.wsAuth.connections('u1')
  t.same(first, {
    clientId: established[0].client_id,
    userId: 'u1',
    route: '/ws/a',
    connectedAt: local.connectedAt,
    expiresAt: new Date(exp * 1000).toISOString(),
    instanceId: idOf(1)
  }, 'as a itself knows it, named with a\'s id')
  const connectedAt = Date.parse(first.connectedAt)
  t.ok(connectedAt >= before && connectedAt <= after, 'connectedAt: between the connect and the greeting')
  t.equal(u1.find(x => x !== first)!.instanceId, idOf(2), 'the other entry names b')
  t.equal((await a.app.wsAuth.connections(undefined, { cluster: true })).length, 3)
  t.same(a.app.wsAuth.connections('u1').length, 1, 'without { cluster: true }: this instance only')

  const stats = await a.app.wsAuth.stats({ cluster: true })
  t.match(stats, { active: 3, authenticating: 0, users: 3, attempts: 4, established: 3, failures: { 4001: 1 }, ended: {}, revocations: 0 })
  t.equal(Object.keys(stats.instances).length, 3)
  t.same(Object.values(stats.instances).map(s => s.active).sort(), [0, 1, 2])
  t.equal(a.app.wsAuth.stats().active, 1, 'without { cluster: true }: this instance, synchronously')
  for (const client of clients) client.ws.close()
})

t.test('a fan-out does not wait for the timeout when every instance answered', async t => {
  // A requestTimeout far beyond WAIT_MS: a call that waited for it could not settle in time.
  const [a] = await cluster(t, redis.url, 2, { redis: { requestTimeout: 10 * WAIT_MS } })
  t.equal(await bounded(a.app.wsAuth.sendToUser('nobody', 'x'), 'sendToUser'), 0)
  const stats = await bounded(a.app.wsAuth.stats({ cluster: true }), 'stats')
  t.equal(Object.keys(stats.instances).length, 2, 'both instances answered')
})

t.test('a malformed command from another instance is logged and answered with count 0; the instance works on', async t => {
  const namespace = prefix()
  const a = await instance(t, redis.url, namespace)
  const onA = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1', roles: ['admin'] })))
  await onA.message(1)

  const listener = inspector(t, redis.url)
  const replies: Array<Record<string, unknown>> = []
  let replied: () => void = () => {}
  listener.on('message', (_channel: string, message: string) => { replies.push(JSON.parse(message)); replied() })
  await listener.subscribe(`${namespace}:ws-auth:replies:foreign`)
  const answered = (n: number) => new Promise<void>(resolve => {
    replied = () => { if (replies.length >= n) resolve() }
    replied()
  })
  const publisher = inspector(t, redis.url)
  const send = (id: number, command: unknown) =>
    publisher.publish(`${namespace}:ws-auth:commands`, JSON.stringify({ id, from: 'foreign', command }))

  t.equal(await send(1, { op: 'broadcast', data: 'x', filter: { roles: 'admin' } }), 1, 'the one instance receives it')
  await answered(1)
  t.match(replies[0], { id: 1, count: 0 })
  t.match(a.logged('a cluster command failed on this instance'), [{ level: 50, op: 'broadcast', err: { type: 'TypeError' } }])

  await send(2, { op: 'revoke', entry: { expiresAt: Date.now() + 60_000 } })
  await answered(2)
  t.match(replies[1], { id: 2, count: 0 }, 'a revoke whose entry is neither a jti nor a user: nothing revoked')
  t.equal(a.app.wsAuth.stats().revocations, 0)

  t.equal(await a.app.wsAuth.broadcast('still here'), 1, 'the instance works on')
  t.equal(await onA.message(2), 'still here')
  t.equal(onA.messages.length, 2, 'the malformed broadcast reached nobody')
  onA.ws.close()
})

t.test('stats({ cluster: true }) counts a field another instance sent malformed as 0', async t => {
  const namespace = prefix()
  const a = await instance(t, redis.url, namespace)
  const own = connect(a.url('/ws/a?token=bad'))
  await own.closed
  const foreign = inspector(t, redis.url)
  const publisher = inspector(t, redis.url)
  foreign.on('message', (_channel: string, message: string) => {
    const { id, from, command } = JSON.parse(message)
    if (command.op !== 'stats') return
    const data = { active: 2, authenticating: 'x', users: Infinity, attempts: 3, established: 3, failures: null, ended: { 1000: 2, 4001: 'many' }, revocations: 0 }
    publisher.publish(`${namespace}:ws-auth:replies:${from}`, JSON.stringify({ id, from: 'foreign', data })).catch(() => {})
  })
  await foreign.subscribe(`${namespace}:ws-auth:commands`)

  const local = a.app.wsAuth.stats()
  t.equal(local.attempts, 1)
  const stats = await a.app.wsAuth.stats({ cluster: true })
  t.same(stats.failures, local.failures, 'failures: null adds nothing')
  t.match(stats, {
    active: 2,
    authenticating: 0,
    users: 0,
    attempts: 4,
    established: 3,
    ended: { 1000: 2, 4001: 0 }
  }, 'the malformed counts add nothing; the well-formed ones are summed')
  t.same(Object.keys(stats.instances).length, 2)
})
