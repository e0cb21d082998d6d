// OpenTelemetry spans (issue 19): `ws.auth.handshake` and `ws.auth.refresh`, seen through the SDK's
// in-memory exporter. The tracer provider registered here is this file's alone (each test file is a
// process of its own). Without a provider, and without @opentelemetry/api: test/traces-off.test.ts.
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { context, trace, SpanKind, SpanStatusCode, type SpanContext } from '@opentelemetry/api'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import cookie from '@fastify/cookie'
import type { WebSocket } from 'ws'
import wsAuth from '../lib/index.ts'
import type { WsAuthClaims, WsAuthPluginOptions, WsAuthUser } from '../lib/types.ts'
import { buildApp, connect, connectWith, deferred, refusal, serverSockets, type BuildOptions, type Client } from './helpers/index.ts'
import { version } from '../package.json'

const exporter = new InMemorySpanExporter()
// SimpleSpanProcessor exports a span when it ends, synchronously: a span the server has ended is in
// the exporter by the time the client sees what followed it.
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
trace.setGlobalTracerProvider(provider)
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
t.teardown(() => provider.shutdown())
t.beforeEach(() => exporter.reset())

const HANDSHAKE = 'ws.auth.handshake'
const REFRESH = 'ws.auth.refresh'
const ROUTE = '/ws/items/:id'

/** The spans of this plugin (its tracer), in the order they ended. */
function ours (): ReadableSpan[] {
  return exporter.getFinishedSpans().filter(span => span.instrumentationScope.name === 'fastify-ws-auth')
}

function named (name: string): ReadableSpan[] {
  return ours().filter(span => span.name === name)
}

/** The one span named `name` ended since the exporter was reset; throws, listing them, when there is not exactly one. */
function only (name: string): ReadableSpan {
  const spans = named(name)
  if (spans.length !== 1) throw new Error(`${spans.length} ${name} spans: ${JSON.stringify(spans.map(s => s.attributes))}`)
  return spans[0]
}

/** What a span shows outside the SDK's bookkeeping: what an exporter sends. */
function shown (span: ReadableSpan): string {
  return JSON.stringify({ name: span.name, attributes: span.attributes, events: span.events, links: span.links, status: span.status })
}

const soon = (): number => Math.floor(Date.now() / 1000) + 600

/**
 * Users by `sub`: `boom` makes loadUser throw, `ghost` is unknown, `admin` has the admin role,
 * `fail: true` in the claims throws too (for refreshes); `num` is user 7 (a numeric id).
 */
function loadUser (claims: WsAuthClaims): WsAuthUser | null {
  if (claims.sub === 'boom' || claims.fail === true) throw new Error('the user store is down')
  if (claims.sub === 'ghost') return null
  if (claims.sub === 'num') return { id: 7, roles: [] }
  return { id: String(claims.sub), roles: claims.sub === 'admin' ? ['admin'] : [] }
}

const echo = (socket: WebSocket): void => { socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })) }

/** An app with the plugin's `auth` options; `/ws/items/:id` (default sources) plus `routes`. */
async function serve (t: Test, auth: WsAuthPluginOptions = {}, more: BuildOptions = {}, routes?: (app: FastifyInstance) => void) {
  return buildApp(t, {
    ...more,
    auth: { loadUser, ...auth },
    routes: async (app) => {
      await more.routes?.(app)
      app.get(ROUTE, { websocket: true }, echo)
      routes?.(app)
    }
  })
}

t.test('an established handshake: one SERVER span with the route pattern, the outcome and the source', async t => {
  const { app, url, sign } = await serve(t)
  const sockets = serverSockets(app)
  const client = connectWith(url('/ws/items/42?x=1'), 'header', sign({ sub: 'u1' }))
  t.match(await client.message(1), { type: 'connection_established' })

  const span = only(HANDSHAKE)
  t.strictSame(span.attributes, { 'ws.auth.route': ROUTE, 'ws.auth.outcome': 'established', 'ws.auth.source': 'header' },
    'route, outcome and source; no close code, no user id')
  t.equal(span.kind, SpanKind.SERVER)
  t.equal(span.status.code, SpanStatusCode.UNSET)
  t.equal(span.parentSpanContext, undefined, 'no request span, no active span: a root span')
  t.strictSame(span.events, [])
  t.notMatch(shown(span), '/ws/items/42', 'the URL is not in the span')
  t.same(span.instrumentationScope, { name: 'fastify-ws-auth', version }, 'the tracer is named after the package, at its version')

  client.ws.close(1000)
  await client.closed
  await sockets.allClosed()
  t.equal(named(HANDSHAKE).length, 1, 'the end of an established session adds no handshake span')
  t.equal(ours().length, 1, 'nor any other')
})

t.test('refusals: the failure class as outcome and its close code', async t => {
  const { url, sign } = await serve(t, { maxConnectionsPerUser: 1, authTimeout: 300 }, {}, app => {
    app.get('/ws/admin', { websocket: true, wsAuth: { roles: ['admin'] } }, echo)
    app.get('/ws/hidden/:id', { websocket: true, wsAuth: { authorize: () => 'not_found' } }, echo)
    app.get('/ws/header-only', { websocket: true, wsAuth: { sources: ['header'] } }, echo)
  })
  const expired = sign({ sub: 'u1', exp: Math.floor(Date.now() / 1000) - 60 })
  const badMessage = (): Client => {
    const client = connect(url('/ws/items/1'))
    client.ws.once('open', () => client.send({ type: 'hello' }))
    return client
  }
  const cases: Array<[string, () => Client, string, string, number, string | undefined]> = [
    ['no token', () => connect(url('/ws/header-only')), '/ws/header-only', 'no_token', 4001, undefined],
    ['a malformed token', () => connectWith(url('/ws/items/1'), 'query', 'not-a-jwt'), ROUTE, 'invalid_token', 4001, 'query'],
    ['an expired token', () => connectWith(url('/ws/items/1'), 'header', expired), ROUTE, 'token_expired', 4001, 'header'],
    ['an unknown user', () => connectWith(url('/ws/items/1'), 'protocol', sign({ sub: 'ghost' })), ROUTE, 'user_not_found', 4002, 'protocol'],
    ['a missing role', () => connectWith(url('/ws/admin'), 'header', sign({ sub: 'u1' })), '/ws/admin', 'forbidden', 4003, 'header'],
    ['authorize: not_found', () => connectWith(url('/ws/hidden/3'), 'header', sign({ sub: 'u1' })), '/ws/hidden/:id', 'not_found', 4004, 'header'],
    ['loadUser throws', () => connectWith(url('/ws/items/1'), 'header', sign({ sub: 'boom' })), ROUTE, 'internal_error', 1011, 'header'],
    ['a bad auth message', badMessage, ROUTE, 'invalid_auth_message', 4001, undefined],
    ['a bad token in the auth message', () => connectWith(url('/ws/items/1'), 'message', 'not-a-jwt'), ROUTE, 'invalid_token', 4001, 'message'],
    ['no auth message in time', () => connect(url('/ws/items/1')), ROUTE, 'auth_timeout', 4008, undefined]
  ]
  for (const [what, open, route, failure, code, source] of cases) {
    exporter.reset()
    const closed = await refusal(open())
    t.match(closed, { code }, `${what}: the client sees ${code}`)
    const span = only(HANDSHAKE)
    const expected: Record<string, unknown> = { 'ws.auth.route': route, 'ws.auth.outcome': failure, 'ws.auth.close_code': code }
    if (source !== undefined) expected['ws.auth.source'] = source
    t.strictSame(span.attributes, expected, `${what}: outcome ${failure}, close code ${code}${source === undefined ? ', no source' : `, source ${source}`}`)
    t.equal(span.kind, SpanKind.SERVER, `${what}: SERVER`)
    t.equal(span.status.code, failure === 'internal_error' ? SpanStatusCode.ERROR : SpanStatusCode.UNSET,
      `${what}: status ${failure === 'internal_error' ? 'ERROR' : 'unset'}`)
  }

  exporter.reset()
  const first = connectWith(url('/ws/items/1'), 'header', sign({ sub: 'u9' }))
  await first.message(1)
  t.match(await refusal(connectWith(url('/ws/items/2'), 'header', sign({ sub: 'u9' }))), { code: 4029 })
  t.strictSame(named(HANDSHAKE).map(s => s.attributes), [
    { 'ws.auth.route': ROUTE, 'ws.auth.outcome': 'established', 'ws.auth.source': 'header' },
    { 'ws.auth.route': ROUTE, 'ws.auth.outcome': 'too_many_connections', 'ws.auth.close_code': 4029, 'ws.auth.source': 'header' }
  ], 'over maxConnectionsPerUser: too_many_connections, 4029')
})

t.test('the source of each token source', async t => {
  const sources = ['query', 'header', 'cookie', 'protocol', 'message', 'ticket'] as const
  const { app, url, sign } = await serve(t, { sources: ['ticket', 'query', 'header', 'cookie', 'protocol', 'message'], allowedOrigins: ['https://app.example'] },
    { before: async (app) => { await app.register(cookie) } })
  for (const source of sources) {
    exporter.reset()
    const token = source === 'ticket' ? await app.wsAuth.issueTicket({ sub: 'u1' }) : sign({ sub: 'u1' })
    const client = connectWith(url(`/ws/items/${source}`), source, token)
    t.match(await client.message(1), { type: 'connection_established' }, `${source}: established`)
    t.strictSame(only(HANDSHAKE).attributes, { 'ws.auth.route': ROUTE, 'ws.auth.outcome': 'established', 'ws.auth.source': source }, `${source}: ws.auth.source`)
    client.ws.close()
  }
  exporter.reset()
  t.match(await refusal(connectWith(url('/ws/items/1'), 'ticket', 'AAAAAAAAAAAAAAAAAAAAAAAA')), { code: 4001, reason: 'Invalid ticket' })
  t.strictSame(only(HANDSHAKE).attributes,
    { 'ws.auth.route': ROUTE, 'ws.auth.outcome': 'invalid_ticket', 'ws.auth.close_code': 4001, 'ws.auth.source': 'ticket' }, 'a refused ticket')
})

t.test('reject: "http": a handshake refused before the upgrade is a span too', async t => {
  const { url, sign } = await serve(t, { reject: 'http', maxConnectionsPerUser: 1 }, {}, app => {
    app.get('/ws/admin', { websocket: true, wsAuth: { roles: ['admin'] } }, echo)
    app.get('/ws/header-only', { websocket: true, wsAuth: { sources: ['header'] } }, echo)
  })
  const cases: Array<[string, () => Client, number, string, string, number, string | undefined]> = [
    ['no token', () => connect(url('/ws/header-only')), 401, '/ws/header-only', 'no_token', 4001, undefined],
    ['a malformed token', () => connectWith(url('/ws/items/1'), 'query', 'not-a-jwt'), 401, ROUTE, 'invalid_token', 4001, 'query'],
    ['a missing role', () => connectWith(url('/ws/admin'), 'header', sign({ sub: 'u1' })), 403, '/ws/admin', 'forbidden', 4003, 'header'],
    ['loadUser throws', () => connectWith(url('/ws/items/1'), 'protocol', sign({ sub: 'boom' })), 500, ROUTE, 'internal_error', 1011, 'protocol']
  ]
  for (const [what, open, status, route, failure, code, source] of cases) {
    exporter.reset()
    t.equal(await open().refusedStatus, status, `${what}: HTTP ${status}`)
    const span = only(HANDSHAKE)
    const expected: Record<string, unknown> = { 'ws.auth.route': route, 'ws.auth.outcome': failure, 'ws.auth.close_code': code }
    if (source !== undefined) expected['ws.auth.source'] = source
    t.strictSame(span.attributes, expected, `${what}: outcome ${failure}, the close code of its row`)
    t.equal(span.kind, SpanKind.SERVER, `${what}: SERVER`)
    t.equal(span.status.code, failure === 'internal_error' ? SpanStatusCode.ERROR : SpanStatusCode.UNSET, `${what}: status`)
  }

  exporter.reset()
  const first = connectWith(url('/ws/items/1'), 'header', sign({ sub: 'u1' }))
  await first.message(1)
  t.equal(await connectWith(url('/ws/items/2'), 'header', sign({ sub: 'u1' })).refusedStatus, 429)
  t.strictSame(named(HANDSHAKE).map(s => s.attributes), [
    { 'ws.auth.route': ROUTE, 'ws.auth.outcome': 'established', 'ws.auth.source': 'header' },
    { 'ws.auth.route': ROUTE, 'ws.auth.outcome': 'too_many_connections', 'ws.auth.close_code': 4029, 'ws.auth.source': 'header' }
  ], 'established, then refused at the limit before the upgrade')
})

t.test('a client that leaves before any answer: abandoned', async t => {
  const entered = deferred()
  const release = deferred()
  const { app, url, sign } = await serve(t, {
    loadUser: async (claims) => {
      if (claims.sub !== 'slow') return loadUser(claims)
      entered.resolve()
      await release.promise
      return { id: 'slow' }
    }
  })
  const sockets = serverSockets(app)

  const silent = connect(url('/ws/items/1'))
  await silent.opened
  silent.ws.close(4321)
  await silent.closed
  await sockets.allClosed()
  const span = only(HANDSHAKE)
  t.equal(span.attributes['ws.auth.outcome'], 'abandoned', 'closed before its auth message')
  t.equal(span.attributes['ws.auth.close_code'], undefined, 'no close code: no refusal (not the client\'s own 4321)')
  t.equal(span.attributes['ws.auth.route'], ROUTE)
  t.equal(span.attributes['ws.auth.source'], undefined, 'no token arrived: no source')
  t.equal(span.status.code, SpanStatusCode.UNSET)

  exporter.reset()
  const waiting = connectWith(url('/ws/items/2'), 'message', sign({ sub: 'slow' }))
  await entered.promise
  waiting.ws.terminate()
  await waiting.closed
  await sockets.allClosed()
  t.match(only(HANDSHAKE).attributes, { 'ws.auth.outcome': 'abandoned', 'ws.auth.source': 'message' }, 'left while its token was being checked')
  release.resolve()
  // The check answers after the socket closed: nothing to await but the promise chain it ends.
  await new Promise(resolve => setImmediate(resolve))
  t.equal(named(HANDSHAKE).length, 1, 'the late answer adds no second span')
})

t.test('an in-band refresh is a ws.auth.refresh span; a refused one carries the failure', async t => {
  const { url, sign } = await serve(t)
  const client = connectWith(url('/ws/items/1'), 'header', sign({ sub: 'u1' }))
  await client.message(1)
  exporter.reset()

  client.send({ type: 'auth', token: sign({ sub: 'u1', exp: soon() }) })
  t.match(await client.message(2), { type: 'token_refreshed' })
  const refreshed = only(REFRESH)
  t.strictSame(refreshed.attributes, { 'ws.auth.route': ROUTE, 'ws.auth.outcome': 'refreshed', 'ws.auth.source': 'message' })
  t.equal(refreshed.kind, SpanKind.SERVER)
  t.equal(refreshed.status.code, SpanStatusCode.UNSET)
  t.equal(named(HANDSHAKE).length, 0, 'a refresh is not a handshake')

  exporter.reset()
  client.send({ type: 'auth', token: sign({ sub: 'someone-else' }) })
  t.match(await client.closed, { code: 4001, reason: 'Invalid token' })
  t.strictSame(only(REFRESH).attributes,
    { 'ws.auth.route': ROUTE, 'ws.auth.outcome': 'invalid_token', 'ws.auth.close_code': 4001, 'ws.auth.source': 'message' }, 'another user: invalid_token, 4001')
  t.equal(named(HANDSHAKE).length, 0, 'nor is a refused refresh')

  const other = connectWith(url('/ws/items/2'), 'query', sign({ sub: 'u2' }))
  await other.message(1)
  exporter.reset()
  other.send({ type: 'auth', token: sign({ sub: 'u2', fail: true }) })
  t.match(await other.closed, { code: 1011 })
  const failed = only(REFRESH)
  t.match(failed.attributes, { 'ws.auth.outcome': 'internal_error', 'ws.auth.close_code': 1011 })
  t.equal(failed.status.code, SpanStatusCode.ERROR, 'internal_error: status ERROR')
})

t.test('no token, no part of one, no ticket and no client ip in any span; no enduser.id by default', async t => {
  const secrets: string[] = []
  const { app, url, sign } = await serve(t, { sources: ['ticket', 'query', 'header', 'cookie', 'protocol', 'message'], allowedOrigins: ['https://app.example'] },
    { before: async (app) => { await app.register(cookie) } }, app => {
      app.get('/ws/http', { websocket: true, wsAuth: { reject: 'http', sources: ['query', 'header'] } }, echo)
    })
  const mint = (claims: object): string => { const token = sign(claims); secrets.push(token); return token }
  for (const source of ['query', 'header', 'cookie', 'protocol', 'message'] as const) {
    const client = connectWith(url('/ws/items/1'), source, mint({ sub: 'u1', via: source }))
    await client.message(1)
    client.send({ type: 'auth', token: mint({ sub: 'u1', via: source, exp: soon() }) })
    t.match(await client.message(2), { type: 'token_refreshed' }, `${source}: refreshed`)
    client.send({ type: 'auth', token: mint({ sub: 'u1', via: source, exp: 1 }) })
    t.match(await client.closed, { code: 4001 }, `${source}: an expired refresh refused`)
    const forged = mint({ sub: 'u1', via: source }).slice(0, -6) + 'AAAAAA'
    secrets.push(forged)
    t.match(await refusal(connectWith(url('/ws/items/2'), source, forged)), { code: 4001 }, `${source}: a forged token refused`)
    const junk = `junk7f3a9c${secrets.length}`
    secrets.push(junk)
    t.match(await refusal(connectWith(url('/ws/items/3'), source, junk)), { code: 4001 }, `${source}: junk refused`)
  }
  const ticket = await app.wsAuth.issueTicket({ sub: 'u1' })
  secrets.push(ticket)
  await connectWith(url('/ws/items/4'), 'ticket', ticket).message(1)
  t.match(await refusal(connectWith(url('/ws/items/5'), 'ticket', ticket)), { code: 4001, reason: 'Invalid ticket' }, 'a used ticket')
  t.equal(await connectWith(url('/ws/http'), 'query', mint({ sub: 'u1', exp: 1 })).refusedStatus, 401, 'refused over HTTP')

  const spans = ours()
  t.ok(spans.length >= 28, `${spans.length} spans to look at`)
  const fragments = new Set<string>()
  for (const secret of secrets) {
    fragments.add(secret)
    for (const part of secret.split('.')) if (part.length >= 6) fragments.add(part)
  }
  const leaks: string[] = []
  for (const span of spans) {
    const text = shown(span)
    for (const fragment of fragments) if (text.includes(fragment)) leaks.push(`${span.name} ${text} holds ${fragment}`)
    if (/127\.0\.0\.1|::1\b|ffff:/.test(text)) leaks.push(`${span.name} ${text} holds the client ip`)
  }
  t.strictSame(leaks, [], `none of ${fragments.size} token, ticket and fragment strings, nor the ip, in any span`)
  t.strictSame(spans.filter(span => 'enduser.id' in span.attributes).map(shown), [], 'no enduser.id unless the app opts in')
})

t.test('traces: { userId: true } adds enduser.id, the user\'s id as a string', async t => {
  const { url, sign } = await serve(t, { traces: { userId: true } }, {}, app => {
    app.get('/ws/admin', { websocket: true, wsAuth: { roles: ['admin'] } }, echo)
  })
  const client = connectWith(url('/ws/items/1'), 'header', sign({ sub: 'u1' }))
  await client.message(1)
  t.equal(only(HANDSHAKE).attributes['enduser.id'], 'u1', 'established')
  exporter.reset()
  client.send({ type: 'auth', token: sign({ sub: 'u1', exp: soon() }) })
  await client.message(2)
  t.equal(only(REFRESH).attributes['enduser.id'], 'u1', 'refreshed')

  exporter.reset()
  await refusal(connectWith(url('/ws/admin'), 'header', sign({ sub: 'u1' })))
  t.match(only(HANDSHAKE).attributes, { 'ws.auth.outcome': 'forbidden', 'enduser.id': 'u1' }, 'a known user refused')
  exporter.reset()
  await refusal(connectWith(url('/ws/items/1'), 'header', 'not-a-jwt'))
  t.notOk('enduser.id' in only(HANDSHAKE).attributes, 'no user known: no enduser.id')
  exporter.reset()
  await connectWith(url('/ws/items/1'), 'header', sign({ sub: 'num' })).message(1)
  t.equal(only(HANDSHAKE).attributes['enduser.id'], '7', 'a numeric id, as a string')
})

t.test('traces: false: no spans, though a provider records', async t => {
  const off = await serve(t, { traces: false, reject: 'http' }, {}, app => {
    app.get('/ws/close', { websocket: true, wsAuth: { reject: 'close' } }, echo)
  })
  const sockets = serverSockets(off.app)
  const client = connectWith(off.url('/ws/items/1'), 'header', off.sign({ sub: 'u1' }))
  await client.message(1)
  client.send({ type: 'auth', token: off.sign({ sub: 'u1', exp: soon() }) })
  await client.message(2)
  t.equal(await connectWith(off.url('/ws/items/1'), 'query', 'not-a-jwt').refusedStatus, 401)
  t.match(await refusal(connectWith(off.url('/ws/close'), 'query', 'not-a-jwt')), { code: 4001 })
  const silent = connect(off.url('/ws/close'))
  await silent.opened
  silent.ws.close()
  client.ws.close()
  await Promise.all([silent.closed, client.closed])
  // An abandoned handshake would end at the server's close: wait for it.
  await sockets.allClosed()
  t.strictSame(ours().map(shown), [], 'no span')

  const on = await serve(t)
  await connectWith(on.url('/ws/items/1'), 'header', on.sign({ sub: 'u1' })).message(1)
  t.equal(named(HANDSHAKE).length, 1, 'while an app with the default records one')
})

t.test('the parent: @fastify/otel\'s request span of the upgrade request', async t => {
  /**
   * Registers @fastify/otel, recording its request span for each URL: the span of an upgraded
   * request is never exported (@fastify/websocket hijacks the reply, and @fastify/otel ends the
   * span in onSend/onResponse), so its id is taken as it starts.
   */
  function instrumented () {
    const requestSpans = new Map<string, SpanContext>()
    const otel = new FastifyOtelInstrumentation({ requestHook: (span, request) => { requestSpans.set(request.url, span.spanContext()) } })
    otel.setTracerProvider(provider)
    t.teardown(() => otel.disable())
    return { requestSpans, plugin: otel.plugin() }
  }
  function isChild (t: Test, span: ReadableSpan, parent: SpanContext | undefined, what: string): void {
    t.ok(parent, `${what}: @fastify/otel made a request span`)
    t.equal(span.spanContext().traceId, parent?.traceId, `${what}: the same trace`)
    t.equal(span.parentSpanContext?.spanId, parent?.spanId, `${what}: its parent is the request span`)
  }

  t.test('registered before the plugin', async t => {
    const { requestSpans, plugin } = instrumented()
    const { url, sign } = await serve(t, {}, { before: async (app) => { await app.register(plugin) } }, app => {
      app.get('/ws/untraced', { websocket: true, config: { otel: false } }, echo)
    })
    const client = connectWith(url('/ws/items/1'), 'header', sign({ sub: 'u1' }))
    await client.message(1)
    isChild(t, only(HANDSHAKE), requestSpans.get('/ws/items/1'), 'established')

    exporter.reset()
    client.send({ type: 'auth', token: sign({ sub: 'u1', exp: soon() }) })
    await client.message(2)
    isChild(t, only(REFRESH), requestSpans.get('/ws/items/1'), 'a refresh')

    exporter.reset()
    await refusal(connectWith(url('/ws/items/2'), 'header', 'not-a-jwt'))
    isChild(t, only(HANDSHAKE), requestSpans.get('/ws/items/2'), 'refused')

    exporter.reset()
    await connectWith(url('/ws/untraced'), 'header', sign({ sub: 'u1' })).message(1)
    t.equal(requestSpans.has('/ws/untraced'), false, 'a route @fastify/otel skips has no request span')
    t.equal(only(HANDSHAKE).parentSpanContext, undefined, 'its handshake span: a root span (no active span either)')
  })

  t.test('registered after the plugin: not the span of the hook @fastify/otel wraps around the plugin\'s', async t => {
    const { requestSpans, plugin } = instrumented()
    const { url, sign } = await serve(t, {}, { routes: async (app) => { await app.register(plugin) } })
    await connectWith(url('/ws/items/1'), 'header', sign({ sub: 'u1' })).message(1)
    isChild(t, only(HANDSHAKE), requestSpans.get('/ws/items/1'), 'established')
    t.ok(exporter.getFinishedSpans().some(span => span.name === 'preValidation - wsAuthGuard'), '@fastify/otel wrapped the plugin\'s route hook in a span')
  })

  t.test('reject: "http": the request span @fastify/otel ends with the refusal', async t => {
    const { requestSpans, plugin } = instrumented()
    const { url } = await serve(t, { reject: 'http' }, { before: async (app) => { await app.register(plugin) } })
    t.equal(await connectWith(url('/ws/items/1'), 'header', 'not-a-jwt').refusedStatus, 401)
    const span = only(HANDSHAKE)
    isChild(t, span, requestSpans.get('/ws/items/1'), 'refused over HTTP')
    const request = exporter.getFinishedSpans().find(s => s.spanContext().spanId === span.parentSpanContext?.spanId)
    t.match(request?.attributes, { 'http.route': ROUTE, 'http.response.status_code': 401 }, 'the parent, exported: the 401 answer')
  })
})

t.test('without @fastify/otel: a child of the span active at the route hook', async t => {
  const outer = trace.getTracer('test').startSpan('outer')
  t.teardown(() => outer.end())
  const { url, sign } = await serve(t, {}, {
    routes: (app) => {
      app.addHook('onRequest', (_request, _reply, done) => context.with(trace.setSpan(context.active(), outer), done))
    }
  })
  await connectWith(url('/ws/items/1'), 'header', sign({ sub: 'u1' })).message(1)
  const span = only(HANDSHAKE)
  t.equal(span.spanContext().traceId, outer.spanContext().traceId, 'the same trace')
  t.equal(span.parentSpanContext?.spanId, outer.spanContext().spanId, 'its parent is the active span')
})

t.test('traces option errors: registration fails naming the option', async t => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['a string', 'yes', /"traces"/],
    ['null', null, /"traces"/],
    ['an array', [], /"traces"/],
    ['an unknown key', { user: true }, /"user" is not an option of traces/],
    ['userId not a boolean', { userId: 'yes' }, /"traces\.userId"/]
  ]
  for (const [what, traces, names] of cases) {
    const app = Fastify()
    const err = await app.register(wsAuth, { traces } as WsAuthPluginOptions).ready().then(() => undefined, (error: Error & { code?: string }) => error)
    await app.close()
    t.equal(err?.code, 'FST_WS_AUTH_INVALID_OPTION', `${what}: FST_WS_AUTH_INVALID_OPTION`)
    t.match(err?.message, names, `${what}: names the option`)
  }
})

t.test('@fastify/otel\'s request span of a ?token= or ?ticket= upgrade shows the URL redacted', async t => {
  const otel = new FastifyOtelInstrumentation()
  otel.setTracerProvider(provider)
  t.teardown(() => otel.disable())
  const { url } = await buildApp(t, { auth: { reject: 'http', sources: ['query', 'ticket'] }, before: async (app) => { await app.register(otel.plugin()) } })
  const token = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXRoYXQtbGVha3M'
  t.equal(await connectWith(url('/ws?a=1'), 'query', token).refusedStatus, 401)
  t.equal(await connectWith(url('/ws'), 'ticket', 'AAAAAAAAAAAAAAAAAAAAAAAA').refusedStatus, 401)
  const requests = exporter.getFinishedSpans().filter(s => s.instrumentationScope.name !== 'fastify-ws-auth' && s.attributes['url.path'] !== undefined)
  t.same(requests.map(s => s.attributes['url.path']), ['/ws?a=1&token=[REDACTED]', '/ws?ticket=[REDACTED]'], 'the request spans, redacted')
  t.notMatch(JSON.stringify(exporter.getFinishedSpans().map(shown)), /c2lnbmF0dXJlLXRoYXQtbGVha3M|AAAAAAAAAAAA/, 'no token and no ticket in any span')
})

t.test('traces: { userId: true }: a refusal over HTTP at maxConnectionsPerUser names the user', async t => {
  const { url, sign } = await buildApp(t, { auth: { reject: 'http', maxConnectionsPerUser: 1, traces: { userId: true } } })
  await connectWith(url('/ws'), 'header', sign({ sub: 'u1' })).message(1)
  t.equal(await connectWith(url('/ws'), 'header', sign({ sub: 'u1' })).refusedStatus, 429)
  const refused = named(HANDSHAKE).find(s => s.attributes['ws.auth.outcome'] === 'too_many_connections')
  t.equal(refused?.attributes['enduser.id'], 'u1')
})
