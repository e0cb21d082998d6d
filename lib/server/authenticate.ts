import type { FastifyRequest } from 'fastify'
import type { FailureClass } from '../protocol/close-codes.ts'
import { clock } from '../protocol/clock.ts'
import { isNumericDate } from './token-shape.ts'
import { hasRoleAndPermissions, isThenable } from './checks.ts'
import type { Config, RoutePolicy } from './options.ts'
import type { WsAuthClaims, WsAuthUser } from '../types.ts'

/** Verifies a token and returns its claims; `null`/`false`/`undefined` mean an invalid token. */
export type Verifier = (token: string, request: FastifyRequest) => unknown

/**
 * What a verifier may return instead of the claims: the token's payload (read for its expiry and
 * revocation facts) apart from the claims handed to `loadUser` (`@fastify/jwt`'s `formatUser`
 * result, which need not carry them).
 */
export class Verified {
  constructor (readonly payload: WsAuthClaims, readonly claims: unknown) {}
}

/** What authentication needs besides the token: options, the verifier, the revocation list. */
export interface AuthContext {
  readonly config: Config
  readonly verifier: Verifier
  isRevoked (claims: WsAuthClaims, userId: string | number | undefined): boolean
}

/** What a check that did not answer within `authTimeout` gets (a handshake or an in-band refresh). */
export const TIMED_OUT: Outcome = Object.freeze({ ok: false, failure: 'auth_timeout' })

/** Resolves with the outcome, or with `auth_timeout` once `ms` have passed without one. */
export function within<T extends Outcome | undefined> (outcome: Promise<T>, ms: number): Promise<T | Outcome> {
  return new Promise(resolve => {
    const cancel = clock.after(ms, () => resolve(TIMED_OUT))
    outcome.then(settled => {
      cancel()
      resolve(settled)
    })
  })
}

/** What authenticating one token produced. */
export type Outcome =
  | { ok: true, user: WsAuthUser, claims: WsAuthClaims, payload: WsAuthClaims }
  | { ok: false, failure: FailureClass, userId?: string | number, error?: unknown }

/** Error codes that mean "the token has expired", from fast-jwt, @fastify/jwt and this plugin. */
const EXPIRED_CODES = new Set(['FAST_JWT_EXPIRED', 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED', 'FST_WS_AUTH_TOKEN_EXPIRED'])
/** `@fastify/jwt`'s answer when the app's `trusted` check refuses a token (a deny-list, as a rule). */
const UNTRUSTED_CODE = 'FST_JWT_AUTHORIZATION_TOKEN_UNTRUSTED'
/** fast-jwt's wrapper around an error of its `key` function (the cause is in `originalError`). */
const KEY_FETCHING_CODE = 'FAST_JWT_KEY_FETCHING_ERROR'
/** The key source could not answer: this plugin's own error, and `get-jwks`'s request failures. */
const KEY_SOURCE_DOWN = new Set(['FST_WS_AUTH_KEY_SOURCE_UNAVAILABLE', 'JWKS_REQUEST_FAILED', 'OPENID_CONFIGURATION_REQUEST_FAILED', 'NO_JWKS', 'NO_JWKS_URI'])
/** The key source answered, without a key for this token (`get-jwks`: unknown `kid`, issuer not allowed). */
const KEY_NOT_THERE = new Set(['JWK_NOT_FOUND', 'DOMAIN_NOT_ALLOWED'])

/**
 * Runs the checks in their documented order: verify, revocation, load the user, roles,
 * permissions, authorize. Stays synchronous while every step answers synchronously (the common
 * case: @fastify/jwt and the default user mapping), so a handshake pays no promise it does not
 * need. Never throws and never rejects: a hook that throws, rejects (with anything) or returns a
 * rejecting thenable becomes `internal_error`.
 */
export function authenticate (token: string, request: FastifyRequest, policy: RoutePolicy, ctx: AuthContext): Outcome | Promise<Outcome> {
  if (token.length === 0) return { ok: false, failure: 'invalid_token' }
  let claims: unknown
  try {
    claims = ctx.verifier(token, request)
  } catch (error) {
    return { ok: false, failure: classifyVerifyError(error), error }
  }
  if (isThenable(claims)) {
    return Promise.resolve(claims).then(
      verified => afterVerify(verified, request, policy, ctx),
      (error: unknown): Outcome => ({ ok: false, failure: classifyVerifyError(error), error }))
  }
  return afterVerify(claims, request, policy, ctx)
}

function afterVerify (verified: unknown, request: FastifyRequest, policy: RoutePolicy, ctx: AuthContext): Outcome | Promise<Outcome> {
  const payload = verified instanceof Verified ? verified.payload : verified
  const claims = (verified instanceof Verified ? verified.claims : verified) as WsAuthClaims
  if (!isObject(payload) || !isObject(claims) || !expiryFits(payload.exp)) return { ok: false, failure: 'invalid_token' }
  return admitClaims(payload, claims, request, policy, ctx)
}

/**
 * The checks after verification, for verified claims (a token's, or a redeemed ticket's):
 * revocation, `loadUser`, roles, permissions, `authorize`.
 */
export function admitClaims (payload: WsAuthClaims, claims: WsAuthClaims, request: FastifyRequest, policy: RoutePolicy, ctx: AuthContext): Outcome | Promise<Outcome> {
  if (ctx.isRevoked(payload, undefined)) return { ok: false, failure: 'token_revoked' }
  let user: unknown
  try {
    user = ctx.config.loadUser(claims, request)
  } catch (error) {
    return { ok: false, failure: 'internal_error', error }
  }
  if (isThenable(user)) {
    return Promise.resolve(user).then(
      loaded => afterLoad(loaded, claims, payload, request, policy, ctx),
      (error: unknown): Outcome => ({ ok: false, failure: 'internal_error', error }))
  }
  return afterLoad(user, claims, payload, request, policy, ctx)
}

/** Whether an `exp` can be a session's deadline: absent or not a number (then ignored), or a time a Date holds. */
function expiryFits (exp: unknown): boolean {
  return typeof exp !== 'number' || isNumericDate(exp)
}

function isObject (value: unknown): value is WsAuthClaims {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function afterLoad (loaded: unknown, claims: WsAuthClaims, payload: WsAuthClaims, request: FastifyRequest, policy: RoutePolicy, ctx: AuthContext): Outcome | Promise<Outcome> {
  // Any falsy answer (`return row.active && row`) means no such user.
  if (!loaded) return { ok: false, failure: 'user_not_found' }
  const user = loaded as WsAuthUser
  const userId = idOf(user)
  if (ctx.isRevoked(payload, userId)) return { ok: false, failure: 'token_revoked', userId }
  if (!hasRoleAndPermissions(user, policy, ctx.config.rolePermissions)) return { ok: false, failure: 'forbidden', userId }
  if (policy.authorize === null) return success(user, claims, payload)
  let verdict: unknown
  try {
    verdict = policy.authorize(request, user)
  } catch (error) {
    return { ok: false, failure: 'internal_error', userId, error }
  }
  if (isThenable(verdict)) {
    return Promise.resolve(verdict).then(
      v => judged(v, user, userId, claims, payload),
      (error: unknown): Outcome => ({ ok: false, failure: 'internal_error', userId, error }))
  }
  return judged(verdict, user, userId, claims, payload)
}

function judged (verdict: unknown, user: WsAuthUser, userId: string | number | undefined, claims: WsAuthClaims, payload: WsAuthClaims): Outcome {
  if (verdict === 'not_found') return { ok: false, failure: 'not_found', userId }
  if (verdict !== true) return { ok: false, failure: 'forbidden', userId }
  return success(user, claims, payload)
}

function success (user: WsAuthUser, claims: WsAuthClaims, payload: WsAuthClaims): Outcome {
  return { ok: true, user, claims, payload }
}

/**
 * The failure class of an error thrown while verifying. A key source that cannot answer (an
 * `@fastify/jwt` `secret` function backed by `get-jwks`, or a custom `verify`) is
 * `try_again_later`, never `invalid_token`: the token may well be good, and 4001 would tell the
 * client to throw it away. A key the source does not have is an invalid token.
 */
export function classifyVerifyError (error: unknown, fromKeySource = false): FailureClass {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return isFetchFailure(error, fromKeySource) ? 'try_again_later' : 'internal_error'
  if (EXPIRED_CODES.has(code)) return 'token_expired'
  if (code === UNTRUSTED_CODE) return 'token_revoked'
  if (code === KEY_FETCHING_CODE) return classifyVerifyError((error as { originalError?: unknown }).originalError ?? null, true)
  if (KEY_SOURCE_DOWN.has(code)) return 'try_again_later'
  if (KEY_NOT_THERE.has(code)) return 'invalid_token'
  if (code.startsWith('FAST_JWT_') || code.startsWith('FST_JWT_') || code === 'FST_WS_AUTH_INVALID_TOKEN') return 'invalid_token'
  return 'internal_error'
}

/**
 * Node's `fetch` failing (`TypeError: fetch failed`: refused, reset, DNS), timing out or aborted:
 * what `get-jwks` lets through unwrapped when the JWKS endpoint is down. A `SyntaxError` (a key
 * source answering with a body that is not JSON, such as a proxy's HTML error page) counts only
 * when it surely came from the key source: a custom `verify` parsing a malformed token throws one too.
 */
function isFetchFailure (error: unknown, fromKeySource: boolean): boolean {
  if (error === null || typeof error !== 'object') return false
  const { name, message } = error as { name?: unknown, message?: unknown }
  return (name === 'TypeError' && message === 'fetch failed') || name === 'TimeoutError' || name === 'AbortError' ||
    (fromKeySource && name === 'SyntaxError')
}

/** The id of a loaded user, for logs and the registry. */
export function idOf (user: WsAuthUser): string | number | undefined {
  const id = (user as { id?: unknown }).id
  return typeof id === 'string' || typeof id === 'number' ? id : undefined
}
