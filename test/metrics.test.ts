// Prometheus metrics (issue 19), read the way Prometheus reads them: the registry's exposition
// text after real handshakes, refusals, refreshes, revocations, refusals after the door and closes.
// A real Prometheus scraping the demo: test/prometheus.test.ts; the cluster metrics: test/redis/metrics.test.ts.
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import fastifyMetrics from 'fastify-metrics'
import promClient, { Registry } from 'prom-client'
import type { WsAuthPluginOptions } from '../lib/types.ts'
import { answer, buildApp, connect, connectWith, eventually, refusal, type BuildOptions } from './helpers/index.ts'

/** Every sample of the exposition text, as `name{labels} value` lines, by metric name. */
async function samples (registry: Registry, name: string): Promise<Map<string, number>> {
  const found = new Map<string, number>()
  for (const line of (await registry.metrics()).split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue
    const at = line.lastIndexOf(' ')
    const key = line.slice(0, at)
    if (key === name || key.startsWith(name + '{')) found.set(key, Number(line.slice(at + 1)))
  }
  return found
}

async function value (registry: Registry, series: string): Promise<number | undefined> {
  const name = series.includes('{') ? series.slice(0, series.indexOf('{')) : series
  return (await samples(registry, name)).get(series)
}

/** An app on its own registry, with routes `/ws/items/:id` (roles: staff) and `/ws/topics` (topics), on `/ws` too. */
async function serve (t: Test, auth: WsAuthPluginOptions = {}, more: BuildOptions = {}) {
  const registry = new Registry()
  const built = await buildApp(t, {
    ...more,
    auth: { metrics: { registry }, sources: ['query', 'header'], ...auth },
    routes: (app) => {
      const echo = (socket: import('ws').WebSocket): void => { socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })) }
      app.get('/ws/items/:id', { websocket: true, wsAuth: { roles: ['staff'] } }, echo)
      app.get('/ws/topics', { websocket: true, wsAuth: { topics: { 'news:{id}': { roles: ['staff'] } }, messages: { 'admin:*': false, '*': true } } }, echo)
      app.get('/ws/http', { websocket: true, wsAuth: { reject: 'http' } }, echo)
    }
  })
  return { ...built, registry }
}

t.test('handshakes by route pattern and outcome, with their duration', async t => {
  const { url, sign, registry, app } = await serve(t)
  const staff = sign({ sub: 'u1', roles: ['staff'] })
  const open = [connectWith(url('/ws/items/1'), 'query', staff), connectWith(url('/ws/items/2'), 'header', staff)]
  for (const c of open) await c.message(1)
  await refusal(connectWith(url('/ws/items/3'), 'query', sign({ sub: 'u2' })))
  await refusal(connectWith(url('/ws/items/4'), 'query', 'not-a-token'))
  await refusal(connect(url('/ws/items/5')))
  t.equal(await connectWith(url('/ws/http'), 'query', 'not-a-token').refusedStatus, 401)
  t.same(Object.fromEntries(await samples(registry, 'ws_auth_handshakes_total')), {
    'ws_auth_handshakes_total{route="/ws/items/:id",outcome="established"}': 2,
    'ws_auth_handshakes_total{route="/ws/items/:id",outcome="forbidden"}': 1,
    'ws_auth_handshakes_total{route="/ws/items/:id",outcome="invalid_token"}': 1,
    'ws_auth_handshakes_total{route="/ws/items/:id",outcome="no_token"}': 1,
    'ws_auth_handshakes_total{route="/ws/http",outcome="invalid_token"}': 1
  }, 'one series per route pattern and outcome: never the URL')
  t.equal(await value(registry, 'ws_auth_handshake_duration_seconds_count{route="/ws/items/:id"}'), 5, 'each handshake timed')
  const sum = await value(registry, 'ws_auth_handshake_duration_seconds_sum{route="/ws/items/:id"}')
  t.ok(sum !== undefined && sum > 0 && sum < 5 * 20, `in seconds (${sum})`)
  t.equal(await value(registry, 'ws_auth_handshake_duration_seconds_bucket{le="0.0001",route="/ws/items/:id"}') !== undefined, true, 'buckets from 0.1 ms')
  t.equal(await value(registry, 'ws_auth_handshake_duration_seconds_bucket{le="5",route="/ws/items/:id"}') !== undefined, true, 'to 5 s')
  t.equal(await value(registry, 'ws_auth_sessions{route="/ws/items/:id"}'), 2, 'sessions: the open ones, by route')
  for (const c of open) c.ws.close(4000, 'bye')
  await eventually(() => app.wsAuth.stats().active === 0)
  t.equal(await value(registry, 'ws_auth_sessions{route="/ws/items/:id"}'), undefined, 'none once they closed')
})

t.test('closes by route and code: refusals, the client\'s own, the plugin\'s', async t => {
  const { url, sign, registry, app } = await serve(t, { maxLifetime: 60_000 })
  const staff = sign({ sub: 'u1', roles: ['staff'] })
  await refusal(connectWith(url('/ws/items/1'), 'query', 'bad'))
  const mine = connectWith(url('/ws/items/1'), 'query', staff)
  await mine.message(1)
  mine.ws.close(4321, 'leaving')
  await mine.closed
  const kicked = connectWith(url('/ws/items/1'), 'query', staff)
  await kicked.message(1)
  app.wsAuth.disconnectUser('u1')
  t.same(await kicked.closed, { code: 4001, reason: 'Token revoked' })
  await eventually(() => app.wsAuth.stats().active === 0)
  t.same(Object.fromEntries(await samples(registry, 'ws_auth_closes_total')), {
    'ws_auth_closes_total{route="/ws/items/:id",code="4001"}': 2,
    'ws_auth_closes_total{route="/ws/items/:id",code="4321"}': 1
  })
})

t.test('refreshes, revocations and the per-user limit', async t => {
  const { url, sign, registry, app } = await serve(t, { maxConnectionsPerUser: 1 })
  const c = connectWith(url('/ws/items/1'), 'query', sign({ sub: 'u1', roles: ['staff'] }))
  await c.message(1)
  t.match(await answer(c, { type: 'auth', token: sign({ sub: 'u1', roles: ['staff'] }) }), { type: 'token_refreshed' })
  t.same(await refusal(connectWith(url('/ws/items/1'), 'query', sign({ sub: 'u1', roles: ['staff'] }))), { code: 4029, reason: 'Too many connections' })
  app.wsAuth.revoke({ jti: 'j1', exp: Math.floor(Date.now() / 1000) + 60 })
  c.send({ type: 'auth', token: 'garbage' })
  t.same(await c.closed, { code: 4001, reason: 'Invalid token' })
  t.same(Object.fromEntries(await samples(registry, 'ws_auth_refreshes_total')), {
    'ws_auth_refreshes_total{outcome="refreshed"}': 1,
    'ws_auth_refreshes_total{outcome="invalid_token"}': 1
  }, 'a refused refresh is a refresh, not a handshake')
  t.equal(await value(registry, 'ws_auth_handshakes_total{route="/ws/items/:id",outcome="invalid_token"}'), undefined)
  t.equal(await value(registry, 'ws_auth_limit_refusals_total'), 1)
  t.equal(await value(registry, 'ws_auth_revocations'), 1)
})

t.test('refusals after the door, and subscriptions', async t => {
  const { url, sign, registry } = await serve(t)
  const c = connectWith(url('/ws/topics'), 'query', sign({ sub: 'u1', roles: ['staff'] }))
  await c.message(1)
  t.match(await answer(c, { type: 'subscribe', topic: 'news:1' }), { type: 'subscribed' })
  t.match(await answer(c, { type: 'subscribe', topic: 'other:1' }), { type: 'refused', code: 4004 })
  t.match(await answer(c, { type: 'admin:*' }), { type: 'refused', code: 4003 })
  t.same(Object.fromEntries(await samples(registry, 'ws_auth_refused_total')), {
    'ws_auth_refused_total{route="/ws/topics",phase="subscribe",code="4004"}': 1,
    'ws_auth_refused_total{route="/ws/topics",phase="message",code="4003"}': 1
  })
  t.equal(await value(registry, 'ws_auth_subscriptions'), 1)
})

t.test('authenticating: a socket waiting for its auth message', async t => {
  const { url, sign, registry } = await serve(t, { sources: ['query', 'message'] })
  const waiting = connect(url('/ws/items/1'))
  await waiting.opened
  t.equal(await value(registry, 'ws_auth_authenticating'), 1)
  waiting.send({ type: 'auth', token: sign({ sub: 'u1', roles: ['staff'] }) })
  await waiting.message(1)
  t.equal(await value(registry, 'ws_auth_authenticating'), 0)
  t.equal(await value(registry, 'ws_auth_handshakes_total{route="/ws/items/:id",outcome="established"}'), 1, 'the message source counts too')
})

t.test('1,000 handshakes by 1,000 users and URLs add no series', async t => {
  const { url, sign, registry } = await serve(t)
  const series = async (): Promise<number> => (await registry.metrics()).split('\n').filter(l => l !== '' && !l.startsWith('#')).length
  const first = connectWith(url('/ws/items/0'), 'query', sign({ sub: 'user-0', roles: ['staff'] }))
  await first.message(1)
  first.ws.close()
  await first.closed
  await refusal(connectWith(url('/ws/items/0'), 'query', sign({ sub: 'user-0' })))
  const before = await series()
  for (let i = 1; i <= 1000; i += 50) {
    await Promise.all(Array.from({ length: 50 }, async (_, j) => {
      const n = i + j
      const c = connectWith(url(`/ws/items/${n}?x=${n}`), 'query', sign({ sub: `user-${n}`, roles: n % 2 === 0 ? ['staff'] : [] }))
      const ended = await refusal(c)
      if ('message' in ended) {
        c.ws.close()
        await c.closed
      }
    }))
  }
  t.equal(await series(), before, 'the same series, other values')
  const text = await registry.metrics()
  t.notMatch(text, /user-\d/, 'no user id')
  t.notMatch(text, /127\.0\.0\.1/, 'no ip')
  t.notMatch(text, /\/ws\/items\/\d/, 'no URL')
  t.notMatch(text, /eyJ/, 'no token')
})

t.test('several instances on one registry share the metrics; prefix', async t => {
  const registry = new Registry()
  const a = await buildApp(t, { auth: { metrics: { registry, prefix: 'rt_' } } })
  const b = await buildApp(t, { auth: { metrics: { registry, prefix: 'rt_' } } })
  for (const app of [a, b]) {
    const c = connectWith(app.url('/ws'), 'query', app.sign({ sub: 'u1' }))
    await c.message(1)
  }
  t.equal(await value(registry, 'rt_handshakes_total{route="/ws",outcome="established"}'), 2, 'counters add up')
  t.equal(await value(registry, 'rt_sessions{route="/ws"}'), 2, 'gauges sum both')
  await b.app.close()
  t.equal(await value(registry, 'rt_sessions{route="/ws"}'), 1, 'a closed app leaves the gauges')
  t.equal(await value(registry, 'ws_auth_handshakes_total{route="/ws",outcome="established"}'), undefined, 'no default-prefixed name')
})

t.test('metrics: true registers on prom-client\'s default registry', async t => {
  t.teardown(() => promClient.register.clear())
  const { url, sign } = await buildApp(t, { auth: { metrics: true } })
  await connectWith(url('/ws'), 'query', sign({ sub: 'u1' })).message(1)
  t.equal(await value(promClient.register, 'ws_auth_handshakes_total{route="/ws",outcome="established"}'), 1)
})

t.test('alongside fastify-metrics on prom-client\'s registry: no duplicate names, one /metrics with both', async t => {
  t.teardown(() => promClient.register.clear())
  const app = Fastify()
  t.teardown(() => app.close())
  // fastify-metrics 13 (Node 20), handed this prom-client; its default registry is prom-client's global one.
  await app.register(fastifyMetrics, { endpoint: '/metrics', promClient, defaultMetrics: { enabled: true }, routeMetrics: { enabled: true } })
  const { default: jwt } = await import('@fastify/jwt')
  await app.register(jwt, { secret: 'a-test-secret-that-is-long-enough-for-hs256' })
  const { default: wsAuth } = await import('../lib/index.ts')
  await app.register(wsAuth, { metrics: true })
  app.get('/ws', { websocket: true }, () => {})
  app.get('/hello', async () => 'hi')
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as import('node:net').AddressInfo).port
  t.equal(await (await fetch(`http://127.0.0.1:${port}/hello`)).text(), 'hi')
  const c = connectWith(`ws://127.0.0.1:${port}/ws`, 'query', (app as unknown as { jwt: { sign: (p: object) => string } }).jwt.sign({ sub: 'u1' }))
  await c.message(1)
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  t.match(text, /ws_auth_handshakes_total\{route="\/ws",outcome="established"\} 1/, 'ours')
  t.match(text, /http_request_duration_seconds_count\{[^}]*route="\/hello"/, 'fastify-metrics\'s route metrics')
  t.match(text, /process_cpu_user_seconds_total/, 'and prom-client\'s default metrics')
})

t.test('a bad metrics option fails at registration, naming it', async t => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['a string', 'yes', /option "metrics" must be true, false or \{ registry\?, prefix\? \}/],
    ['an unknown key', { regsitry: new Registry() }, /option "regsitry" is not an option of metrics/],
    ['not a registry', { registry: {} }, /option "metrics.registry" must be a prom-client Registry/],
    ['a prefix Prometheus refuses', { prefix: '1x_' }, /option "metrics.prefix" must start a Prometheus metric name/],
    ['a prefix not a string', { prefix: 7 }, /option "metrics.prefix"/]
  ]
  for (const [what, metrics, message] of cases) {
    await t.rejects(buildApp(t, { auth: { metrics: metrics as never } }), { code: 'FST_WS_AUTH_INVALID_OPTION', message }, what)
  }
  const registry = new Registry()
  registry.registerMetric(new promClient.Counter({ name: 'ws_auth_handshakes_total', help: 'mine', registers: [] }))
  await t.rejects(buildApp(t, { auth: { metrics: { registry } } }), { code: 'FST_WS_AUTH_INVALID_OPTION', message: /option "metrics.prefix" makes the metric name ws_auth_handshakes_total, which another metric of this registry has/ })
})
