/**
 * THE control-message table: every `type` the protocol reserves, next to the close-code table
 * (as graphql-ws keeps `MessageType` beside `CloseCode`). Server and client read the names from
 * here and nowhere else. Like close-codes.ts, this module imports nothing.
 * @see PROTOCOL.md, "Messages"
 */

/** Every reserved message `type`, by name. */
export const MessageType = {
  /** Client → server: the token, as the first message (`message` source) or an in-band refresh. */
  Auth: 'auth',
  /** Client → server: an application-level liveness check, answered with `appPing: true`. */
  Ping: 'ping',
  /** Server → client: the session is open; carries `client_id`, `user`, `timestamp`, `expires_at`. */
  ConnectionEstablished: 'connection_established',
  /** Server → client: `expires_at` is near (`expiryWarning`). */
  TokenExpiring: 'token_expiring',
  /** Server → client: an in-band refresh was accepted; carries the new `expires_at`. */
  TokenRefreshed: 'token_refreshed',
  /** Server → client: the answer to `ping`; carries `timestamp`. */
  Pong: 'pong',
  /** Client → server, on routes with `topics`: `{"type":"subscribe","topic":"queue:42","id":1}`. */
  Subscribe: 'subscribe',
  /** Client → server, on routes with `topics`: `{"type":"unsubscribe","topic":"queue:42","id":2}`. */
  Unsubscribe: 'unsubscribe',
  /** Server → client: a subscription is held; carries `topic` and the request's `id`. */
  Subscribed: 'subscribed',
  /** Server → client: a subscription ended (asked for, or ended by the server with `code` and `reason`). */
  Unsubscribed: 'unsubscribed',
  /** Server → client: a message or a subscription was refused; carries `of`, `code`, `reason`, `id` (and `topic`). */
  Refused: 'refused',
  /** Server → client: data published to a topic the socket holds; carries `topic` and `data`. */
  Publication: 'publication'
} as const

/** A reserved message type. */
export type ReservedType = typeof MessageType[keyof typeof MessageType]

/** The types a server sends of its own; they never reach a client app's `message` listeners. */
export const SERVER_MESSAGE_TYPES: ReadonlySet<string> = new Set([
  MessageType.ConnectionEstablished, MessageType.TokenExpiring, MessageType.TokenRefreshed, MessageType.Pong,
  MessageType.Subscribed, MessageType.Unsubscribed, MessageType.Refused, MessageType.Publication
])

/** The longest topic name a `subscribe` or `unsubscribe` may carry, in bytes of UTF-8. */
export const MAX_TOPIC_BYTES = 256

/** A JSON object parsed from a text frame, or `undefined` for anything else (not JSON, an array, a scalar). */
export function parseJsonObject (text: string): Record<string, unknown> | undefined {
  let message: unknown
  try {
    message = JSON.parse(text)
  } catch {
    return undefined
  }
  return message !== null && typeof message === 'object' && !Array.isArray(message) ? message as Record<string, unknown> : undefined
}

/** The auth message: the first message of the `message` source, and an in-band refresh. */
export function authMessage (token: string): string {
  return JSON.stringify({ type: MessageType.Auth, token })
}
