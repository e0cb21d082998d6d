// Every row of the retry table, seen by the client against a real server: the server counts its
// connection attempts, so "no retry" and "backoff growth" are measured, not assumed.
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { closeCodes, createClient } from '../../lib/client/index.ts'
import type { ClientOptions, FailureClass, TokenContext } from '../../lib/client/index.ts'
import { serve, type Served } from './helpers/server.ts'
import { quiet, record } from './helpers/record.ts'

const fast = { initialDelay: 20, maxDelay: 1000, factor: 2, jitter: false }
// Long enough for a wrongly scheduled retry (20 ms) to reach the server several times over.
const NO_RETRY_WINDOW = 100

function start (t: Test, served: Served, options: Partial<ClientOptions> = {}) {
  const tokens: TokenContext[] = []
  const good = served.sign({ sub: 'u1', roles: ['admin'] })
  const client = createClient({
    url: served.url(),
    token: (ctx) => { tokens.push(ctx); return good },
    WebSocket,
    reconnect: fast,
    ...options
  })
  const events = record(client)
  t.teardown(() => client.close())
  return { client, events, tokens }
}

/** A server whose first connection is closed right after establishment with `code`/`reason`. */
async function closingServer (t: Test, code: number, reason: string): Promise<Served> {
  let n = 0
  return serve(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => {
        if (++n > 1) return
        // ws cannot send 1006: drop the TCP connection instead, as a crash would.
        if (code === 1006) socket.terminate()
        // 1005 is what a close without a code looks like at the other end.
        else if (code === 1005) socket.close()
        else socket.close(code, reason)
      })
    }
  })
}

t.test('the table walk: each row closed by the server after establishment', async t => {
  for (const [failure, row] of Object.entries(closeCodes) as [FailureClass, typeof closeCodes[FailureClass]][]) {
    t.test(`${failure}: ${row.code} ${JSON.stringify(row.reason)} -> ${row.retry}`, async t => {
      const served = await closingServer(t, row.code, row.reason)
      const { client, events, tokens } = start(t, served)
      const close = await events.next('close')
      t.match(close, { code: row.code, reason: row.reason, failure })
      t.same(events.all('established').length, 1, 'the connection was established first')
      if (row.retry === 'never' || row.retry === 'done') {
        t.match(close, { willRetry: false, delay: 0, kind: row.retry === 'never' ? 'refused' : 'done', unsent: [] })
        t.equal(client.state, 'closed')
        await quiet(NO_RETRY_WINDOW)
        t.equal(served.attempts.length, 1, 'no second connection attempt')
        const errors = events.all('error')
        if (row.retry === 'done') t.same(errors, [], 'a normal closure is no error')
        else t.match(errors, [{ name: 'WsAuthError', code: row.code, reason: row.reason, kind: 'refused', retry: 'never', failure }])
        return
      }
      const expected = { reauthenticate: [0, 'unauthenticated', 'reauthenticate'], immediately: [0, 'restart', 'reconnect'], backoff: [20, 'transient', 'reconnect'] }[row.retry]
      t.match(close, { willRetry: true, delay: expected[0], kind: expected[1], attempt: 1 })
      await events.next('established', 2)
      t.equal(served.attempts.length, 2, 'exactly one reconnection')
      t.same(tokens.map(c => c.reason), ['connect', expected[2]], 'token() was asked why')
      t.ok(served.attempts[1] - served.attempts[0] >= (expected[0] as number), 'the delay was waited out')
      t.same(events.all('error'), [])
    })
  }
})

t.test('4001 from the plugin: a new token at once, a second 4001 in a row is fatal', async t => {
  const served = await serve(t)
  const { events, tokens } = start(t, served, { token: (ctx) => { tokens.push(ctx); return 'garbage' } })
  const first = await events.next('close')
  t.match(first, { code: 4001, reason: 'Invalid token', failure: 'invalid_token', kind: 'unauthenticated', willRetry: true, delay: 0 })
  const last = await events.final()
  t.match(last, { code: 4001, reason: 'Invalid token', kind: 'unauthenticated', willRetry: false })
  t.match(events.all('error'), [{ code: 4001, kind: 'unauthenticated', retry: 'reauthenticate', message: /refused a fresh token too/ }])
  await quiet(NO_RETRY_WINDOW)
  t.equal(served.attempts.length, 2, 'one retry, then no tight loop')
  t.same(tokens.map(c => [c.reason, c.attempt]), [['connect', 0], ['reauthenticate', 1]])
})

t.test('4001 then a fresh valid token: established on the second attempt', async t => {
  const served = await serve(t)
  let calls = 0
  const { events } = start(t, served, { token: () => ++calls === 1 ? served.sign({ sub: 'u1' }, { expiresIn: -10 }) : served.sign({ sub: 'u1' }) })
  t.match(await events.next('close'), { code: 4001, reason: 'Token expired', failure: 'token_expired', willRetry: true, delay: 0 })
  t.match(await events.next('established'), { type: 'connection_established', user: { id: 'u1' } })
  t.equal(served.attempts.length, 2)
})

const fatal: Array<[string, number, string, FailureClass, object]> = [
  ['4002 (loadUser null)', 4002, 'User not found or inactive', 'user_not_found', { auth: { loadUser: async () => null } }],
  ['4003 (missing role)', 4003, 'Forbidden', 'forbidden', { routes: (app: Served['app']) => { app.get('/ws', { websocket: true, wsAuth: { roles: ['root'] } }, () => {}) } }],
  ['4004 (authorize not_found)', 4004, 'Not found', 'not_found', { routes: (app: Served['app']) => { app.get('/ws', { websocket: true, wsAuth: { authorize: async () => 'not_found' as const } }, () => {}) } }]
]
for (const [name, code, reason, failure, opts] of fatal) {
  t.test(`${name} from the plugin is fatal: one attempt only`, async t => {
    const served = await serve(t, opts)
    const { client, events } = start(t, served)
    t.match(await events.final(), { code, reason, failure, kind: 'refused', willRetry: false })
    t.match(events.all('error'), [{ code, reason, kind: 'refused', retry: 'never', failure }])
    t.equal(client.state, 'closed')
    await quiet(NO_RETRY_WINDOW)
    t.equal(served.attempts.length, 1)
  })
}

t.test('4008 (no auth message in time): exponential backoff, then maxAttempts', async t => {
  const served = await serve(t, { auth: { sources: ['message'], authTimeout: 30 } })
  // The query transport sends no auth message, so each attempt times out on the server.
  const { events } = start(t, served, { transport: 'query', reconnect: { ...fast, maxAttempts: 3 } })
  const last = await events.final()
  const closes = events.all('close')
  t.same(closes.map(c => [c.code, c.reason, c.kind, c.willRetry, c.delay, c.attempt]), [
    [4008, 'Authentication timeout', 'transient', true, 20, 1],
    [4008, 'Authentication timeout', 'transient', true, 40, 2],
    [4008, 'Authentication timeout', 'transient', true, 80, 3],
    [4008, 'Authentication timeout', 'transient', false, 0, 3]
  ])
  t.match(last, { unsent: [] })
  t.match(events.all('error'), [{ code: 4008, kind: 'transient', retry: 'backoff', message: /gave up after 3 reconnect attempts/ }])
  await quiet(NO_RETRY_WINDOW)
  t.equal(served.attempts.length, 4, 'the first attempt and three retries')
  const gaps = served.attempts.slice(1).map((at, i) => at - served.attempts[i])
  t.ok(gaps[0] >= 20 + 30 && gaps[1] >= 40 + 30 && gaps[2] >= 80 + 30, `gaps grow with the delay: ${gaps}`)
})

t.test('1011 from the plugin (authorize throws): backoff, reset after a connection that stayed established', async t => {
  let n = 0
  const served = await serve(t, {
    routes (app) {
      app.get('/ws', {
        websocket: true,
        wsAuth: { authorize: async () => { if (++n <= 2) throw new Error('db down'); return true } }
      }, (socket) => { if (n === 3) setTimeout(() => socket.close(1013, 'Try again later'), 80) })
    }
  })
  const { events } = start(t, served, { reconnect: { ...fast, stableAfter: 50 } })
  await events.next('established')
  const third = await events.next('close', 3)
  t.same(events.all('close').map(c => [c.code, c.reason, c.delay]), [
    [1011, 'Internal error', 20],
    [1011, 'Internal error', 40],
    [1013, 'Try again later', 20]
  ], 'the delay grew, then started over after a connection that stayed established')
  t.match(third, { willRetry: true, kind: 'transient', attempt: 1 })
  await events.next('established', 2)
})

t.test('a server that accepts and drops at once meets a growing backoff, not a reconnect loop', async t => {
  const served = await serve(t, { routes (app) { app.get('/ws', { websocket: true }, (socket) => socket.close(1012, 'Service restart')) } })
  const { client, events } = start(t, served, { reconnect: { ...fast, stableAfter: 1000 } })
  await events.next('close', 4)
  client.close()
  t.same(events.all('close').slice(0, 4).map(c => [c.code, c.delay, c.attempt]), [
    [1012, 20, 1], [1012, 40, 1], [1012, 80, 1], [1012, 160, 1]
  ], 'each connection was established (attempts start over) but none stayed: the delay keeps growing')
  t.equal(events.all('established').length, 4)
})

t.test('4001 right after establishment, twice: fatal, no loop', async t => {
  const served = await serve(t, { routes (app) { app.get('/ws', { websocket: true }, (socket) => socket.close(4001, 'Token revoked')) } })
  const { events, tokens } = start(t, served)
  t.match(await events.final(), { code: 4001, reason: 'Token revoked', failure: 'token_revoked', kind: 'unauthenticated', willRetry: false })
  t.same(tokens.map(c => c.reason), ['connect', 'reauthenticate'])
  await quiet(NO_RETRY_WINDOW)
  t.equal(served.attempts.length, 2)
})

t.test('4010 twice in a row without establishment falls back to backoff: no tight loop', async t => {
  const served = await serve(t, {
    auth: { established: false },
    routes (app) { app.get('/ws', { websocket: true }, (socket) => socket.close(4010, 'Session lifetime exceeded')) }
  })
  const { events } = start(t, served, { reconnect: { ...fast, maxAttempts: 3 } })
  await events.final()
  t.same(events.all('close').map(c => [c.code, c.kind, c.delay, c.willRetry]), [
    [4010, 'restart', 0, true],
    [4010, 'restart', 20, true],
    [4010, 'restart', 40, true],
    [4010, 'restart', 0, false]
  ])
})

t.test('1006 (no server at all): backoff until maxAttempts', async t => {
  const served = await serve(t)
  const url = served.url()
  await served.app.close()
  const client = createClient({ url, token: 't', WebSocket, reconnect: { ...fast, maxAttempts: 2 } })
  const events = record(client)
  await events.final()
  t.same(events.all('close').map(c => [c.code, c.kind, c.delay, c.willRetry]), [
    [1006, 'transient', 20, true],
    [1006, 'transient', 40, true],
    [1006, 'transient', 0, false]
  ])
  t.match(events.all('error'), [{ code: 1006, failure: 'abnormal_closure', message: /gave up after 2/ }])
})

t.test('close() during a pending backoff cancels it', async t => {
  const served = await serve(t, { routes (app) { app.get('/ws', { websocket: true, wsAuth: { authorize: async () => { throw new Error('x') } } }, () => {}) } })
  const { client, events } = start(t, served, { reconnect: { ...fast, initialDelay: 100 } })
  client.send('never sent')
  t.match(await events.next('close'), { code: 1011, willRetry: true, delay: 100 })
  t.equal(client.state, 'reconnecting')
  client.close()
  t.equal(client.state, 'closed')
  t.match(events.all('close')[1], { code: 1000, reason: '', kind: 'closed', willRetry: false, unsent: ['never sent'] })
  await quiet(100 + NO_RETRY_WINDOW)
  t.equal(served.attempts.length, 1, 'the pending reconnect never happened')
  t.same(events.all('error'), [], 'closing is no error')
})

t.test('close() from a close listener stops the retry it announces', async t => {
  const served = await closingServer(t, 1012, 'Service restart')
  const { client, events } = start(t, served)
  client.on('close', (info) => { if (info.willRetry) client.close(4000, 'bye') })
  await events.final()
  t.match(events.all('close').map(c => [c.code, c.willRetry]), [[1012, true], [4000, false]])
  await quiet(NO_RETRY_WINDOW)
  t.equal(served.attempts.length, 1)
})

t.test('close() while token() is pending: no connection at all', async t => {
  const served = await serve(t)
  let release: (token: string) => void = () => {}
  const client = createClient({ url: served.url(), token: () => new Promise<string>(resolve => { release = resolve }), WebSocket })
  const events = record(client)
  await new Promise(resolve => setImmediate(resolve))
  client.close()
  release(served.sign({ sub: 'u1' }))
  t.match(await events.final(), { kind: 'closed' })
  await quiet(NO_RETRY_WINDOW)
  t.equal(served.attempts.length, 0)
})

t.test('token() that throws: an error of kind token, then backoff', async t => {
  const served = await serve(t)
  let calls = 0
  const { events } = start(t, served, {
    token: () => { if (++calls === 1) throw new Error('auth server down'); return served.sign({ sub: 'u1' }) }
  })
  const error = await events.next('error')
  t.match(error, { name: 'WsAuthError', code: null, kind: 'token', retry: 'backoff', cause: { message: 'auth server down' } })
  t.match(await events.next('close'), { code: null, kind: 'token', willRetry: true, delay: 20 })
  await events.next('established')
  t.equal(served.attempts.length, 1, 'no socket was opened without a token')
})

t.test('token() that returns nothing: fatal no_token, no connection', async t => {
  const served = await serve(t)
  const { events } = start(t, served, { token: () => null })
  t.match(await events.final(), { code: 4001, reason: 'No token provided', failure: 'no_token', kind: 'unauthenticated', willRetry: false })
  t.match(events.all('error'), [{ message: /token\(\) returned no token/ }])
  t.equal(served.attempts.length, 0)
})

t.test('closeCodes remapped on both sides: the client reads the same table', async t => {
  const closeCodesMap = { forbidden: { code: 1008, reason: 'Policy violation: forbidden' } }
  const served = await serve(t, {
    auth: { closeCodes: closeCodesMap },
    routes (app) { app.get('/ws', { websocket: true, wsAuth: { roles: ['root'] } }, () => {}) }
  })
  const { events } = start(t, served, { closeCodes: closeCodesMap })
  t.match(await events.final(), { code: 1008, reason: 'Policy violation: forbidden', failure: 'forbidden', kind: 'refused', willRetry: false })
  await quiet(NO_RETRY_WINDOW)
  t.equal(served.attempts.length, 1)
})
