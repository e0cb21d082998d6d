// The demo server without a browser: the page, the close-code table, the mint, the ticket route,
// and what each kind of token (or ticket) meets on each route (real server, real `ws` clients).
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { closeCodes } from 'fastify-ws-auth'
import { answer, connect, refusal, type Client } from '../test/helpers/index.ts'
import { build, type DemoOptions } from './app.ts'

type Msg = Record<string, unknown>

interface Started {
  app: FastifyInstance
  /** A socket on `path` with a token of `user` and `kind` in `?token=`. */
  open: (path: string, user: string, kind: string) => Promise<Client>
  /** A socket on `path` with a ticket in `?ticket=`. */
  redeem: (path: string, ticket: string) => Client
}

async function start (t: Test, opts: DemoOptions = {}): Promise<Started> {
  const app = await build(opts)
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  async function open (path: string, user: string, kind: string): Promise<Client> {
    const { token } = await mint(app, user, kind)
    return connect(`ws://127.0.0.1:${port}${path}?token=${token}`)
  }
  const redeem = (path: string, ticket: string): Client => connect(`ws://127.0.0.1:${port}${path}?ticket=${encodeURIComponent(ticket)}`)
  return { app, open, redeem }
}

/** Asks the ticket route for a ticket to `route` (a pattern) with `token` as the bearer; `null` for none. */
async function ticketFor (app: FastifyInstance, token: string | null, route: string): Promise<{ statusCode: number, body: Msg }> {
  const res = await app.inject({
    method: 'POST',
    url: '/demo/ticket',
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
    payload: { route }
  })
  return { statusCode: res.statusCode, body: res.json() }
}

async function mint (app: FastifyInstance, user: string, kind: string): Promise<{ token: string, claims: Msg }> {
  const res = await app.inject({ method: 'POST', url: '/demo/token', payload: { user, kind } })
  return res.json()
}

t.test('serves the page, its script and the plugin\'s close-code table', async t => {
  const { app } = await start(t)
  const page = await app.inject('/')
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  for (const id of ['user', 'kind', 'source', 'route', 'mint', 'connect', 'refresh', 'log', 'status', 'codes', 'topics', 'topic-events']) {
    t.match(page.body, `id="${id}"`, `#${id}`)
  }
  const script = await app.inject('/app.js')
  t.equal(script.statusCode, 200)
  t.match(script.headers['content-type'], /^text\/javascript/)
  const table = await app.inject('/demo/close-codes')
  t.same(table.json(), closeCodes, 'the table as exported by the package')
  t.same(table.json(), app.wsAuth.closeCodes, 'the table in force')
})

t.test('the mint', async t => {
  const { app } = await start(t, { shortLivedMs: 10_000 })
  const now = Math.floor(Date.now() / 1000)
  const valid = await mint(app, 'alice', 'valid')
  t.match(valid.claims, { sub: 'alice', roles: ['admin'] })
  t.ok((valid.claims.exp as number) > now + 600)
  // 10 s after the mint, rounded up to the second: between the bounds read around the request.
  const before = Math.ceil((Date.now() + 10_000) / 1000)
  const short = await mint(app, 'bob', 'short')
  const after = Math.ceil((Date.now() + 10_000) / 1000)
  t.ok((short.claims.exp as number) >= before && (short.claims.exp as number) <= after, 'short-lived: exp 10 s after the mint')
  t.ok(((await mint(app, 'carol', 'expired')).claims.exp as number) < now)
  t.match((await mint(app, 'carol', 'wrong_role')).claims, { sub: 'carol', roles: ['guest'] })
  const refused = await app.inject({ method: 'POST', url: '/demo/token', payload: { user: 'mallory', kind: 'valid' } })
  t.equal(refused.statusCode, 400, 'unknown users get no token')
})

t.test('what each token meets', async t => {
  const { open } = await start(t)
  const cases: Array<[string, string, string, { code: number, reason: string } | 'established']> = [
    ['/ws/stream', 'carol', 'valid', 'established'],
    ['/ws/stream', 'alice', 'expired', { code: 4001, reason: 'Token expired' }],
    ['/ws/stream', 'alice', 'tampered', { code: 4001, reason: 'Invalid token' }],
    ['/ws/stream', 'dave', 'valid', { code: 4002, reason: 'User not found or inactive' }],
    ['/ws/admin', 'alice', 'valid', 'established'],
    ['/ws/admin', 'bob', 'valid', { code: 4003, reason: 'Forbidden' }],
    ['/ws/admin', 'alice', 'wrong_role', { code: 4003, reason: 'Forbidden' }],
    ['/ws/projects/apollo', 'carol', 'valid', 'established'],
    ['/ws/projects/hermes', 'carol', 'valid', { code: 4003, reason: 'Forbidden' }],
    ['/ws/projects/hermes', 'alice', 'valid', 'established'],
    ['/ws/projects/unknown', 'alice', 'valid', { code: 4004, reason: 'Not found' }]
  ]
  for (const [path, user, kind, expected] of cases) {
    const c = await open(path, user, kind)
    if (expected === 'established') {
      t.match(await c.message(1), { type: 'connection_established', user: { id: user } }, `${user}/${kind} on ${path}: established`)
      c.ws.close()
    } else {
      t.same(await c.closed, expected, `${user}/${kind} on ${path}: ${expected.code}`)
    }
  }
})

t.test('routes: project details, the stream ticks, the kick closes with 4001 Token revoked', async t => {
  const { app, open } = await start(t, { tickMs: 20 })
  const project = await open('/ws/projects/apollo', 'bob', 'valid')
  t.match(await project.message(2), { type: 'project', id: 'apollo', name: 'Apollo' })
  project.ws.close()
  const stream = await open('/ws/stream', 'bob', 'valid')
  t.match(await stream.message(2), { type: 'tick', n: 1 })
  const kicked = await app.inject({ method: 'POST', url: '/demo/kick', payload: { user: 'bob' } })
  t.same(kicked.json(), { closed: 1 })
  t.same(await stream.closed, { code: 4001, reason: 'Token revoked' })
})

async function publish (app: FastifyInstance, topic: string): Promise<{ statusCode: number, body: Msg }> {
  const res = await app.inject({ method: 'POST', url: '/demo/publish', payload: { topic } })
  return { statusCode: res.statusCode, body: res.json() }
}

t.test('topics on /ws/news: the page\'s list, subscribe answered or refused, publications only on request', async t => {
  const { app, open } = await start(t)
  const info = (await app.inject('/demo/info')).json()
  t.equal(info.topicsRoute, '/ws/news')
  t.same(info.topics.map((x: Msg) => x.topic), ['news:general', 'news:admin'], 'the topics the panel lists')
  t.ok(info.routes.some((r: Msg) => r.path === '/ws/news'), 'the route is in the route list')

  const carol = await open('/ws/news', 'carol', 'valid')
  t.match(await carol.message(1), { type: 'connection_established', user: { id: 'carol', roles: ['viewer'] } })
  t.same(await answer(carol, { type: 'subscribe', topic: 'news:general', id: 1 }), { type: 'subscribed', topic: 'news:general', id: 1 })
  t.same(await answer(carol, { type: 'subscribe', topic: 'news:admin', id: 2 }),
    { type: 'refused', of: 'subscribe', topic: 'news:admin', code: 4003, reason: 'Forbidden', id: 2 }, 'a viewer: news:admin refused 4003')
  t.same(await answer(carol, { type: 'subscribe', topic: 'news:sports', id: 3 }),
    { type: 'refused', of: 'subscribe', topic: 'news:sports', code: 4004, reason: 'Not found', id: 3 }, 'no pattern: 4004')
  t.same(await answer(carol, 'hello'), { type: 'echo', data: 'hello' }, 'the socket stays open; other messages reach the handler')
  t.equal(carol.messages.filter(m => (m as Msg).type === 'publication').length, 0, 'nothing is published without asking')

  const alice = await open('/ws/news', 'alice', 'valid')
  await alice.message(1)
  t.same(await answer(alice, { type: 'subscribe', topic: 'news:admin', id: 1 }), { type: 'subscribed', topic: 'news:admin', id: 1 }, 'an admin: news:admin')

  const general = await publish(app, 'news:general')
  t.match(general, { statusCode: 200, body: { topic: 'news:general', n: 1, reached: 1 } }, 'news:general reaches carol')
  t.match(await carol.messageWhere(m => (m as Msg).type === 'publication'),
    { type: 'publication', topic: 'news:general', data: { n: 1, headline: 'news:general bulletin #1', at: String } })
  t.match(await publish(app, 'news:admin'), { body: { n: 1, reached: 1 } }, 'news:admin reaches alice only')
  t.match(await alice.messageWhere(m => (m as Msg).type === 'publication'), { topic: 'news:admin', data: { n: 1 } })
  t.match(await publish(app, 'news:general'), { body: { n: 2, reached: 1 } }, 'counted per topic')
  await carol.messageWhere(m => (m as Msg).type === 'publication' && ((m as Msg).data as Msg).n === 2)

  t.same(await answer(carol, { type: 'unsubscribe', topic: 'news:general', id: 4 }), { type: 'unsubscribed', topic: 'news:general', id: 4 })
  t.match(await publish(app, 'news:general'), { body: { n: 3, reached: 0 } }, 'no longer delivered')
  t.same(carol.messages.filter(m => (m as Msg).type === 'publication').map(m => ((m as Msg).data as Msg).n), [1, 2], 'carol saw #1 and #2, once each')
  t.match(app.wsAuth.stats(), { subscriptions: 1, refused: { 4003: 1, 4004: 1 } })
  t.equal((await publish(app, 'news:sports')).statusCode, 400, 'only the listed topics can be published')
  carol.ws.close()
  alice.ws.close()
})

t.test('the ticket route: a ticket for the bearer of a valid token, bound to a route, opening one socket once', async t => {
  const { app, redeem } = await start(t, { shortLivedMs: 10_000 })
  const info = (await app.inject('/demo/info')).json()
  t.same(info.options.sources, ['query', 'protocol', 'message', 'ticket'], 'every route reads tickets')
  t.same(info.sources.map((s: Msg) => s.source), ['query', 'protocol', 'message', 'ticket', 'ticket_reuse', 'none'])
  t.same(info.routes.find((r: Msg) => r.path === '/ws/projects/hermes').pattern, '/ws/projects/:id', 'each route names its pattern')

  const { token } = await mint(app, 'alice', 'valid')
  const issued = await ticketFor(app, token, '/ws/stream')
  t.equal(issued.statusCode, 200)
  t.match(issued.body, { ticket: /^[A-Za-z0-9_-]{24}$/, route: '/ws/stream', ttl: 30_000 })
  const ticket = issued.body.ticket as string
  const first = redeem('/ws/stream', ticket)
  t.match(await first.message(1), { type: 'connection_established', user: { id: 'alice', roles: ['admin'] } })
  t.same(await redeem('/ws/stream', ticket).closed, { code: 4001, reason: 'Invalid ticket' }, 'used: refused')
  first.ws.close()

  const bound = (await ticketFor(app, token, '/ws/stream')).body.ticket as string
  t.same(await redeem('/ws/admin', bound).closed, { code: 4001, reason: 'Invalid ticket' }, 'another route: refused')
  const project = (await ticketFor(app, (await mint(app, 'carol', 'valid')).token, '/ws/projects/:id')).body.ticket as string
  const apollo = redeem('/ws/projects/apollo', project)
  t.match(await apollo.message(2), { type: 'project', id: 'apollo' }, 'a pattern: any of its URLs, and authorize as for a token')
  apollo.ws.close()

  const short = await mint(app, 'bob', 'short')
  const session = redeem('/ws/stream', (await ticketFor(app, short.token, '/ws/stream')).body.ticket as string)
  t.match(await session.message(1), { expires_at: new Date((short.claims.exp as number) * 1000).toISOString() }, 'the token\'s exp is the session\'s')
  session.ws.close()

  const wrongRole = (await ticketFor(app, (await mint(app, 'alice', 'wrong_role')).token, '/ws/admin')).body.ticket as string
  t.same(await redeem('/ws/admin', wrongRole).closed, { code: 4003, reason: 'Forbidden' }, 'the roles of the token')
  const inactive = (await ticketFor(app, (await mint(app, 'dave', 'valid')).token, '/ws/stream')).body.ticket as string
  t.same(await redeem('/ws/stream', inactive).closed, { code: 4002, reason: 'User not found or inactive' }, 'loadUser at redemption')
})

t.test('the ticket route refuses what it must', async t => {
  const { app } = await start(t)
  t.equal((await ticketFor(app, null, '/ws/stream')).statusCode, 401, 'no token')
  for (const kind of ['expired', 'tampered']) {
    const refused = await ticketFor(app, (await mint(app, 'alice', kind)).token, '/ws/stream')
    t.equal(refused.statusCode, 401, `a token ${kind}: no ticket`)
    t.notOk('ticket' in refused.body)
  }
  const { token } = await mint(app, 'alice', 'valid')
  t.equal((await ticketFor(app, token, '/ws/projects/apollo')).statusCode, 400, 'a URL, not a pattern')
  t.equal((await ticketFor(app, token, '/ws/elsewhere')).statusCode, 400, 'a route of no socket')
})

/** The samples of `name` in Prometheus's text format, each as its labels and value, sorted by their labels. */
function samples (text: string, name: string): Array<{ labels: Record<string, string>, value: number }> {
  const found = [...text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))].map(([, labels = '', value]) => ({
    labels: Object.fromEntries([...labels.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => [k, v])),
    value: Number(value)
  }))
  return found.sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)))
}

t.test('/metrics: the plugin\'s ws_auth_* metrics, on the demo\'s own registry, for Prometheus', async t => {
  const { app, open } = await start(t)
  const before = await app.inject('/metrics')
  t.equal(before.statusCode, 200, 'GET /metrics')
  t.equal(before.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8', 'Prometheus\'s text format')
  const names = [...before.body.matchAll(/^# TYPE (\S+) (\w+)$/gm)].map(([, name, type]) => `${name} ${type}`)
  for (const metric of ['ws_auth_handshakes_total counter', 'ws_auth_handshake_duration_seconds histogram', 'ws_auth_sessions gauge']) {
    t.ok(names.includes(metric), metric)
  }
  t.same(names.filter(n => !n.startsWith('ws_auth_')), [], 'nothing else: no default process metrics')
  t.same(samples(before.body, 'ws_auth_handshakes_total'), [], 'no handshake yet: the other tests\' apps count on registries of their own')

  const project = await open('/ws/projects/apollo', 'carol', 'valid')
  t.match(await project.message(2), { type: 'project', id: 'apollo' }, 'carol on /ws/projects/apollo: established')
  t.same(await refusal(await open('/ws/admin', 'bob', 'valid')), { code: 4003, reason: 'Forbidden' }, 'bob on /ws/admin: 4003')
  const text = (await app.inject('/metrics')).body
  t.same(samples(text, 'ws_auth_handshakes_total'), [
    { labels: { route: '/ws/admin', outcome: 'forbidden' }, value: 1 },
    { labels: { route: '/ws/projects/:id', outcome: 'established' }, value: 1 }
  ], 'by route pattern (never the URL) and outcome')
  t.same(samples(text, 'ws_auth_sessions'), [{ labels: { route: '/ws/projects/:id' }, value: 1 }], 'the open session')
  t.same(samples(text, 'ws_auth_handshake_duration_seconds_count'), [
    { labels: { route: '/ws/admin' }, value: 1 },
    { labels: { route: '/ws/projects/:id' }, value: 1 }
  ], 'each handshake timed')
  project.ws.close()
})
