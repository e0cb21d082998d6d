// At trace level, across every kind of traffic (valid, invalid, forbidden, expired, refreshed,
// oversized requests that Node refuses with 431 and whose raw bytes Fastify logs, malformed
// requests (400), unknown paths, plain HTTP requests, URL-encoded spellings, every source), no
// log line carries a token, a URL-encoded form of it, its signature, or its bytes.
import t from 'tap'
import cookie from '@fastify/cookie'
import Fastify from 'fastify'
import { createSigner } from 'fast-jwt'
import type { TokenSource } from '../../lib/types.ts'
import { buildApp, connect, connectWith, logCapture, refusal, spyRoute, type Client, type RouteSpy } from '../helpers/index.ts'
import { leaks, nowSeconds, percentEncoded, portOf, readHead, tcp } from './helpers.ts'

const SOURCES: TokenSource[] = ['query', 'header', 'cookie', 'protocol', 'message']

t.test('the leak detector finds a token in a raw request packet, as pino writes a Buffer', async t => {
  const capture = logCapture()
  const app = Fastify({ logger: { level: 'trace', stream: capture.stream } })
  t.teardown(() => app.close())
  const token = createSigner({ key: 'a-key-for-the-detector-self-test-only' })({ sub: 'u1' })
  app.log.trace({ err: Object.assign(new Error('Parse Error'), { rawPacket: Buffer.from(`GET /ws?token=${token} HTTP/1.1\r\n`) }) }, 'client error')
  t.ok(capture.lines.some(line => line.includes('"rawPacket"')), 'pino wrote the raw packet')
  t.ok(!capture.lines.some(line => line.includes(token)), 'not as text')
  t.ok(leaks(capture.lines, [token]).length > 0, 'yet the detector finds the token\'s bytes')
  t.ok(leaks([`/ws?token=${token.replaceAll('.', '%2E')}`], [token]).length > 0, 'and %2E spellings')
  t.ok(leaks([`sig=${token.split('.')[2]}`], [token]).length > 0, 'and the signature alone')
})

t.test('no token in any log line at trace level, whatever the traffic', async t => {
  const capture = logCapture()
  let spy!: RouteSpy
  const s = await buildApp(t, {
    fastify: { logger: { level: 'trace', stream: capture.stream } },
    auth: { sources: SOURCES, allowedOrigins: ['http://app.test'], maxAuthMessageBytes: 2048 },
    before: async (app) => { await app.register(cookie) },
    routes: (app) => {
      spy = spyRoute(app, '/ws')
      spyRoute(app, '/ws/admin', { roles: ['admin'] })
      spyRoute(app, '/ws/http', { reject: 'http', sources: ['query', 'header', 'cookie', 'protocol'] })
      spyRoute(app, '/ws/public', false)
      app.get('/health', async () => ({ ok: true }))
    }
  })
  const port = portOf(s.app)
  const tokens = new Set<string>()
  const mint = (claims: object, sign = s.sign): string => {
    const token = sign(claims)
    tokens.add(token)
    return token
  }
  const forge = createSigner({ key: 'not-the-server-secret-but-long-enough' })
  const tamper = (token: string) => {
    const bad = token.slice(0, -3) + (token.endsWith('AAA') ? 'BBB' : 'AAA')
    tokens.add(bad)
    return bad
  }
  /** The close or first message; an established client is closed again. */
  const outcome = async (client: Client) => {
    const verdict = await refusal(client)
    if ('message' in verdict) {
      client.send('hello')
      await client.message(2)
      client.ws.close()
      await client.closed
    }
    return verdict
  }

  // Every source: valid, tampered, forged, expired, forbidden.
  for (const source of SOURCES) {
    t.match(await outcome(connectWith(s.url('/ws'), source, mint({ sub: 'u1' }))), { message: { type: 'connection_established' } }, `${source}: valid`)
    t.same(await outcome(connectWith(s.url('/ws'), source, tamper(mint({ sub: 'u2' })))), { code: 4001, reason: 'Invalid token' }, `${source}: tampered`)
    t.same(await outcome(connectWith(s.url('/ws'), source, mint({ sub: 'u3' }, forge))), { code: 4001, reason: 'Invalid token' }, `${source}: forged`)
    t.same(await outcome(connectWith(s.url('/ws'), source, mint({ sub: 'u4', exp: nowSeconds() - 10 }))), { code: 4001, reason: 'Token expired' }, `${source}: expired`)
    t.same(await outcome(connectWith(s.url('/ws/admin'), source, mint({ sub: 'u5' }))), { code: 4003, reason: 'Forbidden' }, `${source}: forbidden`)
  }
  // reject: 'http'.
  for (const source of ['query', 'header', 'cookie', 'protocol'] as const) {
    const refused = connectWith(s.url('/ws/http'), source, tamper(mint({ sub: 'u6' })))
    t.equal(await refused.refusedStatus, 401, `reject: http, ${source}: 401`)
    t.match(await outcome(connectWith(s.url('/ws/http'), source, mint({ sub: 'u7' }))), { message: { type: 'connection_established' } }, `reject: http, ${source}: valid`)
  }
  // In-band refresh: a good one, then a bad one.
  {
    const client = connectWith(s.url('/ws'), 'query', mint({ sub: 'u8' }))
    await client.message(1)
    client.send({ type: 'auth', token: mint({ sub: 'u8', n: 2 }) })
    t.match(await client.message(2), { type: 'token_refreshed' }, 'refresh')
    client.send({ type: 'auth', token: tamper(mint({ sub: 'u8', n: 3 })) })
    t.same(await client.closed, { code: 4001, reason: 'Invalid token' }, 'a bad refresh')
  }
  // An auth message over maxAuthMessageBytes.
  t.same(await outcome(connectWith(s.url('/ws'), 'message', mint({ sub: 'u9', pad: 'x'.repeat(3000) }))), { code: 1009, reason: 'Message too big' }, 'oversized auth message')

  // URL spellings of one token: Fastify's query parser decodes them all.
  const spelled = mint({ sub: 'u10' })
  const spellings: Record<string, string> = {
    '%2E for the dots': `/ws?token=${spelled.replaceAll('.', '%2E')}`,
    '%2e for the dots': `/ws?token=${spelled.replaceAll('.', '%2e')}`,
    'every character encoded': `/ws?token=${percentEncoded(spelled)}`,
    'an encoded parameter name': `/ws?%74oken=${spelled}`,
    'a fragment-looking suffix': `/ws?a=1&token=${spelled}&b=%23x`
  }
  for (const [name, path] of Object.entries(spellings)) {
    t.match(await outcome(connect(s.url(path))), { message: { type: 'connection_established' } }, `${name}: decoded and accepted`)
  }
  // Unknown paths, a plain HTTP route and a websocket route asked without an upgrade.
  for (const path of ['/nope', '/ws/', '/ws/admin/x', '/WS']) {
    const client = connect(s.url(`${path}?token=${mint({ sub: 'u11', path })}`))
    t.equal(await client.refusedStatus, 404, `${path}: 404`)
  }
  for (const path of ['/health', '/ws', '/nope']) {
    const response = await fetch(s.httpUrl(`${path}?token=${mint({ sub: 'u12', path })}`))
    await response.arrayBuffer()
    t.ok(response.status < 500, `plain GET ${path}: ${response.status}`)
  }

  // An upgrade to a plain HTTP route (refused: no guard) and to an opted-out route.
  t.equal(await connect(s.url(`/health?token=${mint({ sub: 'u18' })}`)).refusedStatus, 500, 'upgrade to a plain HTTP route: refused')
  {
    const client = connect(s.url(`/ws/public?token=${mint({ sub: 'u19' })}`))
    await client.opened
    client.send('hello')
    t.equal(await client.message(1), 'hello', 'an opted-out route ignores the token')
    client.ws.close()
    await client.closed
  }

  // Over Node's header limit: 431 before routing, and Fastify logs the raw bytes at trace level.
  const big = mint({ sub: 'u13' })
  const pad = 'p'.repeat(20_000)
  const oversized: Record<string, () => Client> = {
    'in the URL': () => connect(s.url(`/ws?token=${big}&pad=${pad}`)),
    'in a header': () => connect(s.url('/ws'), undefined, { headers: { authorization: 'Bearer ' + big, 'x-pad': pad } }),
    'in a cookie': () => connect(s.url('/ws'), undefined, { headers: { cookie: `token=${big}; pad=${pad}` } }),
    'in the subprotocol': () => connect(s.url('/ws'), ['bearer.' + big, 'bearer'], { headers: { 'x-pad': pad } }),
    'a 20 KB token in the URL': () => connect(s.url(`/ws?token=${mint({ sub: 'u14', pad })}`))
  }
  for (const [name, open] of Object.entries(oversized)) {
    t.equal(await open().refusedStatus, 431, `${name}: 431`)
  }
  // Malformed requests carrying a token: Node refuses with 400, Fastify logs the raw bytes too.
  const malformed = mint({ sub: 'u15' })
  const rawRequests: Record<string, string> = {
    'a header without a colon': `GET /ws?token=${malformed} HTTP/1.1\r\nHost: x\r\nNot a header\r\n\r\n`,
    'a space in the URL': `GET /ws?token=${malformed} x HTTP/1.1\r\nHost: x\r\n\r\n`,
    'a bad HTTP version': `GET /ws?token=${malformed} HTTP/9.Z\r\nHost: x\r\n\r\n`
  }
  for (const [name, request] of Object.entries(rawRequests)) {
    const socket = await tcp(port)
    const head = readHead(socket)
    socket.write(request)
    t.equal((await head).status, 400, `${name}: 400`)
    socket.destroy()
  }
  // An absolute-form request target.
  {
    const socket = await tcp(port)
    const head = readHead(socket)
    socket.write(`GET http://127.0.0.1:${port}/nope?token=${mint({ sub: 'u16' })} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
    t.ok((await head).status >= 400, 'absolute-form URL: refused')
    socket.destroy()
  }

  // The server still serves; then close the app so every line is flushed.
  t.match(await outcome(connectWith(s.url('/ws'), 'header', mint({ sub: 'u17' }))), { message: { type: 'connection_established' } }, 'the server still serves')
  t.ok(spy.calls > 0)
  await s.app.close()

  const records = capture.records()
  const msgs = new Set(records.map(r => r.msg))
  for (const msg of ['incoming request', 'websocket authenticated', 'websocket authentication failed', 'client header_overflow', 'client error']) {
    t.ok(msgs.has(msg), `the log has "${msg}" lines: the traffic reached the logger`)
  }
  t.ok(records.some(r => r.level === 10), 'trace lines were written')
  t.ok(capture.lines.some(line => line.includes('token=[REDACTED]')), 'URLs are logged with the token redacted')
  t.ok(tokens.size >= 25, `${tokens.size} distinct tokens used`)
  t.same(leaks(capture.lines, tokens), [], 'no log line carries a token, its signature, an encoded form or its bytes')
})
