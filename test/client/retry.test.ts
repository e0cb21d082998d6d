// Every row of the retry table, seen by the client against a real server. The library's clock is
// the manual one: each backoff, the server's auth timeout and `stableAfter` pass when the test
// moves time, so delays are measured exactly on that clock, and "no retry" is proven by moving
// it past the longest backoff and counting the sockets the client made and the server received.
import t, { type Test } from 'tap'
import { closeCodes, createClient } from '../../lib/client/index.ts'
import type { ClientOptions, FailureClass, TokenContext } from '../../lib/client/index.ts'
import { deferred } from '../helpers/index.ts'
import { manualClock, type ManualClock } from '../helpers/clock.ts'
import { serve, type ServeOptions, type Served } from './helpers/server.ts'
import { assertNoRetry, record, sockets, untilFinal } from './helpers/record.ts'

const fast = { initialDelay: 20, maxDelay: 1000, factor: 2, jitter: false }

/** A manual clock, installed before the server so that every timer of both sides reads it. */
async function setup (t: Test, opts: ServeOptions = {}): Promise<{ time: ManualClock, served: Served }> {
  const time = manualClock(t)
  return { time, served: await serve(t, opts) }
}

function start (t: Test, { time, served }: { time: ManualClock, served: Served }, options: Partial<ClientOptions> = {}) {
  const tokens: TokenContext[] = []
  const spy = sockets()
  const good = served.sign({ sub: 'u1', roles: ['admin'] })
  const client = createClient({
    url: served.url(),
    token: (ctx) => { tokens.push(ctx); return good },
    WebSocket: spy.WebSocket,
    reconnect: fast,
    ...options
  })
  const events = record(client)
  t.teardown(() => client.close())
  return { client, events, tokens, sockets: spy, time, served }
}

/** A server whose first connection is closed right after establishment with `code`/`reason`. */
function closingRoute (code: number, reason: string): ServeOptions {
  let n = 0
  return {
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
  }
}

t.test('the table walk: each row closed by the server after establishment', async t => {
  for (const [failure, row] of Object.entries(closeCodes) as [FailureClass, typeof closeCodes[FailureClass]][]) {
    t.test(`${failure}: ${row.code} ${JSON.stringify(row.reason)} -> ${row.retry}`, async t => {
      const ctx = start(t, await setup(t, closingRoute(row.code, row.reason)))
      const { client, events, tokens, time, served } = ctx
      const close = await events.next('close')
      t.match(close, { code: row.code, reason: row.reason, failure })
      t.same(events.all('established').length, 1, 'the connection was established first')
      if (row.retry === 'never' || row.retry === 'done') {
        t.match(close, { willRetry: false, delay: 0, kind: row.retry === 'never' ? 'refused' : 'done', unsent: [] })
        await assertNoRetry(t, ctx, 1, fast.maxDelay)
        const errors = events.all('error')
        if (row.retry === 'done') t.same(errors, [], 'a normal closure is no error')
        else t.match(errors, [{ name: 'WsAuthError', code: row.code, reason: row.reason, kind: 'refused', retry: 'never', failure }])
        return
      }
      const [delay, kind, why] = ({ reauthenticate: [0, 'unauthenticated', 'reauthenticate'], immediately: [0, 'restart', 'reconnect'], backoff: [20, 'transient', 'reconnect'] } as const)[row.retry]
      t.match(close, { willRetry: true, delay, kind, attempt: 1 })
      if (delay > 0) {
        await time.tick(delay - 1)
        t.equal(ctx.sockets.all.length, 1, 'no reconnection before the delay')
      }
      await time.tick(Math.min(delay, 1))
      t.equal(ctx.sockets.all.length, 2, 'the reconnection, once the delay passed')
      await events.next('established', 2)
      t.same(served.attempts.map(at => at - served.attempts[0]), [0, delay], 'the server saw the attempts the delay apart')
      t.same(tokens.map(c => c.reason), ['connect', why], 'token() was asked why')
      t.same(events.all('error'), [])
      t.equal(client.state, 'open')
    })
  }
})

t.test('4001 from the plugin: a new token at once, a second 4001 in a row is fatal', async t => {
  const tokens: TokenContext[] = []
  const ctx = start(t, await setup(t), { token: (c) => { tokens.push(c); return 'garbage' } })
  const { events, time } = ctx
  const first = await events.next('close')
  t.match(first, { code: 4001, reason: 'Invalid token', failure: 'invalid_token', kind: 'unauthenticated', willRetry: true, delay: 0 })
  const last = await untilFinal(events, time)
  t.match(last, { code: 4001, reason: 'Invalid token', kind: 'unauthenticated', willRetry: false })
  t.match(events.all('error'), [{ code: 4001, kind: 'unauthenticated', retry: 'reauthenticate', message: /refused a fresh token too/ }])
  await assertNoRetry(t, ctx, 2, fast.maxDelay)
  t.same(tokens.map(c => [c.reason, c.attempt]), [['connect', 0], ['reauthenticate', 1]])
})

t.test('4001 then a fresh valid token: established on the second attempt', async t => {
  const running = await setup(t)
  const { served } = running
  let calls = 0
  const { events, time } = start(t, running, { token: () => ++calls === 1 ? served.sign({ sub: 'u1' }, { expiresIn: -10 }) : served.sign({ sub: 'u1' }) })
  t.match(await events.next('close'), { code: 4001, reason: 'Token expired', failure: 'token_expired', willRetry: true, delay: 0 })
  await time.tick(0)
  t.match(await events.next('established'), { type: 'connection_established', user: { id: 'u1' } })
  t.equal(served.attempts.length, 2)
})

const fatal: Array<[string, number, string, FailureClass, ServeOptions]> = [
  ['4002 (loadUser null)', 4002, 'User not found or inactive', 'user_not_found', { auth: { loadUser: async () => null } }],
  ['4003 (missing role)', 4003, 'Forbidden', 'forbidden', { routes: (app) => { app.get('/ws', { websocket: true, wsAuth: { roles: ['root'] } }, () => {}) } }],
  ['4004 (authorize not_found)', 4004, 'Not found', 'not_found', { routes: (app) => { app.get('/ws', { websocket: true, wsAuth: { authorize: async () => 'not_found' as const } }, () => {}) } }]
]
for (const [name, code, reason, failure, opts] of fatal) {
  t.test(`${name} from the plugin is fatal: one attempt only`, async t => {
    const ctx = start(t, await setup(t, opts))
    const { events } = ctx
    t.match(await events.final(), { code, reason, failure, kind: 'refused', willRetry: false })
    t.match(events.all('error'), [{ code, reason, kind: 'refused', retry: 'never', failure }])
    await assertNoRetry(t, ctx, 1, fast.maxDelay)
  })
}

t.test('4008 (no auth message in time): exponential backoff, then maxAttempts', async t => {
  const authTimeout = 5000
  const ctx = start(t, await setup(t, { auth: { sources: ['message'], authTimeout } }),
    // The query transport sends no auth message, so each attempt times out on the server.
    { transport: 'query', reconnect: { ...fast, maxAttempts: 3 } })
  const { events, time, served } = ctx
  for (let n = 1; n <= 4; n++) {
    // The server starts its auth timeout before the 101 leaves (both in one write).
    await ctx.sockets.opened(n)
    await time.tick(authTimeout - 1)
    t.equal(events.all('close').length, n - 1, `attempt ${n}: no close before authTimeout`)
    await time.tick(1)
    const close = await events.next('close', n)
    if (close.willRetry) await time.tick(close.delay)
  }
  t.same(events.all('close').map(c => [c.code, c.reason, c.kind, c.willRetry, c.delay, c.attempt]), [
    [4008, 'Authentication timeout', 'transient', true, 20, 1],
    [4008, 'Authentication timeout', 'transient', true, 40, 2],
    [4008, 'Authentication timeout', 'transient', true, 80, 3],
    [4008, 'Authentication timeout', 'transient', false, 0, 3]
  ])
  t.match(events.all('close')[3], { unsent: [] })
  t.match(events.all('error'), [{ code: 4008, kind: 'transient', retry: 'backoff', message: /gave up after 3 reconnect attempts/ }])
  await assertNoRetry(t, ctx, 4, fast.maxDelay)
  const gaps = served.attempts.slice(1).map((at, i) => at - served.attempts[i])
  t.same(gaps, [authTimeout + 20, authTimeout + 40, authTimeout + 80], 'each gap is the auth timeout and the delay, on the clock')
})

t.test('1011 from the plugin (authorize throws): backoff, reset once a connection stayed established for stableAfter', async t => {
  const stableAfter = 5000
  // Established for stableAfter - 1 ms the delay keeps growing; for stableAfter it starts over.
  for (const [held, delay] of [[stableAfter - 1, 80], [stableAfter, 20]]) {
    await t.test(`held ${held} ms: the next delay is ${delay}`, async t => {
      let n = 0
      const third = deferred<import('ws').WebSocket>()
      const ctx = start(t, await setup(t, {
        routes (app) {
          app.get('/ws', {
            websocket: true,
            wsAuth: { authorize: async () => { if (++n <= 2) throw new Error('db down'); return true } }
          }, (socket) => { if (n === 3) third.resolve(socket) })
        }
      }), { reconnect: { ...fast, stableAfter } })
      const { events, time } = ctx
      for (let k = 1; k <= 2; k++) await time.tick((await events.next('close', k)).delay)
      await events.next('established')
      const socket = await third.promise
      await time.tick(held)
      socket.close(1013, 'Try again later')
      t.match(await events.next('close', 3), { code: 1013, reason: 'Try again later', willRetry: true, kind: 'transient', attempt: 1 })
      t.same(events.all('close').map(c => [c.code, c.reason, c.delay]), [
        [1011, 'Internal error', 20],
        [1011, 'Internal error', 40],
        [1013, 'Try again later', delay]
      ])
      await time.tick(delay)
      await events.next('established', 2)
    })
  }
})

t.test('a server that accepts and drops at once meets a growing backoff, not a reconnect loop', async t => {
  const ctx = start(t, await setup(t, { routes (app) { app.get('/ws', { websocket: true }, (socket) => socket.close(1012, 'Service restart')) } }))
  const { client, events, time } = ctx
  for (let n = 1; n <= 3; n++) await time.tick((await events.next('close', n)).delay)
  await events.next('close', 4)
  client.close()
  t.same(events.all('close').slice(0, 4).map(c => [c.code, c.delay, c.attempt]), [
    [1012, 20, 1], [1012, 40, 1], [1012, 80, 1], [1012, 160, 1]
  ], 'each connection was established (attempts start over) but none stayed: the delay keeps growing')
  t.equal(events.all('established').length, 4)
})

t.test('4001 right after establishment, twice: fatal, no loop', async t => {
  const ctx = start(t, await setup(t, { routes (app) { app.get('/ws', { websocket: true }, (socket) => socket.close(4001, 'Token revoked')) } }))
  const { events, tokens, time } = ctx
  t.match(await untilFinal(events, time), { code: 4001, reason: 'Token revoked', failure: 'token_revoked', kind: 'unauthenticated', willRetry: false })
  t.same(tokens.map(c => c.reason), ['connect', 'reauthenticate'])
  await assertNoRetry(t, ctx, 2, fast.maxDelay)
})

t.test('4010 twice in a row without establishment falls back to backoff: no tight loop', async t => {
  const ctx = start(t, await setup(t, {
    auth: { established: false },
    routes (app) { app.get('/ws', { websocket: true }, (socket) => socket.close(4010, 'Session lifetime exceeded')) }
  }), { reconnect: { ...fast, maxAttempts: 3 } })
  const { events, time } = ctx
  await untilFinal(events, time)
  t.same(events.all('close').map(c => [c.code, c.kind, c.delay, c.willRetry]), [
    [4010, 'restart', 0, true],
    [4010, 'restart', 20, true],
    [4010, 'restart', 40, true],
    [4010, 'restart', 0, false]
  ])
  await assertNoRetry(t, ctx, 4, fast.maxDelay)
})

t.test('1006 (no server at all): backoff until maxAttempts', async t => {
  const { time, served } = await setup(t)
  const url = served.url()
  await served.app.close()
  const spy = sockets()
  const client = createClient({ url, token: 't', WebSocket: spy.WebSocket, reconnect: { ...fast, maxAttempts: 2 } })
  t.teardown(() => client.close())
  const events = record(client)
  await untilFinal(events, time)
  t.same(events.all('close').map(c => [c.code, c.kind, c.delay, c.willRetry]), [
    [1006, 'transient', 20, true],
    [1006, 'transient', 40, true],
    [1006, 'transient', 0, false]
  ])
  t.match(events.all('error'), [{ code: 1006, failure: 'abnormal_closure', message: /gave up after 2/ }])
  t.equal(client.state, 'closed')
  await time.tick(fast.maxDelay + 1)
  t.equal(spy.all.length, 3, 'no socket after the final close')
})

t.test('close() during a pending backoff cancels it', async t => {
  const ctx = start(t, await setup(t, { routes (app) { app.get('/ws', { websocket: true, wsAuth: { authorize: async () => { throw new Error('x') } } }, () => {}) } }),
    { reconnect: { ...fast, initialDelay: 100 } })
  const { client, events } = ctx
  client.send('never sent')
  t.match(await events.next('close'), { code: 1011, willRetry: true, delay: 100 })
  t.equal(client.state, 'reconnecting')
  client.close()
  t.equal(client.state, 'closed')
  t.match(events.all('close')[1], { code: 1000, reason: '', kind: 'closed', willRetry: false, unsent: ['never sent'] })
  await assertNoRetry(t, ctx, 1, fast.maxDelay)
  t.same(events.all('error'), [], 'closing is no error')
})

t.test('close() from a close listener stops the retry it announces', async t => {
  const ctx = start(t, await setup(t, closingRoute(1012, 'Service restart')))
  const { client, events } = ctx
  client.on('close', (info) => { if (info.willRetry) client.close(4000, 'bye') })
  await events.final()
  t.match(events.all('close').map(c => [c.code, c.willRetry]), [[1012, true], [4000, false]])
  await assertNoRetry(t, ctx, 1, fast.maxDelay)
})

t.test('close() while token() is pending: no connection at all', async t => {
  const release = deferred<string>()
  const ctx = start(t, await setup(t), { token: () => release.promise })
  const { client, events, served } = ctx
  await new Promise(resolve => setImmediate(resolve))
  t.equal(client.state, 'connecting', 'token() was asked')
  client.close()
  release.resolve(served.sign({ sub: 'u1' }))
  t.match(await events.final(), { kind: 'closed' })
  await assertNoRetry(t, ctx, 0, fast.maxDelay)
})

t.test('token() that throws: an error of kind token, then backoff', async t => {
  const running = await setup(t)
  const { served } = running
  let calls = 0
  const { events, time } = start(t, running, {
    token: () => { if (++calls === 1) throw new Error('auth server down'); return served.sign({ sub: 'u1' }) }
  })
  const error = await events.next('error')
  t.match(error, { name: 'WsAuthError', code: null, kind: 'token', retry: 'backoff', cause: { message: 'auth server down' } })
  t.match(await events.next('close'), { code: null, kind: 'token', willRetry: true, delay: 20 })
  await time.tick(20)
  await events.next('established')
  t.equal(served.attempts.length, 1, 'no socket was opened without a token')
})

t.test('token() that returns nothing: fatal no_token, no connection', async t => {
  const ctx = start(t, await setup(t), { token: () => null })
  const { events } = ctx
  t.match(await events.final(), { code: 4001, reason: 'No token provided', failure: 'no_token', kind: 'unauthenticated', willRetry: false })
  t.match(events.all('error'), [{ message: /token\(\) returned no token/ }])
  await assertNoRetry(t, ctx, 0, fast.maxDelay)
})

t.test('closeCodes remapped on both sides: the client reads the same table', async t => {
  const closeCodesMap = { forbidden: { code: 1008, reason: 'Policy violation: forbidden' } }
  const ctx = start(t, await setup(t, {
    auth: { closeCodes: closeCodesMap },
    routes (app) { app.get('/ws', { websocket: true, wsAuth: { roles: ['root'] } }, () => {}) }
  }), { closeCodes: closeCodesMap })
  t.match(await ctx.events.final(), { code: 1008, reason: 'Policy violation: forbidden', failure: 'forbidden', kind: 'refused', willRetry: false })
  await assertNoRetry(t, ctx, 1, fast.maxDelay)
})
