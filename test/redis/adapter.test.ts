import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { buildApp, connect } from '../helpers/index.ts'
import { redisAdapter, type RedisAdapterOptions } from '../../lib/cluster/redis/index.ts'
import { ACQUIRE } from '../../lib/cluster/redis/scripts.ts'
import { redisProxy, startRedis, type RedisServer } from './server.ts'
import { inspector, instance, outcome, prefix, type Instance } from './helpers.ts'

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

t.test('options are checked at creation; errors name the option', async t => {
  const bad: Array<[unknown, RegExp]> = [
    [undefined, /option "redisAdapter" takes an object/],
    [{}, /option "redisAdapter.url" is required \(or "client"/],
    [{ url: 'redis://x', client: {} }, /option "redisAdapter.client" cannot be combined with "url"/],
    [{ url: 6379 }, /option "redisAdapter.url" must be a string/],
    [{ url: 'not a url' }, /option "redisAdapter.url" is not a valid URL/],
    [{ url: 'http://127.0.0.1:6379' }, /option "redisAdapter.url" must use redis: or rediss:/],
    [{ client: { on () {} } }, /option "redisAdapter.client" must be an ioredis client .*missing: duplicate/],
    [{ client: 'redis://127.0.0.1:6379' }, /option "redisAdapter.client" must be an ioredis client \(new Redis\(\.\.\.\) or new Cluster\(\.\.\.\)\)$/],
    [{ url: 'redis://x', prefix: '' }, /option "redisAdapter.prefix" must be a string of 1 to 100 characters/],
    [{ url: 'redis://x', prefix: 'a b' }, /option "redisAdapter.prefix"/],
    [{ url: 'redis://x', requestTimeout: 0 }, /option "redisAdapter.requestTimeout" must be a whole number of milliseconds from 1/],
    [{ url: 'redis://x', requestTimeout: 1.5 }, /option "redisAdapter.requestTimeout"/],
    [{ url: 'redis://x', instanceTtl: 100 }, /option "redisAdapter.instanceTtl" must be a whole number of milliseconds from 300/],
    [{ url: 'redis://x', onRedisError: 'ignore' }, /option "redisAdapter.onRedisError" must be "fail-open" or "fail-closed"/],
    [{ url: 'redis://x', keyPrefix: 'a' }, /option "redisAdapter.keyPrefix" is not an option of redisAdapter/],
    [{ url: 'redis://x', sentinels: SENTINELS, name: 'mymaster' }, /option "redisAdapter.sentinels" cannot be combined with "url": give one of "url", "client", "sentinels" and "cluster"/],
    [{ url: 'redis://x', cluster: { nodes: SENTINELS } }, /option "redisAdapter.cluster" cannot be combined with "url"/],
    [{ cluster: SENTINELS }, /option "redisAdapter.cluster" must be an object \{ nodes: \[\{ host, port \}, \.\.\.\] \}/],
    [{ cluster: { nodes: [] } }, /option "redisAdapter.cluster.nodes" must be a non-empty array of \{ host, port \}/],
    [{ cluster: { nodes: SENTINELS, scaleReads: 'slave' } }, /option "redisAdapter.cluster.scaleReads" is not an option of "cluster" \(nodes; .*pass a "client": new Cluster\(nodes, options\)\)/],
    [{ cluster: { nodes: [{ host: 'a', port: 0 }] } }, /option "redisAdapter.cluster.nodes\[0\].port" must be a port number from 1 to 65535/],
    [{ cluster: { nodes: [{ host: 'a', port: 7000, tls: {} }] } }, /option "redisAdapter.cluster.nodes\[0\].tls" is not a field of a Cluster node address/],
    [{ cluster: { nodes: SENTINELS }, name: 'mymaster' }, /option "redisAdapter.name" goes with "sentinels" only/],
    [{ client: {}, sentinels: SENTINELS, name: 'mymaster' }, /option "redisAdapter.sentinels" cannot be combined with "client"/],
    [{ sentinels: [], name: 'mymaster' }, /option "redisAdapter.sentinels" must be a non-empty array of \{ host, port \}/],
    [{ sentinels: '127.0.0.1:26379', name: 'mymaster' }, /option "redisAdapter.sentinels" must be a non-empty array/],
    [{ sentinels: [null], name: 'mymaster' }, /option "redisAdapter.sentinels\[0\]" must be an object \{ host, port \}/],
    [{ sentinels: [{ host: 'a', port: 26379, family: 6 }], name: 'mymaster' }, /option "redisAdapter.sentinels\[0\].family" is not a field of a Sentinel address .*pass a "client"/],
    [{ sentinels: [...SENTINELS, { host: '', port: 26379 }], name: 'mymaster' }, /option "redisAdapter.sentinels\[1\].host" must be a non-empty string/],
    [{ sentinels: [{ port: 26379 }], name: 'mymaster' }, /option "redisAdapter.sentinels\[0\].host" must be a non-empty string/],
    [{ sentinels: [{ host: 'a', port: '26379' }], name: 'mymaster' }, /option "redisAdapter.sentinels\[0\].port" must be a port number from 1 to 65535/],
    [{ sentinels: [{ host: 'a', port: 65536 }], name: 'mymaster' }, /option "redisAdapter.sentinels\[0\].port"/],
    [{ sentinels: SENTINELS }, /option "redisAdapter.name" is required with "sentinels": the master name they monitor/],
    [{ sentinels: SENTINELS, name: '' }, /option "redisAdapter.name" must be a non-empty string/],
    [{ url: 'redis://x', name: 'mymaster' }, /option "redisAdapter.name" goes with "sentinels" only/]
  ]
  for (const [options, message] of bad) {
    t.throws(() => redisAdapter(options as RedisAdapterOptions), { code: 'FST_WS_AUTH_INVALID_OPTION', message }, JSON.stringify(options) ?? 'undefined')
  }
  t.doesNotThrow(() => redisAdapter({ url: 'rediss://user:pass@redis.example:6380/2', prefix: 'app', requestTimeout: 50, instanceTtl: 300, onRedisError: 'fail-closed' }))
  t.throws(() => redisAdapter({ client: sentinelClient('slave') }),
    { code: 'FST_WS_AUTH_INVALID_OPTION', message: /option "redisAdapter.client" connects to a replica \(Sentinel role "slave"\)/ })
  t.doesNotThrow(() => redisAdapter({ sentinels: SENTINELS, name: 'mymaster', prefix: 'app' }))
  t.doesNotThrow(() => redisAdapter({ client: sentinelClient('master') }))
  t.doesNotThrow(() => redisAdapter({ cluster: { nodes: [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7000 }] }, prefix: 'app' }))
  const cluster = new Cluster(SENTINELS, { lazyConnect: true })
  t.teardown(() => cluster.disconnect())
  t.doesNotThrow(() => redisAdapter({ client: cluster }), 'an ioredis Cluster client')
  t.throws(() => redisAdapter({ client: oldCluster() }), {
    code: 'FST_WS_AUTH_INVALID_OPTION',
    message: /option "redisAdapter.client" is a Cluster client of an ioredis without sharded Pub\/Sub \(the Cluster option "shardedSubscribers"\)/
  })
})

/** A Cluster client as an ioredis before sharded Pub/Sub makes one: no "shardedSubscribers" option. */
function oldCluster (): Cluster {
  const client = new Cluster(SENTINELS, { lazyConnect: true })
  t.teardown(() => client.disconnect())
  delete (client.options as { shardedSubscribers?: boolean }).shardedSubscribers
  return client
}

/** Sentinel addresses for the option checks (nothing connects to them). */
const SENTINELS = [{ host: '127.0.0.1', port: 26379 }]

/** An ioredis Sentinel client that never connects (the option checks only look at it). */
function sentinelClient (role: 'master' | 'slave'): Redis {
  const client = new Redis({ sentinels: SENTINELS, name: 'mymaster', role, lazyConnect: true })
  t.teardown(() => client.disconnect())
  return client
}

t.test('with { client }: a duplicate subscribes; close() removes this instance\'s keys and leaves the client open', async t => {
  const namespace = prefix()
  // The passed client (and so its duplicate) goes through a proxy that counts their connections.
  const proxy = await redisProxy(t, redis)
  const client = new Redis(proxy.url)
  t.teardown(() => client.disconnect())
  const redisView = inspector(t, redis.url)
  const a = await instance(t, redis.url, namespace, { auth: { maxConnectionsPerUser: 3 }, redis: { client } })
  const b = await instance(t, redis.url, namespace, { auth: { maxConnectionsPerUser: 3 } })
  const onA = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  const onB = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))
  t.same(await Promise.all([outcome(onA), outcome(onB)]), ['established', 'established'])
  t.equal(await b.app.wsAuth.sendToUser('u1', 'hi'), 2)
  t.equal(await onA.message(2), 'hi', 'the instance on a passed client receives fan-out')
  t.equal(await redisView.zcard(`${namespace}:ws-auth:instances`), 2)
  t.equal(await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`), 2)
  t.equal(proxy.connections, 2, 'the client and its duplicate')

  const closed = onA.closed
  await a.app.close()
  t.same(await closed, { code: 1001, reason: 'Server shutting down' })
  t.equal(client.status, 'ready', 'the client passed in stays open')
  t.equal(await client.ping(), 'PONG')
  t.equal(await redisView.zcard(`${namespace}:ws-auth:instances`), 1, 'the instance is gone from Redis')
  t.equal(await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`), 1, 'its slots are gone')
  t.equal((await redisView.keys(`${namespace}:ws-auth:slots:*`)).length, 1, 'only the other instance\'s slots are left')
  await proxy.waitForConnections(1)
  t.equal(client.status, 'ready', 'the duplicate (subscriber) was closed, the client was not')

  const stats = await b.app.wsAuth.stats({ cluster: true })
  t.equal(Object.keys(stats.instances).length, 1, 'the closed instance no longer answers')
})

t.test('with { url }: close() quits both connections and removes every key of the instance', async t => {
  const namespace = prefix()
  const redisView = inspector(t, redis.url)
  const proxy = await redisProxy(t, redis)
  const a = await instance(t, redis.url, namespace, { auth: { maxConnectionsPerUser: 3 }, redis: { url: proxy.url } })
  t.equal(proxy.connections, 2, 'two connections: commands and subscriber')
  const socket = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(socket), 'established')
  await a.app.close()
  t.same(await redisView.keys(`${namespace}:*`), [], 'nothing left in Redis')
  await proxy.waitForConnections(0)
  t.pass('both connections closed')
  t.equal(a.logged('Redis unavailable').length, 0, 'shutting down is not an outage')
})

t.test('clients with an ioredis keyPrefix share the limit under that prefix', async t => {
  const namespace = prefix()
  const clients = [0, 1].map(() => new Redis(redis.url, { keyPrefix: 'kp:' }))
  t.teardown(() => { for (const c of clients) c.disconnect() })
  const redisView = inspector(t, redis.url)
  const apps: Instance[] = []
  for (const client of clients) apps.push(await instance(t, redis.url, namespace, { auth: { maxConnectionsPerUser: 1 }, redis: { client } }))
  t.equal(await outcome(connect(apps[0].url('/ws/a?token=' + apps[0].sign({ sub: 'u1' })))), 'established')
  t.equal(await outcome(connect(apps[1].url('/ws/a?token=' + apps[1].sign({ sub: 'u1' })))), '4029 Too many connections')
  t.equal(await redisView.zcard(`kp:${namespace}:ws-auth:conns:"u1"`), 1, 'keys named inside the scripts carry the keyPrefix too')
  t.equal(await apps[1].app.wsAuth.sendToUser('u1', 'x'), 1)
})

t.test('foreign or malformed messages on the channels are ignored; an unknown command counts 0', async t => {
  const namespace = prefix()
  const [a, b] = [await instance(t, redis.url, namespace), await instance(t, redis.url, namespace)]
  const redisView = inspector(t, redis.url)
  const socket = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))
  t.equal(await outcome(socket), 'established')
  const [{ instanceId }] = await a.app.wsAuth.connections('u1', { cluster: true })
  for (const junk of ['not json', '{"id":"1"}', '{"id":1,"from":"x"}', '{"id":1,"from":"x","command":{"op":3}}',
    '{"id":1,"from":"x","command":{"op":"revoke","entry":{"jti":1}}}']) {
    await redisView.publish(`${namespace}:ws-auth:commands`, junk)
    await redisView.publish(`${namespace}:ws-auth:replies:${instanceId}`, junk)
  }
  t.equal(await redisView.publish(`${namespace}:ws-auth:commands`, JSON.stringify({ id: 7, from: 'newer-version', command: { op: 'teleport' } })), 2)
  t.equal(await a.app.wsAuth.sendToUser('u1', 'still fine'), 1, 'fan-out still works')
  t.equal(await socket.message(2), 'still fine')
  t.equal(b.app.wsAuth.stats().revocations, 0, 'a malformed revocation is not stored')
  socket.ws.close()
})

t.test('one adapter serves one app', async t => {
  const adapter = redisAdapter({ url: redis.url, prefix: prefix() })
  await buildApp(t, { auth: { adapter } })
  await t.rejects(buildApp(t, { auth: { adapter } }), { code: 'FST_WS_AUTH_INVALID_OPTION', message: /"adapter" is already in use by another app/ })
})

t.test('a missing redis-server fails the test with the package to install', async t => {
  await t.rejects(startRedis({ teardown () {} }, '/nonexistent/redis-server'),
    /redis-server not found at \/nonexistent\/redis-server: .*apt-get install redis-server/)
})

t.test('an instance the slot script finds unregistered registers again, then takes the slot', async t => {
  const namespace = prefix()
  const redisView = inspector(t, redis.url)
  const instances = `${namespace}:ws-auth:instances`
  const a = await instance(t, redis.url, namespace, { auth: { maxConnectionsPerUser: 2 }, redis: { instanceTtl: 600_000 } })
  const first = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(first), 'established')
  const [instanceId] = await redisView.zrange(instances, 0, -1)
  // What a live instance does to one it counts dead (a long GC pause): its registration and slots go.
  await redisView.zrem(instances, instanceId)
  await redisView.del(`${namespace}:ws-auth:slots:${instanceId}`, `${namespace}:ws-auth:conns:"u1"`)
  const second = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(second), 'established')
  t.not(await redisView.zscore(instances, instanceId), null, 'registered again')
  t.equal(await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`), 2, 'both slots in Redis: the one re-registered and the new one')
  t.equal(await outcome(connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))), '4029 Too many connections', 'the limit holds')
  t.equal(a.logged('Redis unavailable').length, 0, 'not an outage')
})

t.test('slot requests made while one is out leave together, and each gets its own answer', async t => {
  const namespace = prefix()
  const redisView = inspector(t, redis.url)
  const proxy = await redisProxy(t, redis)
  const a = await instance(t, redis.url, namespace, { auth: { maxConnectionsPerUser: 2 }, redis: { url: proxy.url, instanceTtl: 600_000 } })
  proxy.hold()
  const clients = [connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))]
  await proxy.waitForSent(ACQUIRE.sha)
  // The first request is out (held by the proxy): the next ones queue behind it.
  clients.push(...['u1', 'u1', 'u2'].map(sub => connect(a.url('/ws/a?token=' + a.sign({ sub })))))
  // Each session is tracked as authenticating before its 101 leaves: the four opens are the event.
  await Promise.all(clients.map(c => c.opened))
  t.equal(a.app.wsAuth.stats().authenticating, 4, 'all four wait for their slot')
  t.equal(proxy.count(ACQUIRE.sha), 1, 'one slot request sent, three waiting')
  proxy.release()
  const outcomes = await Promise.all(clients.map(outcome))
  t.equal(outcomes[0], 'established', 'the request that was out')
  // The two queued for u1 reach the server in either order: one fits, the other is one too many.
  t.same(outcomes.slice(1, 3).sort(), ['4029 Too many connections', 'established'], 'u1: one fits, one over the limit')
  t.equal(outcomes[3], 'established', 'u2')
  t.equal(proxy.count(ACQUIRE.sha), 4, 'four slot requests in all')
  t.equal(await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`), 2)
  t.equal(await redisView.zcard(`${namespace}:ws-auth:conns:"u2"`), 1)
})
