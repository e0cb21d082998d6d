// One-time connection tickets (issue 18) seen by the client, against a real server: a new ticket
// for every connection (never one twice) and in the URL only, `Invalid ticket` retried once as
// the table says, no in-band refresh, the option checks, and no ticket in any error or event.
import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { createClient, ticketHandshake } from '../../lib/client/index.ts'
import type { ClientOptions, TicketClientOptions, TicketContext, WebSocketConstructor } from '../../lib/client/index.ts'
import type { WsAuthClaims } from '../../lib/types.ts'
import { connectWith, refusal } from '../helpers/index.ts'
import { manualClock } from '../helpers/clock.ts'
import { serve, type ServeOptions, type Served } from './helpers/server.ts'
import { assertNoRetry, record, sockets, untilFinal } from './helpers/record.ts'

const fast = { initialDelay: 20, maxDelay: 1000, factor: 2, jitter: false }
const INVALID = { code: 4001, reason: 'Invalid ticket' }
/** The server files deadlines in slots of this many ms (lib/server/host.ts): one fires at most this late. */
const SLOT = 200

/** A server whose routes read tickets (and no other source a ticket client could use by mistake). */
function ticketServer (t: Test, opts: ServeOptions = {}): Promise<Served> {
  return serve(t, { ...opts, auth: { sources: ['ticket'], ...opts.auth } })
}

/** A ticket the server never issued, well formed. */
const unknownTicket = (): string => randomBytes(18).toString('base64url')

/** The ticket in a URL the client opened. */
const ticketIn = (url: string, param = 'ticket'): string | null => new URL(url).searchParams.get(param)

/**
 * A ticket client whose `ticket()` issues a ticket on the server for `claims` (as an HTTP route
 * of the app would) and records why it was asked and what it returned.
 */
function start (t: Test, served: Served, options: Partial<TicketClientOptions> = {}, claims: () => WsAuthClaims = () => ({ sub: 'u1', roles: ['admin'] })) {
  const asked: TicketContext[] = []
  const issued: string[] = []
  const spy = sockets()
  const client = createClient({
    url: served.url(),
    ticket: async (ctx) => {
      asked.push(ctx)
      const ticket = await served.app.wsAuth.issueTicket(claims())
      issued.push(ticket)
      return ticket
    },
    WebSocket: spy.WebSocket,
    reconnect: fast,
    ...options
  })
  const events = record(client)
  t.teardown(() => client.close())
  return { client, events, asked, issued, sockets: spy, served }
}

t.test('a ticket from an authenticated HTTP route opens the socket: ?ticket= in the URL, no token anywhere', async t => {
  const served = await ticketServer(t, {
    routes (app) {
      app.post('/ws-ticket', async (request) => {
        await request.jwtVerify()
        return { ticket: await app.wsAuth.issueTicket(request.user as WsAuthClaims, { route: '/ws' }) }
      })
      app.get('/ws', { websocket: true }, (socket) => {
        socket.on('message', (data, binary) => socket.send(data, { binary }))
      })
    }
  })
  const jwt = served.sign({ sub: 'u1', username: 'ann', roles: ['admin'] })
  const received: string[] = []
  const spy = sockets()
  const client = createClient({
    url: served.url(),
    WebSocket: spy.WebSocket,
    protocols: ['chat.v2'],
    ticket: async () => {
      const res = await fetch(served.httpUrl('/ws-ticket'), { method: 'POST', headers: { authorization: `Bearer ${jwt}` } })
      const { ticket } = await res.json() as { ticket: string }
      received.push(ticket)
      return ticket
    }
  })
  const events = record(client)
  t.teardown(() => client.close())
  t.match(await events.next('established'), { type: 'connection_established', user: { id: 'u1', username: 'ann', roles: ['admin'] } })
  t.equal(client.state, 'open')
  t.match(received, [/^[A-Za-z0-9_-]{24}$/])
  const { url, protocols } = spy.offered(1)
  t.equal(ticketIn(url), received[0], 'the ticket is in the URL')
  t.equal(new URL(url).searchParams.has('token'), false, 'and no token parameter')
  t.same(protocols, ['chat.v2'], 'only the app\'s subprotocols: no bearer entry')
  t.equal(client.protocol, 'chat.v2')
  client.send({ hello: 'ticket' })
  t.equal(await events.next('message'), JSON.stringify({ hello: 'ticket' }))
  t.same(spy.sent(1), [JSON.stringify({ hello: 'ticket' })], 'no auth message: the app\'s frame only')
  t.same(events.all('close'), [])
})

t.test('every reconnect asks ticket() again: a new ticket each time, a used one never offered again', async t => {
  let n = 0
  const served = await ticketServer(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => {
        n++
        if (n === 1) socket.close(1012, 'Service restart')
        else if (n === 2) socket.close(4010, 'Session lifetime exceeded')
      })
    }
  })
  const { events, asked, issued, sockets: spy } = start(t, served)
  await events.next('established', 3)
  t.same(events.all('close').map(c => [c.code, c.willRetry]), [[1012, true], [4010, true]])
  t.same(asked.map(c => [c.reason, c.attempt]), [['connect', 0], ['reconnect', 1], ['reconnect', 1]], 'asked before each connection, and why')
  t.equal(issued.length, 3)
  t.equal(new Set(issued).size, 3, 'three different tickets')
  t.same(spy.all.map((_, i) => ticketIn(spy.offered(i + 1).url)), issued, 'each socket carried the ticket issued for it')
  for (const used of issued) {
    t.same(await refusal(connectWith(served.url(), 'ticket', used)), INVALID, 'each was redeemed: the server refuses it now')
  }
})

t.test('4001 Invalid ticket: a new ticket at once; a second in a row is fatal', async t => {
  const time = manualClock(t)
  const served = await ticketServer(t)
  const asked: TicketContext[] = []
  const returned: string[] = []
  const ctx = start(t, served, { ticket: (c) => { asked.push(c); const ticket = unknownTicket(); returned.push(ticket); return ticket } })
  const { events } = ctx
  t.match(await events.next('close'), { ...INVALID, failure: 'invalid_ticket', kind: 'unauthenticated', willRetry: true, delay: 0, attempt: 1 })
  t.match(await untilFinal(events, time), { ...INVALID, failure: 'invalid_ticket', kind: 'unauthenticated', willRetry: false })
  t.match(events.all('error'), [{
    name: 'WsAuthError', ...INVALID, failure: 'invalid_ticket', kind: 'unauthenticated', retry: 'reauthenticate', message: /refused a fresh ticket too \(4001 Invalid ticket\)/
  }])
  await assertNoRetry(t, { ...ctx, time }, 2, fast.maxDelay)
  t.same(asked.map(c => [c.reason, c.attempt]), [['connect', 0], ['reauthenticate', 1]])
  t.equal(new Set(returned).size, 2, 'the retry took a new ticket')
  const everything = JSON.stringify(events.events)
  for (const ticket of returned) t.notOk(everything.includes(ticket), 'no ticket in any event or error')
})

t.test('a used ticket is refused, the next one is good: established on the second attempt', async t => {
  const served = await ticketServer(t)
  const used = await served.app.wsAuth.issueTicket({ sub: 'u1' })
  const first = connectWith(served.url(), 'ticket', used)
  t.match(await first.message(1), { type: 'connection_established' })
  let calls = 0
  const { events, asked } = start(t, served, {
    ticket: async (c) => { asked.push(c); return ++calls === 1 ? used : served.app.wsAuth.issueTicket({ sub: 'u1' }) }
  })
  t.match(await events.next('close'), { ...INVALID, willRetry: true, delay: 0 })
  t.match(await events.next('established'), { user: { id: 'u1' } })
  t.same(asked.map(c => c.reason), ['connect', 'reauthenticate'])
  t.same(events.all('error'), [])
})

t.test('reject: "http": a used ticket is a 401 with failure invalid_ticket, retried once with a new ticket', async t => {
  const served = await ticketServer(t, { auth: { reject: 'http' } })
  const used = await served.app.wsAuth.issueTicket({ sub: 'u1' })
  await connectWith(served.url(), 'ticket', used).message(1)
  let calls = 0
  const { events } = start(t, served, { ticket: async () => ++calls === 1 ? used : served.app.wsAuth.issueTicket({ sub: 'u1' }) })
  t.match(await events.next('close'), { ...INVALID, status: 401, failure: 'invalid_ticket', kind: 'unauthenticated', willRetry: true, delay: 0 })
  await events.next('established')
  t.equal(calls, 2)
})

t.test('no in-band refresh: the warning is ignored, and the expiry close reconnects at once with a new ticket', async t => {
  const time = manualClock(t)
  const served = await ticketServer(t, { auth: { heartbeatInterval: false, expiryWarning: 60_000 } })
  // exp on the library's clock, which the server reads.
  const { events, asked, issued, sockets: spy } = start(t, served, {}, () => ({ sub: 'u1', exp: Math.floor(time.now() / 1000) + 3600 }))
  const info = await events.next('established')
  const frames: string[] = []
  spy.all[0].on('message', (data) => frames.push(String(data)))
  await time.tick(Date.parse(info.expires_at!) - time.now() + SLOT)
  t.match(await events.next('close'), { code: 4001, reason: 'Token expired', failure: 'token_expired', kind: 'unauthenticated', willRetry: true, delay: 0 })
  t.ok(frames.some(f => f.includes('"token_expiring"')), 'the server warned first')
  t.same(spy.sent(1), [], 'and the client sent nothing: no auth message, no refresh')
  await time.tick(0)
  const again = await events.next('established', 2)
  t.ok(Date.parse(again.expires_at!) > Date.parse(info.expires_at!), 'a new session, with the new ticket\'s expiry')
  t.same(asked.map(c => c.reason), ['connect', 'reauthenticate'])
  t.equal(ticketIn(spy.offered(2).url), issued[1])
  t.same(events.all('refreshed'), [])
  t.same(events.all('error'), [])
})

for (const how of ['throws', 'rejects'] as const) {
  t.test(`ticket() that ${how}: an error of kind token naming ticket(), then backoff and a new ticket`, async t => {
    const served = await ticketServer(t)
    let calls = 0
    const { events, asked } = start(t, served, {
      ticket: (c) => {
        asked.push(c)
        if (++calls === 1) {
          if (how === 'throws') throw new Error('ticket endpoint down')
          return Promise.reject(new Error('ticket endpoint down'))
        }
        return served.app.wsAuth.issueTicket({ sub: 'u1' })
      }
    })
    t.match(await events.next('error'), {
      name: 'WsAuthError', message: 'fastify-ws-auth client: ticket() threw', code: null, reason: 'ticket() failed', kind: 'token', retry: 'backoff', cause: { message: 'ticket endpoint down' }
    })
    t.match(await events.next('close'), { code: null, reason: 'ticket() failed', kind: 'token', willRetry: true, delay: fast.initialDelay })
    await events.next('established')
    t.same(asked.map(c => c.reason), ['connect', 'reconnect'])
    t.equal(served.attempts.length, 1, 'no socket was opened without a ticket')
  })
}

t.test('ticket() that returns no ticket: fatal no_token, no connection', async t => {
  for (const [what, value] of [['null', null], ['undefined', undefined], ['an empty string', ''], ['a number', 42], ['an object', { ticket: 'x' }]] as const) {
    await t.test(what, async t => {
      const time = manualClock(t)
      const served = await ticketServer(t)
      const ctx = start(t, served, { ticket: async () => value as string })
      t.match(await ctx.events.final(), { code: 4001, reason: 'No token provided', failure: 'no_token', kind: 'unauthenticated', willRetry: false })
      t.match(ctx.events.all('error'), [{ message: /ticket\(\) returned no ticket/, failure: 'no_token' }])
      await assertNoRetry(t, { ...ctx, time }, 0, fast.maxDelay)
    })
  }
})

t.test('ticketParam: the server\'s and the client\'s agree on another name', async t => {
  const served = await ticketServer(t, { auth: { ticketParam: 'one_time' } })
  const { events, issued, sockets: spy } = start(t, served, { ticketParam: 'one_time' })
  await events.next('established')
  t.equal(ticketIn(spy.offered(1).url, 'one_time'), issued[0])
  t.equal(ticketIn(spy.offered(1).url), null, 'not under the default name')
})

t.test('a WebSocket constructor that throws: fatal, and the ticket stays out of the error', async t => {
  const ticket = unknownTicket()
  // As a browser does for a URL it cannot open, quoting it (and so the ticket).
  class Refusing {
    constructor (url: string) {
      throw new SyntaxError(`The URL '${url}' is invalid`)
    }
  }
  const client = createClient({ url: 'ws://127.0.0.1:9/ws', ticket: () => ticket, WebSocket: Refusing as unknown as WebSocketConstructor })
  const events = record(client)
  t.match(await events.final(), { code: null, kind: 'refused', willRetry: false })
  const [error] = events.all('error')
  t.match(error, { name: 'WsAuthError', message: /the WebSocket constructor refused ws:\/\/127.0.0.1:9\/ws$/ })
  t.equal((error.cause as Error).message, "The URL 'ws://127.0.0.1:9/ws?ticket=[ticket]' is invalid")
  t.notOk(JSON.stringify([error.message, (error.cause as Error).message, events.events]).includes(ticket))
})

t.test('options: token or ticket, not both; no token option with a ticket; the ticket never in a message', async t => {
  const base = { url: 'ws://127.0.0.1:1/ws', WebSocket }
  const ticket = async (): Promise<string> => 'never-called'
  const secret = 'AAAAAAAAAAAAAAAAAAAAAAAA'
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{}, /option "token" is required \(or "ticket", a function returning a one-time ticket\)$/],
    [{ token: 't', ticket }, /option "ticket" cannot be given with "token": a client authenticates with one of them$/],
    [{ ticket: secret }, /option "ticket" must be a function returning a new ticket for each connection \(a ticket opens one, once\), got a string$/],
    [{ ticket: 42 }, /option "ticket" must be a function .*, got 42$/],
    [{ ticket: null }, /option "ticket" must be a function .*, got null$/],
    [{ ticket, transport: 'query' }, /option "transport" applies to "token" only: a ticket travels in the URL \(\?<ticketParam>=\) and is never refreshed/],
    [{ ticket, transport: 'protocol' }, /option "transport" applies to "token" only/],
    [{ ticket, queryParam: 'tk' }, /option "queryParam" applies to "token" only/],
    [{ ticket, protocolPrefix: 'jwt' }, /option "protocolPrefix" applies to "token" only/],
    [{ ticket, refresh: false }, /option "refresh" applies to "token" only/],
    [{ ticket, refreshMargin: 1000 }, /option "refreshMargin" applies to "token" only/],
    [{ ticket, ticketParam: '' }, /option "ticketParam" must be a non-empty string/],
    [{ token: 't', ticketParam: 'one_time' }, /option "ticketParam" applies to "ticket" only \(the token travels by "transport"\)/]
  ]
  for (const [override, message] of bad) {
    // A client built by mistake is closed at once, so that the failure is the assertion, not a hang.
    t.throws(() => createClient({ ...base, ...override } as unknown as ClientOptions).close(),
      { name: 'ClientError', code: 'FST_WS_AUTH_CLIENT_INVALID_OPTION', message }, Object.keys(override).join(' + ') || 'neither token nor ticket')
  }
  try {
    createClient({ ...base, ticket: secret } as unknown as ClientOptions)
  } catch (err) {
    t.notOk((err as Error).message.includes(secret), 'a string given as ticket is not quoted')
  }
  const client = createClient({ ...base, ticket, ticketParam: 'one_time', protocols: ['chat.v2'], reconnect: false })
  t.equal(client.state, 'connecting', 'the other options go with a ticket')
  client.close()
})

t.test('ticketHandshake carries a ticket in the URL', async t => {
  t.same(ticketHandshake({ url: 'ws://h/ws?room=1', ticket: 'abc' }), { url: 'ws://h/ws?room=1&ticket=abc', protocols: [], authMessage: null })
  t.same(ticketHandshake({ url: 'ws://h/ws?t=old', ticket: 'a+b/c', ticketParam: 't', protocols: ['chat.v2'] }),
    { url: 'ws://h/ws?t=a%2Bb%2Fc', protocols: ['chat.v2'], authMessage: null }, 'replaces one already there, encoded')
})
