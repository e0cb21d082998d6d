// The Redis adapter on a real 3-primary Redis Cluster (Redis >= 7): what the single-Redis tests
// check (cross-instance calls, exact limits, revocation, tickets, an instance cut off, a primary
// restarted), and what a Cluster adds: the registry's keys in one hash slot, sharded Pub/Sub.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { Cluster } from 'ioredis'
import { barrier, connect, connectWith, eventually, type Client } from '../helpers/index.ts'
import { startRedisCluster, type RedisCluster } from './cluster.ts'
import { redisProxy } from './server.ts'
import { instance, outcome, prefix, stillOpen, storm, whenRedis, type Instance, type InstanceOptions } from './helpers.ts'

let rc: RedisCluster
t.before(async () => { rc = await startRedisCluster(t) })

const UNAVAILABLE = 'Redis unavailable; retrying'
const RECOVERED = 'Redis recovered'

function routes (app: FastifyInstance): void {
  app.get('/ws/a', { websocket: true, wsAuth: { topics: { 'queue:{id}': {} } } }, (socket) => { socket.on('message', () => {}) })
}

/** `n` instances on the cluster under one fresh prefix (`cluster: { nodes }`, unless `redis` says otherwise). */
async function instances (t: { teardown (fn: () => unknown): void }, n: number, opts: InstanceOptions = {}, namespace = prefix()): Promise<{ namespace: string, all: Instance[] }> {
  const all: Instance[] = []
  for (let i = 0; i < n; i++) all.push(await instance(t, '', namespace, { routes, ...opts, redis: { cluster: { nodes: rc.nodes }, ...opts.redis } }))
  return { namespace, all }
}

/** The registry's key `name` under a prefix: hash-tagged on a Cluster. */
function key (namespace: string, name: string): string {
  return `{${namespace}:ws-auth:}${name}`
}

function joined (app: Instance, sub: string, extra: Record<string, unknown> = {}): Client {
  return connect(app.url('/ws/a?token=' + app.sign({ sub, ...extra })))
}

t.test('registry keys share one hash slot; commands and replies travel on sharded channels', async t => {
  const { namespace, all: [a, b] } = await instances(t, 2, { auth: { maxConnectionsPerUser: 3 } })
  const view = rc.inspector()
  const u1 = joined(a, 'u1')
  await u1.message(1)
  await a.app.wsAuth.revoke({ jti: 'gone', exp: Math.floor(Date.now() / 1000) + 60 })
  const [instanceA] = (await b.app.wsAuth.connections('u1', { cluster: true })).map(c => c.instanceId)

  const names = [key(namespace, 'instances'), key(namespace, 'revoked'), key(namespace, 'conns:"u1"'), key(namespace, `slots:${instanceA}`)]
  const slots = await Promise.all(names.map(async name => Number(await view.cluster('KEYSLOT', name))))
  t.equal(new Set(slots).size, 1, 'instances, revoked, conns:* and slots:* in one slot')
  t.same(await Promise.all(names.map(name => view.exists(name))), [1, 1, 1, 1], 'and all stored there')
  t.equal(await view.zcard(`${namespace}:ws-auth:instances`), 0, 'nothing under the untagged names')

  const commands = `${namespace}:ws-auth:commands`
  const owner = rc.admin(await rc.nodeOf(commands))
  t.same(await owner.call('PUBSUB', 'SHARDNUMSUB', commands), [commands, 2], 'both instances subscribed to the commands channel on its shard')
  for (const node of rc.primaries) {
    t.same(await rc.admin(node).call('PUBSUB', 'NUMSUB', commands), [commands, 0], `no classic subscription on :${node.port}`)
  }
  const replies = `${namespace}:ws-auth:replies:${instanceA}`
  t.same(await rc.admin(await rc.nodeOf(replies)).call('PUBSUB', 'SHARDNUMSUB', replies), [replies, 1], 'its replies channel on its own shard')
  u1.ws.close()
})

t.test('sendToUser, broadcast, publish, connections, stats and disconnectUser reach every instance', async t => {
  const { namespace, all: [a, b] } = await instances(t, 2)
  // The third is given the app's own ioredis Cluster client: the adapter leaves it open.
  const client = new Cluster(rc.nodes)
  t.teardown(() => client.disconnect())
  const c = await instance(t, '', namespace, { routes, redis: { client } })
  const onA = joined(a, 'u1')
  const onB = joined(b, 'u1')
  const other = joined(c, 'u2')
  await Promise.all([onA, onB, other].map(s => s.message(1)))

  t.equal(await c.app.wsAuth.sendToUser('u1', { type: 'note' }), 2, 'from an instance without a socket of u1')
  t.same([await onA.message(2), await onB.message(2)], [{ type: 'note' }, { type: 'note' }])
  t.equal(await a.app.wsAuth.broadcast('all'), 3)
  t.same(await other.message(2), 'all')
  other.send({ type: 'subscribe', topic: 'queue:1', id: 's' })
  await other.messageWhere(m => (m as { type?: string }).type === 'subscribed')
  t.equal(await b.app.wsAuth.publish('queue:1', { order: 7 }), 1, 'a publication reaches the subscriber on another instance')
  t.same(await other.messageWhere(m => (m as { type?: string }).type === 'publication'), { type: 'publication', topic: 'queue:1', data: { order: 7 } })
  t.same((await b.app.wsAuth.connections('u1', { cluster: true })).length, 2)
  t.same((await b.app.wsAuth.stats({ cluster: true })).active, 3, 'stats summed over the three instances')
  t.equal(await c.app.wsAuth.disconnectUser('u1'), 2)
  t.same([await onA.closed, await onB.closed], [{ code: 4001, reason: 'Token revoked' }, { code: 4001, reason: 'Token revoked' }])
  await barrier(other)
  t.equal(other.messages.length, 4, 'u2 got only what was meant for it')
  other.ws.close()
  await c.app.close()
  t.equal(client.status, 'ready', 'the app\'s client is left open')
})

t.test('maxConnectionsPerUser holds exactly under 50 concurrent handshakes spread over 3 instances', async t => {
  const { all } = await instances(t, 3, { auth: { maxConnectionsPerUser: 5 } })
  const { clients, count } = await storm(all, 50)
  t.equal(count('established'), 5, 'exactly 5 established')
  t.equal(count('4029 Too many connections'), 45, '45 closed with 4029')
  t.equal((await all[1].app.wsAuth.connections('u1', { cluster: true })).length, 5)
  for (const c of clients) c.ws.close()
})

t.test('a revocation reaches every instance, and one started later refuses the token', async t => {
  const { namespace, all: [a, b] } = await instances(t, 2)
  const exp = Math.floor(Date.now() / 1000) + 600
  const holder = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1', jti: 'j1', exp })))
  await holder.message(1)
  t.equal(await a.app.wsAuth.revoke({ jti: 'j1', exp }), 1)
  t.same(await holder.closed, { code: 4001, reason: 'Token revoked' })
  const later = await instance(t, '', namespace, { routes, redis: { cluster: { nodes: rc.nodes } } })
  t.same(await connect(later.url('/ws/a?token=' + later.sign({ sub: 'u1', jti: 'j1', exp }))).closed, { code: 4001, reason: 'Token revoked' },
    'the stored revocation, loaded at start')
})

t.test('a ticket issued on one instance opens a socket on another, once', async t => {
  const { all: [a, b] } = await instances(t, 2, { auth: { sources: ['ticket', 'query'] } })
  const ticket = await a.app.wsAuth.issueTicket({ sub: 'u1' })
  t.equal(await outcome(connectWith(b.url('/ws/a'), 'ticket', ticket)), 'established')
  t.equal(await outcome(connectWith(a.url('/ws/a'), 'ticket', ticket)), '4001 Invalid ticket', 'used')
})

t.test('an instance cut off from the whole cluster: its slots are released within instanceTtl', async t => {
  const options = { auth: { maxConnectionsPerUser: 2 }, redis: { instanceTtl: 600 } }
  const { namespace, all: [a] } = await instances(t, 1, options)
  // The doomed instance reaches every node through a proxy of its own (ioredis's natMap maps the
  // addresses the cluster announces to the proxies): cutting them is its process dying.
  const proxies = await Promise.all(rc.nodes.map(node => redisProxy(t, node)))
  const natMap = Object.fromEntries(rc.nodes.map((node, i) => [`${node.host}:${node.port}`, { host: '127.0.0.1', port: Number(new URL(proxies[i].url).port) }]))
  const client = new Cluster([natMap[`${rc.nodes[0].host}:${rc.nodes[0].port}`]], { natMap, enableOfflineQueue: false, redisOptions: { maxRetriesPerRequest: 0 } })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const doomed = await instance(t, '', namespace, { ...options, routes, redis: { ...options.redis, client } })
  const held = [joined(doomed, 'u1'), joined(doomed, 'u1')]
  await Promise.all(held.map(c => c.message(1)))
  t.equal(await outcome(joined(a, 'u1')), '4029 Too many connections', 'the other instance\'s slots count')

  await Promise.all(proxies.map(p => p.cut()))
  const view = rc.inspector()
  await whenRedis(rc.urls, 'the cut-off instance swept', async () => await view.zcard(key(namespace, 'conns:"u1"')) === 0)
  t.same(await Promise.all([joined(a, 'u1'), joined(a, 'u1')].map(outcome)), ['established', 'established'], 'both dead slots released')
  for (const c of held) c.ws.terminate()
})

t.test('the primary of the registry\'s slot restarted empty: fail-open meanwhile, slots and revocations stored back', async t => {
  const options = { auth: { maxConnectionsPerUser: 2 }, redis: { instanceTtl: 900 } }
  const { namespace, all: [a, b] } = await instances(t, 2, options)
  const view = rc.inspector()
  const u1 = [joined(a, 'u1'), joined(b, 'u1')]
  await Promise.all(u1.map(c => c.message(1)))
  const exp = Math.floor(Date.now() / 1000) + 600
  await a.app.wsAuth.revoke({ jti: 'before', exp })
  const node = await rc.nodeOf(key(namespace, 'instances'))

  await node.stop()
  await Promise.all([a.logs.waitFor(UNAVAILABLE), b.logs.waitFor(UNAVAILABLE)])
  t.equal(await outcome(joined(a, 'u1')), 'established', 'fail-open: this instance holds one of u1\'s two')
  t.equal(await outcome(joined(a, 'u1')), '4029 Too many connections', 'the local count still applies')

  await node.restart()
  await Promise.all([a.logs.waitFor(RECOVERED), b.logs.waitFor(RECOVERED)])
  t.equal(await view.zcard(key(namespace, 'conns:"u1"')), 3, 'every live slot stored back on the restarted primary')
  t.equal(await outcome(joined(b, 'u1')), '4029 Too many connections', 'the limit exact again, cluster-wide')
  const later = await instance(t, '', namespace, { routes, ...options, redis: { cluster: { nodes: rc.nodes }, ...options.redis } })
  t.equal(later.app.wsAuth.stats().revocations, 1, 'the revocation stored back (the node lost its data)')
  t.ok(await stillOpen(u1[1]))
})

t.test('the primary of the commands channel restarted: fan-out is local meanwhile, reaches every instance again after', async t => {
  // A prefix whose registry lives on another primary than its commands channel (two in three do).
  let apart = prefix()
  while ((await rc.nodeOf(`${apart}:ws-auth:commands`)).port === (await rc.nodeOf(key(apart, 'revoked'))).port) apart = prefix()
  const { namespace, all: [a, b] } = await instances(t, 2, { redis: { instanceTtl: 900 } }, apart)
  const onB = joined(b, 'u1')
  const revoked = joined(b, 'u2', { jti: 'unheard' })
  await Promise.all([onB.message(1), revoked.message(1)])
  const commands = `${namespace}:ws-auth:commands`
  const node = await rc.nodeOf(commands)
  await node.stop()
  t.equal(await a.app.wsAuth.sendToUser('u1', 'lost'), 0, 'the other instance is not reached')
  t.equal(await a.app.wsAuth.revoke({ jti: 'unheard' }), 0, 'nor by a revocation, which is stored all the same')
  t.same(await revoked.closed, { code: 4001, reason: 'Token revoked' }, 'the other instance loads it at a heartbeat')
  await node.restart()
  // ioredis subscribes the restarted shard again by itself; no event tells an outsider when.
  await eventually(async () => (await rc.admin(node).call('PUBSUB', 'SHARDNUMSUB', commands) as [string, number])[1] === 2,
    'both instances subscribed again', 50)
  await a.logs.waitFor(RECOVERED)
  t.equal(await a.app.wsAuth.sendToUser('u1', 'back'), 1)
  t.equal(await onB.message(2), 'back', 'and only the message sent once the shard was back')
  onB.ws.close()
})
