// The token attack corpus. Every hostile token is presented in the query and in the first message
// and must be refused with 4001 `Invalid token` at the client (never 1006, never 1011, never the
// handler); a good client gets in right after each, so the setup is not what refused it.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import t, { type Test } from 'tap'
import cookie from '@fastify/cookie'
import { createSigner } from 'fast-jwt'
import type { FastifyRequest } from 'fastify'
import { claimsProblem, tokenShapeProblem, InvalidTokenError } from '../../lib/index.ts'
import type { TokenSource, WsAuthClaims } from '../../lib/types.ts'
import {
  SECRET, buildApp, connect, connectWith, refusal, spyRoute,
  type BuildOptions, type Client, type Closed, type RouteSpy, type TestApp
} from '../helpers/index.ts'
import { ALPHABET, b64url, hmacToken, nowSeconds } from './helpers.ts'

const INVALID: Closed = { code: 4001, reason: 'Invalid token' }
const MODES: TokenSource[] = ['query', 'message']

/**
 * `connectWith`, the hostile token percent-encoded in the query (it may hold spaces, `+`, `/`, `=`
 * or a newline), so that the server reads the token exactly as made.
 */
const present = (url: string, source: TokenSource, token: string): Client =>
  connectWith(url, source, source === 'query' ? encodeURIComponent(token) : token)

interface Served extends TestApp {
  spy: RouteSpy
}

async function serve (t: Test, opts: BuildOptions = {}): Promise<Served> {
  let spy!: RouteSpy
  const app = await buildApp(t, {
    ...opts,
    auth: { sources: ['query', 'header', 'protocol', 'message'], ...opts.auth },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  return { ...app, spy }
}

/** The close, or the first message (then the client is closed): what the server decided. */
async function verdictOf (client: Client): Promise<Closed | { message: unknown }> {
  const verdict = await refusal(client)
  if ('message' in verdict) {
    client.ws.close()
    await client.closed
  }
  return verdict
}

/** A client with `token` reaches the handler and gets `connection_established`. */
async function getsIn (t: Test, s: Served, token: string, source: TokenSource = 'query', what = 'a good client still gets in'): Promise<void> {
  const calls = s.spy.calls
  const client = present(s.url('/ws'), source, token)
  t.match(await verdictOf(client), { message: { type: 'connection_established' } }, what)
  t.equal(s.spy.calls, calls + 1, `${what}: the handler ran`)
}

interface RefuseOptions {
  expect?: Closed
  modes?: TokenSource[]
  /** Marks the verdict and handler assertions as a known lib bug. */
  todo?: string
  /** The good token that follows. @default a fresh token for sub u1 */
  good?: string
}

/** `token` is refused with `expect` through each mode, never reaches the handler; a good client follows. */
async function refused (t: Test, s: Served, token: string, name: string, opts: RefuseOptions = {}): Promise<void> {
  for (const mode of opts.modes ?? MODES) {
    const calls = s.spy.calls
    const verdict = await verdictOf(present(s.url('/ws'), mode, token))
    const extra = opts.todo === undefined ? {} : { todo: opts.todo }
    t.same(verdict, opts.expect ?? INVALID, `${name} (${mode}): refused with 4001`, extra)
    t.equal(s.spy.calls, calls, `${name} (${mode}): the handler never ran`, extra)
    await getsIn(t, s, opts.good ?? s.sign({ sub: 'u1' }), 'query', `${name} (${mode}): a good client still gets in`)
  }
}

function rsaPair (): { privatePem: string, publicPem: string, privateKey: KeyObject, publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    privateKey,
    publicKey,
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString()
  }
}

const pem = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }).toString()
const attacker = rsaPair()
const ecKey = pem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)
const server = rsaPair()

/** A loopback server that counts requests: `jku` / `x5u` headers must never be fetched. */
async function keyServer (t: Test): Promise<{ url: string, hits: () => number }> {
  let hits = 0
  const http = createServer((_req, res) => {
    hits++
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: [attacker.publicKey.export({ format: 'jwk' })] }))
  })
  await new Promise<void>(resolve => http.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => http.close(() => resolve())))
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, hits: () => hits }
}

t.test('alg none, in every spelling, with and without a signature', async t => {
  const s = await serve(t)
  const payload = { sub: 'u1', roles: ['admin'], iat: nowSeconds() }
  const realSignature = s.sign(payload).split('.')[2]
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const unsigned = `${b64url({ alg, typ: 'JWT' })}.${b64url(payload)}`
    await refused(t, s, unsigned + '.', `alg ${alg}, empty signature`)
    await refused(t, s, unsigned + '.' + realSignature, `alg ${alg}, a real token's signature`)
    await refused(t, s, hmacToken({ alg, typ: 'JWT' }, payload), `alg ${alg}, HMAC-signed with the app's secret`)
  }
  // The same attacks with other ways of saying "no algorithm".
  for (const header of [{ typ: 'JWT' }, { alg: null }, { alg: '' }, { alg: ['HS256'] }, { alg: 'HS256 ' }]) {
    await refused(t, s, hmacToken(header, payload), `header ${JSON.stringify(header)}`)
  }
  // Duplicate keys: JSON.parse keeps the last one, in the shape check and in fast-jwt alike.
  await refused(t, s, hmacToken('{"alg":"HS256","alg":"none"}', payload), 'duplicate alg keys ending in none')
})

t.test('algorithm switching: an HS256 app and tokens claiming HS384, RS256, ES256, PS256', async t => {
  const s = await serve(t)
  const payload = { sub: 'u1', iat: nowSeconds() }
  const good = s.sign(payload)
  const [, body, signature] = good.split('.')
  // The real HS256 signature under a header that claims another algorithm.
  for (const alg of ['HS384', 'HS512', 'RS256', 'ES256', 'PS256']) {
    await refused(t, s, `${b64url({ alg, typ: 'JWT' })}.${body}.${signature}`, `${alg} header on an HS256 signature`)
  }
  await refused(t, s, createSigner({ key: attacker.privatePem, algorithm: 'RS256' })(payload), 'RS256 with the attacker\'s key')
  await refused(t, s, createSigner({ key: attacker.privatePem, algorithm: 'PS256' })(payload), 'PS256 with the attacker\'s key')
  await refused(t, s, createSigner({ key: ecKey, algorithm: 'ES256' })(payload), 'ES256 with the attacker\'s key')
  await refused(t, s, hmacToken({ alg: 'HS384', typ: 'JWT' }, payload, 'attacker-secret-attacker-secret-attacker', 'sha384'), 'HS384 with another secret')
})

t.test('pinned algorithms: an HS384 token signed with the app\'s own secret is refused when only HS256 is allowed', async t => {
  const s = await serve(t, { jwt: { verify: { algorithms: ['HS256'] } } })
  await refused(t, s, hmacToken({ alg: 'HS384', typ: 'JWT' }, { sub: 'u1' }, SECRET, 'sha384'), 'HS384 signed with the secret')
  await refused(t, s, hmacToken({ alg: 'HS512', typ: 'JWT' }, { sub: 'u1' }, SECRET, 'sha512'), 'HS512 signed with the secret')
})

t.test('key confusion: an RS256 app, an HS256 token HMAC-signed with the public key', async t => {
  const s = await serve(t, { jwt: { secret: { private: server.privatePem, public: server.publicPem }, sign: { algorithm: 'RS256' } } })
  const payload = { sub: 'u1', roles: ['admin'], iat: nowSeconds() }
  const der = server.publicKey.export({ type: 'spki', format: 'der' })
  const jwk = JSON.stringify(server.publicKey.export({ format: 'jwk' }))
  for (const alg of ['HS256', 'HS384', 'HS512']) {
    const hash = 'sha' + alg.slice(2)
    await refused(t, s, hmacToken({ alg, typ: 'JWT' }, payload, server.publicPem, hash), `${alg} keyed with the public PEM`)
    await refused(t, s, hmacToken({ alg, typ: 'JWT' }, payload, server.publicPem.trim(), hash), `${alg} keyed with the trimmed PEM`)
    await refused(t, s, hmacToken({ alg, typ: 'JWT' }, payload, der, hash), `${alg} keyed with the DER bytes`)
    await refused(t, s, hmacToken({ alg, typ: 'JWT' }, payload, jwk, hash), `${alg} keyed with the JWK text`)
  }
  await refused(t, s, `${b64url({ alg: 'none' })}.${b64url(payload)}.`, 'alg none on an RS256 app')
  await refused(t, s, createSigner({ key: attacker.privatePem, algorithm: 'RS256' })(payload), 'RS256 with another key pair')
  t.ok(s.spy.calls > 0, 'good RS256 clients got in')
})

t.test('stripped and foreign signatures', async t => {
  const s = await serve(t)
  const mine = s.sign({ sub: 'u1', roles: ['member'] })
  const theirs = s.sign({ sub: 'admin', roles: ['admin'] })
  const [h, p] = theirs.split('.')
  await refused(t, s, `${h}.${p}.`, 'stripped signature (h.p.)')
  await refused(t, s, `${h}.${p}.${mine.split('.')[2]}`, 'another token\'s signature')
  await refused(t, s, `${h}.${b64url({ sub: 'admin', roles: ['admin', 'root'] })}.${theirs.split('.')[2]}`, 'payload swapped under a signature')
  await refused(t, s, `${h}.${p}.${'A'.repeat(43)}`, 'a zero signature')
})

t.test('embedded key headers: jwk, jku, x5u, kid are never trusted', async t => {
  const keys = await keyServer(t)
  const s = await serve(t)
  const payload = { sub: 'admin', roles: ['admin'], iat: nowSeconds() }
  const signRs = (header: Record<string, unknown>) => createSigner({ key: attacker.privatePem, algorithm: 'RS256', header: { alg: 'RS256', ...header } })(payload)
  await refused(t, s, signRs({ jwk: attacker.publicKey.export({ format: 'jwk' }) }), 'jwk header carrying the attacker\'s RSA key')
  await refused(t, s, hmacToken({ alg: 'HS256', jwk: { kty: 'oct', k: b64url('attacker-key') } }, payload, 'attacker-key'),
    'jwk header carrying an attacker HMAC key')
  await refused(t, s, signRs({ jku: keys.url + '/jwks.json' }), 'jku pointing at the attacker\'s key set')
  await refused(t, s, signRs({ x5u: keys.url + '/cert.pem' }), 'x5u pointing at the attacker\'s certificate')
  await refused(t, s, signRs({ x5c: ['MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'] }), 'x5c with a made-up chain')
  await refused(t, s, hmacToken({ alg: 'HS256', kid: '../../etc/passwd' }, payload, ''), 'kid path traversal, empty key')
  await refused(t, s, hmacToken({ alg: 'HS256', kid: '/dev/null' }, payload, ''), 'kid /dev/null, empty key')
  await refused(t, s, hmacToken({ alg: 'HS256', kid: "x' UNION SELECT 'k" }, payload, 'k'), 'kid SQL injection')
  t.equal(keys.hits(), 0, 'no key URL was ever fetched')
})

t.test('wrong segment counts', async t => {
  const s = await serve(t)
  const [h, p, sig] = s.sign({ sub: 'u1' }).split('.')
  const cases: Record<string, string> = {
    '1 segment (opaque)': 'not-a-jwt',
    '1 segment (a header)': h,
    '2 segments': `${h}.${p}`,
    '4 segments': `${h}.${p}.${sig}.${sig}`,
    '5 segments (JWE-like)': `${b64url({ alg: 'dir', enc: 'A256GCM' })}..${sig}.${p}.${sig}`,
    'dots only': '...',
    'a trailing dot': `${h}.${p}.${sig}.`
  }
  for (const [name, token] of Object.entries(cases)) await refused(t, s, token, name)
})

t.test('non-JSON and non-object headers and payloads, even correctly signed', async t => {
  const s = await serve(t)
  const header = { alg: 'HS256', typ: 'JWT' }
  const cases: Record<string, string> = {
    'header not JSON': hmacToken('not json', { sub: 'u1' }),
    'header a JSON array': hmacToken('["HS256"]', { sub: 'u1' }),
    'header a JSON string': hmacToken('"HS256"', { sub: 'u1' }),
    'header null': hmacToken('null', { sub: 'u1' }),
    'payload not JSON': hmacToken(header, 'sub=u1'),
    'payload truncated JSON': hmacToken(header, '{"sub":"u1"'),
    'payload a JSON array': hmacToken(header, '[{"sub":"u1"}]'),
    'payload a JSON string': hmacToken(header, '"u1"'),
    'payload a JSON number': hmacToken(header, '42'),
    'payload null': hmacToken(header, 'null')
  }
  for (const [name, token] of Object.entries(cases)) await refused(t, s, token, name)
  // JSON text is Unicode: fast-jwt decodes bytes that are not UTF-8 to U+FFFD, so two different
  // payloads would verify to the same claims. Only the issuer can sign one, but it is refused.
  const notUtf8 = hmacToken(header, Buffer.concat([Buffer.from('{"sub":"u1","name":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]))
  await refused(t, s, notUtf8, 'payload not UTF-8')
  await refused(t, s, hmacToken(Buffer.concat([Buffer.from('{"alg":"HS256","x":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]), { sub: 'u1' }),
    'header not UTF-8 (an overlong /)')
})

t.test('claims of the wrong type, correctly signed', async t => {
  const s = await serve(t)
  const header = { alg: 'HS256', typ: 'JWT' }
  await refused(t, s, hmacToken(header, { sub: 'u1', exp: 'soon' }), 'exp: "soon"')
  await refused(t, s, hmacToken(header, { sub: 'u1', exp: nowSeconds() + 3600 + '' }), 'exp: a numeric string')
  await refused(t, s, hmacToken(header, { sub: 'u1', nbf: {} }), 'nbf: {}')
  // fast-jwt checks iat only with maxAge, and sub never: the plugin checks every registered claim.
  await refused(t, s, hmacToken(header, { sub: 'u1', iat: [] }), 'iat: []')
  await refused(t, s, hmacToken(header, { sub: 'u1', iat: '1700000000' }), 'iat: a numeric string')
  await refused(t, s, hmacToken(header, { sub: {} }), 'sub: {}')
  await refused(t, s, hmacToken(header, { sub: ['u1'] }), 'sub: ["u1"]')
  await refused(t, s, hmacToken(header, { sub: 'u1', iss: 42 }), 'iss: 42')
  await refused(t, s, hmacToken(header, { sub: 'u1', jti: {} }), 'jti: {}')
  await refused(t, s, hmacToken(header, { sub: 'u1', aud: ['ws', 1] }), 'aud: ["ws", 1]')
})

t.test('claims shaped like grants grant nothing (admin route, 4003)', async t => {
  let spy!: RouteSpy
  const s = await buildApp(t, { routes: (app) => { spy = spyRoute(app, '/ws/admin', { roles: ['admin'], permissions: ['journal.read'] }) } })
  const cases: Record<string, object> = {
    'roles a string': { sub: 'u1', roles: 'admin', permissions: ['journal.read'] },
    'roles an array-like object': { sub: 'u1', roles: { 0: 'admin', length: 1 }, permissions: ['journal.read'] },
    'role an array': { sub: 'u1', role: ['admin'], permissions: ['journal.read'] },
    'roles nested': { sub: 'u1', roles: [['admin']], permissions: ['journal.read'] },
    'permissions a string': { sub: 'u1', roles: ['admin'], permissions: 'journal.read' },
    'permissions nested': { sub: 'u1', roles: ['admin'], permissions: [['journal.read']] }
  }
  for (const [name, claims] of Object.entries(cases)) {
    t.same(await verdictOf(connect(s.url('/ws/admin?token=' + s.sign(claims)))), { code: 4003, reason: 'Forbidden' }, name)
  }
  t.equal(spy.calls, 0, 'the handler never ran')
  const good = connect(s.url('/ws/admin?token=' + s.sign({ sub: 'u1', roles: ['admin'], permissions: ['journal.read'] })))
  t.match(await verdictOf(good), { message: { type: 'connection_established' } }, 'the well-typed grant gets in')
})

t.test('crit headers are refused (RFC 7515 §4.1.11), even correctly signed', async t => {
  const s = await serve(t)
  const payload = { sub: 'u1', exp: nowSeconds() + 60 }
  await refused(t, s, hmacToken({ alg: 'HS256', crit: ['exp'] }, payload), 'crit naming a registered claim')
  await refused(t, s, hmacToken({ alg: 'HS256', crit: ['b64'], b64: false }, payload), 'crit b64 (unencoded payload)')
  await refused(t, s, hmacToken({ alg: 'HS256', crit: ['https://example.test/ext'], 'https://example.test/ext': true }, payload), 'crit naming a private extension')
  await refused(t, s, hmacToken({ alg: 'HS256', crit: [] }, payload), 'an empty crit list')
  await refused(t, s, hmacToken({ alg: 'HS256', crit: 'exp' }, payload), 'crit not a list')
  await getsIn(t, s, hmacToken({ alg: 'HS256', typ: 'JWT' }, payload), 'query', 'the same token without crit gets in')
})

/**
 * Spellings of one valid token that Node's lenient base64 decodes to the same bytes. Only the
 * canonical one may verify: deny-lists, revocation by token and log scrubbing compare strings.
 */
function variants (token: string): Array<{ name: string, token: string }> {
  const [h, p, s] = token.split('.')
  const at = (segment: string, i: number, insert: string) => segment.slice(0, i) + insert + segment.slice(i)
  const flipLastBits = (segment: string) => {
    const v = ALPHABET.indexOf(segment.at(-1)!)
    return segment.slice(0, -1) + ALPHABET[v ^ 1]
  }
  const out = [
    { name: 'sig=', token: `${h}.${p}.${s}=` },
    { name: 'sig==', token: `${h}.${p}.${s}==` },
    { name: 'sig!', token: `${h}.${p}.${s}!` },
    { name: 'a space inside the signature', token: `${h}.${p}.${at(s, 8, ' ')}` },
    { name: 'a newline after the signature', token: `${h}.${p}.${s}\n` },
    { name: 'a tab inside the payload', token: `${h}.${at(p, 4, '\t')}.${s}` },
    { name: 'a leading space', token: ` ${token}` },
    { name: 'a non-ASCII character in the signature', token: `${h}.${p}.${at(s, 8, 'é')}` },
    { name: 'the +/ alphabet in the signature', token: `${h}.${p}.${s.replaceAll('-', '+').replaceAll('_', '/')}` },
    { name: 'header=', token: `${h}=.${p}.${s}` },
    { name: 'payload!', token: `${h}.${p}!.${s}` }
  ]
  if (s.length % 4 !== 0) out.push({ name: 'altered unused trailing bits of the signature', token: `${h}.${p}.${flipLastBits(s)}` })
  if (p.length % 4 !== 0) out.push({ name: 'altered unused trailing bits of the payload', token: `${h}.${flipLastBits(p)}.${s}` })
  return out
}

/** Lenient base64 decoding of each segment: the same bytes as the canonical token's. */
function sameBytes (a: string, b: string): boolean {
  const x = a.trim().split('.')
  const y = b.split('.')
  return x.length === y.length && x.every((segment, i) => Buffer.from(segment, 'base64').equals(Buffer.from(y[i], 'base64url')))
}

/** A token whose signature uses `-` or `_`, so that the `+/` spelling differs (bounded search). */
function tokenWithUrlChars (sign: (payload: object) => string): string {
  for (let n = 0; n < 200; n++) {
    const token = sign({ sub: 'u1', n })
    if (/[-_]/.test(token.split('.')[2])) return token
  }
  throw new Error('no signature with - or _ in 200 tries')
}

for (const kind of ['HS256', 'RS256'] as const) {
  t.test(`malleability (${kind}): every non-canonical spelling of a valid token is refused, the token itself accepted`, async t => {
    const s = await serve(t, kind === 'RS256'
      ? { jwt: { secret: { private: server.privatePem, public: server.publicPem }, sign: { algorithm: 'RS256' } } }
      : {})
    const original = tokenWithUrlChars(s.sign)
    await getsIn(t, s, original, 'query', 'the canonical token gets in (query)')
    await getsIn(t, s, original, 'message', 'the canonical token gets in (message)')
    const verifierAlone: string[] = []
    for (const variant of variants(original)) {
      t.not(variant.token, original, `${variant.name}: a different string`)
      t.ok(sameBytes(variant.token, original), `${variant.name}: decodes to the same bytes with lenient base64`)
      t.equal(tokenShapeProblem(variant.token) !== undefined, true, `${variant.name}: tokenShapeProblem names it`)
      try {
        s.app.jwt.verify(variant.token)
        verifierAlone.push(variant.name)
      } catch {}
      await refused(t, s, variant.token, variant.name, { good: original })
    }
    t.comment(`fast-jwt alone would accept: ${verifierAlone.join(', ') || 'none'}`)
  })
}

t.test('oversized tokens: a clear refusal at the limit of each source, and the server goes on serving', async t => {
  let spy!: RouteSpy
  const s = await buildApp(t, {
    auth: { sources: ['query', 'header', 'cookie', 'protocol', 'message'], allowedOrigins: ['http://app.test'] },
    before: async (app) => { await app.register(cookie) },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  const served: Served = { ...s, spy }
  const huge = s.sign({ sub: 'u1', pad: 'x'.repeat(20_000) })
  const large = createSigner({ key: 'not-the-server-secret-but-long-enough' })({ sub: 'u1', pad: 'x'.repeat(9_000) })
  t.ok(huge.length > 20_000 && large.length > 12_000 && large.length < 15_000, 'a 20 KB token and a 12 KB one')
  const attempts = s.app.wsAuth.stats().attempts

  // Over Node's 16 KiB header limit: 431 before routing, whatever carries the token.
  const over = ['query', 'header', 'cookie', 'protocol'] as const
  for (const source of over) {
    const name = `a 20 KB token in the ${source}`
    const client = connectWith(s.url('/ws'), source, huge)
    t.equal(await client.refusedStatus, 431, `${name}: HTTP 431`)
    t.equal((await client.closed).code, 1006, `${name}: the socket never opened`)
    await getsIn(t, served, s.sign({ sub: 'u1' }), 'query', `${name}: the server goes on serving`)
  }
  const overCount = over.length
  t.equal(s.app.wsAuth.stats().attempts, attempts + overCount, 'the oversized requests never reached the route (only the good ones did)')

  // Under the header limit, forged: refused like any invalid token.
  for (const source of ['query', 'header', 'cookie', 'protocol', 'message'] as const) {
    const verdict = await verdictOf(present(s.url('/ws'), source, large))
    t.same(verdict, INVALID, `a 12 KB forged token in the ${source}: 4001`)
  }
  // Over maxAuthMessageBytes (16 KiB by default) in the auth message: 1009 before any parsing.
  const big = present(s.url('/ws'), 'message', huge)
  t.same(await refusal(big), { code: 1009, reason: 'Message too big' }, 'a 20 KB auth message: 1009 Message too big')
  await getsIn(t, served, s.sign({ sub: 'u1' }), 'message', 'the server goes on serving')
  t.equal(spy.calls, overCount + 1, 'only the good clients reached the handler')
})

t.test('a custom verify (opaque tokens) does not get the JWT shape checks', async t => {
  const seen: string[] = []
  const opaque = new Map([['opaque token/with+chars=', { sub: 'u1' }], ['x', { sub: 'u2' }]])
  const s = await serve(t, {
    auth: {
      verify: (token) => {
        seen.push(token)
        return opaque.get(token) ?? null
      }
    }
  })
  for (const [token, claims] of opaque) {
    t.ok(tokenShapeProblem(token) !== undefined, `${JSON.stringify(token)} is not a JWT`)
    for (const source of ['query', 'message'] as const) {
      await getsIn(t, s, token, source, `${JSON.stringify(token)} (${source}): accepted as sub ${claims.sub}`)
      t.equal(seen.at(-1), token, 'verify saw the token exactly as sent')
    }
  }
  await refused(t, s, 'opaque token/with+chars', 'an unknown opaque token (verify returns null)', { good: 'x' })
})

t.test('a custom verify that delegates to @fastify/jwt: the shape and claim checks are its own to call', async t => {
  const delegate = (token: string, request: FastifyRequest) => request.server.jwt.verify<WsAuthClaims>(token)
  const bare = await serve(t, { auth: { verify: delegate } })
  const original = bare.sign({ sub: 'u1' })
  const [h, p, sig] = original.split('.')
  const flipped = `${h}.${p}.${sig.slice(0, -1)}${ALPHABET[ALPHABET.indexOf(sig.at(-1)!) ^ 1]}`
  const badClaims = hmacToken({ alg: 'HS256', typ: 'JWT' }, { sub: 'u1', iat: [] })
  t.ok(sameBytes(flipped, original) && flipped !== original, 'altered trailing bits: another spelling of the same token')
  // What we observe (documented in docs/security.md): the plugin applies its shape and claim
  // checks only around @fastify/jwt's own verifier; a custom verify gets the token as sent and
  // its claims are taken as returned.
  await getsIn(t, bare, flipped, 'query', 'observed: a custom verify delegating to jwt.verify accepts the altered spelling')
  await getsIn(t, bare, badClaims, 'query', 'observed: and a registered claim of the wrong type')

  const checked = await serve(t, {
    auth: {
      verify: (token, request) => {
        if (tokenShapeProblem(token) !== undefined) throw new InvalidTokenError()
        const claims = delegate(token, request)
        if (claimsProblem(claims) !== undefined) throw new InvalidTokenError()
        return claims
      }
    }
  })
  await getsIn(t, checked, original, 'query', 'with tokenShapeProblem and claimsProblem: the canonical token gets in')
  await refused(t, checked, flipped, 'with tokenShapeProblem: the altered spelling', { good: original })
  await refused(t, checked, badClaims, 'with claimsProblem: iat: []', { good: original })
})
