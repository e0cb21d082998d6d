// Keys from an identity provider's JWKS, with @fastify/jwt and get-jwks as docs/jwt.md shows them,
// against a real IdP on loopback (test/helpers/jwks.ts): rotation (a new kid costs one fetch,
// however many handshakes ask for it at once; a removed key is refused once get-jwks's cache and
// stale cache have let it go; open sessions keep theirs), a key source that is down or answers
// garbage (1013 for a key not cached, never 4001; cached keys keep working), one that hangs (4008
// at authTimeout), and a custom `verify` that throws KeySourceUnavailableError.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import buildGetJwks from 'get-jwks'
import { createVerifier } from 'fast-jwt'
import { KeySourceUnavailableError } from '../lib/index.ts'
import type { WsAuthPluginOptions } from '../lib/types.ts'
import { answer, bounded, buildApp, connectWith, logCapture, stillOpen, type Client, type LogCapture } from './helpers/index.ts'
import { manualClock } from './helpers/clock.ts'
import { cacheKeyOf, cacheState, cacheTime, forgetKey, jwksJwt, startIdp, type CacheTime, type TestIdp } from './helpers/jwks.ts'
import type { IdpUser } from '../examples/oidc/idp.ts'

const INVALID = { code: 4001, reason: 'Invalid token' }
const TRY_LATER = { code: 1013, reason: 'Try again later' }
const TIMED_OUT = { code: 4008, reason: 'Authentication timeout' }
const ESTABLISHED = { type: 'connection_established' }

interface Setup {
  idp: TestIdp
  getJwks: ReturnType<typeof buildGetJwks>
  app: FastifyInstance
  /** Opens `path` (`/ws`: reject 'close'; `/ws-http`: reject 'http') with `?token=`. */
  open (token: string, path?: '/ws' | '/ws-http'): Client
  /** `ws://127.0.0.1:<port><path>` */
  url (path: string): string
  /** Resolves once the secret function has been asked for a key `n` times in all. */
  lookedUp (n: number): Promise<void>
  /** The app's log lines, from `warn` up. */
  logs: LogCapture
}

/**
 * The IdP, then an app verifying its tokens through @fastify/jwt and get-jwks (discovery on, as
 * the example does), with two echo routes: `/ws` and `/ws-http` (`reject: 'http'`).
 */
async function setup (t: Test, opts: { ttl?: number, auth?: WsAuthPluginOptions, users?: IdpUser[], byIssuer?: boolean } = {}): Promise<Setup> {
  const idp = await startIdp(t, opts.users === undefined ? {} : { users: opts.users })
  const getJwks = buildGetJwks({ providerDiscovery: true, ...(opts.ttl === undefined ? {} : { ttl: opts.ttl }), ...(opts.byIssuer === true ? { issuersWhitelist: [idp.issuer] } : {}) })
  let lookups = 0
  const waiting = new Set<() => void>()
  const onLookup = (): void => { lookups++; for (const check of [...waiting]) check() }
  const logs = logCapture()
  const { app, url } = await buildApp(t, {
    fastify: { logger: { level: 'warn', stream: logs.stream } },
    jwt: jwksJwt({ getJwks, issuer: idp.issuer, onLookup, byIssuer: opts.byIssuer }),
    auth: { sources: ['query'], ...opts.auth },
    routes: (app) => {
      for (const [path, reject] of [['/ws', 'close'], ['/ws-http', 'http']] as const) {
        app.get(path, { websocket: true, wsAuth: { reject } }, (socket) => {
          socket.on('message', (data) => socket.send(data.toString()))
        })
      }
    }
  })
  return {
    idp,
    getJwks,
    app,
    logs,
    url,
    open: (token, path = '/ws') => connectWith(url(path), 'query', token),
    lookedUp: (n) => bounded(new Promise<void>(resolve => {
      const check = (): void => { if (lookups >= n) { waiting.delete(check); resolve() } }
      waiting.add(check)
      check()
    }), () => `${lookups} of ${n} key lookups`)
  }
}

t.test('a new key in the JWKS verifies without a restart: one fetch for 200 handshakes asking at once', async t => {
  const users = Array.from({ length: 200 }, (_, i) => ({ sub: `user-${i}`, username: `user${i}`, password: 'pw', roles: ['viewer'] }))
  const s = await setup(t, { users, auth: { authTimeout: 60_000 } })
  const first = s.open(s.idp.issue('user0'))
  t.match(await first.message(1), ESTABLISHED, 'a token of the first RS256 key')
  first.ws.close()
  t.same(s.idp.requests, { jwks: 1, discovery: 1 }, 'the first handshake fetched the keys once')

  const kid = s.idp.addKey('RS256')
  const tokens = users.map(u => s.idp.issue(u.username, { kid }))
  // The IdP holds its answer until every handshake is waiting for the new key: they all ask at once.
  const release = s.idp.hold()
  const clients = tokens.map(token => s.open(token))
  await s.lookedUp(1 + 200)
  release()
  const firsts = await Promise.all(clients.map(c => c.message(1)))
  t.equal(firsts.filter(m => (m as { type?: string }).type === 'connection_established').length, 200, 'all 200 established')
  t.same(s.idp.requests, { jwks: 2, discovery: 2 }, 'the new kid cost one JWKS fetch (and one discovery)')
  t.comment(`JWKS fetches for 200 concurrent handshakes with a new kid: ${s.idp.requests.jwks - 1}`)
  for (const c of clients) c.ws.close()
})

/**
 * The caches' ttl in the tests of a removed key: a minute, which their time skips past (`cacheTime`)
 * rather than waits for, and which no pause between two loopback round trips comes near.
 */
const TTL = 60_000

/** A session opened with the IdP's first key, then that key removed from the JWKS (`removedAt` on the caches' time). */
async function removedWhileOpen (t: Test, s: Setup, time: CacheTime): Promise<{ kid: string, key: string, token: string, open: Client, removedAt: number }> {
  const kid = s.idp.kids()[0]
  const key = cacheKeyOf(s.getJwks, s.idp.issuer, 'RS256', kid)
  const token = s.idp.issue('ada', { kid })
  const open = s.open(token)
  t.match(await open.message(1), ESTABLISHED)
  s.idp.removeKey(kid)
  return { kid, key, token, open, removedAt: time.now() }
}

t.test('a removed key: refused 4001 once the cache and the stale cache let it go; open sessions keep theirs', async t => {
  const time = cacheTime(t)
  // The sessions' deadlines (the brief token's exp) wait for this clock; token verification
  // (fast-jwt) and the caches keep their own time.
  const deadlines = manualClock(t)
  const s = await setup(t, { ttl: TTL })
  const { kid, key, token, open: kept, removedAt } = await removedWhileOpen(t, s, time)
  let fetched = s.idp.requests.jwks
  const cached = s.open(token)
  t.match(await cached.message(1), ESTABLISHED, 'while cached, the removed key is accepted')
  t.equal(s.idp.requests.jwks, fetched, 'from the cache')
  cached.ws.close()
  const refresher = s.open(token)
  // exp 30 s ahead: verified on real time, with room to spare on a busy machine; the session's
  // deadline is reached by moving the library's clock.
  const brief = s.open(s.idp.issue('ada', { kid, expiresInSeconds: 30 }))
  for (const c of [refresher, brief]) t.match(await c.message(1), ESTABLISHED, 'from the cache')

  await time.skip(TTL)
  t.same(cacheState(s.getJwks, key), { cached: false, stale: false }, 'a ttl later, the cache entry has expired')
  fetched = s.idp.requests.jwks
  const stale = s.open(token)
  t.match(await stale.message(1), ESTABLISHED, 'once the cache expired, get-jwks refetches, finds no such kid, and serves the stale key')
  t.equal(s.idp.requests.jwks, fetched + 1, 'it did refetch')
  stale.ws.close()

  await time.skip(TTL)
  t.same(cacheState(s.getJwks, key), { cached: false, stale: false }, 'a ttl after that lookup, the stale entry has expired too')
  t.same(await s.open(token).closed, INVALID, 'once the stale entry expired too (no lookup of the kid for a ttl): 4001')
  const window = time.now() - removedAt
  t.equal(await s.open(token, '/ws-http').refusedStatus, 401, 'HTTP 401 with reject: http')
  refresher.send({ type: 'auth', token })
  t.same(await refresher.closed, INVALID, 'an in-band refresh with it is refused too')
  t.comment(`removed key accepted for ${Math.round(window)} ms after its removal (ttl ${TTL} ms)`)

  t.ok(await stillOpen(kept), 'a session opened with the removed key stays open')
  t.ok(await stillOpen(brief), 'and so does one with a token of it that has not expired')
  await deadlines.tick(31_000)
  t.same(await brief.closed, { code: 4001, reason: 'Token expired' }, 'until its token\'s exp')
  kept.ws.close()
})

t.test('a removed key after a quiet spell: the first lookup is still answered from the stale cache, the next one a ttl later refused', async t => {
  const time = cacheTime(t)
  const s = await setup(t, { ttl: TTL })
  const kid = s.idp.kids()[0]
  const key = cacheKeyOf(s.getJwks, s.idp.issuer, 'RS256', kid)
  const token = s.idp.issue('ada', { kid })
  const c = s.open(token)
  t.match(await c.message(1), ESTABLISHED)
  c.ws.close()
  s.idp.removeKey(kid)
  const removedAt = time.now()
  // No lookup for 3 x ttl: the quiet spell is the point (the expired entry stays in the cache until looked up).
  await time.skip(3 * TTL)
  t.same(cacheState(s.getJwks, key), { cached: false, stale: false }, 'neither cache has a live entry')
  const late = s.open(token)
  t.match(await late.message(1), ESTABLISHED, `accepted ${Math.round(time.now() - removedAt)} ms after the removal: looking it up moved the expired entry into the stale cache`)
  late.ws.close()
  await time.skip(TTL)
  t.same(cacheState(s.getJwks, key), { cached: false, stale: false }, 'a ttl later, the stale entry has expired too')
  t.same(await s.open(token).closed, INVALID, `refused ${Math.round(time.now() - removedAt)} ms after the removal`)
})

t.test('a removed key stays accepted while its lookups come less than a ttl apart; dropping it from both caches refuses it at once', async t => {
  // get-jwks re-arms the stale entry at each lookup that falls back to it: a key in steady use
  // outlives its removal by far more than 2 x ttl, and each lookup refetches the JWKS meanwhile.
  // The lookups come 0.3 x ttl apart on the caches' time; the real pauses between them are
  // nothing beside a ttl of a minute, even on a busy machine.
  const time = cacheTime(t)
  const s = await setup(t, { ttl: TTL })
  const { kid, key, token, open: c, removedAt } = await removedWhileOpen(t, s, time)

  await time.skip(TTL)
  t.match(cacheState(s.getJwks, key), { cached: false }, 'the cache entry has expired')
  const before = s.idp.requests.jwks
  let refreshed = 0
  let last: unknown
  while (time.now() < removedAt + 2.2 * TTL) {
    last = await answer(c, { type: 'auth', token })
    if ((last as { type?: string }).type !== 'token_refreshed') break
    refreshed++
    await time.skip(0.3 * TTL)
  }
  t.match(last, { type: 'token_refreshed' }, `every refresh for ${Math.round(time.now() - removedAt)} ms after the removal was accepted`)
  t.ok(refreshed >= 3, `${refreshed} refreshes`)
  t.equal(s.idp.requests.jwks - before, refreshed, 'each one refetched the JWKS')

  forgetKey(s.getJwks, s.idp.issuer, 'RS256', kid)
  t.same(await s.open(token).closed, INVALID, 'a new handshake is refused at once')
  c.send({ type: 'auth', token })
  t.same(await c.closed, INVALID, 'and so is a refresh')
})

t.test('a removed key dropped from both caches at once, while cached: refused at once', async t => {
  const s = await setup(t)
  const kid = s.idp.kids()[0]
  const token = s.idp.issue('ada', { kid })
  const c = s.open(token)
  t.match(await c.message(1), ESTABLISHED)
  s.idp.removeKey(kid)
  t.same(cacheState(s.getJwks, cacheKeyOf(s.getJwks, s.idp.issuer, 'RS256', kid)), { cached: true, stale: false })
  forgetKey(s.getJwks, s.idp.issuer, 'RS256', kid)
  t.same(await s.open(token).closed, INVALID, 'the next handshake refetches and is refused')
  t.ok(await stillOpen(c), 'the open session keeps its own')
  c.ws.close()
})

/** What the IdP does from now on: refuse connections, or a fault of its JWKS or discovery endpoint. */
const OUTAGES = {
  'connection refused': (idp: TestIdp) => idp.stop(),
  'JWKS answering 503 with JSON': (idp: TestIdp) => { idp.fault = 'json-503' },
  'JWKS answering 503 with an HTML page': (idp: TestIdp) => { idp.fault = 'html-503' },
  'JWKS with an empty key set': (idp: TestIdp) => { idp.fault = 'empty' },
  'discovery answering 503': (idp: TestIdp) => { idp.discoveryDown = true }
}

t.test('the key source down: a cached key keeps verifying; another closes 1013 (HTTP 503), not 4001', async t => {
  for (const [outage, start] of Object.entries(OUTAGES)) {
    t.test(outage, async t => {
      const s = await setup(t)
      const cachedToken = s.idp.issue('ada')
      const uncachedToken = s.idp.issue('ada', { alg: 'ES256' })
      const warm = s.open(cachedToken)
      t.match(await warm.message(1), ESTABLISHED, 'the RS256 key is fetched (the ES256 one is not cached)')
      warm.ws.close()

      await start(s.idp)
      const cached = s.open(cachedToken)
      t.match(await cached.message(1), ESTABLISHED, 'a token whose key is cached')
      t.same(await s.open(uncachedToken).closed, TRY_LATER, 'a token whose key is not cached')
      t.equal(await s.open(uncachedToken, '/ws-http').refusedStatus, 503, 'with reject: http')
      const cachedHttp = s.open(cachedToken, '/ws-http')
      t.match(await cachedHttp.message(1), ESTABLISHED)
      t.same(s.app.wsAuth.stats().failures, { 1013: 2 })
      // Written before the close (bounded wait: a wrong close has no such line to wait for).
      const logged = await s.logs.waitFor(r => r.failure === 'try_again_later', 5000)
      t.match(logged, { msg: 'websocket authentication failed', code: 1013, err: { message: String } }, 'logged with the error')
      const err = logged.err as { code?: string, message?: string }
      t.comment(`${outage}: logged ${err.code ?? ''} ${err.message ?? ''}`)
      cached.ws.close()
      cachedHttp.ws.close()
    })
  }
})

t.test('a kid the JWKS does not have, or an issuer get-jwks may not ask: 4001 (HTTP 401)', async t => {
  t.test('unknown kid', async t => {
    const s = await setup(t)
    const kid = s.idp.addKey('RS256')
    const token = s.idp.issue('ada', { kid })
    s.idp.removeKey(kid)
    t.same(await s.open(token).closed, INVALID)
    t.equal(await s.open(token, '/ws-http').refusedStatus, 401)
  })
  t.test('keys by the token\'s iss, with issuersWhitelist', async t => {
    const s = await setup(t, { byIssuer: true })
    const ok = s.open(s.idp.issue('ada'))
    t.match(await ok.message(1), ESTABLISHED, 'the allowed issuer')
    ok.ws.close()
    const asked = s.idp.requests.jwks
    t.same(await s.open(s.idp.issue('ada', { iss: 'http://127.0.0.1:9/' })).closed, INVALID, 'another issuer')
    t.equal(s.idp.requests.jwks, asked, 'whose keys were not fetched from anywhere')
  })
})

/** authTimeout in the tests of a key lookup that hangs, on the library's clock (the test moves it). */
const AUTH_TIMEOUT = 1000

t.test('a JWKS that hangs: the handshake ends at authTimeout with 4008 (HTTP 408)', async t => {
  const time = manualClock(t)
  const s = await setup(t, { auth: { authTimeout: AUTH_TIMEOUT, sources: ['query', 'message'] } })
  s.idp.fault = 'hang'
  const arrived = s.idp.nextJwksRequest()
  const c = s.open(s.idp.issue('ada'))
  await arrived
  await time.tick(AUTH_TIMEOUT - 1)
  // The server counts a timeout when its timer fires, before the close frame is on its way.
  t.same(s.app.wsAuth.stats().failures, {}, 'nothing timed out a ms before authTimeout')
  await time.tick(1)
  t.same(await c.closed, TIMED_OUT)
  const http = s.open(s.idp.issue('bob'), '/ws-http')
  await s.lookedUp(2)
  await time.tick(AUTH_TIMEOUT)
  t.equal(await http.refusedStatus, 408, 'with reject: http (the same pending fetch)')
  const message = connectWith(s.url('/ws'), 'message', s.idp.issue('bob'))
  await s.lookedUp(3)
  await time.tick(AUTH_TIMEOUT)
  t.same(await message.closed, TIMED_OUT, 'a token in the first message too')
})

t.test('an in-band refresh with a key not cached while the key source is down closes 1013', async t => {
  const s = await setup(t)
  const c = s.open(s.idp.issue('ada'))
  t.match(await c.message(1), ESTABLISHED)
  await s.idp.stop()
  t.match(await answer(c, { type: 'auth', token: s.idp.issue('ada') }), { type: 'token_refreshed' }, 'a token of the cached key is refreshed')
  c.send({ type: 'auth', token: s.idp.issue('ada', { alg: 'ES256' }) })
  t.same(await c.closed, TRY_LATER, 'one of a key not cached: the socket closes 1013, the client backs off and keeps its token')
})

t.test('an in-band refresh whose key lookup hangs closes 4008 at authTimeout; the session does not wait for it', async t => {
  const time = manualClock(t)
  const s = await setup(t, { auth: { authTimeout: AUTH_TIMEOUT } })
  const c = s.open(s.idp.issue('ada'))
  t.match(await c.message(1), ESTABLISHED)
  s.idp.fault = 'hang'
  const arrived = s.idp.nextJwksRequest()
  c.send({ type: 'auth', token: s.idp.issue('ada', { alg: 'ES256' }) })
  await arrived
  await time.tick(AUTH_TIMEOUT - 1)
  t.same(s.app.wsAuth.stats().failures, {}, 'nothing timed out a ms before authTimeout')
  t.ok(await stillOpen(c), 'the session is open meanwhile')
  await time.tick(1)
  t.same(await c.closed, TIMED_OUT, 'bounded like a handshake (a fetch may hang for minutes)')
})

t.test('a custom verify throwing a SyntaxError of its own (a malformed token it parsed): 1011, not 1013', async t => {
  const { url } = await buildApp(t, {
    jwt: false,
    auth: { sources: ['query'], verify: (token) => JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) }
  })
  t.same(await connectWith(url('/ws'), 'query', 'aaaa.bbbb.cccc').closed, { code: 1011, reason: 'Internal error' },
    'a bug in verify, not a key source down: retrying with backoff would not help, but the client is told to back off, not to wait forever')
})

t.test('a custom verify with fast-jwt and get-jwks: its wrapped key errors are classified too', async t => {
  const idp = await startIdp(t)
  const getJwks = buildGetJwks({ providerDiscovery: true })
  const verifier = createVerifier({
    key: async ({ header }: { header: { kid?: string, alg?: string } }) => getJwks.getPublicKey({ domain: idp.issuer, kid: header.kid, alg: header.alg }),
    algorithms: ['RS256', 'ES256'],
    allowedIss: idp.issuer,
    allowedAud: 'fleet-console'
  })
  const { url } = await buildApp(t, { jwt: false, auth: { sources: ['query'], verify: (token) => verifier(token) } })
  const open = (token: string): Client => connectWith(url('/ws'), 'query', token)
  const ok = open(idp.issue('ada'))
  t.match(await ok.message(1), ESTABLISHED)
  ok.ws.close()
  const kid = idp.addKey('RS256')
  const unknown = idp.issue('ada', { kid })
  idp.removeKey(kid)
  t.same(await open(unknown).closed, INVALID, 'FAST_JWT_KEY_FETCHING_ERROR around JWK_NOT_FOUND: 4001')
  await idp.stop()
  t.same(await open(idp.issue('ada', { alg: 'ES256' })).closed, TRY_LATER, 'around a failed fetch: 1013')
})

t.test('a custom verify throwing KeySourceUnavailableError: 1013 (HTTP 503); the cause is logged, the token is not', async t => {
  const capture = logCapture()
  const cause = new Error('JWKS endpoint answered 502 Bad Gateway')
  const { url, sign } = await buildApp(t, {
    fastify: { logger: { level: 'info', stream: capture.stream } },
    auth: {
      sources: ['query'],
      verify: async () => { throw new KeySourceUnavailableError({ cause }) }
    },
    routes: (app) => {
      app.get('/ws', { websocket: true }, () => {})
      app.get('/ws-http', { websocket: true, wsAuth: { reject: 'http' } }, () => {})
    }
  })
  const token = sign({ sub: 'u1' })
  t.same(await connectWith(url('/ws'), 'query', token).closed, TRY_LATER)
  t.equal(await connectWith(url('/ws-http'), 'query', token).refusedStatus, 503, 'with reject: http')
  const record = await capture.waitFor(r => r.failure === 'try_again_later', 5000)
  t.match(record, { code: 1013 })
  const parts = [token, ...token.split('.')]
  t.same(capture.lines.filter(line => parts.some(part => line.includes(part))), [], 'no part of the token is logged')
  t.match(record, { msg: 'websocket authentication failed', err: { code: 'FST_WS_AUTH_KEY_SOURCE_UNAVAILABLE', stack: /caused by: Error: JWKS endpoint answered 502 Bad Gateway/ } },
    'the refusal\'s log line carries the error and its cause')
})
