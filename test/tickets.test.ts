// One-time connection tickets: issueTicket() and the `ticket` source, on one instance. The same
// across instances, through Redis: test/redis/tickets.test.ts.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { WsAuthPluginOptions, WsAuthRouteSetting, WsAuthClaims } from '../lib/types.ts'
import { buildApp, connect, connectWith, logCapture, refusal, type BuildOptions, type Closed } from './helpers/index.ts'

const INVALID: Closed = { code: 4001, reason: 'Invalid ticket' }

interface Established { type: string, user: { id: string, roles: string[] }, expires_at: string | null }

/** An app whose `/ws` and `/ws/rooms/:id` read tickets, and a plain `/other` reading tokens only. */
async function serve (t: Test, auth: WsAuthPluginOptions = {}, wsAuth: WsAuthRouteSetting = {}, more: BuildOptions = {}) {
  const loaded: unknown[] = []
  const built = await buildApp(t, {
    ...more,
    auth: {
      sources: ['ticket', 'header'],
      loadUser: (claims) => { loaded.push(claims); return { id: claims.sub as string, roles: (claims.roles as string[]) ?? [] } },
      ...auth
    },
    routes: (app: FastifyInstance) => {
      const echo = (socket: import('ws').WebSocket): void => { socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })) }
      app.get('/ws', { websocket: true, wsAuth }, echo)
      app.get('/ws/rooms/:id', { websocket: true, wsAuth: { roles: ['member'] } }, echo)
      app.get('/other', { websocket: true, wsAuth: { sources: ['header'] } }, echo)
    }
  })
  return { ...built, loaded, issue: (claims: WsAuthClaims, options?: { ttl?: number, route?: string }) => built.app.wsAuth.issueTicket(claims, options) }
}

t.test('a ticket opens one socket, once, with the claims it was issued for', async t => {
  const { url, issue, loaded } = await serve(t)
  const claims = { sub: 'u1', roles: ['member'], exp: Math.floor(Date.now() / 1000) + 3600 }
  const ticket = await issue(claims)
  t.match(ticket, /^[A-Za-z0-9_-]{24}$/, '144 random bits, base64url')
  const client = connectWith(url('/ws'), 'ticket', ticket)
  const first = await client.message(1) as Established
  t.equal(first.type, 'connection_established')
  t.equal(first.user.id, 'u1')
  t.equal(first.expires_at, new Date(claims.exp * 1000).toISOString(), 'the claims\' exp is the session\'s expiry')
  t.same(loaded, [claims], 'loadUser got the claims issued')
  client.send('hello')
  t.equal(await client.message(2), 'hello', 'the handler listens')

  t.same(await refusal(connectWith(url('/ws'), 'ticket', ticket)), INVALID, 'used: refused')
  t.equal(client.ws.readyState, client.ws.OPEN, 'the first socket stays open')
})

t.test('unknown, malformed, empty and expired tickets: 4001 Invalid ticket', async t => {
  const { url, issue, app } = await serve(t)
  const cases = [
    ['unknown', 'AAAAAAAAAAAAAAAAAAAAAAAA'],
    ['too short', 'abc'],
    ['not base64url', '!'.repeat(24)],
    ['a JWT', 'eyJhbGciOiJIUzI1NiJ9.e30.sig'],
    ['empty', '']
  ]
  for (const [what, ticket] of cases) {
    t.same(await refusal(connect(url('/ws?ticket=' + encodeURIComponent(ticket)))), INVALID, what)
  }
  const repeated = await issue({ sub: 'u1' })
  t.same(await refusal(connect(url(`/ws?ticket=${repeated}&ticket=${repeated}`))), INVALID, 'a repeated parameter')

  const expiring = await issue({ sub: 'u1' }, { ttl: 50 })
  // The ticket's deadline is in the store: wait until it has passed on this clock.
  const deadline = Date.now() + 60
  while (Date.now() < deadline) await new Promise(resolve => setImmediate(resolve))
  t.same(await refusal(connectWith(url('/ws'), 'ticket', expiring)), INVALID, 'past its ttl')
  t.equal(app.wsAuth.stats().failures['4001'], cases.length + 2, 'each refusal counted')
})

t.test('beyond 100,000 unused tickets on one instance, the oldest is dropped', async t => {
  const { url, issue } = await serve(t)
  const oldest = await issue({ sub: 'oldest' })
  const second = await issue({ sub: 'second' })
  for (let i = 0; i < 99_999; i++) await issue({ sub: 'filler' })
  t.same(await refusal(connectWith(url('/ws'), 'ticket', oldest)), INVALID, 'the oldest dropped for the 100,001st')
  t.equal((await connectWith(url('/ws'), 'ticket', second).message(1) as Established).user.id, 'second', 'the next one kept')
})

t.test('a ticket whose claims have expired since: 4001 Token expired', async t => {
  const { url, issue } = await serve(t)
  const exp = Math.floor(Date.now() / 1000) + 1
  const ticket = await issue({ sub: 'u1', exp })
  while (Date.now() < exp * 1000) await new Promise(resolve => setTimeout(resolve, 20))
  t.same(await refusal(connectWith(url('/ws'), 'ticket', ticket)), { code: 4001, reason: 'Token expired' })
})

t.test('a ticket bound to a route opens that route only; trying another uses it up', async t => {
  const { url, issue } = await serve(t)
  const bound = await issue({ sub: 'u1', roles: ['member'] }, { route: '/ws/rooms/:id' })
  const ok = connectWith(url('/ws/rooms/7'), 'ticket', bound)
  t.equal((await ok.message(1) as Established).type, 'connection_established', 'the route it names, any params')

  const misused = await issue({ sub: 'u1', roles: ['member'] }, { route: '/ws/rooms/:id' })
  t.same(await refusal(connectWith(url('/ws'), 'ticket', misused)), INVALID, 'another route')
  t.same(await refusal(connectWith(url('/ws/rooms/7'), 'ticket', misused)), INVALID, 'then used up')

  const unbound = await issue({ sub: 'u2' })
  t.same(await refusal(connectWith(url('/other'), 'ticket', unbound)), { code: 4001, reason: 'No token provided' },
    'a route that does not list the ticket source does not read it')
  t.equal((await connectWith(url('/ws'), 'ticket', unbound).message(1) as Established).type, 'connection_established',
    'and the ticket is still good')
})

t.test('after redemption the session is like any other: roles, authorize, limits', async t => {
  const { url, issue } = await serve(t, { maxConnectionsPerUser: 1 }, { authorize: (request) => !request.url.includes('deny') })
  t.same(await refusal(connectWith(url('/ws/rooms/1'), 'ticket', await issue({ sub: 'u1', roles: [] }))),
    { code: 4003, reason: 'Forbidden' }, 'a missing role')
  t.same(await refusal(connectWith(url('/ws?deny=1'), 'ticket', await issue({ sub: 'u1' }))),
    { code: 4003, reason: 'Forbidden' }, 'authorize')
  const first = connectWith(url('/ws'), 'ticket', await issue({ sub: 'u1' }))
  await first.message(1)
  t.same(await refusal(connectWith(url('/ws'), 'ticket', await issue({ sub: 'u1' }))),
    { code: 4029, reason: 'Too many connections' }, 'maxConnectionsPerUser')
})

t.test('a revoked jti or user is refused at redemption', async t => {
  const { url, issue, app } = await serve(t)
  const ticket = await issue({ sub: 'u1', jti: 'j1', exp: Math.floor(Date.now() / 1000) + 60 })
  app.wsAuth.revoke({ jti: 'j1' })
  t.same(await refusal(connectWith(url('/ws'), 'ticket', ticket)), { code: 4001, reason: 'Token revoked' })
})

t.test('a ticket session refreshes in band with a JWT of the same user', async t => {
  const { url, issue, sign } = await serve(t)
  const client = connectWith(url('/ws'), 'ticket', await issue({ sub: 'u1', exp: Math.floor(Date.now() / 1000) + 60 }))
  await client.message(1)
  const exp = Math.floor(Date.now() / 1000) + 600
  client.send({ type: 'auth', token: sign({ sub: 'u1', exp }) })
  t.same(await client.message(2), { type: 'token_refreshed', expires_at: new Date(exp * 1000).toISOString() })
})

t.test('two sockets racing with one ticket: exactly one is established', async t => {
  const { url, issue } = await serve(t)
  for (let round = 0; round < 20; round++) {
    const ticket = await issue({ sub: 'u' + round })
    const results = await Promise.all([1, 2, 3].map(() => refusal(connectWith(url('/ws'), 'ticket', ticket))))
    const established = results.filter(r => 'message' in r)
    t.equal(established.length, 1, `round ${round}: one established`)
    t.same(results.filter(r => !('message' in r)), [INVALID, INVALID], `round ${round}: the others refused`)
  }
})

t.test('reject: "http" answers 401 with the row', async t => {
  const { url, issue } = await serve(t, { reject: 'http' })
  const ticket = await issue({ sub: 'u1' })
  const first = connectWith(url('/ws'), 'ticket', ticket)
  t.equal((await first.message(1) as Established).type, 'connection_established')
  t.equal(await connectWith(url('/ws'), 'ticket', ticket).refusedStatus, 401, 'used: 401, no upgrade')
})

t.test('ticketParam renames the parameter', async t => {
  const { url, issue } = await serve(t, { ticketParam: 'one_time' })
  const ticket = await issue({ sub: 'u1' })
  t.same(await refusal(connectWith(url('/ws'), 'ticket', ticket)), { code: 4001, reason: 'No token provided' }, 'the default name is not read')
  t.equal((await connect(url('/ws?one_time=' + ticket)).message(1) as Established).type, 'connection_established')
})

t.test('no part of a ticket reaches a log line, at trace level too', async t => {
  const logs = logCapture()
  const { url, issue } = await serve(t, { loadUser: (claims) => { if (claims.sub === 'boom') throw new Error('loadUser failed'); return { id: claims.sub as string } } },
    {}, { fastify: { logger: { level: 'trace', stream: logs.stream } } })
  const tickets = [await issue({ sub: 'u1' }), await issue({ sub: 'boom' }), 'AAAAAAAAAAAAAAAAAAAAAAAA']
  const used = tickets[0]
  await connectWith(url('/ws'), 'ticket', used).message(1)
  await refusal(connectWith(url('/ws'), 'ticket', used))
  t.same(await refusal(connectWith(url('/ws'), 'ticket', tickets[1])), { code: 1011, reason: 'Internal error' })
  await refusal(connectWith(url('/ws'), 'ticket', tickets[2]))
  await refusal(connect(url('/nowhere?ticket=' + used)))
  await logs.waitFor(r => String(r.msg).includes('websocket authentication failed') && r.failure === 'invalid_ticket')
  await logs.waitFor('websocket authentication error')
  const text = logs.lines.join('\n')
  t.ok(text.includes('ticket=[REDACTED]'), 'the URL is logged with the ticket redacted')
  for (const ticket of tickets) {
    t.notOk(text.includes(ticket), 'no ticket in the logs')
    t.notOk(text.includes(ticket.slice(0, 12)), 'nor half of one')
  }
})

t.test('issueTicket refuses what it cannot keep, naming it', async t => {
  const { issue } = await serve(t)
  const cases: Array<[string, unknown, unknown, RegExp]> = [
    ['claims not an object', 'u1', undefined, /issueTicket: claims must be verified claims/],
    ['claims an array', ['u1'], undefined, /issueTicket: claims must be verified claims/],
    ['a claim of the wrong type', { sub: 'u1', exp: 'soon' }, undefined, /exp has the wrong type/],
    ['an exp that has passed', { sub: 'u1', exp: 1 }, undefined, /issueTicket: claims.exp has passed/],
    ['claims that are not JSON', { sub: 'u1', n: 1n }, undefined, /issueTicket: claims cannot be encoded as JSON/],
    ['claims too big', { sub: 'u1', blob: 'x'.repeat(9000) }, undefined, /at most 8192 bytes/],
    ['options not an object', { sub: 'u1' }, 'route', /issueTicket: options must be an object/],
    ['ttl zero', { sub: 'u1' }, { ttl: 0 }, /issueTicket: ttl must be a whole number of ms from 1 to 600000/],
    ['ttl too long', { sub: 'u1' }, { ttl: 600_001 }, /issueTicket: ttl/],
    ['ttl not a number', { sub: 'u1' }, { ttl: '30s' }, /issueTicket: ttl/],
    ['a route that reads no tickets', { sub: 'u1' }, { route: '/other' }, /issueTicket: route must be the pattern of a route that reads tickets \(\/ws, \/ws\/rooms\/:id\)/],
    ['a URL instead of a pattern', { sub: 'u1' }, { route: '/ws/rooms/7' }, /issueTicket: route/],
    ['a route not a string', { sub: 'u1' }, { route: 7 }, /issueTicket: route/]
  ]
  for (const [what, claims, options, message] of cases) {
    await t.rejects(issue(claims as WsAuthClaims, options as { ttl: number }), { code: 'FST_WS_AUTH_INVALID_ARGUMENT', message }, what)
  }
})

t.test('ticketParam must differ from queryParam', async t => {
  await t.rejects(buildApp(t, { auth: { queryParam: 'ticket' } }), { code: 'FST_WS_AUTH_INVALID_OPTION', message: /option "ticketParam" must differ from queryParam/ })
})

t.test('an app without ticket routes issues tickets for any route (another service redeems them)', async t => {
  const { app } = await buildApp(t, {})
  t.match(await app.wsAuth.issueTicket({ sub: 'u1' }, { route: '/ws/elsewhere' }), /^[A-Za-z0-9_-]{24}$/)
})

t.test('a cluster adapter without ticket storage: issueTicket rejects naming the adapter', async t => {
  const adapter = {
    start: async () => {},
    close: async () => {},
    acquire: async () => ({ ok: true as const }),
    release: () => {},
    publish: async () => 0,
    revoke: async () => 0,
    connections: async () => [],
    stats: async () => ({ instances: {} }) as never
  }
  const { app, url } = await buildApp(t, { auth: { adapter, sources: ['ticket'] } })
  await t.rejects(app.wsAuth.issueTicket({ sub: 'u1' }), { code: 'FST_WS_AUTH_INVALID_OPTION', message: /option "adapter" has no putTicket\/takeTicket/ })
  t.same(await refusal(connect(url('/ws?ticket=AAAAAAAAAAAAAAAAAAAAAAAA'))), { code: 1013, reason: 'Try again later' }, 'nothing to redeem from')
})
