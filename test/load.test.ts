import t from 'tap'
import type { TokenSource } from '../lib/types.ts'
import { buildApp, connect, connectWith, spyRoute, type Client, type Closed, type RouteSpy } from './helpers/index.ts'
import { createSigner } from 'fast-jwt'

const N = 200

const SOURCES: TokenSource[] = ['query', 'header', 'protocol', 'message']

function isEstablished (m: unknown): m is { type: string, client_id: string, user: { id: string } } {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'connection_established'
}

/** The user ids the route handler saw. */
const handled = (spy: RouteSpy): string[] => spy.users.map(u => String((u as { id?: unknown }).id))

async function closeAll (clients: Client[]): Promise<Closed[]> {
  for (const c of clients) c.ws.close(1000)
  return Promise.all(clients.map(c => c.closed))
}

t.test(`${N} concurrent handshakes over query, header, protocol and message are all established`, async t => {
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, { routes (app) { spy = spyRoute(app, '/ws') } })
  const clients = Array.from({ length: N }, (_, i) =>
    connectWith(url('/ws'), SOURCES[i % SOURCES.length], sign({ sub: `u${i}`, roles: ['member'] })))

  const firsts = await Promise.all(clients.map(c => c.message(1)))

  t.ok(firsts.every(isEstablished), 'every client got connection_established first')
  t.same(firsts.map(m => (m as { user: { id: string } }).user.id), clients.map((_, i) => `u${i}`),
    'each client was authenticated as its own user')
  t.equal(new Set(firsts.map(m => (m as { client_id: string }).client_id)).size, N, 'client ids are unique')
  t.equal(spy.calls, N, 'the handler ran once per connection')
  t.same(handled(spy).sort(), clients.map((_, i) => `u${i}`).sort(), 'the handler saw every user')
  const closes = await closeAll(clients)
  t.ok(closes.every(c => c.code === 1000), 'no client was closed by the server')
  t.ok(clients.every(c => c.messages.length === 1), 'no client received anything but connection_established')
})

t.test(`${N} concurrent mixed valid and invalid handshakes: each gets exactly its verdict`, async t => {
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: {
      loadUser: (claims) => {
        const c = claims as { sub: string, roles?: string[] }
        return c.sub.startsWith('ghost') ? null : { id: c.sub, roles: c.roles ?? [], permissions: [] }
      }
    },
    routes (app) {
      spy = spyRoute(app, '/ws/items/:id', {
        roles: ['member'],
        authorize: (request) => (request.params as { id: string }).id === 'missing' ? 'not_found' : true
      })
    }
  })
  const forge = createSigner({ key: 'not-the-server-secret-but-long-enough' })
  const past = Math.floor(Date.now() / 1000) - 60

  interface Case { client: Client, expect: Closed | 'established', id: string }
  const kinds: Array<(i: number) => Case> = [
    // valid, one per source
    (i) => ({ client: connectWith(url('/ws/items/1'), 'query', sign({ sub: `v${i}`, roles: ['member'] })), expect: 'established', id: `v${i}` }),
    (i) => ({ client: connectWith(url('/ws/items/1'), 'header', sign({ sub: `v${i}`, roles: ['member'] })), expect: 'established', id: `v${i}` }),
    (i) => ({ client: connectWith(url('/ws/items/1'), 'protocol', sign({ sub: `v${i}`, roles: ['member'] })), expect: 'established', id: `v${i}` }),
    (i) => ({ client: connectWith(url('/ws/items/1'), 'message', sign({ sub: `v${i}`, roles: ['member'] })), expect: 'established', id: `v${i}` }),
    // invalid, one per failure class, spread over the sources
    (i) => ({ client: connectWith(url('/ws/items/1'), 'query', forge({ sub: `x${i}`, roles: ['member'] })), expect: { code: 4001, reason: 'Invalid token' }, id: `x${i}` }),
    (i) => ({ client: connectWith(url('/ws/items/1'), 'header', sign({ sub: `x${i}`, roles: ['member'], exp: past })), expect: { code: 4001, reason: 'Token expired' }, id: `x${i}` }),
    (i) => ({ client: connectWith(url('/ws/items/1'), 'protocol', sign({ sub: `ghost${i}`, roles: ['member'] })), expect: { code: 4002, reason: 'User not found or inactive' }, id: `x${i}` }),
    (i) => ({ client: connectWith(url('/ws/items/1'), 'message', sign({ sub: `x${i}`, roles: ['guest'] })), expect: { code: 4003, reason: 'Forbidden' }, id: `x${i}` }),
    (i) => ({ client: connectWith(url('/ws/items/missing'), 'query', sign({ sub: `x${i}`, roles: ['member'] })), expect: { code: 4004, reason: 'Not found' }, id: `x${i}` }),
    (i) => {
      const client = connect(url('/ws/items/1'))
      client.ws.once('open', () => client.send({ type: 'hello', token: 'x' }))
      return { client, expect: { code: 4001, reason: 'Invalid auth message' }, id: `x${i}` }
    }
  ]
  const cases = Array.from({ length: N }, (_, i) => kinds[i % kinds.length](i))
  const valid = cases.filter(c => c.expect === 'established')
  const invalid = cases.filter(c => c.expect !== 'established')
  t.equal(valid.length, N * 4 / kinds.length, 'the mix holds valid connections')

  const [firsts, refusals] = await Promise.all([
    Promise.all(valid.map(c => c.client.message(1))),
    Promise.all(invalid.map(c => c.client.closed))
  ])

  t.ok(firsts.every(isEstablished), 'every valid client was established')
  t.same(firsts.map(m => (m as { user: { id: string } }).user.id), valid.map(c => c.id), 'as its own user')
  t.same(refusals, invalid.map(c => c.expect), 'every invalid client was closed with the code and reason of its failure')
  t.ok(invalid.every(c => c.client.messages.length === 0), 'no invalid client received any message')
  t.same(handled(spy).sort(), valid.map(c => c.id).sort(), 'the handler ran for the valid clients only')

  const closes = await closeAll(valid.map(c => c.client))
  t.ok(closes.every(c => c.code === 1000), 'no valid client was closed by the server')
  t.ok(valid.every(c => c.client.messages.length === 1), 'valid clients received only connection_established')
})
