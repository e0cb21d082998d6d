// Hostile clients: a seeded fuzzer of first messages, raw frames that break the protocol,
// prototype-pollution payloads, floods before authentication, silent clients, and clients that
// vanish mid-handshake or mid-verification. Each ends in its row of the close-code table, never
// reaches the handler, and leaves the server's counts at their baseline. The auth timeout runs
// on the manual clock: a verdict is never 4008 by accident of a busy machine, and the clients
// that must time out are closed by `tick`.
import t, { type Test } from 'tap'
import type { FastifyRequest } from 'fastify'
import { once } from 'node:events'
import type { WsAuthClaims, WsAuthPluginOptions } from '../../lib/types.ts'
import {
  bounded, buildApp, connect, deferred, refusal, serverSockets, spyRoute, stillOpen,
  type Client, type Closed, type RouteSpy, type ServerSockets, type TestApp
} from '../helpers/index.ts'
import { manualClock } from '../helpers/clock.ts'
import {
  frame, hmacToken, isTableRow, mulberry32, pool, portOf, rawHandshake, readClose, settle, tcp,
  trackRejections, upgradeRequest
} from './helpers.ts'

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed1e55)
const AUTH_TIMEOUT = 2000
const MAX_AUTH = 4096
const MAX_PENDING_BYTES = 64 * 1024

const rejections = trackRejections(t)
const verifyWithJwt = (token: string, request: FastifyRequest) => request.server.jwt.verify<WsAuthClaims>(token)

const INVALID_AUTH: Closed = { code: 4001, reason: 'Invalid auth message' }
const INVALID_TOKEN: Closed = { code: 4001, reason: 'Invalid token' }
const POLICY: Closed = { code: 1008, reason: 'Policy violation' }
const TOO_BIG: Closed = { code: 1009, reason: 'Message too big' }
const TIMEOUT: Closed = { code: 4008, reason: 'Authentication timeout' }
const PROTOCOL: Closed = { code: 1002, reason: '' }
const BAD_UTF8: Closed = { code: 1007, reason: '' }

interface Served extends TestApp {
  spy: RouteSpy
  /** The server's ends of the connections. */
  server: ServerSockets
  /** Resolves when the next upgrade request has passed the plugin's route hook (a preHandler sees it). */
  guarded (): Promise<void>
}

async function serve (t: Test, auth: WsAuthPluginOptions = {}): Promise<Served> {
  let spy!: RouteSpy
  const passed: Array<() => void> = []
  const app = await buildApp(t, {
    auth: { sources: ['message'], authTimeout: AUTH_TIMEOUT, maxAuthMessageBytes: MAX_AUTH, maxPendingBytes: MAX_PENDING_BYTES, ...auth },
    routes: (app) => {
      // Runs after every preValidation hook, the plugin's route hook among them.
      app.addHook('preHandler', (_request, _reply, done) => {
        for (const resolve of passed.splice(0)) resolve()
        done()
      })
      spy = spyRoute(app, '/ws')
      // The same handler: one spy counts both routes.
      app.get('/ws/http', { websocket: true, wsAuth: { reject: 'http', sources: ['query'] } }, (socket, request) => {
        spy.calls++
        spy.users.push(socket.user)
        spy.sameUser.push(socket.user === request.user)
        spy.params.push(request.params)
      })
    }
  })
  const server = serverSockets(app.app)
  const guarded = (): Promise<void> => new Promise(resolve => passed.push(resolve))
  return { ...app, spy, server, guarded }
}

/**
 * No session of any kind is left: none authenticating, none open, no socket in ws's set, checked
 * once the server has closed its end of every connection (the events the counts follow).
 */
async function atBaseline (t: Test, s: Served): Promise<void> {
  await s.server.allClosed()
  const { active, authenticating } = s.app.wsAuth.stats()
  t.same({ active, authenticating, sockets: s.app.websocketServer.clients.size }, { active: 0, authenticating: 0, sockets: 0 }, 'counts at baseline')
}

// ---------------------------------------------------------------------------------------------
// The first-message fuzzer

interface FuzzCase {
  kind: string
  /** Sends the first message on an open client. */
  send (client: Client): void
  expect: Closed
}

/** The verdict the contract gives a text first message (already known to be valid UTF-8). */
function expectedForText (text: string): Closed {
  if (Buffer.byteLength(text) > MAX_AUTH) return TOO_BIG
  let message: unknown
  try {
    message = JSON.parse(text)
  } catch {
    return INVALID_AUTH
  }
  const m = message as { type?: unknown, token?: unknown } | null
  if (m === null || typeof m !== 'object' || Array.isArray(m)) return INVALID_AUTH
  return m.type === 'auth' && typeof m.token === 'string' && m.token.length > 0 ? INVALID_TOKEN : INVALID_AUTH
}

function fuzzCases (seed: number, count: number): FuzzCase[] {
  const rand = mulberry32(seed)
  const int = (n: number) => Math.floor(rand() * n)
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)))
  const text = (n: number) => Array.from({ length: n }, () => pick(['a', 'Z', '0', ' ', '"', '{', '}', '[', ']', ':', ',', '\\', 'é', '€', '😀', '\n', '.', '-'])).join('')
  const value = (depth: number): unknown => {
    switch (depth > 2 ? int(5) : int(8)) {
      case 0: return null
      case 1: return rand() < 0.5
      case 2: return pick([0, -1, 1e308, 4001, 3.14, Number.MAX_SAFE_INTEGER])
      case 3: return text(int(40))
      case 4: return pick(['auth', 'AUTH', 'auth ', 'ping', 'refresh', ''])
      case 5: return Array.from({ length: int(4) }, () => value(depth + 1))
      default: return Object.fromEntries(Array.from({ length: int(4) }, () => [pick(['type', 'token', 'data', '__proto__', 'constructor', 'id']), value(depth + 1)]))
    }
  }
  const tokenValue = (): unknown => pick([undefined, null, 42, true, [], {}, '', 'x', text(30), 'a.b.c', 'eyJhbGciOiJub25lIn0.e30.', text(5000)])
  const generators: Array<() => Omit<FuzzCase, 'kind'> & { kind: string }> = [
    () => {
      const data = bytes(int(2048))
      return { kind: 'binary frame', send: c => c.ws.send(data, { binary: true }), expect: POLICY }
    },
    () => {
      const data = Buffer.concat([Buffer.from(text(int(20))), Buffer.from([pick([0xff, 0xfe, 0xc0, 0xc1, 0xf8, 0x80])]), bytes(int(20))])
      return { kind: 'invalid UTF-8 text frame', send: c => c.ws.send(data, { binary: false }), expect: BAD_UTF8 }
    },
    () => {
      const json = JSON.stringify(value(0))
      return { kind: 'JSON of some shape', send: c => c.send(json), expect: expectedForText(json) }
    },
    () => {
      const msg: Record<string, unknown> = { type: pick(['auth', 'Auth', 'auth\u0000', 'login']) }
      const token = tokenValue()
      if (token !== undefined) msg.token = token
      if (rand() < 0.3) msg.extra = value(1)
      const json = JSON.stringify(msg)
      return { kind: 'auth-like object', send: c => c.send(json), expect: expectedForText(json) }
    },
    () => {
      const json = JSON.stringify([{ type: 'auth', token: text(20) }])
      return { kind: 'auth message in an array', send: c => c.send(json), expect: INVALID_AUTH }
    },
    () => {
      const raw = text(int(200))
      return { kind: 'random text', send: c => c.send(raw), expect: expectedForText(raw) }
    },
    () => {
      const json = JSON.stringify({ type: 'auth', token: 'x'.repeat(MAX_AUTH + int(MAX_PENDING_BYTES - MAX_AUTH)) })
      return { kind: 'huge string under the frame cap', send: c => c.send(json), expect: TOO_BIG }
    },
    () => {
      const json = JSON.stringify({ type: 'auth', token: 'y'.repeat(1024 * 1024 + int(1024)) })
      return { kind: 'megabyte message', send: c => c.send(json), expect: TOO_BIG }
    },
    () => ({ kind: 'empty text frame', send: c => c.send(''), expect: INVALID_AUTH }),
    () => ({ kind: 'empty binary frame', send: c => c.ws.send(Buffer.alloc(0), { binary: true }), expect: POLICY })
  ]
  return Array.from({ length: count }, () => generators[int(generators.length)]())
}

t.test(`first-message fuzzing (seed ${SEED}, set FUZZ_SEED to replay)`, async t => {
  t.comment(`seed ${SEED}`)
  manualClock(t)
  const s = await serve(t)
  const cases = fuzzCases(SEED, 300)
  const kinds = new Set(cases.map(c => c.kind))
  t.ok(kinds.size >= 8, `the seed covers ${kinds.size} kinds of first message`)
  const failures: string[] = []
  await pool(cases, 50, async (fuzz, i) => {
    const client = connect(s.url('/ws'))
    await client.opened
    fuzz.send(client)
    const verdict = await refusal(client)
    const where = `seed ${SEED} case ${i} (${fuzz.kind})`
    if (!('code' in verdict)) {
      failures.push(`${where}: got a message ${JSON.stringify(verdict.message).slice(0, 80)}`)
      client.ws.terminate()
      return
    }
    if (verdict.code !== fuzz.expect.code || verdict.reason !== fuzz.expect.reason) {
      failures.push(`${where}: expected ${JSON.stringify(fuzz.expect)}, got ${JSON.stringify(verdict)}`)
    }
    if (!isTableRow(verdict)) failures.push(`${where}: ${JSON.stringify(verdict)} is not a row of the table`)
  })
  t.same(failures, [], `every first message ends in its documented close code (seed ${SEED})`)
  t.equal(s.spy.calls, 0, 'no fuzzed client reached the handler')
  await atBaseline(t, s)
  const good = connect(s.url('/ws'))
  await good.opened
  good.send({ type: 'auth', token: s.sign({ sub: 'u1' }) })
  t.match(await good.message(1), { type: 'connection_established' }, 'a good client still gets in')
  good.ws.close()
  await good.closed
})

// ---------------------------------------------------------------------------------------------
// Raw frames: what the ws client would never send

t.test('raw frames that break the protocol end in ws\'s own rows (1002, 1007, 1009)', async t => {
  const s = await serve(t)
  const port = portOf(s.app)
  const text = (payload: string | Buffer, fin = true) => frame({ opcode: 1, payload: Buffer.from(payload), fin })
  const closeWith = (code: number, reason = '') => {
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason))
    payload.writeUInt16BE(code, 0)
    payload.write(reason, 2)
    return frame({ opcode: 8, payload })
  }
  const cases: Array<{ name: string, bytes: Buffer, expect: Closed }> = [
    { name: 'an unmasked frame', bytes: frame({ opcode: 1, payload: Buffer.from('{"type":"auth"}'), mask: false }), expect: PROTOCOL },
    { name: 'RSV1 set without an extension', bytes: frame({ opcode: 1, payload: Buffer.from('x'), rsv: 4 }), expect: PROTOCOL },
    { name: 'RSV2|RSV3 set', bytes: frame({ opcode: 2, payload: Buffer.from('x'), rsv: 3 }), expect: PROTOCOL },
    { name: 'reserved opcode 0x3', bytes: frame({ opcode: 3, payload: Buffer.from('x') }), expect: PROTOCOL },
    { name: 'reserved control opcode 0xB', bytes: frame({ opcode: 0xb }), expect: PROTOCOL },
    { name: 'a continuation frame with nothing to continue', bytes: frame({ opcode: 0, payload: Buffer.from('x') }), expect: PROTOCOL },
    { name: 'a fragmented ping', bytes: frame({ opcode: 9, payload: Buffer.from('x'), fin: false }), expect: PROTOCOL },
    { name: 'a ping over 125 bytes', bytes: frame({ opcode: 9, payload: Buffer.alloc(126) }), expect: PROTOCOL },
    { name: 'a close frame with a 1-byte payload', bytes: frame({ opcode: 8, payload: Buffer.from([3]) }), expect: PROTOCOL },
    { name: 'a close frame with code 1005', bytes: closeWith(1005), expect: PROTOCOL },
    { name: 'a close frame with code 999', bytes: closeWith(999), expect: PROTOCOL },
    { name: 'a text frame, then a new text frame inside the fragmented message', bytes: Buffer.concat([text('{"type":', false), text('"auth"}')]), expect: PROTOCOL },
    { name: 'a close frame with an invalid UTF-8 reason', bytes: frame({ opcode: 8, payload: Buffer.from([0x0f, 0xa0, 0xff]) }), expect: BAD_UTF8 },
    { name: 'invalid UTF-8 in a text frame', bytes: text(Buffer.from([0x7b, 0xff, 0x7d])), expect: BAD_UTF8 },
    { name: 'invalid UTF-8 split over two fragments', bytes: Buffer.concat([text(Buffer.from([0x22, 0xe2, 0x82]), false), frame({ opcode: 0, payload: Buffer.from([0x41, 0x22]) })]), expect: BAD_UTF8 },
    { name: 'a 64-bit length over the frame cap', bytes: frame({ opcode: 1, payload: Buffer.alloc(MAX_PENDING_BYTES + 1, 0x20) }), expect: TOO_BIG },
    { name: 'fragments adding up over the frame cap', bytes: Buffer.concat([text(Buffer.alloc(MAX_PENDING_BYTES / 2, 0x20), false), frame({ opcode: 0, payload: Buffer.alloc(MAX_PENDING_BYTES / 2 + 1, 0x20) })]), expect: TOO_BIG },
    { name: 'a fragmented auth message with a bad token', bytes: Buffer.concat([text('{"type":"auth",', false), frame({ opcode: 9 }), frame({ opcode: 0, payload: Buffer.from('"token":"a.b.c"}') })]), expect: INVALID_TOKEN }
  ]
  for (const c of cases) {
    const { socket, status, rest } = await rawHandshake(port, '/ws')
    t.equal(status, 101, `${c.name}: upgraded`)
    const closed = readClose(socket, rest)
    socket.write(c.bytes)
    const verdict = await closed
    t.same(verdict, c.expect, `${c.name}: ${c.expect.code}`)
    t.ok(isTableRow(verdict), `${c.name}: a row of the table`)
  }
  t.equal(s.spy.calls, 0, 'no raw client reached the handler')
  await atBaseline(t, s)
})

// ---------------------------------------------------------------------------------------------
// Prototype pollution

/** Nothing was added to Object.prototype (the server runs in this process). */
function assertUnpolluted (t: Test): void {
  const probe = {} as Record<string, unknown>
  t.equal(probe.polluted, undefined, '({}).polluted is undefined')
  t.equal(probe.roles, undefined, '({}).roles is undefined')
  t.equal(probe.type, undefined, '({}).type is undefined')
  t.same(Object.getOwnPropertyNames(Object.prototype).filter(name => ['polluted', 'roles', 'type', 'token'].includes(name)), [],
    'Object.prototype has no new own property')
}

t.test('__proto__ and constructor.prototype payloads pollute nothing and grant nothing', async t => {
  let spy!: RouteSpy
  let admin!: RouteSpy
  const s = await buildApp(t, {
    auth: { sources: ['query', 'message'] },
    routes: (app) => {
      spy = spyRoute(app, '/ws')
      admin = spyRoute(app, '/ws/admin', { roles: ['admin'] })
    }
  })
  const valid = s.sign({ sub: 'u1' })
  const viaMessage = async (text: string, path = '/ws') => {
    const client = connect(s.url(path))
    await client.opened
    client.send(text)
    return client
  }
  const hostile = (token: string) => [
    `{"__proto__":{"polluted":true},"type":"auth","token":"${token}"}`,
    `{"constructor":{"prototype":{"polluted":true}},"type":"auth","token":"${token}"}`,
    `{"type":"auth","token":"${token}","__proto__":{"__proto__":{"polluted":true}}}`
  ]
  for (const text of hostile('a.b.c')) {
    t.same(await refusal(await viaMessage(text)), INVALID_TOKEN, `bad token in ${text.slice(0, 40)}: 4001`)
  }
  for (const text of hostile(valid)) {
    const client = await viaMessage(text)
    t.match(await client.message(1), { type: 'connection_established', user: { id: 'u1', roles: [] } }, `a valid token in ${text.slice(0, 40)}: accepted as itself`)
    client.ws.close()
    await client.closed
  }
  t.same(await refusal(await viaMessage(`{"__proto__":{"type":"auth","token":"${valid}"}}`)), INVALID_AUTH,
    'type and token only through __proto__: not an auth message')

  // Signed claims that try the same: the default loadUser reads own properties only.
  for (const payload of ['{"sub":"u1","__proto__":{"roles":["admin"]}}', '{"sub":"u1","constructor":{"prototype":{"roles":["admin"]}}}']) {
    const token = hmacToken({ alg: 'HS256', typ: 'JWT' }, payload)
    t.same(await refusal(connect(s.url('/ws/admin?token=' + token))), { code: 4003, reason: 'Forbidden' }, `claims ${payload}: no admin role`)
  }
  // The query string and an in-band refresh carry the same payloads.
  const q = connect(s.url(`/ws?__proto__[polluted]=1&constructor[prototype][polluted]=1&__proto__=x&token=${valid}`))
  t.match(await q.message(1), { type: 'connection_established' }, 'a polluting query string around a valid token')
  q.send(`{"__proto__":{"polluted":true},"type":"auth","token":"${s.sign({ sub: 'u1', n: 2 })}"}`)
  t.match(await q.message(2), { type: 'token_refreshed' }, 'an in-band refresh with a __proto__ key')
  q.ws.close()
  await q.closed
  t.equal(admin.calls, 0, 'the admin handler never ran')
  t.equal(spy.calls, 4, 'only the valid tokens reached the handler')
  assertUnpolluted(t)
})

// ---------------------------------------------------------------------------------------------
// Floods before authentication

/**
 * Whether the socket is still open once the server has read everything sent before: the server
 * answers a ping only while open, so a close it sent arrives first.
 */
t.test('floods before authentication end in their documented code and never reach the handler', async t => {
  const time = manualClock(t)
  const verifying: Array<() => void> = []
  const FLOOD_AUTH_TIMEOUT = 500
  const MAX_PENDING_MESSAGES = 100
  const s = await serve(t, {
    authTimeout: FLOOD_AUTH_TIMEOUT,
    maxPendingMessages: MAX_PENDING_MESSAGES,
    verify: async (token, request) => {
      if (token.startsWith('hold.')) {
        const gate = deferred()
        verifying.push(() => gate.resolve())
        await gate.promise
        throw new Error('never mind')
      }
      return verifyWithJwt(token, request)
    }
  })
  t.teardown(() => { for (const release of verifying) release() })
  const flood = async (name: string, first: (c: Client) => void, each: (c: Client, i: number) => void, count: number, expect: Closed) => {
    const client = connect(s.url('/ws'))
    await client.opened
    first(client)
    for (let i = 0; i < count; i++) each(client, i)
    t.same(await refusal(client), expect, `${name}: ${expect.code} ${expect.reason}`)
  }
  await flood('500 text messages', c => c.send('hello'), (c, i) => c.send('m' + i), 500, INVALID_AUTH)
  await flood('500 binary messages', c => c.ws.send(Buffer.from('x')), c => c.ws.send(Buffer.from('y')), 500, POLICY)
  // The bad token is refused at verification, before the hold buffer can overflow: however the
  // messages after it are read, at most maxPendingMessages of them are held meanwhile.
  await flood(`${MAX_PENDING_MESSAGES + 1} bad auth messages`, () => {}, c => c.send({ type: 'auth', token: 'a.b.c' }), MAX_PENDING_MESSAGES + 1, INVALID_TOKEN)
  // While verification runs, the 101st held message overflows the buffer, however they are read.
  await flood('500 messages while verification runs', c => c.send({ type: 'auth', token: 'hold.a.b' }), (c, i) => c.send('m' + i), 500, POLICY)
  // Pings are no authentication, nor do they extend authTimeout.
  {
    const client = connect(s.url('/ws'))
    await client.opened
    for (let i = 0; i < 50; i++) client.ws.ping()
    await time.tick(FLOOD_AUTH_TIMEOUT - 1)
    t.equal(await stillOpen(client), true, '50 pings: open until authTimeout')
    await time.tick(1)
    t.same(await refusal(client), TIMEOUT, '50 pings and no auth message: 4008 at authTimeout')
  }
  // A ping flood, read in one go: ws answers each ping and terminates a socket with more than 60
  // pongs pending (its maxPendingAutoPongs): 1006, the table's abnormal_closure row.
  {
    const { socket, status, rest } = await rawHandshake(portOf(s.app), '/ws')
    t.equal(status, 101)
    const closed = readClose(socket, rest)
    socket.write(Buffer.concat(Array.from({ length: 500 }, () => frame({ opcode: 9 }))))
    t.same(await bounded(closed, '500 pings'), { code: 1006, reason: '' }, '500 pings: terminated by ws (1006)')
  }
  for (const release of verifying) release()
  await settle()
  t.equal(s.spy.calls, 0, 'no flooding client reached the handler')
  await atBaseline(t, s)
  t.same(rejections, [], 'no unhandled rejection')
})

// ---------------------------------------------------------------------------------------------
// Silent and vanishing clients

t.test('300 silent clients are all reaped at authTimeout with 4008, not a ms before; counts return to baseline', async t => {
  const time = manualClock(t)
  const s = await serve(t, { authTimeout: 300 })
  const before = s.app.wsAuth.stats()
  const clients = Array.from({ length: 300 }, () => connect(s.url('/ws')))
  await Promise.all(clients.map(c => c.opened))
  await time.tick(299)
  t.match(s.app.wsAuth.stats(), { authenticating: 300, failures: before.failures }, 'none reaped at 299 ms')
  await time.tick(1)
  const closes = await Promise.all(clients.map(c => c.closed))
  const wrong = closes.map((c, i) => ({ i, ...c })).filter(c => c.code !== TIMEOUT.code || c.reason !== TIMEOUT.reason)
  t.same(wrong, [], 'every silent client closed with 4008 Authentication timeout')
  t.ok(clients.every(c => c.messages.length === 0), 'none received a message')
  await atBaseline(t, s)
  const after = s.app.wsAuth.stats()
  t.match(after, { active: 0, authenticating: 0 }, 'stats: nothing live')
  t.equal(after.attempts - before.attempts, 300, 'each counted once as an attempt')
  t.equal((after.failures[4008] ?? 0) - (before.failures[4008] ?? 0), 300, 'and once as a 4008')
  t.equal(s.spy.calls, 0)
})

t.test('clients that vanish mid-handshake leave nothing behind', async t => {
  const verifying: Array<(request: FastifyRequest) => void> = []
  const gates: Array<(ok: boolean) => void> = []
  const s = await serve(t, {
    sources: ['query', 'message'],
    authTimeout: 60_000,
    verify: async (token, request) => {
      if (!token.startsWith('hold')) return verifyWithJwt(token, request)
      const gate = deferred<boolean>()
      gates.push(gate.resolve)
      for (const resolve of verifying.splice(0)) resolve(request)
      if (await gate.promise) return verifyWithJwt(token.slice(4), request)
      throw new Error('auth service went away')
    }
  })
  t.teardown(() => { for (const release of gates) release(false) })
  const port = portOf(s.app)
  const valid = s.sign({ sub: 'u1' })
  const before = s.app.wsAuth.stats()

  // Half a request line, then gone: Node never routes it.
  const partial = await tcp(port)
  partial.write(upgradeRequest('/ws?token=' + valid).slice(0, 40))
  partial.destroy()
  // A whole upgrade request without a token (the route waits for an auth message), then gone.
  const whole = await tcp(port)
  const guarded = s.guarded()
  whole.write(upgradeRequest('/ws'))
  whole.destroy()
  await guarded
  t.equal(s.app.wsAuth.stats().attempts, before.attempts + 1, 'the whole request counted as an attempt, the partial one not')

  // Gone while the token of the upgrade request is being verified; verification then succeeds, or fails.
  for (const reject of ['close', 'http'] as const) {
    for (const ok of [true, false]) {
      const socket = await tcp(port)
      const entered = new Promise<FastifyRequest>(resolve => verifying.push(resolve))
      socket.write(upgradeRequest(`/ws${reject === 'http' ? '/http' : ''}?token=hold${valid}`))
      const serverSide = (await entered).raw.socket
      // The server reads the FIN (its sockets are half-open) before verification is let go.
      const ended = serverSide.readableEnded ? Promise.resolve() : once(serverSide, 'end')
      const gone = serverSide.destroyed ? Promise.resolve() : once(serverSide, 'close')
      socket.destroy()
      await ended
      gates.at(-1)!(ok)
      await gone
      t.pass(`reject: ${reject}, gone during verification that then ${ok ? 'succeeds' : 'fails'}: the server socket is closed`)
    }
  }
  // Upgraded, then gone before any auth message: the 60 s auth timer must not outlive it.
  const silent = await rawHandshake(port, '/ws')
  // The server tracks a session waiting for its auth message before its 101 leaves: the 101 is the event.
  t.equal(silent.status, 101)
  t.equal(s.app.wsAuth.stats().authenticating, 1, 'the silent client is authenticating')
  silent.socket.destroy()
  await settle()
  await atBaseline(t, s)
  const after = s.app.wsAuth.stats()
  t.equal(after.failures[4008], before.failures[4008], 'no 4008 for the client that left before its auth message')
  // Both verifications that failed threw ("auth service went away"): the operator should see each.
  t.equal(after.failures[1011], 2, 'in both reject modes the failed verification is logged and counted (1011)')
  t.equal(after.established, before.established, 'none established')
  t.equal(s.spy.calls, 0, 'no handler call')
  t.same(rejections, [], 'no unhandled rejection')
  // And the server still serves, on both routes.
  for (const path of ['/ws', '/ws/http']) {
    const good = connect(s.url(`${path}?token=${valid}`))
    t.match(await good.message(1), { type: 'connection_established' }, `${path}: a good client still gets in`)
    good.ws.close()
    await good.closed
  }
})

t.test('clients that vanish mid-verification of the auth message leave nothing behind', async t => {
  const gates: Array<(ok: boolean) => void> = []
  const entered: Array<() => void> = []
  const s = await serve(t, {
    verify: async (token, request) => {
      const gate = deferred<boolean>()
      gates.push(gate.resolve)
      for (const e of entered.splice(0)) e()
      if (await gate.promise) return verifyWithJwt(token, request)
      throw new Error('auth service went away')
    }
  })
  t.teardown(() => { for (const release of gates) release(false) })
  const valid = s.sign({ sub: 'u1' })
  const ways: Record<string, (c: Client) => void> = {
    terminates: c => c.ws.terminate(),
    'closes cleanly': c => c.ws.close(1000)
  }
  for (const [how, leave] of Object.entries(ways)) {
    for (const ok of [true, false]) {
      const client = connect(s.url('/ws'))
      await client.opened
      const verifying = new Promise<void>(resolve => entered.push(resolve))
      client.send({ type: 'auth', token: valid })
      client.send('held 1')
      await verifying
      leave(client)
      await client.closed
      await s.server.allClosed()
      t.equal(s.app.websocketServer.clients.size, 0, 'the server closed its end')
      gates.at(-1)!(ok)
      await settle()
      t.equal(s.spy.calls, 0, `${how}, then verification ${ok ? 'succeeds' : 'fails'}: no handler call`)
      await atBaseline(t, s)
      t.same(s.app.wsAuth.connections(), [], 'no registry entry')
    }
  }
  t.same(rejections, [], 'no unhandled rejection')
  // The same route still serves.
  const good = connect(s.url('/ws'))
  await good.opened
  const verifying = new Promise<void>(resolve => entered.push(resolve))
  good.send({ type: 'auth', token: valid })
  await verifying
  t.equal(gates.length, 5, 'its verification is the fifth')
  gates[4](true)
  t.match(await good.message(1), { type: 'connection_established' }, 'a good client still gets in')
  good.ws.close()
  await good.closed
})

t.test('no unhandled rejection in the whole file', async t => {
  await settle()
  t.same(rejections, [])
})
