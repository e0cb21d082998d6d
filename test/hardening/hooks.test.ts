// Failing hooks. Each of verify, loadUser, authorize, the allowedOrigins predicate and publicUser
// fails in four ways (throws, rejects with an Error, rejects with undefined, returns a thenable that
// rejects): the client sees 1011 with the table's reason exactly, the error is logged at error level
// with the token scrubbed, no unhandled rejection, and the server keeps serving.
// Then how a custom verify says "bad token" (4001) as opposed to "my service is down" (1011).
import t, { type Test } from 'tap'
import type { FastifyRequest } from 'fastify'
import { closeCodes, InvalidTokenError, TokenExpiredError } from '../../lib/index.ts'
import type { WsAuthClaims, WsAuthPluginOptions, WsAuthUser } from '../../lib/types.ts'
import { buildApp, connect, logCapture, refusal, spyRoute, type Client, type Closed, type RouteSpy } from '../helpers/index.ts'
import { leaks, settle, trackRejections } from './helpers.ts'

const ERROR = 50
const WARN = 40
const INTERNAL: Closed = { code: closeCodes.internal_error.code, reason: closeCodes.internal_error.reason }

const MODES = ['throws', 'rejects with an Error', 'rejects with undefined', 'returns a thenable that rejects'] as const
type Mode = typeof MODES[number]
const HOOKS = ['verify', 'loadUser', 'authorize', 'allowedOrigins', 'publicUser'] as const
type Hook = typeof HOOKS[number]

const rejections = trackRejections(t)
const verifyWithJwt = (token: string, request: FastifyRequest) => request.server.jwt.verify<WsAuthClaims>(token)

/** Fails the way `mode` says, with a message that quotes `secret` (which the log must not show). */
function fail (mode: Mode, secret: string): never {
  const error = new Error(`hook failed while handling ${secret}`)
  switch (mode) {
    case 'throws': throw error
    // The hooks below return what a failing async hook returns; the cast only satisfies `never`.
    case 'rejects with an Error': return Promise.reject(error) as never
    // eslint-disable-next-line prefer-promise-reject-errors
    case 'rejects with undefined': return Promise.reject(undefined) as never
    case 'returns a thenable that rejects': return { then: (_: unknown, reject: (e: unknown) => void) => reject(error) } as never
  }
}

interface Harness {
  spy: RouteSpy
  lines: string[]
  records: () => Array<Record<string, unknown>>
  url (path: string): string
  sign (payload: object): string
  /** Opens a client with `token` in the query (and an Origin header). */
  open (token: string): Client
  /** Whether the next handshake's hook fails, and how. */
  failing: { mode: Mode | null, token: string }
}

async function harness (t: Test, hook: Hook): Promise<Harness> {
  const failing: Harness['failing'] = { mode: null, token: '' }
  /** What the hook returns: `ok()`, or the failure of the current mode. */
  const orFail = <T>(ok: () => T, secret = failing.token): T => failing.mode !== null ? fail(failing.mode, secret) : ok()
  const auth: WsAuthPluginOptions = { sources: ['query'] }
  if (hook === 'verify') auth.verify = (token, request) => orFail(() => verifyWithJwt(token, request), token)
  if (hook === 'loadUser') auth.loadUser = (claims) => orFail(() => ({ id: claims.sub as string, roles: [], permissions: [] }) as WsAuthUser)
  // An error quoting the request URL, as errors often do: the URL carries the token.
  if (hook === 'allowedOrigins') auth.allowedOrigins = (_origin, request) => orFail(() => true, request.url)
  if (hook === 'publicUser') auth.publicUser = (user) => orFail(() => ({ id: (user as { id?: unknown }).id }))
  const capture = logCapture()
  let spy!: RouteSpy
  const app = await buildApp(t, {
    auth,
    fastify: { logger: { level: 'trace', stream: capture.stream } },
    routes: (app) => {
      spy = spyRoute(app, '/ws', hook === 'authorize' ? { authorize: () => orFail(() => true) } : undefined)
    }
  })
  return {
    spy,
    lines: capture.lines,
    records: capture.records,
    url: app.url,
    sign: app.sign,
    open: (token) => connect(app.url('/ws?token=' + token), undefined, { headers: { origin: 'http://app.test' } }),
    failing
  }
}

async function getsIn (t: Test, h: Harness, what: string): Promise<void> {
  const calls = h.spy.calls
  h.failing.mode = null
  const client = h.open(h.sign({ sub: 'good' }))
  t.match(await refusal(client), { message: { type: 'connection_established', user: { id: 'good' } } }, `${what}: a good client still gets in`)
  t.equal(h.spy.calls, calls + 1, `${what}: the good client reached the handler`)
  client.ws.close()
  await client.closed
}

for (const hook of HOOKS) {
  t.test(`${hook} failing`, async t => {
    const h = await harness(t, hook)
    await getsIn(t, h, 'before any failure')
    for (const mode of MODES) {
      const extra = {}
      const what = `${hook} ${mode}`
      const token = h.sign({ sub: 'u1', n: MODES.indexOf(mode) })
      h.failing.mode = mode
      h.failing.token = token
      const errorsBefore = h.records().filter(r => r.level === ERROR).length
      const rejectionsBefore = rejections.length
      const calls = h.spy.calls
      const client = h.open(token)
      const verdict = await refusal(client)
      if ('message' in verdict) {
        client.ws.close()
        await client.closed
      }
      t.same(verdict, INTERNAL, `${what}: 1011 with the table's reason, exactly`, extra)
      t.equal(h.spy.calls, calls, `${what}: the handler never ran`, extra)
      await settle()
      t.same(rejections.slice(rejectionsBefore), [], `${what}: no unhandled rejection`, extra)
      const errors = h.records().filter(r => r.level === ERROR).slice(errorsBefore)
      t.equal(errors.length, 1, `${what}: one error line`, extra)
      t.match(errors[0], { msg: 'websocket authentication error', failure: 'internal_error', code: 1011, route: '/ws' },
        `${what}: the error line names the failure`, extra)
      if (mode !== 'rejects with undefined') {
        t.match(errors[0]?.err, { message: /^hook failed while handling / }, `${what}: the error is logged`, extra)
      }
      const leakExtra = extra
      if (mode !== 'rejects with undefined') {
        t.match(errors[0]?.err, { message: /\[REDACTED\]/ }, `${what}: the token in the error is replaced by [REDACTED]`, leakExtra)
      }
      t.same(leaks(h.lines, [token]), [], `${what}: no log line carries the token`, leakExtra)
      await getsIn(t, h, what)
    }
  })
}

t.test('an async allowedOrigins predicate that says no is obeyed', async t => {
  let spy!: RouteSpy
  const app = await buildApp(t, {
    auth: { allowedOrigins: (async (origin: string) => origin === 'http://app.test') as unknown as (origin: string) => boolean },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  const token = app.sign({ sub: 'u1' })
  const client = connect(app.url('/ws?token=' + token), undefined, { headers: { origin: 'http://evil.test' } })
  const verdict = await refusal(client)
  if ('message' in verdict) client.ws.close()
  t.same(verdict, { code: 4003, reason: 'Forbidden' }, 'a disallowed Origin: 4003')
  t.equal(spy.calls, 0, 'the handler never ran')
})

t.test('a custom verify says "bad token" (4001) or "my service is down" (1011)', async t => {
  const capture = logCapture()
  const rejectionsBefore = rejections.length
  let spy!: RouteSpy
  const answers: Record<string, () => unknown> = {
    'returns null': () => null,
    'returns undefined': () => undefined,
    'returns false': () => false,
    'returns true': () => true,
    'returns a string': () => 'claims',
    'returns an array': () => [{ sub: 'u1' }],
    'throws InvalidTokenError': () => { throw new InvalidTokenError() },
    'rejects with InvalidTokenError': () => Promise.reject(new InvalidTokenError()),
    'throws TokenExpiredError': () => { throw new TokenExpiredError() },
    'throws an error coded FAST_JWT_INVALID_SIGNATURE': () => { throw Object.assign(new Error('bad signature'), { code: 'FAST_JWT_INVALID_SIGNATURE' }) },
    'throws an error coded FST_JWT_BAD_REQUEST': () => { throw Object.assign(new Error('bad request'), { code: 'FST_JWT_BAD_REQUEST' }) },
    'throws Error("service down")': () => { throw new Error('auth service down') },
    'throws an error coded ECONNREFUSED': () => { throw Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:443'), { code: 'ECONNREFUSED' }) },
    'throws a TypeError (a bug in verify)': () => { throw new TypeError('Cannot read properties of undefined') },
    // eslint-disable-next-line prefer-promise-reject-errors
    'rejects with a string': () => Promise.reject('down'),
    // eslint-disable-next-line prefer-promise-reject-errors
    'rejects with null': () => Promise.reject(null),
    'rejects with an object coded FAST_JWT_MALFORMED': () => Promise.reject(Object.assign(Object.create(null), { code: 'FAST_JWT_MALFORMED' })),
    'returns a thenable that rejects': () => ({ then: (_: unknown, reject: (e: unknown) => void) => reject(new Error('down')) })
  }
  const expected: Record<string, Closed> = {
    'returns null': { code: 4001, reason: 'Invalid token' },
    'returns undefined': { code: 4001, reason: 'Invalid token' },
    'returns false': { code: 4001, reason: 'Invalid token' },
    'returns true': { code: 4001, reason: 'Invalid token' },
    'returns a string': { code: 4001, reason: 'Invalid token' },
    'returns an array': { code: 4001, reason: 'Invalid token' },
    'throws InvalidTokenError': { code: 4001, reason: 'Invalid token' },
    'rejects with InvalidTokenError': { code: 4001, reason: 'Invalid token' },
    'throws TokenExpiredError': { code: 4001, reason: 'Token expired' },
    'throws an error coded FAST_JWT_INVALID_SIGNATURE': { code: 4001, reason: 'Invalid token' },
    'throws an error coded FST_JWT_BAD_REQUEST': { code: 4001, reason: 'Invalid token' },
    'throws Error("service down")': INTERNAL,
    'throws an error coded ECONNREFUSED': INTERNAL,
    'throws a TypeError (a bug in verify)': INTERNAL,
    'rejects with a string': INTERNAL,
    'rejects with null': INTERNAL,
    'rejects with an object coded FAST_JWT_MALFORMED': { code: 4001, reason: 'Invalid token' },
    'returns a thenable that rejects': INTERNAL
  }
  const app = await buildApp(t, {
    fastify: { logger: { level: 'info', stream: capture.stream } },
    auth: {
      verify: (token, request) => {
        const answer = answers[token]
        return (answer === undefined ? verifyWithJwt(token, request) : answer()) as WsAuthClaims
      }
    },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  for (const [name, answer] of Object.entries(expected)) {
    const before = capture.records().length
    const client = connect(app.url('/ws?token=' + encodeURIComponent(name)))
    t.same(await refusal(client), answer, `verify ${name}: ${answer.code} ${answer.reason}`)
    const level = capture.records().slice(before).find(r => r.failure !== undefined)?.level
    t.equal(level, answer.code === 1011 ? ERROR : WARN, `verify ${name}: logged at ${answer.code === 1011 ? 'error' : 'warn'}`)
    const good = connect(app.url('/ws?token=' + app.sign({ sub: 'u1' })))
    t.match(await refusal(good), { message: { type: 'connection_established' } }, `verify ${name}: the server keeps serving`)
    good.ws.close()
    await good.closed
  }
  t.equal(spy.calls, Object.keys(expected).length, 'only the good clients reached the handler')
  await settle()
  t.same(rejections.slice(rejectionsBefore), [], 'no unhandled rejection')
})
