// Keys and tokens for one bench run, made with node:crypto alone so that the signer is not the
// verifier under test. Keys are generated per run and never written to disk.
import { createHmac, generateKeyPairSync, randomBytes, sign } from 'node:crypto'

const PEM = { publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } }

/** One key set per algorithm: HS256 secret, RSA 2048 and P-256 key pairs (PEM). */
export function makeKeys () {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, ...PEM })
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256', ...PEM })
  return {
    HS256: randomBytes(32).toString('hex'),
    RS256: { private: rsa.privateKey, public: rsa.publicKey },
    ES256: { private: ec.privateKey, public: ec.publicKey }
  }
}

function signature (alg, keys, input) {
  if (alg === 'HS256') return createHmac('sha256', keys.HS256).update(input).digest()
  if (alg === 'RS256') return sign('sha256', Buffer.from(input), keys.RS256.private)
  if (alg === 'ES256') return sign('sha256', Buffer.from(input), { key: keys.ES256.private, dsaEncoding: 'ieee-p1363' })
  throw new Error(`unknown algorithm ${alg}`)
}

/** A compact JWS for `claims`. */
export function signJwt (alg, keys, claims) {
  const header = Buffer.from(JSON.stringify({ alg, typ: 'JWT' })).toString('base64url')
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url')
  const input = `${header}.${payload}`
  return `${input}.${signature(alg, keys, input).toString('base64url')}`
}

/**
 * `size` distinct valid admin tokens, reused round-robin by the load generator: a reconnect storm
 * of the same users, which is what a verify cache is for.
 */
export function tokenPool (alg, keys, size) {
  const iat = Math.floor(Date.now() / 1000)
  const tokens = []
  for (let i = 0; i < size; i++) tokens.push(signJwt(alg, keys, benchClaims(i, iat)))
  return tokens
}

/**
 * The claims of bench user `i` (an admin), as every token carries them and as the ticket server
 * (bench/servers/plugin.mjs with `source: 'ticket'`) issues its tickets: the same claims either way.
 */
export function benchClaims (i, iat = Math.floor(Date.now() / 1000)) {
  return { sub: `user-${i}`, username: `user${i}`, roles: ['admin'], permissions: ['journal.read'], iat, exp: iat + 3600 }
}

/** The verification key (what a server holds) for an algorithm, in `@fastify/jwt` `secret` form. */
export function jwtSecret (alg, keys) {
  return alg === 'HS256' ? keys.HS256 : keys[alg]
}
