import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Verified, type Verifier } from './authenticate.ts'
import { isThenable } from './checks.ts'
import { InvalidTokenError, KeySourceUnavailableError, NoVerifierError } from '../errors.ts'
import { callJwtVerify, type JwtRequest } from './internals.ts'
import { checkShape, claimsProblem, tokenShapeProblem } from './token-shape.ts'
import type { WsAuthClaims } from '../types.ts'

interface JwtDecorator {
  verify?: (token: string) => unknown
  options?: { verify?: { extractToken?: unknown, onlyCookie?: unknown }, decoratorName?: unknown }
}

/**
 * The verifier when no `verify` option is given: `@fastify/jwt`, as an HTTP route uses it.
 * `request.jwtVerify()` without options runs the verifier built once at registration (with its
 * cache, when `verify: { cache: true }` was given), `trusted` and `formatUser`, and a `secret`
 * given as a function; the plugin hands it the token wherever it was found. Where
 * `request.jwtVerify` cannot be handed a token (renamed, or `@fastify/jwt` reads tokens through
 * `verify.extractToken` or `onlyCookie`), `fastify.jwt.verify` is used, without `trusted` and
 * `formatUser`, and a warning says so. Before either, the token must have its one canonical
 * spelling (see token-shape.ts); the plugin reads the expiry and revocation facts from the
 * verified payload itself, whatever `formatUser` makes of it.
 */
export function jwtVerifier (fastify: FastifyInstance): Verifier {
  const jwt = (fastify as FastifyInstance & { jwt?: JwtDecorator }).jwt
  if (typeof jwt?.verify !== 'function') throw new NoVerifierError()
  const options = jwt.options?.verify
  const reason = !fastify.hasRequestDecorator('jwtVerify')
    ? 'request.jwtVerify is not decorated (renamed with the jwtVerify option)'
    : typeof options?.extractToken === 'function'
      ? 'it reads tokens with verify.extractToken'
      : options?.onlyCookie === true ? 'it reads tokens with verify.onlyCookie' : undefined
  if (reason === undefined) {
    const decoratorName = typeof jwt.options?.decoratorName === 'string' ? jwt.options.decoratorName : 'user'
    return (token, request) => requestVerifier(token, request, decoratorName)
  }
  fastify.log.warn(`fastify-ws-auth: @fastify/jwt's trusted and formatUser do not apply to WebSocket routes: ${reason}; fastify.jwt.verify is used`)
  const verify = jwt.verify.bind(jwt)
  return (token) => {
    if (tokenShapeProblem(token) !== undefined) throw new InvalidTokenError()
    const claims = verify(token)
    if (isThenable(claims)) return Promise.resolve(claims).then(checkClaims)
    return checkClaims(claims)
  }
}

function requestVerifier (token: string, request: FastifyRequest, decoratorName: string): unknown {
  const payload = checkedPayload(token)
  const claims = jwtVerify(request as JwtRequest, token, decoratorName)
  if (isThenable(claims)) return Promise.resolve(claims).then(value => new Verified(payload, value), keySourceFailure)
  return new Verified(payload, claims)
}

/**
 * Past the token's own checks, a `SyntaxError` from `@fastify/jwt` can only come from its `secret`
 * function, the key source (`get-jwks` parsing a JWKS endpoint's HTML error page): the keys cannot
 * be fetched, not a bad token.
 */
function keySourceFailure (error: unknown): never {
  if ((error as { name?: unknown } | null)?.name === 'SyntaxError') throw new KeySourceUnavailableError({ cause: error })
  throw error
}

/**
 * Tokens read lately, with their payload: a client that reconnects with the same token (a page
 * reload, a network blip, a reconnect storm after a deploy) is not checked and decoded again. The
 * check and the decoding depend on the token string alone; the signature is still verified, and
 * `trusted` asked, at every handshake. Bounded in entries and in the length of a token kept.
 */
const recentPayloads = new Map<string, WsAuthClaims>()
const RECENT_MAX = 512
const RECENT_TOKEN_MAX = 2048

/** The payload of a token whose shape and claim types are sound; throws `InvalidTokenError` otherwise. */
function checkedPayload (token: string): WsAuthClaims {
  const known = recentPayloads.get(token)
  if (known !== undefined) return known
  const shape = checkShape(token)
  if (typeof shape === 'string') throw new InvalidTokenError()
  const payload = checkClaims(parsePayload(shape))
  if (token.length > RECENT_TOKEN_MAX) return payload
  if (recentPayloads.size >= RECENT_MAX) recentPayloads.delete(recentPayloads.keys().next().value as string)
  recentPayloads.set(token, payload)
  return payload
}

function checkClaims (claims: unknown): WsAuthClaims {
  if (claimsProblem(claims) !== undefined) throw new InvalidTokenError()
  return claims as WsAuthClaims
}

/** The payload of a token of canonical shape, as checkShape decoded it (UTF-8, checked there). */
function parsePayload (payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'))
  } catch {
    throw new InvalidTokenError()
  }
}

/** `callJwtVerify`'s answer: at once when @fastify/jwt answers at once, else a promise of it. */
function jwtVerify (request: JwtRequest, token: string, decoratorName: string): unknown {
  let answered = false
  let failure: Error | null = null
  let value: unknown
  let later: ((err: Error | null, user?: unknown) => void) | undefined
  callJwtVerify(request, token, decoratorName, (err, user) => {
    if (later !== undefined) return later(err, user)
    answered = true
    failure = err
    value = user
  })
  if (answered) {
    if (failure !== null) throw failure
    return value
  }
  return new Promise((resolve, reject) => {
    later = (err, user) => err ? reject(err) : resolve(user)
  })
}
