// The feed's custom `verify`: ask the auth service, and fall back to local HS256 verification when
// it cannot answer. The line between the two cases:
//   - the service answered about the token (200 valid, or 401 invalid/expired): its word is final.
//     A 401 throws InvalidTokenError / TokenExpiredError, never a local second opinion, so a token
//     the service refuses is refused even when its signature still checks out here.
//   - the service could not answer (connection refused, timeout, 5xx): verify locally. A bad or
//     expired token then makes @fastify/jwt throw a FAST_JWT_* error, which the plugin maps to
//     invalid_token / token_expired as well.
//   - anything else (a 400, a body that is not what we expect) is a fault of ours: a plain Error,
//     which the plugin reports as internal_error.
import type { FastifyRequest } from 'fastify'
import { InvalidTokenError, TokenExpiredError, type WsAuthClaims } from 'fastify-ws-auth'

export interface RemoteVerifierOptions {
  /** Base URL of the auth service, e.g. `http://127.0.0.1:3013`. */
  authServiceUrl: string
  /** How long to wait for the service before verifying locally, in ms. */
  timeoutMs: number
  /** Local verification with the shared secret (`app.jwt.verify`); throws on a bad token. */
  verifyLocally (token: string): WsAuthClaims
}

interface ValidateAnswer {
  valid?: boolean
  error?: string
  user?: { id: string, username: string, roles: string[], active: boolean }
  exp?: number | null
}

export function remoteVerifier (opts: RemoteVerifierOptions) {
  const endpoint = new URL('/auth/validate', opts.authServiceUrl).href

  return async function verify (token: string, request: FastifyRequest): Promise<WsAuthClaims> {
    let response: Response
    try {
      response = await fetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token }),
        signal: AbortSignal.timeout(opts.timeoutMs)
      })
    } catch (err) {
      return fallBack(request, token, (err as Error).name === 'TimeoutError' ? 'timeout' : 'unreachable')
    }
    if (response.status >= 500) {
      await response.body?.cancel()
      return fallBack(request, token, `status ${response.status}`)
    }
    const answer = await response.json() as ValidateAnswer
    if (response.status === 401) {
      if (answer.error === 'token_expired') throw new TokenExpiredError()
      throw new InvalidTokenError()
    }
    if (response.status !== 200 || answer.valid !== true || answer.user === undefined) {
      throw new Error(`unexpected answer from the auth service: status ${response.status}`)
    }
    const { id, username, roles, active } = answer.user
    // `exp` lets the plugin close the socket when the token expires.
    return { sub: id, username, roles, active, ...(typeof answer.exp === 'number' ? { exp: answer.exp } : {}) }
  }

  function fallBack (request: FastifyRequest, token: string, why: string): WsAuthClaims {
    request.log.warn({ why }, 'auth service unavailable: verifying the token locally')
    return opts.verifyLocally(token)
  }
}
