import type { FailureClass, RetryAdvice } from '../protocol/close-codes.ts'

/**
 * What a close means to the app, read from the `retry` advice of its close-code table row:
 * `unauthenticated` (reauthenticate, e.g. 4001), `refused` (never, e.g. 4003), `transient`
 * (backoff, e.g. 1006, and every code the table does not know), `restart` (immediately, e.g.
 * 4010), `done` (the server closed normally), `closed` (the app called `close()`), `token` (the
 * `token()` or `ticket()` function threw; no socket was involved).
 */
export type CloseKind = 'unauthenticated' | 'refused' | 'transient' | 'restart' | 'done' | 'closed' | 'token'

/** How each retry advice of the close-code table reads as a close kind. */
export const kindForAdvice = {
  reauthenticate: 'unauthenticated',
  never: 'refused',
  backoff: 'transient',
  immediately: 'restart',
  done: 'done'
} as const satisfies Record<RetryAdvice, CloseKind>

/** The facts behind a `WsAuthError`. */
export interface WsAuthErrorInit {
  code: number | null
  kind: CloseKind
  reason: string
  retry: RetryAdvice
  failure?: FailureClass
  status?: number
  cause?: unknown
}

/**
 * Emitted on `error`: a close the client will not retry (a refusal, a second 4001 in a row,
 * `maxAttempts` reached), or a `token()` or `ticket()` function that threw.
 */
export class WsAuthError extends Error {
  /** The close code, or `null` when no socket closed. */
  readonly code: number | null
  /** What the close means; see `CloseKind`. */
  readonly kind: CloseKind
  /** The close reason the server sent (or the table's reason for an HTTP refusal). */
  readonly reason: string
  /** The table's retry advice for this close. */
  readonly retry: RetryAdvice
  /** The failure class of the matched table row. */
  declare readonly failure?: FailureClass
  /** The HTTP status of a refused upgrade (Node only). */
  declare readonly status?: number

  constructor (message: string, init: WsAuthErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause })
    this.name = 'WsAuthError'
    this.code = init.code
    this.kind = init.kind
    this.reason = init.reason
    this.retry = init.retry
    if (init.failure !== undefined) this.failure = init.failure
    if (init.status !== undefined) this.status = init.status
  }
}

/** The codes of the errors the client throws at the caller (misuse, not closes). */
export type ClientErrorCode =
  | 'FST_WS_AUTH_CLIENT_INVALID_OPTION'
  | 'FST_WS_AUTH_CLIENT_NO_WEBSOCKET'
  | 'FST_WS_AUTH_CLIENT_QUEUE_FULL'
  | 'FST_WS_AUTH_CLIENT_CLOSED'
  | 'FST_WS_AUTH_CLIENT_INVALID_CLOSE'
  | 'FST_WS_AUTH_CLIENT_INVALID_MESSAGE'
  | 'FST_WS_AUTH_CLIENT_UNKNOWN_EVENT'
  | 'FST_WS_AUTH_CLIENT_INVALID_SUBSCRIPTION'

/** Thrown synchronously by `createClient`, `send`, `subscribe`, `close` and `on` when they are misused. */
export class ClientError extends Error {
  /** One of the `FST_WS_AUTH_CLIENT_*` codes. */
  readonly code: ClientErrorCode

  constructor (code: ClientErrorCode, message: string) {
    super(`fastify-ws-auth client: ${message}`)
    this.name = 'ClientError'
    this.code = code
  }
}
