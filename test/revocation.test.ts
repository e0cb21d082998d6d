import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp, connect, refusal } from './helpers/index.ts'
import { manualClock } from './helpers/clock.ts'
import { RevocationList } from '../lib/cluster/revocation.ts'

const nowSec = () => Math.floor(Date.now() / 1000)

function routes (app: FastifyInstance) {
  app.get('/ws', { websocket: true }, (socket) => {
    socket.on('message', (data) => socket.send(data.toString()))
  })
}

t.test('revoke({ jti }) closes the sockets holding that token, and refuses it at handshake and refresh', async t => {
  const { app, url, sign } = await buildApp(t, { routes })
  const revoked = sign({ sub: 'u1', jti: 'token-a' })
  const kept = sign({ sub: 'u1', jti: 'token-b' })
  const a = connect(url('/ws?token=' + revoked))
  const b = connect(url('/ws?token=' + kept))
  await Promise.all([a.message(1), b.message(1)])

  t.equal(app.wsAuth.revoke({ jti: 'token-a' }), 1)
  t.same(await a.closed, { code: 4001, reason: 'Token revoked' })
  b.send('still')
  t.equal(await b.message(2), 'still', 'a socket with another token stays')

  const again = connect(url('/ws?token=' + revoked))
  t.same(await again.closed, { code: 4001, reason: 'Token revoked' }, 'refused at handshake')
  t.equal(again.messages.length, 0)

  b.send({ type: 'auth', token: revoked })
  t.same(await b.closed, { code: 4001, reason: 'Token revoked' }, 'refused at refresh')
  t.equal(app.wsAuth.stats().revocations, 1)
})

t.test('revoke({ userId, issuedBefore }) covers tokens whose iat is earlier, on every route', async t => {
  const { app, url, sign } = await buildApp(t, { routes })
  const old = sign({ sub: 'u1', iat: nowSec() - 60 })
  const other = sign({ sub: 'u2', iat: nowSec() - 60 })
  const a = connect(url('/ws?token=' + old))
  const b = connect(url('/ws?token=' + other))
  await Promise.all([a.message(1), b.message(1)])
  t.equal(app.wsAuth.revoke({ userId: 'u1', issuedBefore: new Date(Date.now() - 30_000) }), 1)
  t.same(await a.closed, { code: 4001, reason: 'Token revoked' })
  t.equal(b.ws.readyState, b.ws.OPEN, 'another user is untouched')

  const fresh = connect(url('/ws?token=' + sign({ sub: 'u1', iat: nowSec() - 10 })))
  t.match(await fresh.message(1), { type: 'connection_established' }, 'a token issued after issuedBefore is accepted')
  const stale = connect(url('/ws?token=' + old))
  t.same(await stale.closed, { code: 4001, reason: 'Token revoked' })
  for (const c of [b, fresh]) c.ws.close()
})

t.test('revoke({ userId }) defaults issuedBefore to now: logout everywhere, for good', async t => {
  const { app, url, sign } = await buildApp(t, { routes })
  const token = sign({ sub: 'u1', iat: nowSec() - 5 })
  const a = connect(url('/ws?token=' + token))
  await a.message(1)
  t.equal(app.wsAuth.revoke({ userId: 'u1' }), 1)
  t.same(await a.closed, { code: 4001, reason: 'Token revoked' })
  const back = connect(url('/ws?token=' + token))
  t.same(await back.closed, { code: 4001, reason: 'Token revoked' })
})

t.test('entries live until the exp given with them, then go', async t => {
  const time = manualClock(t)
  const { app, url, sign } = await buildApp(t, { routes, auth: { heartbeatInterval: false, maxTokenLifetime: 60_000 } })
  app.wsAuth.revoke({ jti: 'short', exp: new Date(time.now() + 300) })
  app.wsAuth.revoke({ jti: 'long' })
  t.equal(app.wsAuth.stats().revocations, 2)
  const token = sign({ sub: 'u1', jti: 'short' })
  await time.tick(299)
  t.same(await refusal(connect(url('/ws?token=' + token))), { code: 4001, reason: 'Token revoked' }, '1 ms before its exp')
  await time.tick(1)
  t.equal(app.wsAuth.stats().revocations, 1, 'the expired entry is gone')
  const after = connect(url('/ws?token=' + token))
  t.match(await after.message(1), { type: 'connection_established' })
  after.ws.close()
})

t.test('entries without exp live for maxTokenLifetime, then the same token gets in again', async t => {
  const time = manualClock(t)
  const { app, url, sign } = await buildApp(t, { routes, auth: { heartbeatInterval: false, maxTokenLifetime: 60_000 } })
  const byJti = sign({ sub: 'u1', jti: 'j1' })
  // Issued in the clock's current second: revoke({ userId }) covers it (see revoke-seconds).
  const byUser = sign({ sub: 'u2', iat: Math.floor(time.now() / 1000) })
  app.wsAuth.revoke({ jti: 'j1' })
  app.wsAuth.revoke({ userId: 'u2' })
  await time.tick(59_999)
  for (const token of [byJti, byUser]) {
    t.same(await refusal(connect(url('/ws?token=' + token))), { code: 4001, reason: 'Token revoked' }, 'refused 1 ms before maxTokenLifetime')
  }
  t.equal(app.wsAuth.stats().revocations, 2)
  await time.tick(1)
  t.equal(app.wsAuth.stats().revocations, 0, 'both entries are gone')
  for (const token of [byJti, byUser]) {
    const c = connect(url('/ws?token=' + token))
    t.match(await c.message(1), { type: 'connection_established' }, 'the same token gets in once maxTokenLifetime has passed')
    c.ws.close()
  }
})

t.test('revoke({ userId, issuedBefore }) covers a token without iat, however early issuedBefore is (fail closed)', async t => {
  const { app, url, sign } = await buildApp(t, { routes })
  const noIat = sign({ sub: 'u1' }, { noTimestamp: true })
  t.notOk('iat' in JSON.parse(Buffer.from(noIat.split('.')[1], 'base64url').toString()), 'the token has no iat')
  const a = connect(url('/ws?token=' + noIat))
  await a.message(1)
  const withIat = connect(url('/ws?token=' + sign({ sub: 'u1', iat: nowSec() - 60 })))
  await withIat.message(1)
  t.equal(app.wsAuth.revoke({ userId: 'u1', issuedBefore: new Date(Date.now() - 3_600_000) }), 1, 'only the socket without iat')
  t.same(await a.closed, { code: 4001, reason: 'Token revoked' })
  t.same(await refusal(connect(url('/ws?token=' + noIat))), { code: 4001, reason: 'Token revoked' }, 'and refused when it comes back')
  withIat.send('still')
  t.equal(await withIat.message(2), 'still', 'a token issued after issuedBefore stays')
  withIat.ws.close()
})

t.test('bad arguments are refused with FST_WS_AUTH_INVALID_ARGUMENT', async t => {
  const { app } = await buildApp(t, { routes })
  const bad: unknown[] = [null, 'jti', {}, { jti: '' }, { jti: 1 }, { userId: {} }, { userId: 'u1', issuedBefore: 'yesterday' },
    { jti: 'x', exp: 'soon' }]
  for (const target of bad) {
    t.throws(() => app.wsAuth.revoke(target as never), { code: 'FST_WS_AUTH_INVALID_ARGUMENT' }, JSON.stringify(target))
  }
})

t.test('RevocationList: add() merges entries for the same jti or user, keeping the later time and expiry', async t => {
  const list = new RevocationList()
  const now = 1_000_000
  list.add({ jti: 'a', expiresAt: now + 5000 }, now)
  list.add({ jti: 'a', expiresAt: now + 1000 }, now)
  list.add({ userId: 'u1', issuedBefore: 2000, expiresAt: now + 1000 }, now)
  list.add({ userId: 'u1', issuedBefore: 1500, expiresAt: now + 9000 }, now)
  list.add({ jti: 'late', expiresAt: now }, now)
  t.same(list.entries(now), [
    { jti: 'a', expiresAt: now + 5000 },
    { userId: 'u1', issuedBefore: 2000, expiresAt: now + 9000 }
  ], 'the longer expiry and the later issuedBefore win; an already expired entry is not added')
  t.equal(list.isRevoked({ jti: 'a' }, undefined, now + 4000), true, 'the shorter expiry did not shorten the entry')
  t.equal(list.isRevoked({ iat: 1999 }, 'u1', now + 8000), true, 'the later issuedBefore covers iat 1999')
  t.equal(list.isRevoked({ iat: 2000 }, 'u1', now + 8000), false)
  t.equal(list.isRevoked({}, 'u1', now + 8000), true, 'no iat: covered (fail closed)')
})

t.test('RevocationList: isRevoked() drops the expired entries it meets', async t => {
  const list = new RevocationList()
  const now = 1_000_000
  list.add({ jti: 'a', expiresAt: now + 1000 }, now)
  list.add({ userId: 'u1', issuedBefore: 2000, expiresAt: now + 1000 }, now)
  list.add({ jti: 'kept', expiresAt: now + 60_000 }, now)
  t.equal(list.isRevoked({ jti: 'a', iat: 1 }, 'u1', now + 999), true)
  t.equal(list.isRevoked({ jti: 'a', iat: 1 }, 'u1', now + 1000), false, 'both entries expired at the same ms')
  t.same(list.entries(now), [{ jti: 'kept', expiresAt: now + 60_000 }], 'the expired entries are gone, even for an earlier clock')
  t.equal(list.isRevoked({ jti: 'other' }, undefined, now), false, 'no user id: only the jti is looked up')
  t.equal(list.isRevoked({ iat: 1 }, 'u2', now), false, 'a user without an entry')
})

t.test('RevocationList: sweep() and count() drop expired entries; entries() lists the live ones', async t => {
  const list = new RevocationList()
  const now = 1_000_000
  list.add({ jti: 'short', expiresAt: now + 10 }, now)
  list.add({ jti: 'long', expiresAt: now + 100 }, now)
  list.add({ userId: 7, issuedBefore: 50, expiresAt: now + 10 }, now)
  list.add({ userId: 'u1', issuedBefore: 60, expiresAt: now + 100 }, now)
  t.equal(list.count(now), 4)
  list.sweep(now + 10)
  t.same(list.entries(now), [
    { jti: 'long', expiresAt: now + 100 },
    { userId: 'u1', issuedBefore: 60, expiresAt: now + 100 }
  ], 'swept at +10 ms: the short entries are gone for good')
  t.equal(list.count(now + 100), 0)
  t.same(list.entries(now), [])
})

t.test('RevocationList.entryFor: exp in seconds, as a Date, or bounded by maxTokenLifetime', async t => {
  const now = 1_000_000
  t.same(RevocationList.entryFor({ jti: 'a', exp: 2000 }, 60_000, now), { jti: 'a', expiresAt: 2_000_000 }, 'a JWT exp counts seconds')
  t.same(RevocationList.entryFor({ jti: 'a', exp: new Date(5000) }, 60_000, now), { jti: 'a', expiresAt: 5000 })
  t.same(RevocationList.entryFor({ jti: 'a' }, 60_000, now), { jti: 'a', expiresAt: 1_060_000 }, 'no exp: now + maxTokenLifetime')
})
