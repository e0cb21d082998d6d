import t, { type Test } from 'tap'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { AuthAttempt, WsAuthPluginOptions } from '../lib/types.ts'
import { buildApp, connect, connectWith, logCapture, type Client } from './helpers/index.ts'

type LogRecord = Record<string, unknown> & { level: number, msg: string, reqId?: string }

const INFO = 30
const WARN = 40
const ERROR = 50

/** Every character percent-encoded: what a client that over-encodes puts in the URL. */
const percentEncoded = (token: string) =>
  [...token].map(ch => '%' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')).join('')

/** A JWT with a valid shape and a wrong signature. */
const tamper = (token: string) => {
  const [h, p, s] = token.split('.')
  return `${h}.${p}.${s.slice(0, -4)}${s.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`
}

interface Logged {
  url (path: string): string
  sign (payload: object, options?: Record<string, unknown>): string
  records (): LogRecord[]
  lines: string[]
  /** Records with this message. */
  withMsg (msg: string): LogRecord[]
}

async function loggedApp (t: Test, auth: WsAuthPluginOptions = {}, routes?: (app: FastifyInstance) => void): Promise<Logged> {
  const capture = logCapture()
  const { url, sign } = await buildApp(t, {
    auth,
    fastify: { logger: { level: 'trace', stream: capture.stream } },
    routes: routes ?? ((app) => {
      app.get('/ws', { websocket: true }, (socket) => {
        socket.on('message', data => socket.send(data.toString()))
      })
      app.get('/ws/admin', { websocket: true, wsAuth: { roles: ['admin'] } }, () => {})
    })
  })
  const records = () => capture.records() as LogRecord[]
  return { url, sign, records, lines: capture.lines, withMsg: (msg) => records().filter(r => r.msg === msg) }
}

/** No log line carries the token, its signature, or its URL-encoded forms. */
function assertNoToken (t: Test, lines: string[], token: string, what: string): void {
  const signature = token.split('.')[2]
  const forms = new Set([token, signature, encodeURIComponent(token), percentEncoded(token), percentEncoded(signature)])
  const leaks = lines.filter(line => [...forms].some(form => line.includes(form)))
  t.same(leaks, [], `${what}: no log line carries the token`)
  t.ok(lines.length > 0, `${what}: something was logged`)
}

function established (c: Client) {
  return c.message(1) as Promise<{ type: string, client_id: string }>
}

t.test('query token: no token in any line; `incoming request` shows token=[REDACTED]', async t => {
  const log = await loggedApp(t)
  const token = log.sign({ sub: 'u1' })
  const c = connect(log.url('/ws?room=7&token=' + token + '&x=1'))
  const hello = await established(c)
  c.send('ping')
  await c.message(2)
  c.ws.close()
  await c.closed

  const incoming = log.withMsg('incoming request')
  t.equal(incoming.length, 1)
  t.match(incoming[0], { level: INFO, req: { method: 'GET', url: '/ws?room=7&token=[REDACTED]&x=1' } })
  const ok = log.withMsg('websocket authenticated')
  t.equal(ok.length, 1, 'exactly one success line')
  t.match(ok[0], { level: INFO, route: '/ws', ip: '127.0.0.1', userId: 'u1', clientId: hello.client_id })
  t.equal(ok[0].reqId, incoming[0].reqId, 'logged on the request logger')
  t.equal(log.withMsg('websocket authentication failed').length, 0)
  assertNoToken(t, log.lines, token, 'query success')
})

t.test('query token: failures log one warn line, no token', async t => {
  const log = await loggedApp(t)
  const good = log.sign({ sub: 'u1', roles: ['member'] })
  const bad = tamper(good)

  const c1 = connect(log.url('/ws?token=' + bad))
  t.same(await c1.closed, { code: 4001, reason: 'Invalid token' })
  const c2 = connect(log.url('/ws/admin?token=' + good))
  t.same(await c2.closed, { code: 4003, reason: 'Forbidden' })

  const failed = log.withMsg('websocket authentication failed')
  t.equal(failed.length, 2, 'one warn line per failure')
  t.match(failed[0], { level: WARN, route: '/ws', ip: '127.0.0.1', code: 4001, failure: 'invalid_token' })
  t.notOk('userId' in failed[0] && failed[0].userId !== undefined, 'no user id before the token is verified')
  t.match(failed[1], { level: WARN, route: '/ws/admin', ip: '127.0.0.1', code: 4003, failure: 'forbidden', userId: 'u1' })
  t.equal(log.withMsg('websocket authenticated').length, 0)
  t.same(log.withMsg('incoming request').map(r => (r.req as { url: string }).url),
    ['/ws?token=[REDACTED]', '/ws/admin?token=[REDACTED]'])
  assertNoToken(t, log.lines, bad, 'bad signature')
  assertNoToken(t, log.lines, good, 'forbidden')
})

t.test('reject: "http": the refusal is logged once, with the status, no token', async t => {
  const log = await loggedApp(t, { reject: 'http' })
  const bad = tamper(log.sign({ sub: 'u1' }))
  const c = connect(log.url('/ws?token=' + bad))
  t.equal(await c.refusedStatus, 401)
  await c.closed
  const failed = log.withMsg('websocket authentication failed')
  t.equal(failed.length, 1)
  t.match(failed[0], { level: WARN, route: '/ws', code: 4001, failure: 'invalid_token', status: 401, source: 'query' })
  assertNoToken(t, log.lines, bad, 'reject http')
})

t.test('a percent-encoded token value is redacted', async t => {
  const log = await loggedApp(t)
  const token = log.sign({ sub: 'u1' })
  const c = connect(log.url('/ws?token=' + percentEncoded(token)))
  t.match(await established(c), { type: 'connection_established' }, 'the decoded token authenticates')
  c.ws.close()
  await c.closed
  t.equal((log.withMsg('incoming request')[0].req as { url: string }).url, '/ws?token=[REDACTED]')
  assertNoToken(t, log.lines, token, 'percent-encoded value')
})

t.test('an encoded parameter name (?%74oken=) is redacted', async t => {
  const log = await loggedApp(t)
  const token = log.sign({ sub: 'u1' })
  const c = connect(log.url('/ws?%74oken=' + token))
  t.match(await established(c), { type: 'connection_established' }, 'Fastify decodes the name: the token authenticates')
  c.ws.close()
  await c.closed
  t.equal((log.withMsg('incoming request')[0].req as { url: string }).url, '/ws?%74oken=[REDACTED]')
  assertNoToken(t, log.lines, token, 'encoded name')
})

t.test('a repeated token parameter is refused and every copy redacted', async t => {
  const log = await loggedApp(t)
  const token = log.sign({ sub: 'u1' })
  const c = connect(log.url(`/ws?token=${token}&token=${token}`))
  t.same(await c.closed, { code: 4001, reason: 'Invalid token' })
  t.equal((log.withMsg('incoming request')[0].req as { url: string }).url, '/ws?token=[REDACTED]&token=[REDACTED]')
  assertNoToken(t, log.lines, token, 'repeated')
})

t.test('header, protocol and message sources: success and failure, no token logged', async t => {
  const log = await loggedApp(t)
  const token = log.sign({ sub: 'u2' })
  const bad = tamper(token)
  for (const source of ['header', 'protocol', 'message'] as const) {
    const make = (tok: string) => connectWith(log.url('/ws'), source, tok)
    const ok = make(token)
    const hello = await established(ok)
    ok.ws.close()
    await ok.closed
    const no = make(bad)
    t.same(await no.closed, { code: 4001, reason: 'Invalid token' }, `${source}: refused`)
    const success = log.withMsg('websocket authenticated').find(r => r.clientId === hello.client_id)
    t.match(success, { level: INFO, route: '/ws', ip: '127.0.0.1', userId: 'u2' }, `${source}: success line`)
  }
  t.equal(log.withMsg('websocket authenticated').length, 3, 'one success line per success')
  const failed = log.withMsg('websocket authentication failed')
  t.equal(failed.length, 3, 'one failure line per failure')
  t.ok(failed.every(r => r.level === WARN && r.code === 4001 && r.failure === 'invalid_token' && r.route === '/ws'))
  t.same(log.withMsg('incoming request').map(r => (r.req as { url: string }).url), Array(6).fill('/ws'))
  assertNoToken(t, log.lines, token, 'valid token')
  assertNoToken(t, log.lines, bad, 'bad token')
})

t.test('a custom verify that throws an Error quoting the token: 1011, logged at error, scrubbed', async t => {
  for (const source of ['query', 'header', 'protocol', 'message'] as const) {
    t.test(source, async t => {
      const log = await loggedApp(t, {
        verify: (tok) => {
          throw new Error(`auth service refused ${tok}`, { cause: new Error(`upstream: bad signature ${tok.split('.')[2]}`) })
        }
      })
      const token = log.sign({ sub: 'u1' })
      const c = connectWith(log.url('/ws'), source, token)
      t.same(await c.closed, { code: 1011, reason: 'Internal error' })

      const errors = log.records().filter(r => r.level === ERROR)
      t.equal(errors.length, 1, 'one error line')
      t.match(errors[0], { route: '/ws', ip: '127.0.0.1', code: 1011, failure: 'internal_error' })
      const err = errors[0].err as { message?: string, stack?: string } | undefined
      t.match(err, { message: /^auth service refused \[REDACTED\]/, stack: String }, 'the err is logged, scrubbed')
      t.equal(log.withMsg('websocket authentication failed').length, 0, 'not also logged as a warning')
      const leaking = log.lines.filter(line => line.includes(token) || line.includes(token.split('.')[2]))
      t.same(leaking, [], 'no log line carries the token')
    })
  }
})

t.test('loadUser or authorize throwing with the token in the message is scrubbed too', async t => {
  const log = await loggedApp(t, {
    sources: ['message'],
    loadUser: (claims) => {
      if ((claims as { sub: string }).sub === 'boom') throw new Error('db down while loading ' + JSON.stringify(claims))
      return { id: (claims as { sub: string }).sub, roles: [], permissions: [] }
    }
  }, (app) => {
    app.get('/ws', {
      websocket: true,
      wsAuth: {
        authorize: (request) => {
          throw new Error('authorize failed for ' + (request.headers['x-token'] as string))
        }
      }
    }, () => {})
  })
  const token = log.sign({ sub: 'u1' })
  const c = connectWith(log.url('/ws'), 'message', token, { headers: { 'x-token': token } })
  t.same(await c.closed, { code: 1011, reason: 'Internal error' })
  const errors = log.records().filter(r => r.level === ERROR)
  t.equal(errors.length, 1)
  t.match(errors[0], { msg: 'websocket authentication error', userId: 'u1', err: { message: 'authorize failed for [REDACTED]' } })
  assertNoToken(t, log.lines, token, 'authorize throws')
})

t.test('onAuthSuccess / onAuthFailure receive the facts that are logged', async t => {
  const seen: Array<{ kind: 'success' | 'failure', attempt: AuthAttempt, reqId: string }> = []
  const log = await loggedApp(t, {
    onAuthSuccess: (attempt, request: FastifyRequest) => { seen.push({ kind: 'success', attempt: { ...attempt }, reqId: request.id }) },
    onAuthFailure: async (attempt, request: FastifyRequest) => { seen.push({ kind: 'failure', attempt: { ...attempt }, reqId: request.id }) }
  })
  const token = log.sign({ sub: 'u1', roles: ['member'] })
  const ok = connect(log.url('/ws?token=' + token))
  const hello = await established(ok)
  ok.ws.close()
  await ok.closed
  const forbidden = connectWith(log.url('/ws/admin'), 'protocol', token)
  await forbidden.closed
  const invalid = connectWith(log.url('/ws'), 'message', tamper(token))
  await invalid.closed

  t.same(seen.map(s => s.kind), ['success', 'failure', 'failure'])
  t.match(seen[0].attempt, { route: '/ws', ip: '127.0.0.1', userId: 'u1', clientId: hello.client_id, source: 'query' })
  t.match(seen[1].attempt, { route: '/ws/admin', ip: '127.0.0.1', userId: 'u1', failure: 'forbidden', code: 4003, source: 'protocol' })
  t.match(seen[2].attempt, { route: '/ws', ip: '127.0.0.1', failure: 'invalid_token', code: 4001, source: 'message' })
  const facts = ['route', 'ip', 'userId', 'clientId', 'failure', 'code', 'status', 'source'] as const
  for (const { kind, attempt, reqId } of seen) {
    const line = log.records().find(r => r.reqId === reqId &&
      r.msg === (kind === 'success' ? 'websocket authenticated' : 'websocket authentication failed'))
    t.ok(line, `${kind}: a log line for the same request`)
    for (const fact of facts) {
      t.same(line?.[fact], attempt[fact], `${kind}: ${fact} is the same in the hook and the log`)
    }
  }
})

t.test('an audit hook that throws or rejects is logged and does not break the handshake', async t => {
  const modes = {
    throws: () => { throw new Error('audit sink down') },
    rejects: async () => { throw new Error('audit sink down') }
  }
  for (const [mode, hook] of Object.entries(modes)) {
    t.test(mode, async t => {
      const log = await loggedApp(t, { onAuthSuccess: hook, onAuthFailure: hook })
      const token = log.sign({ sub: 'u1' })
      const ok = connect(log.url('/ws?token=' + token))
      t.match(await established(ok), { type: 'connection_established' }, 'success still establishes')
      ok.send('still works')
      t.equal(await ok.message(2), 'still works', 'and the handler runs')
      ok.ws.close()
      await ok.closed
      const no = connect(log.url('/ws/admin?token=' + token))
      t.same(await no.closed, { code: 4003, reason: 'Forbidden' }, 'failure still closes with its code')

      const hookErrors = log.records().filter(r => r.level === ERROR && (r.err as { message?: string })?.message === 'audit sink down')
      t.equal(hookErrors.length, 2, 'each hook failure is logged at error')
      t.equal(log.withMsg('websocket authenticated').length, 1)
      t.equal(log.withMsg('websocket authentication failed').length, 1)
      assertNoToken(t, log.lines, token, mode)
    })
  }
})

t.test('a token sent to a path with no route (a stray trailing slash) is not logged either', async t => {
  const log = await loggedApp(t)
  const token = log.sign({ sub: 'u1' })
  for (const path of ['/ws/', '/nope']) {
    const c = connect(log.url(`${path}?token=${token}`))
    t.equal(await c.refusedStatus, 404, `${path}: 404`)
    await c.closed
  }
  const leaking = log.lines.filter(line => line.includes(token.split('.')[2]))
  t.same(leaking, [], 'no log line carries the token')
})

t.test('a parameter name that is not valid percent-encoding is kept as written; the token is still redacted', async t => {
  const log = await loggedApp(t)
  const token = log.sign({ sub: 'u1' })
  const c = connect(log.url('/ws?%E0%A4%A=1&token=' + token))
  t.match(await established(c), { type: 'connection_established' })
  c.ws.close()
  await c.closed
  t.equal((log.withMsg('incoming request')[0].req as { url: string }).url, '/ws?%E0%A4%A=1&token=[REDACTED]')
  assertNoToken(t, log.lines, token, 'malformed neighbour')
})

/**
 * A logger that is not pino (a custom `loggerInstance`): it keeps every call and applies the
 * serializers Fastify hands to `child()`, as pino-compatible loggers do.
 */
function recordingLogger () {
  const records: Array<Record<string, unknown>> = []
  type Serializers = Record<string, (value: unknown) => unknown>
  const make = (bindings: object, serializers: Serializers): Record<string, unknown> => {
    const write = (level: string) => (obj: unknown, msg?: string) => {
      const fields: Record<string, unknown> = {}
      if (typeof obj === 'object' && obj !== null) {
        for (const [key, value] of Object.entries(obj)) fields[key] = serializers[key] === undefined ? value : serializers[key](value)
      }
      records.push({ level, ...bindings, ...fields, msg: typeof obj === 'string' ? obj : msg })
    }
    return {
      level: 'trace',
      info: write('info'),
      warn: write('warn'),
      error: write('error'),
      debug: write('debug'),
      trace: write('trace'),
      fatal: write('fatal'),
      silent: () => {},
      child: (more: object, options?: { serializers?: Serializers }) => make({ ...bindings, ...more }, { ...serializers, ...options?.serializers })
    }
  }
  return { logger: make({}, {}), records }
}

t.test('with a logger that is not pino, the route-level req serializer redacts `incoming request`', async t => {
  const { logger, records } = recordingLogger()
  const { url, sign } = await buildApp(t, { fastify: { loggerInstance: logger as never } })
  const token = sign({ sub: 'u1' })
  const c = connect(url('/ws?token=' + token))
  t.match(await established(c), { type: 'connection_established' })
  c.ws.close()
  await c.closed
  const incoming = records.find(r => r.msg === 'incoming request')
  t.match(incoming?.req, { method: 'GET', url: '/ws?token=[REDACTED]', host: /^127\.0\.0\.1:\d+$/, remoteAddress: '127.0.0.1', remotePort: Number })
  t.notOk(JSON.stringify(incoming?.req).includes(token.split('.')[2]), 'no signature in the line')
})

t.test('what a hook throws that is not an Error is logged too, scrubbed', async t => {
  t.test('verify throws a string quoting the token: 1011, the string logged without the token', async t => {
    const log = await loggedApp(t, { verify: (tok) => { throw `refused ${tok}` } }) // eslint-disable-line no-throw-literal
    const token = log.sign({ sub: 'u1' })
    const c = connect(log.url('/ws?token=' + token))
    t.same(await c.closed, { code: 1011, reason: 'Internal error' })
    const errors = log.records().filter(r => r.level === ERROR)
    t.equal(errors.length, 1, 'one error line')
    t.match(errors[0], { failure: 'internal_error', err: 'refused [REDACTED]' })
    assertNoToken(t, log.lines, token, 'a thrown string')
  })
  t.test('loadUser throws at once (not a rejection): 1011, logged with the user id', async t => {
    const log = await loggedApp(t, { loadUser: () => { throw new Error('user store down') } })
    const c = connect(log.url('/ws?token=' + log.sign({ sub: 'u1' })))
    t.same(await c.closed, { code: 1011, reason: 'Internal error' })
    const errors = log.records().filter(r => r.level === ERROR)
    t.equal(errors.length, 1, 'one error line')
    t.match(errors[0], { failure: 'internal_error', err: { message: 'user store down' } })
  })
})
