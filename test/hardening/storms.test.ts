// Mixed storms: thousands of valid and invalid handshakes interleaved (bounded concurrency). Every
// valid one is established as its own user, every invalid one refused with exactly its code and
// reason (or HTTP status), nothing else; the handler runs once per valid one; counts return to baseline.
import t from 'tap'
import { createSigner } from 'fast-jwt'
import type { TokenSource, WsAuthClaims } from '../../lib/types.ts'
import { buildApp, connect, connectWith, refusal, serverSockets, spyRoute, type Client, type Closed, type RouteSpy } from '../helpers/index.ts'
import { b64url, mulberry32, nowSeconds, pool } from './helpers.ts'

const N = 2000
const IN_FLIGHT = 100
const SEED = Number(process.env.STORM_SEED ?? 20_000)

type Expect = { established: string } | { closed: Closed } | { status: number }

interface Kind {
  name: string
  open (i: number): Client
  expect (i: number): Expect
}

t.test(`${N} interleaved handshakes, ${IN_FLIGHT} in flight (seed ${SEED})`, async t => {
  const spies: RouteSpy[] = []
  const { app, url, sign } = await buildApp(t, {
    auth: {
      loadUser: (claims: WsAuthClaims) => {
        const { sub, roles } = claims as { sub: string, roles?: string[] }
        return sub.startsWith('ghost') ? null : { id: sub, roles: roles ?? [], permissions: [] }
      }
    },
    routes: (app) => {
      spies.push(spyRoute(app, '/ws'))
      spies.push(spyRoute(app, '/ws/admin', { roles: ['admin'] }))
      spies.push(spyRoute(app, '/ws/nomsg', { sources: ['query', 'header'] }))
      spies.push(spyRoute(app, '/ws/http', { reject: 'http', sources: ['query', 'header', 'protocol'] }))
    }
  })
  const server = serverSockets(app)
  const before = app.wsAuth.stats()
  const forge = createSigner({ key: 'not-the-server-secret-but-long-enough' })
  const past = nowSeconds() - 60
  const user = (i: number) => `u${i % 17}`
  const tamper = (token: string) => token.slice(0, -2) + (token.endsWith('AA') ? 'BA' : 'AA')
  const rand = mulberry32(SEED)
  const source = (): TokenSource => (['query', 'header', 'protocol', 'message'] as const)[Math.floor(rand() * 4)]
  const requestSource = (): TokenSource => (['query', 'header', 'protocol'] as const)[Math.floor(rand() * 3)]
  const closed = (code: number, reason: string): Expect => ({ closed: { code, reason } })

  const kinds: Kind[] = [
    { name: 'valid', open: i => connectWith(url('/ws'), source(), sign({ sub: user(i) })), expect: i => ({ established: user(i) }) },
    { name: 'valid admin', open: i => connectWith(url('/ws/admin'), source(), sign({ sub: user(i), roles: ['admin'] })), expect: i => ({ established: user(i) }) },
    { name: 'valid, reject: http route', open: i => connectWith(url('/ws/http'), requestSource(), sign({ sub: user(i) })), expect: i => ({ established: user(i) }) },
    { name: 'expired', open: i => connectWith(url('/ws'), source(), sign({ sub: user(i), exp: past })), expect: () => closed(4001, 'Token expired') },
    { name: 'tampered', open: i => connectWith(url('/ws'), source(), tamper(sign({ sub: user(i) }))), expect: () => closed(4001, 'Invalid token') },
    { name: 'forged', open: i => connectWith(url('/ws'), source(), forge({ sub: user(i) })), expect: () => closed(4001, 'Invalid token') },
    { name: 'alg none', open: i => connectWith(url('/ws'), source(), `${b64url({ alg: 'none' })}.${b64url({ sub: user(i) })}.`), expect: () => closed(4001, 'Invalid token') },
    { name: 'missing', open: () => connect(url('/ws/nomsg')), expect: () => closed(4001, 'No token provided') },
    {
      name: 'no auth message',
      open: () => {
        const client = connect(url('/ws'))
        client.ws.once('open', () => client.send({ type: 'hello' }))
        return client
      },
      expect: () => closed(4001, 'Invalid auth message')
    },
    { name: 'unknown user', open: i => connectWith(url('/ws'), source(), sign({ sub: 'ghost' + i })), expect: () => closed(4002, 'User not found or inactive') },
    { name: 'forbidden role', open: i => connectWith(url('/ws/admin'), source(), sign({ sub: user(i), roles: ['member'] })), expect: () => closed(4003, 'Forbidden') },
    { name: 'invalid, reject: http route', open: i => connectWith(url('/ws/http'), requestSource(), tamper(sign({ sub: user(i) }))), expect: () => ({ status: 401 }) },
    { name: 'missing, reject: http route', open: () => connect(url('/ws/http')), expect: () => ({ status: 401 }) }
  ]
  // An interleaving fixed by the seed: every kind is present, in a different order each run of seeds.
  const plan = Array.from({ length: N }, (_, i) => i < kinds.length ? i : Math.floor(rand() * kinds.length))
  const expected = plan.map((k, i) => kinds[k].expect(i))
  const validIds = expected.flatMap(e => 'established' in e ? [e.established] : [])

  const wrong: string[] = []
  const started = Date.now()
  await pool(plan, IN_FLIGHT, async (k, i) => {
    const expect = expected[i]
    const client = kinds[k].open(i)
    const where = `#${i} ${kinds[k].name}`
    if ('status' in expect) {
      const status = await client.refusedStatus
      if (status !== expect.status) wrong.push(`${where}: expected HTTP ${expect.status}, got ${status}`)
      await client.closed
      return
    }
    const verdict = await refusal(client)
    if ('established' in expect) {
      const first = 'message' in verdict ? verdict.message as { type?: string, user?: { id?: string } } : undefined
      if (first?.type !== 'connection_established' || first.user?.id !== expect.established) {
        wrong.push(`${where}: expected established as ${expect.established}, got ${JSON.stringify(verdict).slice(0, 120)}`)
      }
      client.ws.close(1000)
      const end = await client.closed
      if (end.code !== 1000) wrong.push(`${where}: closed by the server with ${end.code}`)
      if (client.messages.length !== 1) wrong.push(`${where}: ${client.messages.length} messages, expected only connection_established`)
      return
    }
    if (!('code' in verdict) || verdict.code !== expect.closed.code || verdict.reason !== expect.closed.reason) {
      wrong.push(`${where}: expected ${JSON.stringify(expect.closed)}, got ${JSON.stringify(verdict).slice(0, 120)}`)
    }
  })
  t.comment(`${N} handshakes in ${Date.now() - started} ms`)
  t.same(wrong, [], `every handshake got exactly its verdict (seed ${SEED})`)
  const handled = spies.flatMap(spy => spy.users.map(u => String((u as { id: string }).id)))
  t.equal(handled.length, validIds.length, `the handler ran once per valid handshake (${validIds.length})`)
  t.same([...handled].sort(), [...validIds].sort(), 'and for those users only')

  await server.allClosed()
  const after = app.wsAuth.stats()
  t.match(after, { active: 0, authenticating: 0, users: 0 }, 'stats back to baseline')
  t.equal(app.websocketServer.clients.size, 0, 'no socket left in ws\'s set')
  t.equal(after.attempts - before.attempts, N, 'every handshake counted once as an attempt')
  t.equal(after.established - before.established, validIds.length, 'established once per valid handshake')
  const tally: Record<number, number> = {}
  for (const e of expected) {
    const code = 'closed' in e ? e.closed.code : 'status' in e ? 4001 : undefined
    if (code !== undefined) tally[code] = (tally[code] ?? 0) + 1
  }
  const failures = Object.fromEntries(Object.entries(after.failures).map(([code, n]) => [code, n - (before.failures[Number(code)] ?? 0)]))
  t.same(failures, tally, 'failures by close code: exactly the invalid handshakes')
  t.same(after.ended, before.ended, 'no established session was ended by the server')
})
