/**
 * The client half of fastify-ws-auth: one dependency-free module for browsers (`<script
 * type="module">`, no bundler) and Node. It imports nothing but the neutral close-code table.
 */
import { WsAuthClient } from './client.ts'
import type { ClientOptions, PublicUser } from './types.ts'

/**
 * Creates a client and starts connecting (from a microtask, so listeners added right after this
 * call miss nothing).
 * @example
 * const client = createClient({ url: 'wss://app.example/ws', token: async () => getAccessToken() })
 * client.on('message', (data) => render(data))
 * // or with one-time tickets, a new one for each connection:
 * createClient({ url: '/ws', ticket: async () => (await (await fetch('/ws-ticket', { method: 'POST' })).json()).ticket })
 */
export function createClient<User = PublicUser> (options: ClientOptions): WsAuthClient<User> {
  return new WsAuthClient<User>(options)
}

export { WsAuthClient } from './client.ts'
export { WsAuthError, ClientError, kindForAdvice } from './errors.ts'
export type { ClientErrorCode, WsAuthErrorInit } from './errors.ts'
export { backoffDelay } from './backoff.ts'
export type { Backoff } from './backoff.ts'
export { handshake, ticketHandshake, authMessage, parseControl, rowForClose, rowForStatus, CONTROL_TYPES } from './protocol.ts'
export type { Handshake, HandshakeOptions, TicketHandshakeOptions, ControlMessage, HttpRejection, Row } from './protocol.ts'
export { closeCodes, mergeCloseCodes, entryForCode } from '../protocol/close-codes.ts'
export type { CloseCodeEntry, CloseCodeOverrides, CloseCodeTable, FailureClass, RetryAdvice } from '../protocol/close-codes.ts'
export type {
  ClientBaseOptions, ClientEvents, ClientOptions, ClientState, CloseInfo, CloseKind, EstablishedInfo, PublicUser, ReconnectOptions,
  PublicationInfo, RefreshedInfo, RefusedInfo, Subscription, TicketClientOptions, TicketContext, TicketProvider, TokenClientOptions,
  TokenContext, TokenProvider, Transport, UnsubscribedInfo, WebSocketConstructor, WebSocketLike
} from './types.ts'
