// One-time tickets across instances with a real redis-server: issued on one instance, redeemed
// once on any, the race between instances, nothing redeemable kept in Redis, and Redis down.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { connectWith, WAIT_MS } from '../helpers/index.ts'
import { startRedis, type RedisServer } from './server.ts'
import { bounded, cluster, inspector, instance, outcome, prefix } from './helpers.ts'

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

function routes (app: FastifyInstance): void {
  app.get('/ws/a', { websocket: true }, (socket) => { socket.on('message', () => {}) })
  app.get('/ws/b', { websocket: true }, (socket) => { socket.on('message', () => {}) })
}
const auth = { sources: ['ticket' as const, 'query' as const] }

t.test('a ticket issued on one instance opens a socket on another, once', async t => {
  const [a, b, c] = await cluster(t, redis.url, 3, { routes, auth })
  const ticket = await a.app.wsAuth.issueTicket({ sub: 'u1' })
  t.equal(await outcome(connectWith(b.url('/ws/a'), 'ticket', ticket)), 'established', 'redeemed on another instance')
  t.equal(await outcome(connectWith(c.url('/ws/a'), 'ticket', ticket)), '4001 Invalid ticket', 'used, on a third')
  t.equal(await outcome(connectWith(a.url('/ws/a'), 'ticket', ticket)), '4001 Invalid ticket', 'used, on the issuer')
  t.same(b.app.wsAuth.connections().map(c => c.userId), ['u1'])
})

t.test('two instances racing with one ticket: exactly one socket established', async t => {
  const [a, b] = await cluster(t, redis.url, 2, { routes, auth })
  for (let round = 0; round < 25; round++) {
    const ticket = await a.app.wsAuth.issueTicket({ sub: 'u' + round })
    const results = await Promise.all([a, b, a, b].map(i => outcome(connectWith(i.url('/ws/a'), 'ticket', ticket))))
    t.equal(results.filter(r => r === 'established').length, 1, `round ${round}: one established`)
    t.equal(results.filter(r => r === '4001 Invalid ticket').length, 3, `round ${round}: three refused`)
  }
})

t.test('Redis keeps a hash of the ticket, the claims, the route and a TTL; no ticket', async t => {
  const [a] = await cluster(t, redis.url, 1, { routes, auth })
  const view = inspector(t, redis.url)
  const ticket = await a.app.wsAuth.issueTicket({ sub: 'u1', roles: ['staff'] }, { ttl: 20_000, route: '/ws/b' })
  const keys = await view.keys('*ticket:*')
  const mine = []
  for (const key of keys) if ((await view.get(key))?.includes('"route":"/ws/b"') === true) mine.push(key)
  t.equal(mine.length, 1, 'one key for the ticket')
  t.notOk(mine[0].includes(ticket), 'the key is not the ticket')
  t.same(JSON.parse((await view.get(mine[0]))!), { route: '/ws/b', claims: { sub: 'u1', roles: ['staff'] } })
  const ttl = await view.pttl(mine[0])
  t.ok(ttl > 0 && ttl <= 20_000, `expires with the ticket (${ttl} ms left)`)
  t.equal(await outcome(connectWith(a.url('/ws/a'), 'ticket', ticket)), '4001 Invalid ticket', 'another route')
  t.equal(await view.exists(mine[0]), 0, 'taken on the first try, even a wrong one')
})

t.test('a ticket past its ttl is gone from Redis too', async t => {
  const [a] = await cluster(t, redis.url, 1, { routes, auth })
  const ticket = await a.app.wsAuth.issueTicket({ sub: 'u1' }, { ttl: 30 })
  const deadline = Date.now() + 60
  while (Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(await outcome(connectWith(a.url('/ws/a'), 'ticket', ticket)), '4001 Invalid ticket')
})

t.test('Redis down: issueTicket rejects, a ticket handshake gets 1013, tokens still work', async t => {
  const own = await startRedis(t)
  const a = await instance(t, own.url, prefix(), { routes, auth, redis: { requestTimeout: 500 } })
  const ticket = await a.app.wsAuth.issueTicket({ sub: 'u1' })
  await own.stop()
  await a.logs.waitFor('Redis unavailable; retrying')
  await t.rejects(bounded(a.app.wsAuth.issueTicket({ sub: 'u2' }), 'issueTicket', WAIT_MS), /Redis/, 'issuing needs Redis')
  t.equal(await outcome(connectWith(a.url('/ws/a'), 'ticket', ticket)), '1013 Try again later', 'a ticket cannot be checked: back off')
  const line = await a.logs.waitFor(r => r.failure === 'try_again_later')
  t.match(line, { msg: 'websocket authentication failed', code: 1013, err: { message: /Redis/ } }, 'the cause is logged')
  t.notOk(a.logs.lines.join('\n').includes(ticket), 'without the ticket')
  t.equal(await outcome(connectWith(a.url('/ws/a'), 'query', a.sign({ sub: 'u3' }))), 'established', 'token handshakes go on')
})
