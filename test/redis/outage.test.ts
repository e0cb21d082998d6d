import t from 'tap'
import { connect, eventually, WAIT_MS } from '../helpers/index.ts'
import { ACQUIRE, RESYNC } from '../../lib/cluster/redis/scripts.ts'
import { redisProxy, startRedis, type RedisServer } from './server.ts'
import { bounded, inspector, instance, outcome, prefix, stillOpen, whenRedis } from './helpers.ts'

const UNAVAILABLE = 'Redis unavailable; retrying'
const LIMITS_LOCAL = 'maxConnectionsPerUser is checked against this instance only'
const LIMITS_REFUSED = 'refused with 1013'
const FANOUT_LOCAL = 'registry calls and revocations reach this instance only'
const RECOVERED = 'Redis recovered'
/** A PUBLISH command as ioredis writes it (RESP, the name in lower case). */
const PUBLISH = '$7\r\npublish\r\n'

t.test('Redis stopped and restarted: fail-open while down, logged once, exact again once back', async t => {
  const redis: RedisServer = await startRedis(t)
  const namespace = prefix()
  // A requestTimeout far beyond WAIT_MS: a call that waited for Redis could not settle in time.
  const options = { auth: { maxConnectionsPerUser: 2 }, redis: { requestTimeout: 10 * WAIT_MS } }
  const a = await instance(t, redis.url, namespace, options)
  const b = await instance(t, redis.url, namespace, options)
  const redisView = inspector(t, redis.url)
  const u1 = [connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' }))), connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))]
  const holder = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u3', jti: 'revoked-while-down' })))
  t.same(await Promise.all([...u1, holder].map(outcome)), ['established', 'established', 'established'])
  await a.app.wsAuth.revoke({ jti: 'revoked-before' })
  t.equal(await outcome(connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))), '4029 Too many connections', 'the cluster-wide limit')

  await redis.stop()
  await Promise.all([a.logs.waitFor(UNAVAILABLE), b.logs.waitFor(UNAVAILABLE)])

  // Handshakes go on; the limit falls back to this instance's own count.
  const down = [connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' }))), connect(a.url('/ws/b?token=' + a.sign({ sub: 'u2' })))]
  t.same(await Promise.all(down.map(outcome)), ['established', 'established'], 'fail-open: accepted while Redis is down')
  t.equal(await outcome(connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))), '4029 Too many connections',
    'the local count still applies (2 of u1 on this instance)')
  // Each settles without waiting for Redis: with requestTimeout at 10 x WAIT_MS, a wait could not.
  t.equal(await bounded(a.app.wsAuth.sendToUser('u1', 'only here'), 'sendToUser'), 2, 'fan-out is local, and returns the local count')
  t.equal(await bounded(a.app.wsAuth.broadcast('also only here'), 'broadcast'), 3)
  t.equal(await bounded(a.app.wsAuth.revoke({ jti: 'revoked-while-down' }), 'revoke'), 0, 'revoked here; the holder is on the other instance')
  t.ok(await stillOpen(holder), 'the holder, on the other instance, is not reached')
  t.equal(a.logged(UNAVAILABLE).length, 1, 'the outage is logged once')
  t.equal(a.logged(LIMITS_LOCAL).length, 1, 'the limit fallback is logged once, for 3 handshakes')
  t.equal(a.logged(FANOUT_LOCAL).length, 1, 'the local fan-out is logged once, for 3 calls')
  t.equal(a.logged(UNAVAILABLE)[0].level, 40, 'as warnings')

  await redis.restart()
  await Promise.all([a.logs.waitFor(RECOVERED), b.logs.waitFor(RECOVERED)])
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
  await app.logs.waitFor(UNAVAILABLE)
  const refused = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.same(await refused.closed, { code: 1013, reason: 'Try again later' })
  t.equal(await outcome(connect(app.url('/ws/a?token=' + app.sign({ sub: 'u2' })))), '1013 Try again later')
  t.equal(app.logged(LIMITS_REFUSED).length, 1, 'logged once')
  t.match(app.app.wsAuth.stats().failures, { 1013: 2 })

  await redis.restart()
  await app.logs.waitFor(RECOVERED)
  t.equal(await outcome(connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))), 'established', 'resumes by itself')
})

t.test('evict-oldest while Redis is down (fail-open): the oldest socket on this instance goes', async t => {
  const redis: RedisServer = await startRedis(t)
  const app = await instance(t, redis.url, prefix(), { auth: { maxConnectionsPerUser: 2, onLimit: 'evict-oldest' } })
  await redis.stop()
  await app.logs.waitFor(UNAVAILABLE)
  const oldest = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.equal(await outcome(oldest), 'established')
  const second = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.equal(await outcome(second), 'established')
  const third = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.equal(await outcome(third), 'established')
  t.same(await oldest.closed, { code: 4029, reason: 'Too many connections' }, 'the oldest is evicted')
  t.ok(await stillOpen(second), 'the second stays')
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
  await b.logs.waitFor(RECOVERED)
  // The restarted Redis is empty (no persistence): a stores the revocation back when it resyncs
  // and passes it on; b may have resynced first. Either way b learns it, by load or by message.
  await eventually(() => b.app.wsAuth.stats().revocations === 1)
  t.pass('the revocation reaches b: loaded at its resync, or passed on by a')
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
  await whenRedis(redis.url, 'the slot re-registered', async () => await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`) === 1)
  t.pass('the slot is re-registered')
  t.equal(await outcome(connect(c.url('/ws/a?token=' + c.sign({ sub: 'u1' })))), '4029 Too many connections', 'the limit holds again')
  await whenRedis(redis.url, 'the revocation re-stored', async () => (await redisView.zcard(`${namespace}:ws-auth:revoked`)) === 1)
  // A session on each of b and c holding the revoked token: refused, or closed once the publish
  // arrives. Either way its 4001 is the event that the instance knows the revocation.
  for (const [app, sub] of [[b, 'u3'], [c, 'u4']] as const) {
    const holder = connect(app.url('/ws/a?token=' + app.sign({ sub, jti: 'known-to-a' })))
    t.same(await holder.closed, { code: 4001, reason: 'Token revoked' }, `${sub}: the revoked token is refused or closed`)
  }
  for (const app of [a, b, c]) t.equal(app.app.wsAuth.stats().revocations, 1, 'known everywhere: re-stored and published by a')
  t.equal(a.logged(UNAVAILABLE).length, 0, 'not an outage: nothing logged')
  held.ws.close()
})

t.test('a Redis that hangs: the first limited handshake waits requestTimeout, later ones ask Redis nothing; everything resumes after', async t => {
  const redis: RedisServer = await startRedis(t)
  const namespace = prefix()
  const options = { auth: { maxConnectionsPerUser: 2 }, redis: { requestTimeout: 500, instanceTtl: 600 } }
  // a talks to Redis through a proxy that passes everything on: it counts the slot requests a sends.
  const proxy = await redisProxy(t, redis)
  const a = await instance(t, redis.url, namespace, { ...options, redis: { ...options.redis, url: proxy.url } })
  const b = await instance(t, redis.url, namespace, options)
  const redisView = inspector(t, redis.url)
  const held = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))
  t.equal(await outcome(held), 'established')
  t.equal(proxy.count(ACQUIRE.sha), 0, 'a has asked for no slot yet')

  redis.pause()
  t.teardown(() => redis.resume())
  const started = Date.now()
  const first = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(first), 'established', 'fail-open once the slot request timed out')
  const waited = Date.now() - started
  // A floor only: the watchdog fails the request once Date.now() is requestTimeout past its send.
  t.ok(waited >= 500, `the first handshake waited ${waited} ms for Redis (requestTimeout 500)`)
  t.equal(proxy.count(ACQUIRE.sha), 1, 'one slot request, unanswered')
  // Redis is still frozen: a later handshake that asked it would have to wait for a timeout too.
  t.equal(await outcome(connect(a.url('/ws/b?token=' + a.sign({ sub: 'u2' })))), 'established')
  t.equal(await outcome(connect(a.url('/ws/b?token=' + a.sign({ sub: 'u1' })))), 'established')
  t.equal(proxy.count(ACQUIRE.sha), 1, 'later handshakes do not ask Redis: the outage is known')
  t.equal(await a.app.wsAuth.sendToUser('u2', 'x'), 1, 'fan-out: local count')
  t.equal(proxy.count(PUBLISH), 0, 'without publishing')
  t.equal(a.logged(UNAVAILABLE).length, 1)
  t.equal(a.logged(LIMITS_LOCAL).length, 1)

  redis.resume()
  await a.logs.waitFor(RECOVERED)
  await whenRedis(redis.url, 'a\'s slots registered', async () => await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`) === 3)
  t.pass('the slots taken while Redis hung are registered')
  t.equal(await outcome(connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))), '4029 Too many connections')
  t.equal(await a.app.wsAuth.sendToUser('u1', 'y'), 3, 'fan-out reaches both instances again')
  t.equal(await held.message(2), 'y')
})

t.test('a Redis that hangs: the first fan-out waits requestTimeout, then calls are local at once', async t => {
  const redis: RedisServer = await startRedis(t)
  const namespace = prefix()
  const proxy = await redisProxy(t, redis)
  const a = await instance(t, redis.url, namespace, { redis: { url: proxy.url, requestTimeout: 500, instanceTtl: 600_000 } })
  const b = await instance(t, redis.url, namespace)
  const onA = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  const onB = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))
  t.same(await Promise.all([outcome(onA), outcome(onB)]), ['established', 'established'])
  t.equal(await a.app.wsAuth.sendToUser('u1', 'before'), 2)

  redis.pause()
  t.teardown(() => redis.resume())
  const published = proxy.count(PUBLISH)
  const started = Date.now()
  t.equal(await a.app.wsAuth.sendToUser('u1', 'during'), 1, 'the local count, once PUBLISH went unanswered')
  const waited = Date.now() - started
  t.ok(waited >= 500, `the first call waited ${waited} ms for Redis (requestTimeout 500)`)
  t.equal(proxy.count(PUBLISH), published + 1)
  t.equal(a.logged(UNAVAILABLE).length, 1)
  t.match(a.logged(UNAVAILABLE)[0], { level: 40, err: { code: 'ETIMEDOUT' } }, 'the outage starts with the timeout')
  t.equal(a.logged(FANOUT_LOCAL).length, 1)
  t.equal(await a.app.wsAuth.sendToUser('u1', 'later'), 1)
  t.equal(proxy.count(PUBLISH), published + 1, 'a later call does not publish: the outage is known')
  t.equal(await onA.message(4), 'later')
  t.same(onA.messages.slice(1), ['before', 'during', 'later'])
})

t.test('a connection lost during a resync: the resync fails quietly, the next one completes it', async t => {
  const redis: RedisServer = await startRedis(t)
  const namespace = prefix()
  const redisView = inspector(t, redis.url)
  const proxy = await redisProxy(t, redis)
  const a = await instance(t, redis.url, namespace, { auth: { maxConnectionsPerUser: 2 }, redis: { url: proxy.url, instanceTtl: 600_000 } })
  const held = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(held), 'established')

  await proxy.cut()
  await a.logs.waitFor(UNAVAILABLE)
  // The reconnection's resync (EVAL of the resync script) is caught on its way and its connection cut.
  const resyncSent = proxy.count(RESYNC.body)
  proxy.hold(RESYNC.body)
  await proxy.restore()
  await proxy.waitForSent(RESYNC.body, resyncSent + 1)
  await proxy.cut()
  proxy.release()
  t.equal(a.logged(RECOVERED).length, 0, 'not recovered: the resync never reached Redis')
  await proxy.restore()
  const recovered = await a.logs.waitFor(RECOVERED)
  t.match(recovered, { slots: 1 }, 'the next reconnection resyncs')
  t.ok(proxy.count(RESYNC.body) >= resyncSent + 2, 'with a resync of its own')
  t.equal(a.logged(UNAVAILABLE).length, 1, 'one outage')
  t.equal(a.logged(RECOVERED).length, 1, 'one recovery: the cut-short resync did not count as one')
  t.equal(await redisView.zcard(`${namespace}:ws-auth:conns:"u1"`), 1, 'the slot is registered')
  t.ok(await stillOpen(held))
})

t.test('closing an instance while Redis hangs: QUIT is given up after requestTimeout, and close() resolves', async t => {
  const redis: RedisServer = await startRedis(t)
  const proxy = await redisProxy(t, redis)
  const a = await instance(t, redis.url, prefix(), { redis: { url: proxy.url, requestTimeout: 300 } })
  t.equal(proxy.connections, 2, 'two connections: commands and subscriber')
  redis.pause()
  t.teardown(() => redis.resume())
  const started = Date.now()
  await a.app.close()
  const waited = Date.now() - started
  // A floor only (it cannot be met early); that close() resolves at all is what the await proves.
  t.ok(waited >= 300, `close() waited for requestTimeout (took ${waited} ms)`)
  await proxy.waitForConnections(0)
  t.pass('both connections of the instance were cut, with Redis still frozen')
})
