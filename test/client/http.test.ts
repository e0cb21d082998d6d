// reject: 'http' refuses the upgrade with an HTTP status; in Node, `ws` exposes it and the client
// maps it to the table row with that status (the body's `failure` first).
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { createClient } from '../../lib/client/index.ts'
import type { ClientOptions } from '../../lib/client/index.ts'
import { serve, type ServeOptions, type Served } from './helpers/server.ts'
import { quiet, record } from './helpers/record.ts'

const fast = { initialDelay: 20, maxDelay: 1000, factor: 2, jitter: false }
const NO_RETRY_WINDOW = 100

function start (t: Test, served: Served, options: Partial<ClientOptions> = {}) {
  const client = createClient({ url: served.url(), token: served.sign({ sub: 'u1', roles: ['user'] }), WebSocket, reconnect: fast, ...options })
  const events = record(client)
  t.teardown(() => client.close())
  return { client, events }
}

const routeWith = (wsAuth: object): ServeOptions['routes'] => (app) => { app.get('/ws', { websocket: true, wsAuth }, () => {}) }

t.test('401 behaves like 4001: one fresh token, then fatal', async t => {
  const served = await serve(t, { auth: { reject: 'http' } })
  const { events } = start(t, served, { token: 'garbage' })
  await events.final()
  t.same(events.all('close').map(c => [c.code, c.reason, c.status, c.failure, c.kind, c.willRetry, c.delay]), [
    [4001, 'Invalid token', 401, 'invalid_token', 'unauthenticated', true, 0],
    [4001, 'Invalid token', 401, 'invalid_token', 'unauthenticated', false, 0]
  ])
  t.match(events.all('error'), [{ code: 4001, status: 401, kind: 'unauthenticated' }])
  await quiet(NO_RETRY_WINDOW)
  t.equal(served.attempts.length, 2)
})

t.test('401 for an unknown user (failure user_not_found) is fatal at once', async t => {
  const served = await serve(t, { auth: { reject: 'http', loadUser: async () => null } })
  const { events } = start(t, served)
  t.match(await events.final(), { code: 4002, reason: 'User not found or inactive', status: 401, failure: 'user_not_found', kind: 'refused' })
  await quiet(NO_RETRY_WINDOW)
  t.equal(served.attempts.length, 1)
})

for (const [status, code, reason, failure, wsAuth] of [
  [403, 4003, 'Forbidden', 'forbidden', { roles: ['admin'] }],
  [404, 4004, 'Not found', 'not_found', { authorize: async () => 'not_found' }]
] as const) {
  t.test(`${status} behaves like ${code}: fatal, one attempt`, async t => {
    const served = await serve(t, { auth: { reject: 'http' }, routes: routeWith(wsAuth) })
    const { events } = start(t, served)
    t.match(await events.final(), { code, reason, status, failure, kind: 'refused', willRetry: false })
    t.match(events.all('error'), [{ code, reason, status, retry: 'never' }])
    await quiet(NO_RETRY_WINDOW)
    t.equal(served.attempts.length, 1)
  })
}

t.test('500 (a hook threw) backs off', async t => {
  const served = await serve(t, { auth: { reject: 'http' }, routes: routeWith({ authorize: async () => { throw new Error('db') } }) })
  const { events } = start(t, served, { reconnect: { ...fast, maxAttempts: 2 } })
  await events.final()
  t.same(events.all('close').map(c => [c.code, c.status, c.kind, c.delay, c.willRetry]), [
    [1011, 500, 'transient', 20, true],
    [1011, 500, 'transient', 40, true],
    [1011, 500, 'transient', 0, false]
  ])
  t.equal(served.attempts.length, 3)
})

// These hooks are added after the plugin (so after @fastify/websocket): a hook that answers an
// upgrade before @fastify/websocket's own onRequest hook leaves the socket open on the server.
const answering = (status: number, body: unknown): ServeOptions['routes'] => (app) => {
  app.addHook('onRequest', async (_request, reply) => reply.code(status).send(body))
  app.get('/ws', { websocket: true }, () => {})
}

t.test('429 (a rate limiter) backs off', async t => {
  const served = await serve(t, { routes: answering(429, { statusCode: 429, error: 'Too Many Requests', message: 'slow down' }) })
  const { events } = start(t, served, { reconnect: { ...fast, maxAttempts: 1 } })
  await events.final()
  t.same(events.all('close').map(c => [c.code, c.reason, c.status, c.failure, c.delay, c.willRetry]), [
    [4029, 'Too many connections', 429, 'too_many_connections', 20, true],
    [4029, 'Too many connections', 429, 'too_many_connections', 0, false]
  ])
})

t.test('a status the table does not know (502) is transient, reported as 1006', async t => {
  const served = await serve(t, { routes: answering(502, 'bad gateway') })
  const { events } = start(t, served, { reconnect: { ...fast, maxAttempts: 1 } })
  await events.final()
  t.same(events.all('close').map(c => [c.code, c.status, c.failure, c.kind, c.willRetry]), [
    [1006, 502, undefined, 'transient', true],
    [1006, 502, undefined, 'transient', false]
  ])
})
