/**
 * THE failure table: every way a WebSocket session of this plugin can end, with the close code
 * and reason the client sees, the HTTP status used when refusing before the upgrade
 * (`reject: 'http'`), and what a client should do next.
 *
 * This module is neutral: it imports nothing, so the server plugin and the browser/Node client
 * both read the same rows. No close code or reason is written anywhere else in the code base.
 */

/**
 * What a client should do after a close with this code.
 * - `reauthenticate`: get a fresh token and reconnect once at once; a second one in a row is fatal.
 * - `never`: fatal, do not reconnect.
 * - `backoff`: reconnect with exponential backoff and jitter.
 * - `immediately`: reconnect at once (the session was fine, it just ended); if it happens again
 *   before a connection stays established, back off.
 * - `done`: the server finished normally; nothing to retry.
 */
export type RetryAdvice = 'reauthenticate' | 'never' | 'backoff' | 'immediately' | 'done'

/** One row of the close-code table. */
export interface CloseCodeEntry {
  /** The WebSocket close code sent to the client. */
  readonly code: number
  /** The close reason (at most 123 bytes of UTF-8, never a token). */
  readonly reason: string
  /** The HTTP status answered instead with `reject: 'http'`; `null` where there is no HTTP phase. */
  readonly status: number | null
  /** What a client should do next. */
  readonly retry: RetryAdvice
  /** `true` when this plugin sends the code; `false` for codes a client meets from elsewhere. */
  readonly emitted: boolean
  /** What it means, in a sentence, for people (logs, UIs, docs). */
  readonly description: string
}

/**
 * The close-code table, by failure class.
 * @see README.md "Close codes" for the same table in prose.
 */
export const closeCodes = {
  /** No token in any enabled source. */
  no_token: { code: 4001, reason: 'No token provided', status: 401, retry: 'reauthenticate', emitted: true, description: 'No token in any enabled source.' },
  /** Malformed token, bad signature, `alg: none`, wrong algorithm, `nbf` in the future, `iss`/`aud` mismatch. */
  invalid_token: { code: 4001, reason: 'Invalid token', status: 401, retry: 'reauthenticate', emitted: true, description: 'The token is malformed, badly signed, of a refused algorithm, not yet valid (nbf), or for another issuer or audience.' },
  /** The token's `exp` has passed. */
  token_expired: { code: 4001, reason: 'Token expired', status: 401, retry: 'reauthenticate', emitted: true, description: 'The token\'s exp has passed.' },
  /** The token was revoked, or the user was disconnected by the application. */
  token_revoked: { code: 4001, reason: 'Token revoked', status: 401, retry: 'reauthenticate', emitted: true, description: 'The token was revoked, or the application logged this user out everywhere.' },
  /** The first message was not `{"type":"auth","token":"..."}`. */
  invalid_auth_message: { code: 4001, reason: 'Invalid auth message', status: null, retry: 'reauthenticate', emitted: true, description: 'The first message was not {"type":"auth","token":"..."}.' },
  /** The connection ticket (`?ticket=`) is unknown, already used, expired, or for another route. */
  invalid_ticket: { code: 4001, reason: 'Invalid ticket', status: 401, retry: 'reauthenticate', emitted: true, description: 'The connection ticket is unknown, already used, expired, or for another route.' },
  /** `loadUser` returned `null`/`undefined`: unknown or inactive user. */
  user_not_found: { code: 4002, reason: 'User not found or inactive', status: 401, retry: 'never', emitted: true, description: 'The token is valid but its user is unknown or inactive.' },
  /** Missing role or permission, `authorize` returned `false`, or a disallowed `Origin`. */
  forbidden: { code: 4003, reason: 'Forbidden', status: 403, retry: 'never', emitted: true, description: 'The user lacks a role or permission of the route, does not own the resource, or the page\'s Origin is not allowed.' },
  /** `authorize` returned `'not_found'`. */
  not_found: { code: 4004, reason: 'Not found', status: 404, retry: 'never', emitted: true, description: 'The resource named in the URL does not exist.' },
  /** No auth message within `authTimeout`, or the checks (`verify`, `loadUser`, `authorize`) did not answer within it. */
  auth_timeout: { code: 4008, reason: 'Authentication timeout', status: 408, retry: 'backoff', emitted: true, description: 'No auth message arrived within authTimeout, or the checks did not answer within it.' },
  /** The session reached `maxLifetime`. */
  lifetime_exceeded: { code: 4010, reason: 'Session lifetime exceeded', status: null, retry: 'immediately', emitted: true, description: 'The session reached maxLifetime; reconnect to start a new one.' },
  /** Over `maxConnectionsPerUser`. */
  too_many_connections: { code: 4029, reason: 'Too many connections', status: 429, retry: 'backoff', emitted: true, description: 'The user already has maxConnectionsPerUser open sessions.' },
  /** A `subscribe` over the route's `maxTopics`: refused with a `refused` message, the socket stays open. */
  too_many_subscriptions: { code: 4029, reason: 'Too many subscriptions', status: null, retry: 'never', emitted: true, description: 'The socket already holds maxTopics subscriptions; the subscribe is refused and the socket stays open.' },
  /** Too many messages held while authenticating, or a binary first message. */
  policy_violation: { code: 1008, reason: 'Policy violation', status: null, retry: 'never', emitted: true, description: 'Too many messages before authentication (or before the handler listened), or a binary auth message.' },
  /** The auth message was larger than `maxAuthMessageBytes`. */
  message_too_big: { code: 1009, reason: 'Message too big', status: null, retry: 'never', emitted: true, description: 'The auth message was larger than maxAuthMessageBytes.' },
  /** A hook or verifier threw; details go to the server log only. */
  internal_error: { code: 1011, reason: 'Internal error', status: 500, retry: 'backoff', emitted: true, description: 'The server failed while authenticating (a hook or verifier threw); details are in its log.' },
  /** The server is shutting down. */
  going_away: { code: 1001, reason: 'Server shutting down', status: null, retry: 'backoff', emitted: true, description: 'The server is shutting down.' },
  /** A frame broke the protocol (sent by ws itself, e.g. an unmasked client frame). */
  protocol_error: { code: 1002, reason: '', status: null, retry: 'never', emitted: false, description: 'A frame broke the WebSocket protocol.' },
  /** A text frame was not valid UTF-8 (sent by ws itself). */
  invalid_payload: { code: 1007, reason: '', status: null, retry: 'never', emitted: false, description: 'A text frame was not valid UTF-8.' },
  /** The peer closed without a code (e.g. the app called `socket.close()` with none). */
  no_status_received: { code: 1005, reason: '', status: null, retry: 'done', emitted: false, description: 'The peer closed without a code (e.g. socket.close() with none).' },
  /** The application closed the socket normally (a stream that finished). */
  normal_closure: { code: 1000, reason: '', status: null, retry: 'done', emitted: false, description: 'The application ended the session normally (a stream that finished).' },
  /** The connection dropped without a close frame (also what browsers see for a refused upgrade). */
  abnormal_closure: { code: 1006, reason: '', status: null, retry: 'backoff', emitted: false, description: 'The connection dropped without a close frame (also what browsers see for a refused upgrade).' },
  /** The server is restarting. */
  service_restart: { code: 1012, reason: '', status: null, retry: 'backoff', emitted: false, description: 'The server is restarting.' },
  /** A limit or a ticket could not be checked (the cluster store is down), the signing keys could not be fetched, or the server is overloaded. */
  try_again_later: { code: 1013, reason: 'Try again later', status: 503, retry: 'backoff', emitted: true, description: 'A limit or a ticket could not be checked right now, the signing keys could not be fetched, or the server is overloaded.' }
} as const satisfies Record<string, CloseCodeEntry>

/** A failure class: a key of the close-code table. */
export type FailureClass = keyof typeof closeCodes

/** The whole table, or a remapped copy of it. */
export type CloseCodeTable = { readonly [K in FailureClass]: CloseCodeEntry }

/** Per-class overrides, as accepted by the `closeCodes` option of the plugin and the client. */
export type CloseCodeOverrides = { readonly [K in FailureClass]?: Partial<Pick<CloseCodeEntry, 'code' | 'reason' | 'status' | 'description'>> }

/** The longest close reason a WebSocket frame can carry, in bytes. */
export const MAX_REASON_BYTES = 123

/** Whether `code` may be sent in a close frame (RFC 6455 §7.4). */
export function isSendableCloseCode (code: number): boolean {
  return Number.isInteger(code) &&
    ((code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
      (code >= 3000 && code <= 4999))
}

/**
 * UTF-8 byte length of a string, without allocating (works the same in browsers and Node).
 * A lone surrogate counts 3 bytes, as the U+FFFD that `Buffer`/`TextEncoder` write for it.
 */
export function utf8Length (text: string): number {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(text.charCodeAt(i + 1))) { bytes += 4; i++ } else bytes += 3
  }
  return bytes
}

function isLowSurrogate (c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff
}

/** A `closeCodes` override that is refused: `option` names the class and field, e.g. `closeCodes.forbidden.code`. */
export class CloseCodesError extends TypeError {
  constructor (readonly option: string, readonly problem: string) {
    super(`${option}: ${problem}`)
  }
}

/**
 * Applies overrides to the table and returns a new frozen table; the input is not changed.
 * Throws a `CloseCodesError` (a `TypeError`) naming the class and field for an unknown class, a code that cannot be
 * sent, or a reason over 123 bytes.
 */
export function mergeCloseCodes (overrides: CloseCodeOverrides = {}): CloseCodeTable {
  const merged: Record<string, CloseCodeEntry> = {}
  for (const [name, override] of Object.entries(overrides) as [string, unknown][]) {
    if (!Object.hasOwn(closeCodes, name)) {
      throw new CloseCodesError(`closeCodes.${name}`, `is not a failure class (known: ${Object.keys(closeCodes).join(', ')})`)
    }
    checkOverrideShape(name, override)
  }
  for (const [name, entry] of Object.entries(closeCodes) as [FailureClass, CloseCodeEntry][]) {
    const override = overrides[name]
    const row = override === undefined ? entry : { ...entry, ...override }
    if (override !== undefined) checkEntry(name, row)
    merged[name] = Object.freeze(row)
  }
  return Object.freeze(merged) as CloseCodeTable
}

const OVERRIDE_FIELDS = ['code', 'reason', 'status']

/** An override is an object of `code`/`reason`/`status`: a typo or a bare number is not silently ignored. */
function checkOverrideShape (name: string, override: unknown): void {
  if (override === undefined) return
  if (override === null || typeof override !== 'object' || Array.isArray(override)) {
    throw new CloseCodesError(`closeCodes.${name}`, `must be an object of ${OVERRIDE_FIELDS.join(', ')}`)
  }
  for (const field of Object.keys(override)) {
    if (!OVERRIDE_FIELDS.includes(field)) {
      throw new CloseCodesError(`closeCodes.${name}.${field}`, `is not a field of an override (known: ${OVERRIDE_FIELDS.join(', ')})`)
    }
  }
}

function checkEntry (name: string, row: CloseCodeEntry): void {
  if (!isSendableCloseCode(row.code)) {
    throw new CloseCodesError(`closeCodes.${name}.code`, `is ${String(row.code)}, which cannot be sent in a close frame (use 1000-1003, 1007-1014 or 3000-4999)`)
  }
  if (typeof row.reason !== 'string' || utf8Length(row.reason) > MAX_REASON_BYTES) {
    throw new CloseCodesError(`closeCodes.${name}.reason`, `must be a string of at most ${MAX_REASON_BYTES} bytes`)
  }
  if (typeof row.description !== 'string') throw new CloseCodesError(`closeCodes.${name}.description`, 'must be a string')
  if (row.status !== null && !(Number.isInteger(row.status) && row.status >= 400 && row.status <= 599)) {
    throw new CloseCodesError(`closeCodes.${name}.status`, 'must be an HTTP error status (400-599) or null')
  }
}

/**
 * Finds the row for a close code, preferring the first class listed with that code.
 * Returns `undefined` for codes the table does not know.
 */
export function entryForCode (code: number, table: CloseCodeTable = closeCodes): (CloseCodeEntry & { failure: FailureClass }) | undefined {
  for (const [failure, entry] of Object.entries(table) as [FailureClass, CloseCodeEntry][]) {
    if (entry.code === code) return { ...entry, failure }
  }
  return undefined
}
