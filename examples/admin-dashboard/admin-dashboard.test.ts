import t, { type Test } from 'tap'
import { manualClockOfBuilt as manualClock } from '../../test/helpers/index.ts'
import type { ManualClock } from '../../test/helpers/clock.ts'
import { barrier, connect, listen, ofType, waitFor, type Client } from '../helpers.ts'
import { build, type BuildOptions } from './app.ts'
import { memoryUsers } from './users.ts'

/**
 * Moves the test's clock `ms` forward in steps shorter than the heartbeat (30 s), letting the
 * client's answer to each heartbeat ping reach the server (two round trips) before the next one.
 */
async function advance (time: ManualClock, client: Client, ms: number): Promise<void> {
  // A close on the way fails the test at once (a barrier alone would wait for a pong forever).
  const closedFirst = client.waitForClose().then(c => { throw new Error(`closed ${c.code} ${c.reason} ${time.now() - start} ms into the advance`) })
  const start = time.now()
  for (let left = ms; left > 0; left -= 10_000) {
    await time.tick(Math.min(left, 10_000))
    await Promise.race([barrier(client), closedFirst])
    await Promise.race([barrier(client), closedFirst])
  }
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
// Hashing the demo passwords (scrypt) once for all the apps of this file.
const users = memoryUsers()

async function start (t: Test, opts: BuildOptions = {}) {
  const app = await build({ statsIntervalMs: false, users, ...opts })
  const served = await listen(t, app)
  async function login (username: string, password: string) {
    const response = await fetch(served.http('/admin/login'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password })
    })
    return { status: response.status, body: await response.json() as Record<string, unknown> }
  }
  const tokenOf = async (username: string) => (await login(username, `${username}-password`)).body.token as string
  const open = (token?: string) => connect(served.ws('/admin/ws' + (token === undefined ? '' : `?token=${encodeURIComponent(token)}`)))
  return { app, served, login, tokenOf, open }
}

t.test('login issues a short-lived token; bad credentials get 401', async t => {
  const { app, login } = await start(t, { tokenTtlSeconds: 120 })
  const ok = await login('admin', 'admin-password')
  t.equal(ok.status, 200)
  t.match(ok.body, { token_type: 'Bearer', expires_in: 120 })
  const claims = app.jwt.decode<{ sub: string, exp: number, iat: number }>(ok.body.token as string)!
  t.equal(claims.sub, 'admin')
  t.equal(claims.exp - claims.iat, 120)
  t.same(await login('admin', 'wrong'), { status: 401, body: { statusCode: 401, error: 'Unauthorized', message: 'Invalid username or password' } })
  t.equal((await login('nobody', 'admin-password')).status, 401)
})

t.test('an admin connects: connection_established, ping/pong, get_stats; other messages refused', async t => {
  const { tokenOf, open } = await start(t)
  const c = open(await tokenOf('admin'))
  const established = await waitFor(c, 'connection_established')
  t.match(established, { user: { id: 'admin', username: 'admin', roles: ['admin'] }, expires_at: ISO })

  c.send({ type: 'ping' })
  const pong = await waitFor(c, 'pong')
  t.match(pong, { type: 'pong', timestamp: ISO })

  c.send({ type: 'get_stats' })
  const stats = await waitFor(c, 'stats_update')
  t.match(stats, {
    data: { connections: { active: 1, established: 1, failures: {} }, uptime_seconds: Number, memory_rss_bytes: Number },
    timestamp: ISO
  })

  c.send({ type: 'drop_tables', id: 7 })
  t.same(await waitFor(c, 'refused'), { type: 'refused', of: 'drop_tables', code: 4003, reason: 'Forbidden', id: 7 })
  c.send('not json')
  t.same(await waitFor(c, 'refused', 2), { type: 'refused', of: null, code: 4003, reason: 'Forbidden' })
  c.send({ type: 'get_stats', id: 8 })
  await waitFor(c, 'stats_update', 2)
  t.equal(ofType(c, 'refused').length, 2, 'the socket stays open and an admin\'s get_stats is answered')
  c.ws.close()
})

t.test('a viewer connects, but get_stats is refused and the timer\'s stats go to admins only', async t => {
  const { app, tokenOf, open } = await start(t, { statsIntervalMs: 30 })
  const viewer = open(await tokenOf('viewer'))
  t.match(await waitFor(viewer, 'connection_established'), { user: { id: 'viewer', roles: ['viewer'] } })
  viewer.send({ type: 'get_stats', id: 1 })
  t.same(await waitFor(viewer, 'refused'), { type: 'refused', of: 'get_stats', code: 4003, reason: 'Forbidden', id: 1 })
  const admin = open(await tokenOf('admin'))
  await waitFor(admin, 'stats_update', 2)
  viewer.send({ type: 'ping' })
  await waitFor(viewer, 'pong')
  t.same(ofType(viewer, 'stats_update'), [], 'two broadcasts reached the admin, none the viewer')
  t.match(app.wsAuth.stats().refused, { 4003: 1 })
  admin.ws.close()
  viewer.ws.close()
})

t.test('refusals: a guest gets 4003, bad / missing / expired tokens get 4001', async t => {
  const { app, tokenOf, open } = await start(t)
  t.same(await open(await tokenOf('guest')).closed, { code: 4003, reason: 'Forbidden' })
  t.same(await open('not-a-token').closed, { code: 4001, reason: 'Invalid token' })
  t.same(await open().closed, { code: 4001, reason: 'No token provided' })
  const expired = app.jwt.sign({ sub: 'admin' }, { expiresIn: -1 })
  t.same(await open(expired).closed, { code: 4001, reason: 'Token expired' })
  t.same(await open(app.jwt.sign({ sub: 'deleted-admin' })).closed, { code: 4002, reason: 'User not found or inactive' })
  t.match(app.wsAuth.stats().failures, { 4001: 3, 4002: 1, 4003: 1 })
})

t.test('stats are broadcast to every connected admin on a timer, which stops at close', async t => {
  const { app, tokenOf, open } = await start(t, { statsIntervalMs: 30 })
  const token = await tokenOf('admin')
  const a = open(token)
  const b = open(token)
  const [sa, sb] = await Promise.all([waitFor(a, 'stats_update'), waitFor(b, 'stats_update')])
  t.match(sa, { data: { connections: { users: 1 } } })
  t.match(sb, { data: { connections: { users: 1 } } })
  await app.close()
  t.same(await a.closed, { code: 1001, reason: 'Server shutting down' })
  t.same(await b.closed, { code: 1001, reason: 'Server shutting down' })
})

t.test('a short-lived token is warned a minute ahead, then closes the live socket with 4001 at exp', async t => {
  // The plugin's deadlines wait for the test's clock: a two-minute token opens on any machine,
  // and the test moves time to the moment just before exp, then to exp.
  const time = manualClock(t)
  const { tokenOf, open } = await start(t, { tokenTtlSeconds: 120 })
  const c = open(await tokenOf('admin'))
  const exp = Date.parse((await waitFor(c, 'connection_established')).expires_at as string)
  await advance(time, c, exp - 1 - time.now())
  t.match(await waitFor(c, 'token_expiring'), { expires_at: new Date(exp).toISOString() }, 'warned (expiryWarning: one minute)')
  c.send({ type: 'ping' })
  await waitFor(c, 'pong')
  t.equal(c.closedWith, undefined, '1 ms before exp: still open')
  await time.tick(1000)
  t.same(await c.closed, { code: 4001, reason: 'Token expired' })
})

t.test('a client refreshes its token in band with a fresh login', async t => {
  const { tokenOf, open } = await start(t, { tokenTtlSeconds: 60 })
  const c = open(await tokenOf('admin'))
  const established = await waitFor(c, 'connection_established')
  const fresh = await tokenOf('admin')
  c.send({ type: 'auth', token: fresh })
  const refreshed = await waitFor(c, 'token_refreshed')
  t.ok(Date.parse(refreshed.expires_at as string) >= Date.parse(established.expires_at as string))
  c.send({ type: 'get_stats' })
  await waitFor(c, 'stats_update')
  t.same(ofType(c, 'refused'), [], 'the auth message was not taken for an app message')
  t.equal(ofType(c, 'stats_update').length, 1, 'nor did it reach the handler')
  c.ws.close()
})

t.test('GET /admin/test serves the test page', async t => {
  const { served } = await start(t)
  const response = await fetch(served.http('/admin/test'))
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^text\/html/)
  const html = await response.text()
  for (const id of ['token', 'connect', 'disconnect', 'login', 'get-stats', 'ping', 'log', 'status']) {
    t.match(html, `id="${id}"`, `#${id}`)
  }
})
