// reject: 'http' refuses the upgrade with an HTTP status; in Node, `ws` exposes it and the client
// maps it to the table row with that status (the body's `failure` first). The library's clock is
// the manual one, so each backoff passes when the test moves time.
import t, { type Test } from 'tap'
import { createClient } from '../../lib/client/index.ts'
import type { ClientOptions } from '../../lib/client/index.ts'
import { manualClock } from '../helpers/clock.ts'
import { serve, type ServeOptions } from './helpers/server.ts'
import { assertNoRetry, record, sockets, untilFinal } from './helpers/record.ts'

const fast = { initialDelay: 20, maxDelay: 1000, factor: 2, jitter: false }

async function start (t: Test, opts: ServeOptions, options: Partial<ClientOptions> = {}) {
  const time = manualClock(t)
  const served = await serve(t, opts)
  const spy = sockets()
  const client = createClient({ url: served.url(), token: served.sign({ sub: 'u1', roles: ['user'] }), WebSocket: spy.WebSocket, reconnect: fast, ...options })
  const events = record(client)
  t.teardown(() => client.close())
  return { client, events, time, served, sockets: spy }
}

const routeWith = (wsAuth: object): ServeOptions['routes'] => (app) => { app.get('/ws', { websocket: true, wsAuth }, () => {}) }

t.test('401 behaves like 4001: one fresh token, then fatal', async t => {
  const ctx = await start(t, { auth: { reject: 'http' } }, { token: 'garbage' })
  const { events, time } = ctx
  await untilFinal(events, time)
  t.same(events.all('close').map(c => [c.code, c.reason, c.status, c.failure, c.kind, c.willRetry, c.delay]), [
    [4001, 'Invalid token', 401, 'invalid_token', 'unauthenticated', true, 0],
    [4001, 'Invalid token', 401, 'invalid_token', 'unauthenticated', false, 0]
  ])
  t.match(events.all('error'), [{ code: 4001, status: 401, kind: 'unauthenticated' }])
  await assertNoRetry(t, ctx, 2, fast.maxDelay)
})

t.test('401 for an unknown user (failure user_not_found) is fatal at once', async t => {
  const ctx = await start(t, { auth: { reject: 'http', loadUser: async () => null } })
  t.match(await ctx.events.final(), { code: 4002, reason: 'User not found or inactive', status: 401, failure: 'user_not_found', kind: 'refused' })
  await assertNoRetry(t, ctx, 1, fast.maxDelay)
})

for (const [status, code, reason, failure, wsAuth] of [
  [403, 4003, 'Forbidden', 'forbidden', { roles: ['admin'] }],
  [404, 4004, 'Not found', 'not_found', { authorize: async () => 'not_found' }]
] as const) {
  t.test(`${status} behaves like ${code}: fatal, one attempt`, async t => {
    const ctx = await start(t, { auth: { reject: 'http' }, routes: routeWith(wsAuth) })
    const { events } = ctx
    t.match(await events.final(), { code, reason, status, failure, kind: 'refused', willRetry: false })
    t.match(events.all('error'), [{ code, reason, status, retry: 'never' }])
    await assertNoRetry(t, ctx, 1, fast.maxDelay)
  })
}

t.test('500 (a hook threw) backs off', async t => {
  const ctx = await start(t, { auth: { reject: 'http' }, routes: routeWith({ authorize: async () => { throw new Error('db') } }) },
    { reconnect: { ...fast, maxAttempts: 2 } })
  const { events, time, served } = ctx
  await untilFinal(events, time)
  t.same(events.all('close').map(c => [c.code, c.status, c.kind, c.delay, c.willRetry]), [
    [1011, 500, 'transient', 20, true],
    [1011, 500, 'transient', 40, true],
    [1011, 500, 'transient', 0, false]
  ])
  await assertNoRetry(t, ctx, 3, fast.maxDelay)
  t.same(served.attempts.map(at => at - served.attempts[0]), [0, 20, 60], 'the server saw the attempts the delays apart')
})

// These hooks are added after the plugin (so after @fastify/websocket): a hook that answers an
// upgrade before @fastify/websocket's own onRequest hook leaves the socket open on the server.
const answering = (status: number, body: unknown): ServeOptions['routes'] => (app) => {
  app.addHook('onRequest', async (_request, reply) => reply.code(status).send(body))
  app.get('/ws', { websocket: true }, () => {})
}

t.test('429 (a rate limiter) backs off', async t => {
  const ctx = await start(t, { routes: answering(429, { statusCode: 429, error: 'Too Many Requests', message: 'slow down' }) },
    { reconnect: { ...fast, maxAttempts: 1 } })
  const { events, time } = ctx
  await untilFinal(events, time)
  t.same(events.all('close').map(c => [c.code, c.reason, c.status, c.failure, c.delay, c.willRetry]), [
    [4029, 'Too many connections', 429, 'too_many_connections', 20, true],
    [4029, 'Too many connections', 429, 'too_many_connections', 0, false]
  ])
  await assertNoRetry(t, ctx, 2, fast.maxDelay)
})

t.test('a status the table does not know (502) is transient, reported as 1006', async t => {
  const ctx = await start(t, { routes: answering(502, 'bad gateway') }, { reconnect: { ...fast, maxAttempts: 1 } })
  const { events, time } = ctx
  await untilFinal(events, time)
  t.same(events.all('close').map(c => [c.code, c.status, c.failure, c.kind, c.willRetry]), [
    [1006, 502, undefined, 'transient', true],
    [1006, 502, undefined, 'transient', false]
  ])
  await assertNoRetry(t, ctx, 2, fast.maxDelay)
})
