import type { CloseCodeOverrides, FailureClass, RetryAdvice } from '../protocol/close-codes.ts'
import type { CloseKind, WsAuthError } from './errors.ts'

/**
 * How the client hands its token to the server.
 * - `protocol`: offers the subprotocols `<prefix>.<token>` and `<prefix>` (plus `protocols`).
 * - `message`: sends `{"type":"auth","token"}` as the first message after `open`.
 * - `query`: appends `?<queryParam>=<token>` to the URL (the least private: URLs end up in logs).
 */
export type Transport = 'protocol' | 'message' | 'query'

/**
 * Where the client is in its life.
 * `connecting` (getting a token, handshake), `authenticating` (socket open, waiting for
 * `connection_established`), `open` (established: `send()` goes straight out), `reconnecting`
 * (waiting out a delay before the next attempt), `closed` (final: `close()` or a fatal close).
 */
export type ClientState = 'connecting' | 'authenticating' | 'open' | 'reconnecting' | 'closed'

export type { CloseKind } from './errors.ts'

/** Why `token()` is being called. */
export interface TokenContext {
  /**
   * `connect`: the first connection; `reconnect`: after a transient close; `reauthenticate`: the
   * server refused the last token (4001), return a new one (skip your cache); `refresh`: an in-band
   * refresh of a live session.
   */
  reason: 'connect' | 'reconnect' | 'reauthenticate' | 'refresh'
  /** Connection attempts since the last established connection (0 for the first). */
  attempt: number
}

/**
 * The token, or a function returning it (called before every connect and every refresh).
 * A function that returns `null`, `undefined` or `''` means "no token": the client stops with a
 * fatal close of the `no_token` row (4001, `unauthenticated`), so the app can send the user to log in.
 */
export type TokenProvider = string | ((context: TokenContext) => string | null | undefined | Promise<string | null | undefined>)

/** Why `ticket()` is being called: as for `token()`, but a ticket session is never refreshed. */
export interface TicketContext {
  /**
   * `connect`: the first connection; `reconnect`: after a transient close; `reauthenticate`: the
   * server refused the last ticket or its session ended (4001, e.g. `Invalid ticket` or `Token expired`).
   */
  reason: 'connect' | 'reconnect' | 'reauthenticate'
  /** Connection attempts since the last established connection (0 for the first). */
  attempt: number
}

/**
 * A function returning a fresh one-time ticket (from the server's `app.wsAuth.issueTicket()`,
 * typically through an HTTP route of the app), called before every connect and every reconnect:
 * a ticket opens one connection, once. Returning `null`, `undefined` or `''` means "no ticket"
 * (say, the HTTP session is gone): the client stops with a fatal close of the `no_token` row.
 */
export type TicketProvider = (context: TicketContext) => string | null | undefined | Promise<string | null | undefined>

/** Reconnection with exponential backoff. */
export interface ReconnectOptions {
  /** First backoff delay, in ms. @default 500 */
  initialDelay?: number
  /** Largest backoff delay, in ms. @default 30000 */
  maxDelay?: number
  /** Growth factor of the delay per attempt. @default 2 */
  factor?: number
  /** Full jitter: wait a random time between 0 and the computed delay. @default true */
  jitter?: boolean
  /** Reconnect attempts allowed in a row without reaching an established connection. @default Infinity */
  maxAttempts?: number
  /**
   * How long a connection must stay established for the backoff (and the "once at once" of 4001
   * and 4010) to start over, in ms. A server that accepts and drops at once thus meets a growing
   * backoff instead of a reconnect loop. @default 5000
   */
  stableAfter?: number
}

/** The part of a WebSocket this client uses; browsers' `WebSocket` and `ws` both fit. */
export interface WebSocketLike {
  readonly readyState: number
  readonly protocol: string
  onopen: ((event: any) => void) | null
  onmessage: ((event: any) => void) | null
  onclose: ((event: any) => void) | null
  onerror: ((event: any) => void) | null
  send (data: any): void
  close (code?: number, reason?: string): void
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `WebSocket` from `ws`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

/**
 * Options of `createClient()`: `url`, and either `token` or `ticket` (giving both throws a
 * `ClientError`). The type is a union so that one of the two is required; extend
 * `ClientBaseOptions` to build on it.
 */
export type ClientOptions = TokenClientOptions | TicketClientOptions

/** A client that authenticates with a token (a JWT), on any transport, refreshed in band. */
export interface TokenClientOptions extends ClientBaseOptions {
  token: TokenProvider
}

/**
 * A client that authenticates with a one-time ticket in the URL (`?<ticketParam>=<ticket>`), a new
 * one for each connection. `transport`, `queryParam`, `protocolPrefix`, `refresh` and
 * `refreshMargin` are token options: giving one with `ticket` throws a `ClientError`.
 */
export interface TicketClientOptions extends ClientBaseOptions {
  ticket: TicketProvider
}

/** The options of both kinds of client. */
export interface ClientBaseOptions {
  /** The `ws:`/`wss:` (or `http:`/`https:`) URL; in a browser it may be relative to the page. */
  url: string | URL
  /** The token, or a function returning it. Not with `ticket`. */
  token?: TokenProvider
  /**
   * A function returning a one-time ticket, called before every connect and reconnect (a ticket is
   * never reused). Not with `token`. A ticket session is not refreshed: at its expiry the server
   * closes with 4001 `Token expired`, and the client reconnects at once with a new ticket.
   */
  ticket?: TicketProvider
  /** Query parameter of `ticket` (the server's `ticketParam`). @default 'ticket' */
  ticketParam?: string
  /** How the token reaches the server (not with `ticket`, which always travels in the URL). @default 'protocol' */
  transport?: Transport
  /** The WebSocket constructor. @default globalThis.WebSocket */
  WebSocket?: WebSocketConstructor
  /** The app's own subprotocols, offered after the token entries. @default [] */
  protocols?: readonly string[]
  /** Reconnection settings, or `false` for no reconnection at all (`maxAttempts: 0`). */
  reconnect?: ReconnectOptions | false
  /**
   * Refresh in band: on `token_expiring` (or `refreshMargin` before `expires_at` when no warning
   * comes), call `token()` and send `{"type":"auth","token"}`. Needs `token` to be a function
   * (not with `ticket`). @default true
   */
  refresh?: boolean
  /**
   * How long before `expires_at` to refresh when the server sends no `token_expiring`, in ms;
   * at most half of the remaining lifetime is used, so short tokens are not refreshed at once.
   * Not with `ticket`. @default 30000
   */
  refreshMargin?: number
  /** Messages `send()` may hold while not established; one more throws. @default 100 */
  queue?: number
  /** The same overrides as the server's `closeCodes` option, so both sides read the same table. */
  closeCodes?: CloseCodeOverrides
  /**
   * Whether the server sends `connection_established` (its `established` option). With `false`
   * the connection counts as established at `open` (after the auth message with `transport:
   * 'message'`). @default true
   */
  established?: boolean
  /** Query parameter of `transport: 'query'` (the server's `queryParam`). Not with `ticket`. @default 'token' */
  queryParam?: string
  /** Subprotocol prefix of `transport: 'protocol'` (the server's `protocolPrefix`). Not with `ticket`. @default 'bearer' */
  protocolPrefix?: string
}

/** The user as the server shows it in `connection_established` (its `publicUser`). */
export interface PublicUser {
  id: string | number
  username?: string
  roles: string[]
  permissions: string[]
  [key: string]: unknown
}

/** The `connection_established` message. */
export interface EstablishedInfo<User = PublicUser> {
  type: 'connection_established'
  client_id: string
  user: User
  timestamp: string
  /** When the token expires (ISO 8601), or `null` for a token without `exp`. */
  expires_at: string | null
}

/** The `token_refreshed` message. */
export interface RefreshedInfo {
  type: 'token_refreshed'
  expires_at: string | null
}

/** The payload of the `close` event: one per connection attempt that ended. */
export interface CloseInfo {
  /**
   * The close code; for an HTTP refusal (Node, `reject: 'http'`) the code of the table row with
   * that status; `null` when no socket closed (`token()` or `ticket()` threw, or the socket could not be built).
   */
  code: number | null
  reason: string
  kind: CloseKind
  /** The failure class of the table row matched by code (and reason, when several share a code). */
  failure?: FailureClass
  /** The HTTP status of a refused upgrade (Node with `ws` only; browsers see 1006). */
  status?: number
  /** Whether the client will connect again. */
  willRetry: boolean
  /** The wait before the next attempt, in ms (0 when `willRetry` is false). */
  delay: number
  /** Attempts in a row without an established connection, this one included. */
  attempt: number
  /** When `willRetry` is false: the queued messages that were never sent, in order. */
  unsent?: unknown[]
}

/**
 * A `refused` message: the server refused a message (`of` is its `type`) or a subscription
 * (`of: 'subscribe'`, with `topic`), and the connection goes on.
 */
export interface RefusedInfo {
  /** The refused message's `type`: `'subscribe'` for a subscription, `null` for a frame without a type (not JSON, binary). */
  of: string | null
  /** The table's code: 4003 (forbidden), 4004 (not found), 4029 (too many subscriptions), 1011 (the server's check failed). */
  code: number
  /** The table's reason, e.g. `Forbidden`. */
  reason: string
  /** The failure class of the client's table row for `code` and `reason` (e.g. `too_many_subscriptions`). */
  failure?: FailureClass
  /** The refused message's `id`, when it had a string or number one (for a subscription: the client's request id). */
  id?: string | number
  /** The topic of a refused `subscribe` (absent when the server found no valid topic in it). */
  topic?: string
}

/**
 * A subscription the server ended by itself (the user lost access, after a refresh or a re-check;
 * or the app on the server ended it), or that the server refused again after a reconnect.
 */
export interface UnsubscribedInfo {
  topic: string
  /** The table's code (4003 when the user lost access), or `null` when the server gave none. */
  code: number | null
  /** The table's reason, or `''` when the server gave none. */
  reason: string
  /** The failure class of the client's table row, when there is a code. */
  failure?: FailureClass
}

/** A publication on a topic the server subscribed this socket to by itself (not through `subscribe()`). */
export interface PublicationInfo {
  topic: string
  /** What the server published, as JSON decoded it. */
  data: unknown
}

/** What `client.subscribe()` returns. */
export interface Subscription {
  /**
   * Resolves when the server answers `subscribed`. Rejects with a `WsAuthError` when the server
   * refuses (`code`, `reason`, `kind`, `failure` from the client's table: 4003 is `refused`,
   * 1011 `transient`), when `unsubscribe()` is called first (`kind: 'closed'`, `code: null`), or
   * when the client stops for good first (the final close's `code` and `kind`). A rejection
   * nobody awaits is not reported as unhandled.
   */
  ready: Promise<void>
  /**
   * Stops the delivery to this callback at once; when no other callback holds the topic, sends
   * `unsubscribe` (and no longer resubscribes after a reconnect). Calling it again does nothing.
   */
  unsubscribe (): void
}

/** The events of a client and their payloads. */
export interface ClientEvents<User = PublicUser> {
  established: EstablishedInfo<User>
  message: string | ArrayBuffer | Blob | Uint8Array
  refreshed: RefreshedInfo
  close: CloseInfo
  error: WsAuthError
  refused: RefusedInfo
  unsubscribed: UnsubscribedInfo
  publication: PublicationInfo
}

/** The retry advice as this client reads it. */
export type { RetryAdvice }
