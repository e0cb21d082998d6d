import t from 'tap'
import { connect, eventually } from '../helpers/index.ts'
import { redisProxy, startRedis, type RedisServer } from './server.ts'
import { cluster, inspector, instance, prefix, stillOpen } from './helpers.ts'

const nowSec = () => Math.floor(Date.now() / 1000)

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

t.test('revoke({ jti }) closes the sockets holding the token on every instance, and every instance refuses it', async t => {
  const namespace = prefix()
  const a = await instance(t, redis.url, namespace)
  const b = await instance(t, redis.url, namespace)
  const revoked = a.sign({ sub: 'u1', jti: 'token-a' })
  const kept = a.sign({ sub: 'u1', jti: 'token-b' })
  const onA = connect(a.url('/ws/a?token=' + revoked))
  const onB = connect(b.url('/ws/a?token=' + revoked))
  const other = connect(b.url('/ws/a?token=' + kept))
  await Promise.all([onA.message(1), onB.message(1), other.message(1)])

  t.equal(await a.app.wsAuth.revoke({ jti: 'token-a' }), 2)
  t.same(await onA.closed, { code: 4001, reason: 'Token revoked' })
  t.same(await onB.closed, { code: 4001, reason: 'Token revoked' })
  t.ok(await stillOpen(other), 'a socket with another token stays')

  for (const app of [a, b]) {
    const again = connect(app.url('/ws/a?token=' + revoked))
    t.same(await again.closed, { code: 4001, reason: 'Token revoked' }, 'refused at handshake')
  }
  other.send({ type: 'auth', token: revoked })
  t.same(await other.closed, { code: 4001, reason: 'Token revoked' }, 'refused at in-band refresh on the other instance')

  const later = await instance(t, redis.url, namespace)
  const refused = connect(later.url('/ws/a?token=' + revoked))
  t.same(await refused.closed, { code: 4001, reason: 'Token revoked' }, 'an instance started after the revoke refuses it too')
  t.equal(later.app.wsAuth.stats().revocations, 1)
})

t.test('revoke({ userId, issuedBefore }) reaches every instance', async t => {
  const [a, b] = await cluster(t, redis.url, 2)
  const old = a.sign({ sub: 'u1', iat: nowSec() - 60 })
  const onA = connect(a.url('/ws/a?token=' + old))
  const onB = connect(b.url('/ws/b?token=' + old))
  const fresh = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1', iat: nowSec() })))
  await Promise.all([onA.message(1), onB.message(1), fresh.message(1)])
  t.equal(await b.app.wsAuth.revoke({ userId: 'u1', issuedBefore: new Date(Date.now() - 30_000) }), 2)
  t.same(await onA.closed, { code: 4001, reason: 'Token revoked' })
  t.same(await onB.closed, { code: 4001, reason: 'Token revoked' })
  t.ok(await stillOpen(fresh), 'a token issued after issuedBefore stays')
  const back = connect(a.url('/ws/a?token=' + old))
  t.same(await back.closed, { code: 4001, reason: 'Token revoked' })
  fresh.ws.close()
})

t.test('a stored revocation lives until its exp, then is gone from Redis and from every instance', async t => {
  const namespace = prefix()
  const redisView = inspector(t, redis.url)
  const a = await instance(t, redis.url, namespace)
  const token = a.sign({ sub: 'u1', jti: 'short' })
  await a.app.wsAuth.revoke({ jti: 'short', exp: new Date(Date.now() + 400) })
  await a.app.wsAuth.revoke({ jti: 'long', exp: nowSec() + 600 })
  const stored = await redisView.zrange(`${namespace}:ws-auth:revoked`, 0, -1)
  t.equal(stored.length, 2, 'both stored')

  const b = await instance(t, redis.url, namespace)
  t.equal(b.app.wsAuth.stats().revocations, 2, 'loaded at start')
  const refused = connect(b.url('/ws/a?token=' + token))
  t.same(await refused.closed, { code: 4001, reason: 'Token revoked' })

  // No event: the entry lapses as real time passes its exp (400 ms), which neither instance announces.
  await eventually(() => a.app.wsAuth.stats().revocations === 1 && b.app.wsAuth.stats().revocations === 1)
  const accepted = connect(b.url('/ws/a?token=' + token))
  t.match(await accepted.message(1), { type: 'connection_established' }, 'accepted once the entry expired')
  accepted.ws.close()

  await a.app.wsAuth.revoke({ jti: 'another' })
  t.same((await redisView.zrange(`${namespace}:ws-auth:revoked`, 0, -1)).map(m => JSON.parse(m).jti).sort(), ['another', 'long'],
    'expired entries are pruned from Redis')
  const c = await instance(t, redis.url, namespace)
  t.equal(c.app.wsAuth.stats().revocations, 2, 'an instance started after the expiry does not load it')
})

t.test('an instance cut off from Redis during a revoke closes the sockets it covers when it reconnects', async t => {
  const namespace = prefix()
  const a = await instance(t, redis.url, namespace)
  const proxy = await redisProxy(t, redis)
  const b = await instance(t, redis.url, namespace, { redis: { url: proxy.url } })
  const holder = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1', jti: 'missed' })))
  await holder.message(1)

  await proxy.cut()
  await b.logs.waitFor('Redis unavailable')
  t.equal(await a.app.wsAuth.revoke({ jti: 'missed' }), 0, 'b is not reached')
  t.ok(await stillOpen(holder), 'the holder stays open while b is cut off')

  await proxy.restore()
  t.same(await holder.closed, { code: 4001, reason: 'Token revoked' }, 'closed once b resynced and found the stored entry')
  // Recovered once the subscriber is back too (it may reconnect after the command connection).
  await b.logs.waitFor('Redis recovered')
  t.equal(b.logged('Redis recovered').length, 1)
})

t.test('a revocation whose message is lost after it was stored reaches the other instances at their next heartbeat', async t => {
  const namespace = prefix()
  // The revoking instance's Redis user may write but not PUBLISH: the entry is stored, its message lost.
  const user = namespace + '-nopub'
  const view = inspector(t, redis.url)
  await view.call('ACL', 'SETUSER', user, 'reset', 'on', '>secret', '~*', '&*', '+@all', '-publish')
  const options = { redis: { instanceTtl: 900 } }
  const a = await instance(t, redis.url, namespace, { redis: { ...options.redis, url: redis.url.replace('//', `//${user}:secret@`) } })
  const b = await instance(t, redis.url, namespace, options)
  const holder = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1', jti: 'unheard' })))
  await holder.message(1)

  t.equal(await a.app.wsAuth.revoke({ jti: 'unheard' }), 0, 'b is not reached')
  t.match(a.logged('Redis unavailable')[0]?.err, { message: /NOPERM/ }, 'the refused PUBLISH is logged')
  t.same(await holder.closed, { code: 4001, reason: 'Token revoked' }, 'b loaded the stored entry at a heartbeat')
  t.equal(b.logged('Redis unavailable').length, 0, 'b never lost Redis: no resync brought it')
  const again = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1', jti: 'unheard' })))
  t.same(await again.closed, { code: 4001, reason: 'Token revoked' }, 'and refuses the token from then on')
  await view.call('ACL', 'DELUSER', user)
})

t.test('members of the revocation set that are not entries are passed over when an instance loads them', async t => {
  const namespace = prefix()
  const redisView = inspector(t, redis.url)
  const expiresAt = Date.now() + 60_000
  const key = `${namespace}:ws-auth:revoked`
  await redisView.zadd(key, expiresAt, 'not json', expiresAt, JSON.stringify({ expiresAt }),
    expiresAt, JSON.stringify({ jti: 'stored', expiresAt }))

  const a = await instance(t, redis.url, namespace)
  t.equal(a.app.wsAuth.stats().revocations, 1, 'only the valid entry is loaded')
  const refused = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1', jti: 'stored' })))
  t.same(await refused.closed, { code: 4001, reason: 'Token revoked' })
  const accepted = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1', jti: 'other' })))
  t.match(await accepted.message(1), { type: 'connection_established' }, 'the instance works on')
  accepted.ws.close()
})
