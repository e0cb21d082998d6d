import t from 'tap'
import { connect, eventually } from '../helpers/index.ts'
import { startRedis, type RedisServer } from './server.ts'
import { inspector, instance, outcome, prefix, until } from './helpers.ts'

const UNAVAILABLE = 'Redis unavailable; retrying'
const LIMITS_LOCAL = 'maxConnectionsPerUser is checked against this instance only'
const LIMITS_REFUSED = 'refused with 1013'
const FANOUT_LOCAL = 'registry calls and revocations reach this instance only'
const RECOVERED = 'Redis recovered'

t.test('Redis stopped and restarted: fail-open while down, logged once, exact again once back', async t => {
  const redis: RedisServer = await startRedis(t)
  const namespace = prefix()
  const options = { auth: { maxConnectionsPerUser: 2 } }
  const a = await instance(t, redis.url, namespace, options)
  const b = await instance(t, redis.url, namespace, options)
  const redisView = inspector(t, redis.url)
  const u1 = [connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' }))), connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))]
  const holder = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u3', jti: 'revoked-while-down' })))
  t.same(await Promise.all([...u1, holder].map(outcome)), ['established', 'established', 'established'])
  await a.app.wsAuth.revoke({ jti: 'revoked-before' })
  t.equal(await outcome(connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))), '4029 Too many connections', 'the cluster-wide limit')

  await redis.stop()
  await eventually(() => a.logged(UNAVAILABLE).length === 1 && b.logged(UNAVAILABLE).length === 1)

  // Handshakes go on; the limit falls back to this instance's own count.
  const down = [connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' }))), connect(a.url('/ws/b?token=' + a.sign({ sub: 'u2' })))]
  t.same(await Promise.all(down.map(outcome)), ['established', 'established'], 'fail-open: accepted while Redis is down')
  t.equal(await outcome(connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))), '4029 Too many connections',
    'the local count still applies (2 of u1 on this instance)')
  const started = Date.now()
  t.equal(await a.app.wsAuth.sendToUser('u1', 'only here'), 2, 'fan-out is local, and returns the local count')
  t.equal(await a.app.wsAuth.broadcast('also only here'), 3)
  t.equal(await a.app.wsAuth.revoke({ jti: 'revoked-while-down' }), 0, 'revoked here; the holder is on the other instance')
  t.ok(Date.now() - started < 500, 'without waiting for Redis')
  t.equal(holder.ws.readyState, holder.ws.OPEN)
  t.equal(a.logged(UNAVAILABLE).length, 1, 'the outage is logged once')
  t.equal(a.logged(LIMITS_LOCAL).length, 1, 'the limit fallback is logged once, for 3 handshakes')
  t.equal(a.logged(FANOUT_LOCAL).length, 1, 'the local fan-out is logged once, for 3 calls')
  t.equal(a.logged(UNAVAILABLE)[0].level, 40, 'as warnings')

  await redis.restart()
  await eventually(() => a.logged(RECOVERED).length === 1 && b.logged(RECOVERED).length === 1, 5000)
  t.equal(a.logged(UNAVAILABLE).length, 1, 'still one warning for the whole outage')
  t.match(a.logged(RECOVERED)[0], { level: 30, slots: 3 }, 'recovery logged once, with the slots re-registered')

  t.equal(await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`), 3, 'every live slot re-registered: the count is exact again')
  t.equal(await outcome(connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))), '4029 Too many connections',
    'refused on the instance that holds only one of them')
  t.same(await holder.closed, { code: 4001, reason: 'Token revoked' }, 'the revocation made while down reaches the other instance once back')
  t.equal(await a.app.wsAuth.sendToUser('u1', 'everywhere'), 3, 'fan-out reaches the other instance again')
  t.equal(await u1[1].message(2), 'everywhere')

  const later = await instance(t, redis.url, namespace, options)
  t.equal(later.app.wsAuth.stats().revocations, 2, 'revocations re-stored after Redis lost them (no persistence)')
  t.equal(await outcome(connect(later.url('/ws/a?token=' + later.sign({ sub: 'u9', jti: 'revoked-before' })))), '4001 Token revoked')
  for (const c of [...u1, ...down]) c.ws.close()
})

t.test('fail-closed: a limited user\'s new connection gets 1013 while Redis is down', async t => {
  const redis: RedisServer = await startRedis(t)
  const app = await instance(t, redis.url, prefix(), { auth: { maxConnectionsPerUser: 5 }, redis: { onRedisError: 'fail-closed' } })
  t.equal(await outcome(connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))), 'established')
  await redis.stop()
  await eventually(() => app.logged(UNAVAILABLE).length === 1)
  const refused = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.same(await refused.closed, { code: 1013, reason: 'Try again later' })
  t.equal(await outcome(connect(app.url('/ws/a?token=' + app.sign({ sub: 'u2' })))), '1013 Try again later')
  t.equal(app.logged(LIMITS_REFUSED).length, 1, 'logged once')
  t.match(app.app.wsAuth.stats().failures, { 1013: 2 })

  await redis.restart()
  await eventually(() => app.logged(RECOVERED).length === 1, 5000)
  t.equal(await outcome(connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))), 'established', 'resumes by itself')
})

t.test('evict-oldest while Redis is down (fail-open): the oldest socket on this instance goes', async t => {
  const redis: RedisServer = await startRedis(t)
  const app = await instance(t, redis.url, prefix(), { auth: { maxConnectionsPerUser: 2, onLimit: 'evict-oldest' } })
  await redis.stop()
  await eventually(() => app.logged(UNAVAILABLE).length === 1)
  const oldest = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.equal(await outcome(oldest), 'established')
  const second = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.equal(await outcome(second), 'established')
  const third = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.equal(await outcome(third), 'established')
  t.same(await oldest.closed, { code: 4029, reason: 'Too many connections' }, 'the oldest is evicted')
  t.equal(second.ws.readyState, second.ws.OPEN)
  t.equal(app.app.wsAuth.connections('u1').length, 2)
  for (const c of [second, third]) c.ws.close()
})

t.test('an instance started while Redis is down starts, serves, and joins once Redis is up', async t => {
  const redis: RedisServer = await startRedis(t)
  const namespace = prefix()
  const a = await instance(t, redis.url, namespace)
  await a.app.wsAuth.revoke({ jti: 'old' })
  await redis.stop()
  const b = await instance(t, redis.url, namespace, { auth: { maxConnectionsPerUser: 1 } })
  t.equal(b.logged(UNAVAILABLE).length, 1)
  t.equal(await outcome(connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))), 'established')
  await redis.restart()
  await eventually(() => b.logged(RECOVERED).length === 1, 5000)
  await until(async () => b.app.wsAuth.stats().revocations === 1)
  t.equal(await outcome(connect(b.url('/ws/a?token=' + b.sign({ sub: 'u2', jti: 'old' })))), '4001 Token revoked',
    'a revocation held by another instance reaches it after Redis returns')
})

t.test('Redis loses its data without a disconnect: heartbeats notice, slots and revocations come back everywhere', async t => {
  const redis: RedisServer = await startRedis(t)
  const namespace = prefix()
  const options = { auth: { maxConnectionsPerUser: 1 }, redis: { instanceTtl: 600 } }
  const a = await instance(t, redis.url, namespace, options)
  const b = await instance(t, redis.url, namespace, options)
  const redisView = inspector(t, redis.url)
  const held = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(held), 'established')
  await a.app.wsAuth.revoke({ jti: 'known-to-a' })
  await redisView.flushall()
  // Started before a's next heartbeat (most likely): it finds no revocation in Redis.
  const c = await instance(t, redis.url, namespace, options)
  await until(async () => await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`) === 1, 3000)
  t.pass('the slot is re-registered')
  t.equal(await outcome(connect(c.url('/ws/a?token=' + c.sign({ sub: 'u1' })))), '4029 Too many connections', 'the limit holds again')
  await until(async () => (await redisView.zcard(`${namespace}:ws-auth:revoked`)) === 1, 3000)
  await eventually(() => c.app.wsAuth.stats().revocations === 1, 3000)
  for (const app of [a, b, c]) t.equal(app.app.wsAuth.stats().revocations, 1, 'known everywhere: re-stored and published by a')
  t.equal(a.logged(UNAVAILABLE).length, 0, 'not an outage: nothing logged')
  held.ws.close()
})

t.test('a Redis that hangs: a limited handshake waits requestTimeout at most, once; everything resumes after', async t => {
  const redis: RedisServer = await startRedis(t)
  const namespace = prefix()
  const options = { auth: { maxConnectionsPerUser: 2 }, redis: { requestTimeout: 500, instanceTtl: 600 } }
  const a = await instance(t, redis.url, namespace, options)
  const b = await instance(t, redis.url, namespace, options)
  const redisView = inspector(t, redis.url)
  const held = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))
  t.equal(await outcome(held), 'established')

  redis.pause()
  const started = Date.now()
  const first = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(first), 'established', 'fail-open once the slot request timed out')
  const waited = Date.now() - started
  t.ok(waited >= 450 && waited < 1500, `the first handshake waited ${waited} ms (requestTimeout 500)`)
  const next = Date.now()
  t.equal(await outcome(connect(a.url('/ws/b?token=' + a.sign({ sub: 'u2' })))), 'established')
  t.ok(Date.now() - next < 450, 'later handshakes do not wait: the outage is known')
  t.equal(await a.app.wsAuth.sendToUser('u1', 'x'), 1, 'fan-out: local count')
  t.equal(a.logged(UNAVAILABLE).length, 1)
  t.equal(a.logged(LIMITS_LOCAL).length, 1)

  redis.resume()
  await eventually(() => a.logged(RECOVERED).length === 1, 5000)
  await until(async () => await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`) === 2)
  t.pass('the slot taken while Redis hung is registered')
  t.equal(await outcome(connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))), '4029 Too many connections')
  t.equal(await a.app.wsAuth.sendToUser('u1', 'y'), 2, 'fan-out reaches both instances again')
  held.ws.close()
  first.ws.close()
})

t.test('closing an instance while Redis hangs: QUIT is given up after requestTimeout, and close() resolves', async t => {
  const redis: RedisServer = await startRedis(t)
  const a = await instance(t, redis.url, prefix(), { redis: { requestTimeout: 300 } })
  const redisView = inspector(t, redis.url)
  const before = Number(/connected_clients:(\d+)/.exec(await redisView.info('clients'))![1])
  redis.pause()
  t.teardown(() => redis.resume())
  const started = Date.now()
  await a.app.close()
  const waited = Date.now() - started
  // A floor only (it cannot be met early); that close() resolves at all is what the await proves.
  t.ok(waited >= 250, `close() waited for requestTimeout (took ${waited} ms)`)
  redis.resume()
  await until(async () => Number(/connected_clients:(\d+)/.exec(await redisView.info('clients'))![1]) === before - 2)
  t.pass('both connections of the instance were cut')
})
