// @fastify/jwt as an HTTP route uses it: `request.jwtVerify()` with the verifier built once at
// registration, `trusted`, `formatUser` and a `secret` given as a function, whatever the source of
// the token; the expiry and revocation facts come from the verified payload.
import { createHmac } from 'node:crypto'
import t from 'tap'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { buildApp, connect, logCapture, refusal, SECRET } from './helpers/index.ts'

const nowSec = () => Math.floor(Date.now() / 1000)

/** An HS256 token signed without @fastify/jwt (for an app whose secret is a function). */
function signHs256 (claims: object, secret = SECRET): string {
  const input = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url') + '.' +
    Buffer.from(JSON.stringify(claims)).toString('base64url')
  return input + '.' + createHmac('sha256', secret).update(input).digest('base64url')
}

function echoRoute (app: FastifyInstance, seen?: (request: FastifyRequest) => void) {
  app.get('/ws', { websocket: true }, (socket, request) => {
    seen?.(request)
    socket.on('message', (data) => socket.send(data.toString()))
  })
}

const denied = new Set(['revoked-jti'])
const trusted = (_request: FastifyRequest, decoded: { jti?: string }) => !denied.has(decoded.jti ?? '')

t.test('trusted refuses a token -> 4001 Token revoked, from every source', async t => {
  const { url, sign } = await buildApp(t, { jwt: { trusted }, auth: { sources: ['query', 'header', 'protocol', 'message'] }, routes: app => echoRoute(app) })
  const bad = sign({ sub: 'u1', jti: 'revoked-jti' })
  const good = sign({ sub: 'u1', jti: 'fine' })
  const clients = [
    connect(url('/ws?token=' + bad)),
    connect(url('/ws'), undefined, { headers: { authorization: 'Bearer ' + bad } }),
    connect(url('/ws'), ['bearer.' + bad, 'bearer'])
  ]
  for (const client of clients) t.same(await client.closed, { code: 4001, reason: 'Token revoked' })
  const byMessage = connect(url('/ws'))
  await byMessage.opened
  byMessage.send({ type: 'auth', token: bad })
  t.same(await byMessage.closed, { code: 4001, reason: 'Token revoked' }, 'first-message auth too')

  const ok = connect(url('/ws?token=' + good))
  t.match(await ok.message(1), { type: 'connection_established', user: { id: 'u1' } }, 'a trusted token is established')
  ok.send({ type: 'auth', token: bad })
  t.same(await ok.closed, { code: 4001, reason: 'Token revoked' }, 'and trusted is asked again at refresh')
})

t.test('a token seen before is checked again at every handshake: trusted is asked', async t => {
  const deny = new Set<string>()
  const { url, sign } = await buildApp(t, {
    jwt: { trusted: (_request: FastifyRequest, decoded: { jti?: string }) => !deny.has(decoded.jti ?? '') },
    routes: app => echoRoute(app)
  })
  const token = sign({ sub: 'u1', jti: 'j1' })
  const first = connect(url('/ws?token=' + token))
  t.match(await first.message(1), { type: 'connection_established' }, 'first handshake')
  first.ws.close()
  deny.add('j1')
  t.same(await connect(url('/ws?token=' + token)).closed, { code: 4001, reason: 'Token revoked' }, 'the same token, now untrusted')
})

t.test('a token seen before is checked again at every handshake: its expiry holds', async t => {
  // @fastify/jwt reads the real time, not the library's clock: this one test waits for a real
  // expiry. The session's own close at exp is the event that says the time has come (deadlines
  // never fire early); the token is minted 2 to 3 s before its exp, so the first handshake has
  // seconds to spare on a busy machine.
  const { url, sign } = await buildApp(t, { routes: app => echoRoute(app) })
  const exp = nowSec() + 3
  const token = sign({ sub: 'u1', exp })
  const early = connect(url('/ws?token=' + token))
  t.match(await early.message(1), { type: 'connection_established' })
  t.same(await early.closed, { code: 4001, reason: 'Token expired' }, 'closed at its expiry')
  t.ok(Date.now() >= exp * 1000, 'not before exp')
  t.same(await refusal(connect(url('/ws?token=' + token))), { code: 4001, reason: 'Token expired' }, 'and refused when it comes back')
})

t.test('an async trusted is awaited', async t => {
  const asyncTrusted = async (_request: FastifyRequest, decoded: { jti?: string }) => {
    await new Promise(resolve => setImmediate(resolve))
    return decoded.jti !== 'revoked-jti'
  }
  const { url, sign } = await buildApp(t, { jwt: { trusted: asyncTrusted }, routes: app => echoRoute(app) })
  const refused = connect(url('/ws?token=' + sign({ sub: 'u1', jti: 'revoked-jti' })))
  t.same(await refused.closed, { code: 4001, reason: 'Token revoked' })
  const ok = connect(url('/ws?token=' + sign({ sub: 'u1', jti: 'fine' })))
  t.match(await ok.message(1), { type: 'connection_established', user: { id: 'u1' } })
  ok.ws.close()
})

t.test('formatUser: loadUser gets its result; expiry and revocation still read the token', async t => {
  const formatUser = (payload: string | object | Buffer) => { const p = payload as Record<string, unknown>; return { id: p.sub, roles: p.roles, name: 'formatted' } }
  let given: unknown
  const { app, url, sign } = await buildApp(t, {
    jwt: { formatUser },
    auth: { loadUser: (claims) => { given = claims; return claims } },
    routes: app => {
      app.get('/ws', { websocket: true, wsAuth: { roles: ['admin'] } }, (socket) => {
        socket.on('message', (data) => socket.send(data.toString()))
      })
    }
  })
  const exp = nowSec() + 600
  const client = connect(url('/ws?token=' + sign({ sub: 'u1', roles: ['admin'], jti: 'j1', exp })))
  const established = await client.message(1) as { user: unknown, expires_at: string }
  t.same(given, { id: 'u1', roles: ['admin'], name: 'formatted' }, 'what formatUser made of the payload')
  t.equal(established.expires_at, new Date(exp * 1000).toISOString(), 'the expiry is the token\'s, though formatUser dropped exp')
  t.equal(app.wsAuth.revoke({ jti: 'j1' }), 1, 'revocation by jti finds the socket, though formatUser dropped jti')
  t.same(await client.closed, { code: 4001, reason: 'Token revoked' })
})

t.test('formatUser without loadUser: the default user reads its id and roles', async t => {
  const formatUser = (payload: string | object | Buffer) => { const p = payload as Record<string, unknown>; return { id: p.sub, roles: p.groups } }
  const { url, sign } = await buildApp(t, {
    jwt: { formatUser },
    routes: app => { app.get('/ws', { websocket: true, wsAuth: { roles: ['admin'] } }, (socket) => socket.send('hi')) }
  })
  const ok = connect(url('/ws?token=' + sign({ sub: 'u7', groups: ['admin'] })))
  t.match(await ok.message(1), { type: 'connection_established', user: { id: 'u7', roles: ['admin'] } })
  const forbidden = connect(url('/ws?token=' + sign({ sub: 'u8', groups: ['viewer'] })))
  t.same(await forbidden.closed, { code: 4003, reason: 'Forbidden' })
})

t.test('a secret given as a function (JWKS style) verifies sockets without a custom verify', async t => {
  // @fastify/jwt hands the secret function the decoded payload: pick the key by issuer.
  const keyFor = async (_request: FastifyRequest, payload: { iss?: string }) => payload.iss === 'issuer-a' ? SECRET : 'the-key-of-another-issuer-long-enough'
  const { url } = await buildApp(t, { jwt: { secret: keyFor as never }, routes: app => echoRoute(app) })
  const ok = connect(url('/ws?token=' + signHs256({ sub: 'u1', iss: 'issuer-a', exp: nowSec() + 60 })))
  t.match(await ok.message(1), { type: 'connection_established', user: { id: 'u1' } })
  ok.ws.close()
  const forged = connect(url('/ws?token=' + signHs256({ sub: 'u1', iss: 'issuer-a' }, 'another-secret-that-is-long-enough')))
  t.same(await forged.closed, { code: 4001, reason: 'Invalid token' })
})

t.test('the token is handed to request.jwtVerify only for the call: the handler sees the request as it came', async t => {
  const seen: Array<string | undefined> = []
  const { url, sign } = await buildApp(t, {
    routes: app => echoRoute(app, request => seen.push('authorization' in request.raw.headers ? request.headers.authorization : 'absent'))
  })
  const token = sign({ sub: 'u1' })
  const byQuery = connect(url('/ws?token=' + token))
  await byQuery.message(1)
  const byHeader = connect(url('/ws'), undefined, { headers: { authorization: 'Bearer ' + token } })
  await byHeader.message(1)
  const otherScheme = connect(url('/ws?token=' + token), undefined, { headers: { authorization: 'Basic dTE6cHc=' } })
  await otherScheme.message(1)
  t.same(seen, ['absent', 'Bearer ' + token, 'Basic dTE6cHc='])
  byQuery.ws.close()
  byHeader.ws.close()
  otherScheme.ws.close()
})

t.test('@fastify/jwt reading tokens with extractToken: fastify.jwt.verify is used, with a startup warning', async t => {
  const logs = logCapture()
  const { url, sign } = await buildApp(t, {
    fastify: { logger: { level: 'warn', stream: logs.stream } },
    jwt: { trusted: () => false, verify: { extractToken: (request: FastifyRequest) => (request.query as { t?: string }).t } },
    routes: app => echoRoute(app)
  })
  const warning = logs.records().find(r => String(r.msg).includes('trusted and formatUser do not apply'))
  t.match(warning, { level: 40, msg: /verify\.extractToken; fastify\.jwt\.verify is used/ })
  const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  t.match(await client.message(1), { type: 'connection_established' }, 'trusted is not applied: the app was told')
  client.ws.close()
})

t.test('the fastify.jwt.verify fallback refuses, with 4001 Invalid token, what request.jwtVerify would refuse', async t => {
  const { url, sign } = await buildApp(t, {
    jwt: { verify: { extractToken: (request: FastifyRequest) => (request.query as { t?: string }).t } },
    routes: app => echoRoute(app)
  })
  // Signed over a payload segment with a non-zero unused bit in its last character: it decodes to
  // the same bytes (fastify.jwt.verify accepts it), but it is a second spelling of the token.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const json = JSON.stringify({ sub: 'u1', pad: 'x'.repeat(3 - (JSON.stringify({ sub: 'u1', pad: '' }).length % 3) + 1) })
  const canonical = Buffer.from(json).toString('base64url')
  t.equal(json.length % 3, 1, 'two characters for the last byte: four unused bits')
  const loose = canonical.slice(0, -1) + alphabet[alphabet.indexOf(canonical.slice(-1)) | 1]
  t.equal(Buffer.from(loose, 'base64url').toString(), json, 'the same bytes')
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url')
  const input = header + '.' + loose
  const token = input + '.' + createHmac('sha256', SECRET).update(input).digest('base64url')
  const nonCanonical = connect(url('/ws?token=' + token))
  t.same(await refusal(nonCanonical), { code: 4001, reason: 'Invalid token' })
  const good = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  t.match(await good.message(1), { type: 'connection_established' }, 'a canonical token is accepted')
  good.ws.close()
  // Signed and verified, but a claim of the wrong type: refused after fastify.jwt.verify.
  const badClaims = connect(url('/ws?token=' + sign({ sub: 'u1', jti: 42 })))
  t.same(await refusal(badClaims), { code: 4001, reason: 'Invalid token' })
})

t.test('a signed token whose header or payload is not JSON -> 4001 Invalid token', async t => {
  const { url } = await buildApp(t, { routes: app => echoRoute(app) })
  const b64 = (text: string) => Buffer.from(text).toString('base64url')
  const signed = (input: string) => input + '.' + createHmac('sha256', SECRET).update(input).digest('base64url')
  const badPayload = signed(b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' })) + '.' + b64('not json'))
  t.same(await refusal(connect(url('/ws?token=' + badPayload))), { code: 4001, reason: 'Invalid token' }, 'payload')
  const badHeader = signed(b64('{alg: HS256}') + '.' + b64(JSON.stringify({ sub: 'u1' })))
  t.same(await refusal(connect(url('/ws?token=' + badHeader))), { code: 4001, reason: 'Invalid token' }, 'header')
})
