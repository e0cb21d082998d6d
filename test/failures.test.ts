// Every row of the failure table, as a client sees it: the close code and reason with
// `reject: 'close'` (token in the query, and again in the first message), the HTTP status with
// `reject: 'http'`. Each refused client is followed by a good one on the same app: the setup is not
// what refused it, and the server keeps serving.
import { generateKeyPairSync } from 'node:crypto'
import t, { type Test } from 'tap'
import { createSigner } from 'fast-jwt'
import type { FastifyRequest } from 'fastify'
import { defaultLoadUser } from '../lib/index.ts'
import { isThenable } from '../lib/server/checks.ts'
import type { WsAuthClaims, WsAuthRouteSetting } from '../lib/types.ts'
import {
  SECRET, barrier, buildApp, connect, deferred, refusal, spyRoute, stillOpen,
  type BuildOptions, type Client, type Closed, type RouteSpy, type TestApp
} from './helpers/index.ts'
import { manualClock } from './helpers/clock.ts'

type Mode = 'close' | 'http' | 'message'

const now = () => Math.floor(Date.now() / 1000)
const b64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')
const verifyWithJwt = (token: string, request: FastifyRequest) => request.server.jwt.verify<WsAuthClaims>(token)

interface Row {
  /** Build options; `auth.sources` and `auth.reject` are set by the mode. */
  build?: BuildOptions
  /** The route pattern. @default '/ws' */
  path?: string
  route?: WsAuthRouteSetting
  /** The path the refused client connects to. @default path */
  target?: string
  /** The path the good client connects to. @default target */
  goodTarget?: string
  /** The token of the refused client (`undefined`: none). */
  bad: (app: TestApp) => string | undefined
  /** A token the same app accepts. @default a plain token for sub u1 */
  good?: (app: TestApp) => string
  close: { code: number, reason: string | RegExp }
  /** The status with `reject: 'http'`. */
  status: number
}

interface Served extends TestApp {
  spy: RouteSpy
  open (token: string | undefined, target: string): Client
}

async function serve (t: Test, row: Row, mode: Mode): Promise<Served> {
  // The library's timers stand still: no client of a row can meet authTimeout (4008) by being slow.
  manualClock(t)
  let spy: RouteSpy | undefined
  const app = await buildApp(t, {
    ...row.build,
    auth: { ...row.build?.auth, sources: mode === 'message' ? ['message'] : ['query'], reject: mode === 'http' ? 'http' : 'close' },
    routes: (app) => { spy = spyRoute(app, row.path ?? '/ws', row.route) }
  })
  const open = (token: string | undefined, target: string): Client => {
    if (mode !== 'message') return connect(app.url(target + (token === undefined ? '' : '?token=' + encodeURIComponent(token))))
    const client = connect(app.url(target))
    client.opened.then(() => client.send({ type: 'auth', token }), () => {})
    return client
  }
  return { ...app, spy: spy!, open }
}

/** A good client on the same app reaches the handler and gets `connection_established`. */
async function accepted (t: Test, served: Served, token: string, target: string): Promise<void> {
  const calls = served.spy.calls
  const client = served.open(token, target)
  t.match(await client.message(1), { type: 'connection_established' }, 'a good token on the same app is accepted')
  t.equal(served.spy.calls, calls + 1, 'the good client reached the handler')
  client.ws.close()
  await client.closed
}

const noToken = () => undefined

/** Declares one test per row: `reject: 'close'` (query), the first message (when a token is involved), `reject: 'http'`. */
function row (name: string, r: Row): void {
  // Without a token there is no first message to send: that case is the auth timeout, below.
  const modes: Mode[] = r.bad === noToken ? ['close', 'http'] : ['close', 'message', 'http']
  t.test(name, async t => {
    for (const mode of modes) {
      t.test(mode === 'http' ? 'reject: http' : mode === 'message' ? 'token in the first message' : 'reject: close', async t => {
        const served = await serve(t, r, mode)
        const target = r.target ?? r.path ?? '/ws'
        const client = served.open(r.bad(served), target)
        if (mode === 'http') {
          t.equal(await client.refusedStatus, r.status, 'HTTP status of the refused upgrade')
          t.equal((await client.closed).code, 1006, 'the socket never opened')
        } else {
          const closed = await refusal(client) as Closed
          t.equal(closed.code, r.close.code, 'close code')
          if (typeof r.close.reason === 'string') t.equal(closed.reason, r.close.reason, 'close reason')
          else t.match(closed.reason, r.close.reason, 'close reason')
          t.same(client.messages, [], 'no connection_established, no message')
        }
        t.equal(served.spy.calls, 0, 'the route handler never ran')
        const good = r.good?.(served) ?? served.sign({ sub: 'u1' })
        await accepted(t, served, good, r.goodTarget ?? target)
      })
    }
  })
}

row('no token -> 4001 No token provided / 401', {
  bad: noToken,
  close: { code: 4001, reason: 'No token provided' },
  status: 401
})

row('malformed token -> 4001 Invalid token / 401', {
  bad: () => 'not-a-jwt',
  close: { code: 4001, reason: 'Invalid token' },
  status: 401
})

row('malformed token with three segments -> 4001 Invalid token / 401', {
  bad: () => 'aaa.bbb.ccc',
  close: { code: 4001, reason: 'Invalid token' },
  status: 401
})

row('bad signature -> 4001 Invalid token / 401', {
  bad: () => createSigner({ key: 'another-secret-that-is-long-enough-for-hs256' })({ sub: 'u1' }),
  close: { code: 4001, reason: 'Invalid token' },
  status: 401
})

row('alg: none -> 4001 Invalid token / 401', {
  bad: () => b64url({ alg: 'none', typ: 'JWT' }) + '.' + b64url({ sub: 'u1', iat: now() }) + '.',
  close: { code: 4001, reason: 'Invalid token' },
  status: 401
})

const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()

row('wrong algorithm (ES256 token, HMAC verifier) -> 4001 Invalid token / 401', {
  bad: () => createSigner({ key: ecKey, algorithm: 'ES256' })({ sub: 'u1' }),
  close: { code: 4001, reason: 'Invalid token' },
  status: 401
})

row('wrong algorithm (HS512 with the right secret, verifier allows HS256 only) -> 4001 Invalid token / 401', {
  build: { jwt: { verify: { algorithms: ['HS256'] } } },
  bad: () => createSigner({ key: SECRET, algorithm: 'HS512' })({ sub: 'u1' }),
  close: { code: 4001, reason: 'Invalid token' },
  status: 401
})

row('nbf in the future -> 4001 Invalid token / 401 (not 1011 / 500)', {
  bad: (app) => app.sign({ sub: 'u1', nbf: now() + 3600 }),
  close: { code: 4001, reason: 'Invalid token' },
  status: 401
})

const issAud = { jwt: { verify: { allowedIss: 'https://issuer.test', allowedAud: 'ws-api' } } }
const goodIssAud = (app: TestApp) => app.sign({ sub: 'u1', iss: 'https://issuer.test', aud: 'ws-api' })

row('wrong iss (allowedIss) -> 4001 Invalid token / 401', {
  build: issAud,
  bad: (app) => app.sign({ sub: 'u1', iss: 'https://evil.test', aud: 'ws-api' }),
  good: goodIssAud,
  close: { code: 4001, reason: 'Invalid token' },
  status: 401
})

row('wrong aud (allowedAud) -> 4001 Invalid token / 401', {
  build: issAud,
  bad: (app) => app.sign({ sub: 'u1', iss: 'https://issuer.test', aud: 'other-api' }),
  good: goodIssAud,
  close: { code: 4001, reason: 'Invalid token' },
  status: 401
})

row('expired token -> 4001 with "expired" in the reason / 401', {
  bad: (app) => app.sign({ sub: 'u1', iat: now() - 120, exp: now() - 60 }),
  close: { code: 4001, reason: /expired/i },
  status: 401
})

const loadUser = async (claims: WsAuthClaims) => {
  if (claims.sub === 'ghost') return null
  if (claims.sub === 'gone') return undefined
  if (claims.sub === 'boom') throw new Error('user store unreachable: password=hunter2')
  return defaultLoadUser(claims)
}

row('loadUser returns null -> 4002 / 401', {
  build: { auth: { loadUser } },
  bad: (app) => app.sign({ sub: 'ghost' }),
  close: { code: 4002, reason: 'User not found or inactive' },
  status: 401
})

row('loadUser returns undefined -> 4002 / 401', {
  build: { auth: { loadUser } },
  bad: (app) => app.sign({ sub: 'gone' }),
  close: { code: 4002, reason: 'User not found or inactive' },
  status: 401
})

row('role missing -> 4003 Forbidden / 403', {
  route: { roles: ['admin', 'manager'] },
  bad: (app) => app.sign({ sub: 'u1', roles: ['viewer'] }),
  good: (app) => app.sign({ sub: 'u1', roles: ['viewer', 'manager'] }),
  close: { code: 4003, reason: 'Forbidden' },
  status: 403
})

row('permission missing (all are needed) -> 4003 Forbidden / 403', {
  route: { permissions: ['journal.read', 'journal.write'] },
  bad: (app) => app.sign({ sub: 'u1', permissions: ['journal.read'] }),
  good: (app) => app.sign({ sub: 'u1', permissions: ['journal.write', 'journal.read'] }),
  close: { code: 4003, reason: 'Forbidden' },
  status: 403
})

row('roles and permissions both given, role held but permission missing -> 4003 / 403', {
  route: { roles: ['admin'], permissions: ['journal.read'] },
  bad: (app) => app.sign({ sub: 'u1', roles: ['admin'], permissions: [] }),
  good: (app) => app.sign({ sub: 'u1', roles: ['admin'], permissions: ['journal.read'] }),
  close: { code: 4003, reason: 'Forbidden' },
  status: 403
})

row('roles and permissions both given, permission held but role missing -> 4003 / 403', {
  route: { roles: ['admin'], permissions: ['journal.read'] },
  bad: (app) => app.sign({ sub: 'u1', roles: ['viewer'], permissions: ['journal.read'] }),
  good: (app) => app.sign({ sub: 'u1', roles: ['admin'], permissions: ['journal.read'] }),
  close: { code: 4003, reason: 'Forbidden' },
  status: 403
})

/** Ownership by route params: `mine` is the user's, `missing` does not exist, the rest belong to others. */
const authorize = (request: FastifyRequest, user: unknown) => {
  const { id } = request.params as { id: string }
  if (id === 'explode') throw new Error('ownership query failed: SELECT * FROM entries')
  if (id === 'missing') return 'not_found' as const
  return id === 'mine' && (user as { id?: unknown }).id === 'u1'
}

row('authorize returns false (sees request.params) -> 4003 Forbidden / 403', {
  path: '/ws/entries/:id',
  route: { authorize },
  target: '/ws/entries/theirs',
  goodTarget: '/ws/entries/mine',
  bad: (app) => app.sign({ sub: 'u1' }),
  close: { code: 4003, reason: 'Forbidden' },
  status: 403
})

row('authorize returns "not_found" -> 4004 Not found / 404', {
  path: '/ws/entries/:id',
  route: { authorize },
  target: '/ws/entries/missing',
  goodTarget: '/ws/entries/mine',
  bad: (app) => app.sign({ sub: 'u1' }),
  close: { code: 4004, reason: 'Not found' },
  status: 404
})

row('loadUser throws -> 1011 with a generic reason / 500, then the server keeps serving', {
  build: { auth: { loadUser } },
  bad: (app) => app.sign({ sub: 'boom' }),
  close: { code: 1011, reason: 'Internal error' },
  status: 500
})

row('authorize throws -> 1011 with a generic reason / 500, then the server keeps serving', {
  path: '/ws/entries/:id',
  route: { authorize },
  target: '/ws/entries/explode',
  goodTarget: '/ws/entries/mine',
  bad: (app) => app.sign({ sub: 'u1' }),
  close: { code: 1011, reason: 'Internal error' },
  status: 500
})

row('a custom verify throws -> 1011 with a generic reason / 500, then the server keeps serving', {
  build: {
    auth: {
      verify: (token, request) => {
        if (token === 'explode') throw new Error('auth service unreachable at 10.0.0.7')
        return verifyWithJwt(token, request)
      }
    }
  },
  bad: () => 'explode',
  close: { code: 1011, reason: 'Internal error' },
  status: 500
})

row('a custom verify rejects with a non-Error -> 1011 / 500', {
  build: {
    auth: {
      verify: async (token, request) => {
        // eslint-disable-next-line prefer-promise-reject-errors
        if (token === 'explode') return Promise.reject('raw string rejection')
        return verifyWithJwt(token, request)
      }
    }
  },
  bad: () => 'explode',
  close: { code: 1011, reason: 'Internal error' },
  status: 500
})

// Failures of the first-message phase: they exist only with reject: 'close' and the message source.

/**
 * Whether the socket is still open once the server has read everything sent before: the server
 * answers a ping only while open, so a close it sent arrives first.
 */
// The auth timeout runs on the manual clock: a good client cannot miss it, and a silent one is
// closed exactly when the clock reaches it.

t.test('no auth message within authTimeout -> 4008 Authentication timeout, not a ms before', async t => {
  const time = manualClock(t)
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: { sources: ['message'], authTimeout: 100 },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  const client = connect(url('/ws'))
  await client.opened
  await time.tick(99)
  t.equal(await stillOpen(client), true, 'open at 99 ms')
  await time.tick(1)
  t.same(await refusal(client), { code: 4008, reason: 'Authentication timeout' })
  t.same(client.messages, [])
  t.equal(spy.calls, 0, 'the route handler never ran')

  const good = connect(url('/ws'))
  await good.opened
  await time.tick(99)
  good.send({ type: 'auth', token: sign({ sub: 'u1' }) })
  t.match(await good.message(1), { type: 'connection_established' }, 'an auth message in time is accepted')
  await time.tick(1000)
  t.equal(await stillOpen(good), true, 'and its auth timer is gone')
  good.ws.close()
  await good.closed
})

t.test('route-level authTimeout overrides the plugin option', async t => {
  const time = manualClock(t)
  let spy!: RouteSpy
  const { url } = await buildApp(t, {
    auth: { sources: ['message'], authTimeout: 60_000 },
    routes: (app) => { spy = spyRoute(app, '/ws', { authTimeout: 100 }) }
  })
  const client = connect(url('/ws'))
  await client.opened
  await time.tick(99)
  t.equal(await stillOpen(client), true, 'open at 99 ms')
  await time.tick(1)
  t.same(await refusal(client), { code: 4008, reason: 'Authentication timeout' }, 'closed at the route\'s 100 ms')
  t.equal(spy.calls, 0)
})

t.test('a first message that is not a well-formed auth message -> 4001 Invalid auth message', async t => {
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: { sources: ['message'] },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  const token = sign({ sub: 'u1' })
  const firstMessages = [
    'hello',
    '{',
    'null',
    '[]',
    '"auth"',
    '42',
    token,
    JSON.stringify({ token }),
    JSON.stringify({ type: 'login', token }),
    JSON.stringify({ type: 'auth' }),
    JSON.stringify({ type: 'auth', token: '' }),
    JSON.stringify({ type: 'auth', token: 42 }),
    JSON.stringify({ type: 'auth', token: [token] }),
    JSON.stringify([{ type: 'auth', token }])
  ]
  for (const first of firstMessages) {
    const client = connect(url('/ws'))
    await client.opened
    client.send(first)
    t.same(await refusal(client), { code: 4001, reason: 'Invalid auth message' }, `first message ${JSON.stringify(first).slice(0, 40)}`)
    t.same(client.messages, [])
  }
  t.equal(spy.calls, 0, 'the route handler never ran')
})

t.test('a binary first message -> 1008 Policy violation, even with a valid token in it', async t => {
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: { sources: ['message'] },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  const client = connect(url('/ws'))
  await client.opened
  client.ws.send(Buffer.from(JSON.stringify({ type: 'auth', token: sign({ sub: 'u1' }) })), { binary: true })
  t.same(await refusal(client), { code: 1008, reason: 'Policy violation' })
  t.same(client.messages, [])
  t.equal(spy.calls, 0, 'the route handler never ran')
})

t.test('a first message over maxAuthMessageBytes -> 1009 Message too big; exactly at the limit is read', async t => {
  const limit = 512
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: { sources: ['message'], maxAuthMessageBytes: limit },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  const message = JSON.stringify({ type: 'auth', token: sign({ sub: 'u1' }) })
  t.ok(message.length < limit, 'the auth message fits, padding makes the difference')
  const padded = (bytes: number) => message + ' '.repeat(bytes - message.length)

  const over = connect(url('/ws'))
  await over.opened
  over.send(padded(limit + 1))
  t.same(await refusal(over), { code: 1009, reason: 'Message too big' }, `${limit + 1} bytes`)
  t.same(over.messages, [])
  t.equal(spy.calls, 0, 'the route handler never ran')

  const multibyte = connect(url('/ws'))
  await multibyte.opened
  // Fewer characters than the limit, more bytes: the limit is in bytes.
  const text = JSON.stringify({ type: 'auth', token: 'é'.repeat(limit / 2) })
  t.ok(text.length <= limit && Buffer.byteLength(text) > limit, 'under the limit in characters, over it in bytes')
  multibyte.send(text)
  t.same(await refusal(multibyte), { code: 1009, reason: 'Message too big' }, 'counted in bytes, not characters')

  const atLimit = connect(url('/ws'))
  await atLimit.opened
  atLimit.send(padded(limit))
  t.match(await atLimit.message(1), { type: 'connection_established' }, `exactly ${limit} bytes is accepted`)
  t.equal(spy.calls, 1)
  atLimit.ws.close()
  await atLimit.closed
})

t.test('more than maxPendingMessages messages while authenticating -> 1008 Policy violation', async t => {
  const verifying: Array<{ resolve: () => void }> = []
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: {
      sources: ['message'],
      maxPendingMessages: 3,
      // Verification waits until the test lets it go: the messages below arrive while it runs.
      verify: async (token, request) => {
        const gate = deferred()
        verifying.push(gate)
        await gate.promise
        return verifyWithJwt(token, request)
      }
    },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  t.teardown(() => { for (const gate of verifying) gate.resolve() })

  const flood = connect(url('/ws'))
  await flood.opened
  flood.send({ type: 'auth', token: sign({ sub: 'u1' }) })
  for (let i = 0; i < 4; i++) flood.send('m' + i)
  t.same(await refusal(flood), { code: 1008, reason: 'Policy violation' })
  t.equal(verifying.length, 1, 'verification was still in progress')
  verifying[0].resolve()
  t.same(flood.messages, [])

  // At the limit: held, then delivered in order once verification succeeds.
  const held = connect(url('/ws'))
  await held.opened
  held.send({ type: 'auth', token: sign({ sub: 'u2' }) })
  for (let i = 0; i < 3; i++) held.send('m' + i)
  await barrier(held)
  t.equal(verifying.length, 2)
  verifying[1].resolve()
  t.match(await held.message(1), { type: 'connection_established', user: { id: 'u2' } })
  await held.message(4)
  t.same(held.messages.slice(1), ['m0', 'm1', 'm2'], 'held messages reach the handler in order')
  t.equal(spy.calls, 1, 'only the client within the limit reached the handler (the late verify of the flooder did not)')
  t.same(spy.users.map(u => (u as { id: unknown }).id), ['u2'])
  held.ws.close()
  await held.closed
})

t.test('more than maxPendingBytes while authenticating -> 1008 Policy violation', async t => {
  const verifying: Array<{ resolve: () => void }> = []
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: {
      sources: ['message'],
      maxPendingBytes: 64,
      verify: async (token, request) => {
        const gate = deferred()
        verifying.push(gate)
        await gate.promise
        return verifyWithJwt(token, request)
      }
    },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  t.teardown(() => { for (const gate of verifying) gate.resolve() })
  const client = connect(url('/ws'))
  await client.opened
  client.send({ type: 'auth', token: sign({ sub: 'u1' }) })
  client.send('x'.repeat(65))
  t.same(await refusal(client), { code: 1008, reason: 'Policy violation' })
  verifying[0].resolve()
  t.equal(spy.calls, 0, 'the route handler never ran')
})

t.test('a frame over the pre-authentication frame cap closes with a row of the table, and is audited', async t => {
  const failures: unknown[] = []
  const entered = deferred()
  const gate = deferred()
  let spy!: RouteSpy
  const { app, url, sign } = await buildApp(t, {
    auth: {
      sources: ['message'],
      maxAuthMessageBytes: 256,
      maxPendingBytes: 1024,
      onAuthFailure: (attempt) => { failures.push(attempt.failure) },
      // Tokens of sub "slow" wait for the test: the frame below arrives while verification runs.
      verify: async (token, request) => {
        const claims = verifyWithJwt(token, request)
        if (claims.sub === 'slow') {
          entered.resolve()
          await gate.promise
        }
        return claims
      }
    },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  t.teardown(() => gate.resolve())

  const control = connect(url('/ws'))
  await control.opened
  control.send(JSON.stringify({ type: 'auth', token: 'x'.repeat(500) }))
  t.same(await refusal(control), { code: 1009, reason: 'Message too big' }, 'over maxAuthMessageBytes, under the frame cap')
  t.same(failures, ['message_too_big'], 'audited')

  const first = connect(url('/ws'))
  await first.opened
  first.send(JSON.stringify({ type: 'auth', token: 'x'.repeat(4096) }))
  const firstClosed = await refusal(first) as Closed
  t.equal(firstClosed.code, 1009, 'a first frame over the cap: 1009')
  t.same(firstClosed, { code: 1009, reason: 'Message too big' }, 'with the table\'s reason')

  const held = connect(url('/ws'))
  await held.opened
  held.send({ type: 'auth', token: sign({ sub: 'slow' }) })
  await entered.promise
  // The server side of `held` (ws tracks it from the upgrade on): verification is let go as soon
  // as ws reports the oversized frame, i.e. while that socket is closing.
  const serverSide = [...app.websocketServer.clients].at(-1)!
  let reported = false
  serverSide.once('error', () => { reported = true; gate.resolve() })
  held.send('y'.repeat(4096))
  // While authenticating, a frame over the cap is refused by the plugin itself (the cap is over
  // maxAuthMessageBytes): 1009 with the table's reason, logged and audited as message_too_big.
  t.same(await refusal(held), { code: 1009, reason: 'Message too big' }, 'a held frame over the cap')
  t.ok(reported, 'verification was let go while the server socket was closing')

  // Then a good client: only it reaches the handler.
  const good = connect(url('/ws'))
  await good.opened
  good.send({ type: 'auth', token: sign({ sub: 'u1' }) })
  t.match(await good.message(1), { type: 'connection_established' })
  good.ws.close()
  await good.closed
  t.same(held.messages, [], 'no connection_established for the closing client')
  t.same(failures, ['message_too_big', 'message_too_big', 'message_too_big'], 'every refusal logged and audited')
  t.same(spy.users.map(u => (u as { id: unknown }).id), ['u1'], 'only the good client reached the handler')
})

t.test('publicUser returning what JSON cannot encode (a BigInt) -> 1011 Internal error, handler never runs', async t => {
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: { publicUser: (user) => ({ id: (user as { id: string }).id, balance: 10n }) },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  t.same(await refusal(c), { code: 1011, reason: 'Internal error' })
  t.equal(spy.calls, 0)
})

t.test('publicUser throwing or rejecting -> 1011 Internal error, handler never runs; an async publicUser is awaited', async t => {
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: {
      publicUser: (user) => {
        const id = (user as { id: string }).id
        if (id === 'throws') throw new Error('publicUser failed')
        if (id === 'rejects') return Promise.reject(new Error('publicUser failed later'))
        return Promise.resolve({ id, shown: 'async' })
      }
    },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  for (const sub of ['throws', 'rejects']) {
    t.same(await refusal(connect(url('/ws?token=' + sign({ sub })))), { code: 1011, reason: 'Internal error' }, sub)
  }
  t.equal(spy.calls, 0)
  const good = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  t.match(await good.message(1), { type: 'connection_established', user: { id: 'u1', shown: 'async' } })
  t.equal(spy.calls, 1)
  good.ws.close()
})

t.test('a hook\'s answer is awaited only when it is a promise: a `then` that throws when read makes it a plain value', async t => {
  let reads = 0
  const hostile = { get then () { reads++; throw new Error('no') } }
  t.equal(isThenable(hostile), false)
  t.equal(reads, 1, '`then` is read once')
  t.equal(isThenable(Promise.resolve()), true)
  t.equal(isThenable({ then: () => {} }), true, 'any thenable')
  t.equal(isThenable(null), false)
})
