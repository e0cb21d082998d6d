import t from 'tap'
import { connect } from '../helpers/index.ts'
import { redisProxy, startRedis, type RedisServer } from './server.ts'
import { cluster, inspector, instance, outcome, prefix, stillOpen, storm, whenRedis, type Instance } from './helpers.ts'

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

t.test('maxConnectionsPerUser holds exactly under 50 concurrent handshakes spread over 3 instances', async t => {
  const namespace = prefix()
  const redisView = inspector(t, redis.url)
  const instances: Instance[] = []
  for (let i = 0; i < 3; i++) instances.push(await instance(t, redis.url, namespace, { auth: { maxConnectionsPerUser: 5 } }))
  const { clients, outcomes, count } = await storm(instances, 50)
  t.equal(count('established'), 5, 'exactly 5 established')
  t.equal(count('4029 Too many connections'), 45, '45 closed with 4029')
  t.equal((await instances[0].app.wsAuth.connections('u1', { cluster: true })).length, 5)

  // A slot freed on one instance can be taken on another, once the release reached Redis.
  const open = clients.filter((_c, i) => outcomes[i] === 'established')
  open[0].ws.close()
  await open[0].closed
  await whenRedis(redis.url, 'the slot released', async () => await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`) === 4)
  const app = instances[(clients.indexOf(open[0]) + 1) % 3]
  const next = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.equal(await outcome(next), 'established', 'the released slot is taken elsewhere')
  const over = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.same(await over.closed, { code: 4029, reason: 'Too many connections' })
  for (const c of [...open, next]) c.ws.close()
})

t.test('evict-oldest closes the user\'s oldest socket, on whichever instance holds it', async t => {
  const [a, b, c] = await cluster(t, redis.url, 3, { auth: { maxConnectionsPerUser: 2, onLimit: 'evict-oldest' } })
  const oldest = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  await oldest.message(1)
  const second = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))
  await second.message(1)
  const newest = connect(c.url('/ws/a?token=' + c.sign({ sub: 'u1' })))
  t.equal(await outcome(newest), 'established')
  t.same(await oldest.closed, { code: 4029, reason: 'Too many connections' }, 'the oldest, on another instance, is evicted')
  t.ok(await stillOpen(second), 'the second stays')
  t.equal((await c.app.wsAuth.connections('u1', { cluster: true })).length, 2)
  for (const client of [second, newest]) client.ws.close()
})

t.test('the slots of an instance cut off from Redis are released within instanceTtl', async t => {
  const namespace = prefix()
  const redisView = inspector(t, redis.url)
  const options = { auth: { maxConnectionsPerUser: 2 }, redis: { instanceTtl: 500 } }
  const a = await instance(t, redis.url, namespace, options)
  const proxy = await redisProxy(t, redis)
  const doomed = await instance(t, redis.url, namespace, { ...options, redis: { ...options.redis, url: proxy.url } })

  const held = [0, 1].map(() => connect(doomed.url('/ws/a?token=' + doomed.sign({ sub: 'u1' }))))
  await Promise.all(held.map(c => c.message(1)))
  const refused = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.same(await refused.closed, { code: 4029, reason: 'Too many connections' }, 'the other instance\'s slots count')

  const [{ instanceId }] = await a.app.wsAuth.connections('u1', { cluster: true })

  // What Redis sees of a killed process: its connections drop, no goodbye, no more heartbeats.
  await proxy.cut()
  const [seconds, micros] = await redisView.time()
  const deadline = Number(await redisView.zscore(`${namespace}:ws-auth:instances`, instanceId))
  const left = deadline - (Number(seconds) * 1000 + Math.floor(Number(micros) / 1000))
  t.ok(left <= 500, `its slots count for ${left} ms more at most (instanceTtl 500): the deadline, on Redis's clock`)

  // Past its deadline, the live instance's heartbeat sweeps the dead one's keys.
  const slotsKey = `${namespace}:ws-auth:slots:${instanceId}`
  await whenRedis(redis.url, 'the dead instance swept', async () =>
    await redisView.zscore(`${namespace}:ws-auth:instances`, instanceId) === null && await redisView.exists(slotsKey) === 0)
  const [sweptSeconds, sweptMicros] = await redisView.time()
  t.ok(Number(sweptSeconds) * 1000 + Math.floor(Number(sweptMicros) / 1000) >= deadline, 'swept only once its deadline had passed (Redis clock)')
  t.same(await redisView.zrange(`${namespace}:ws-auth:conns:"u1"`, 0, -1), [], 'its slots are gone')
  const admitted = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(admitted), 'established', 'a new connection of the user is accepted')
  const over = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(over), 'established', 'both dead slots are released')
  t.same((await redisView.zrange(`${namespace}:ws-auth:conns:"u1"`, 0, -1)).length, 2, 'only the live slots remain')
  for (const c of [admitted, over]) c.ws.close()
  for (const c of held) c.ws.terminate()
})
