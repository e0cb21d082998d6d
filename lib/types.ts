/*
 * Every public type of the package, in one file that imports nothing of lib/ but protocol/:
 * implementation files import their types from here, so no two of them need each other's types.
 */
import type { FastifyJWT } from '@fastify/jwt'
import type { FastifyBaseLogger, FastifyRequest, RawServerBase, RawServerDefault } from 'fastify'
// The socket type of @fastify/websocket's handlers: one type for the CJS and the ESM build alike
// (`ws`'s own types differ between `require` and `import`).
import type { WebSocket, WebsocketPluginOptions } from '@fastify/websocket'
import type { CloseCodeOverrides, CloseCodeTable, FailureClass } from './protocol/close-codes.ts'

/** The user object the plugin builds from claims when no `loadUser` is given. */
export interface DefaultWsAuthUser {
  id?: string | number
  username?: string
  roles?: string[]
  permissions?: string[]
}

/**
 * The type of `socket.user` (and of `request.user`, which `@fastify/jwt` declares).
 * Declare your own by augmenting `@fastify/jwt`'s `FastifyJWT` interface with `user`, as
 * you would for `@fastify/jwt` alone:
 * ```ts
 * declare module '@fastify/jwt' { interface FastifyJWT { user: { id: string, roles: string[] } } }
 * ```
 */
export type WsAuthUser = FastifyJWT extends { user: infer U } ? U : DefaultWsAuthUser

/** Verified token claims, as `@fastify/jwt` returns them (typed by `FastifyJWT['payload']`). */
export type WsAuthClaims = FastifyJWT extends { payload: infer P } ? P & Record<string, unknown> : Record<string, unknown>

/**
 * Where a token may come from, tried in the order given. `ticket` is a one-time connection ticket
 * from `app.wsAuth.issueTicket()` in the query (`?ticket=`), not a token; only routes that list it read it.
 */
export type TokenSource = 'query' | 'header' | 'cookie' | 'protocol' | 'message' | 'ticket'

/** How a refused handshake is answered. */
export type RejectMode = 'close' | 'http'

/** `authorize` verdict: allow, forbid (4003) or hide the resource (4004). */
export type AuthorizeResult = boolean | 'not_found'

/** Resource ownership check; sees `request.params`. */
export type AuthorizeFn = (request: FastifyRequest, user: WsAuthUser) => AuthorizeResult | Promise<AuthorizeResult>

/**
 * A message as a `messages` policy's `authorize` sees it: the parsed JSON object, or `null` for a
 * frame that is not a JSON object (binary, not JSON, an array), which only `'*'` can match.
 */
export type WsAuthMessage = Record<string, unknown> | null

/** A message check; may be async. `'not_found'` refuses with 4004, `false` with 4003. */
export type MessageAuthorizeFn = (request: FastifyRequest, user: WsAuthUser, message: WsAuthMessage) => AuthorizeResult | Promise<AuthorizeResult>

/** Who may send a message type: roles (at least one), permissions (all) and `authorize`, as at the door. */
export interface MessageRule {
  roles?: readonly string[]
  permissions?: readonly string[]
  authorize?: MessageAuthorizeFn
}

/** A `messages` entry: `true` (allowed), `false` (never allowed) or a rule. */
export type MessagePolicy = boolean | MessageRule

/** A topic a socket asks for, matched against a `topics` pattern. */
export interface Topic {
  /** The topic name, e.g. `queue:42`. */
  name: string
  /** The pattern it matched, e.g. `queue:{queueId}`. */
  pattern: string
  /** The `{name}` segments of the pattern, e.g. `{ queueId: '42' }`. */
  params: Record<string, string>
}

/** A subscription check; may be async. `'not_found'` refuses with 4004, `false` with 4003. */
export type TopicAuthorizeFn = (request: FastifyRequest, user: WsAuthUser, topic: Topic) => AuthorizeResult | Promise<AuthorizeResult>

/** Who may subscribe to the topics of a pattern. */
export interface TopicRule {
  roles?: readonly string[]
  permissions?: readonly string[]
  authorize?: TopicAuthorizeFn
}

/** Where a refusal happened: at the door (a handshake or an in-band refresh), at a message, at a subscribe. */
export type RefusalPhase = 'handshake' | 'message' | 'subscribe'

/** The facts of one authentication attempt, as logged and as passed to the audit hooks. */
export interface AuthAttempt {
  /** The route URL pattern, e.g. `/ws/entries/:id`. */
  route: string
  ip: string
  /** Set on success. */
  clientId?: string
  /** The loaded user's id, when known. */
  userId?: string | number
  /** Set on failure. */
  failure?: FailureClass
  /** The close code sent (or that would have been sent, with `reject: 'http'`). */
  code?: number
  /** The HTTP status answered, with `reject: 'http'`. */
  status?: number
  /**
   * Which source the token came from, on handshakes and refreshes when one was found (`'message'`
   * for a first-message token and for an in-band refresh).
   */
  source?: TokenSource
  /** Set on failure: `'handshake'` (handshakes and refreshes), `'message'` or `'subscribe'`. */
  phase?: RefusalPhase
  /** A refused message's `type` (`null` for a frame without one). */
  messageType?: string | null
  /** A refused subscription's topic (when it was a valid topic name). */
  topic?: string
}

/** Per-route requirements: `wsAuth` in the route options. */
export interface WsAuthRouteOptions {
  /** The user needs at least one of these roles. */
  roles?: readonly string[]
  /** The user needs all of these permissions (after `rolePermissions` expansion). */
  permissions?: readonly string[]
  /** Resource ownership check, after roles and permissions. */
  authorize?: AuthorizeFn
  /** Overrides the plugin's `reject`. */
  reject?: RejectMode
  /** Overrides the plugin's `sources`. */
  sources?: readonly TokenSource[]
  /** Overrides the plugin's `authTimeout`. */
  authTimeout?: number
  /** Overrides the plugin's `established`. */
  established?: boolean
  /** Overrides the plugin's `maxLifetime`. */
  maxLifetime?: number
  /**
   * Who may send which message, by `type` (`'*'`: every other frame). A refused message never
   * reaches the handler: the client gets `{"type":"refused",...}`. @default every message allowed
   */
  messages?: Readonly<Record<string, MessagePolicy>>
  /**
   * Topic patterns (`queue:{queueId}`) a client may `subscribe` to, and who may. Without it,
   * `subscribe`/`unsubscribe` messages reach the handler as any other.
   */
  topics?: Readonly<Record<string, TopicRule | true>>
  /** Subscriptions one socket may hold. @default 100 */
  maxTopics?: number
  /** A refused message: answer with a `refused` message, or close the socket with its code. @default 'reply' */
  onRefused?: 'reply' | 'close'
}

/** Options of `app.register(wsAuth, options)`. */
export interface WsAuthPluginOptions {
  /**
   * Token sources, tried in this order; the first one present is used.
   * @default ['query', 'header', 'protocol', 'message']
   */
  sources?: readonly TokenSource[]
  /** @default 'token' */
  queryParam?: string
  /** Query parameter of the `ticket` source (one-time tickets from `issueTicket()`). @default 'ticket' */
  ticketParam?: string
  /** Cookie read through `@fastify/cookie` by the `cookie` source. @default 'token' */
  cookieName?: string
  /** Subprotocol prefix: the client offers `<prefix>` and `<prefix>.<token>`. @default 'bearer' */
  protocolPrefix?: string
  /** How long the `message` source waits for the auth message, in ms. @default 5000 */
  authTimeout?: number
  /** Largest accepted auth message, in bytes (1009 above it). @default 16384 */
  maxAuthMessageBytes?: number
  /** Messages held while authenticating or until the handler listens (1008 above it). @default 100 */
  maxPendingMessages?: number
  /** Bytes held while authenticating or until the handler listens (1008 above it). @default 1048576 */
  maxPendingBytes?: number
  /** `'close'`: upgrade, then close with the code; `'http'`: answer the HTTP status, no upgrade. @default 'close' */
  reject?: RejectMode
  /**
   * Custom verification instead of `@fastify/jwt`. Return the claims, or `null`/`false` for an invalid token.
   * @default `request.jwtVerify()` of `@fastify/jwt`, handed the token (its verifier, cache, `trusted` and `formatUser`)
   */
  verify?: (token: string, request: FastifyRequest) => WsAuthClaims | null | undefined | false | Promise<WsAuthClaims | null | undefined | false>
  /**
   * Builds the user from verified claims (with `@fastify/jwt`: what its `formatUser` returns, if set);
   * `null`/`undefined` closes with 4002.
   * @default `defaultLoadUser`: `{ id: sub ?? id, username, roles, permissions }`
   */
  loadUser?: (claims: WsAuthClaims, request: FastifyRequest) => WsAuthUser | null | undefined | Promise<WsAuthUser | null | undefined>
  /** Expands roles into permissions for the `permissions` check. */
  rolePermissions?: Readonly<Record<string, readonly string[]>>
  /** Allowed `Origin` values, or a predicate; a present, disallowed Origin closes with 4003. */
  allowedOrigins?: readonly string[] | ((origin: string, request: FastifyRequest) => boolean | Promise<boolean>)
  /**
   * What the client sees of the user in `connection_established`; `permissions` is the user's own
   * plus those `rolePermissions` grants. @default `{ id, username, roles, permissions }`
   */
  publicUser?: (user: WsAuthUser, granted: { permissions: string[] }) => unknown | Promise<unknown>
  /** Send `connection_established` on success. @default true */
  established?: boolean
  /** Override codes, reasons or HTTP statuses of the close-code table, by failure class. */
  closeCodes?: CloseCodeOverrides
  /** Called after each successful authentication (audit sinks, metrics). Errors are logged, not thrown. */
  onAuthSuccess?: (attempt: AuthAttempt, request: FastifyRequest) => void | Promise<void>
  /** Called after each failed authentication. Errors are logged, not thrown. */
  onAuthFailure?: (attempt: AuthAttempt, request: FastifyRequest) => void | Promise<void>
  /** Options passed to `@fastify/websocket` when this plugin registers it. */
  websocket?: WebsocketPluginOptions
  /** Send `{"type":"token_expiring"}` this many ms before the token's `exp`. @default off */
  expiryWarning?: number
  /** Call `loadUser` again on this period (one timer for all sockets); a user now missing closes with 4002. @default off */
  revalidateInterval?: number
  /** Open sessions allowed per user id; one more closes with 4029 (HTTP 429 with `reject: 'http'`). @default off */
  maxConnectionsPerUser?: number
  /** Over `maxConnectionsPerUser`: refuse the new connection, or close the user's oldest one. @default 'reject' */
  onLimit?: 'reject' | 'evict-oldest'
  /** Sessions end with 4010 after this many ms (any length: longer than setTimeout's 2^31-1 ms works). @default off */
  maxLifetime?: number
  /** Protocol-level ping period in ms; a socket that missed a pong is terminated. `false` turns it off. @default 30000 */
  heartbeatInterval?: number | false
  /** Answer `{"type":"ping"}` with `{"type":"pong","timestamp"}` (consumed by the plugin). @default false */
  appPing?: boolean
  /** How long a revocation without `exp` is kept, in ms: the longest lifetime of your tokens. @default 86400000 (24 h) */
  maxTokenLifetime?: number
  /** A cluster adapter (`redisAdapter()` from `fastify-ws-auth/redis`): registry calls, limits and revocations span instances. */
  adapter?: ClusterAdapter
  /**
   * Prometheus metrics (`ws_auth_*`) through prom-client, an optional peer: `true` for
   * prom-client's default registry, or `{ registry, prefix }`. See docs/observability.md. @default off
   */
  metrics?: boolean | WsAuthMetricsOptions
  /**
   * OpenTelemetry spans (`ws.auth.handshake`, `ws.auth.refresh`) through `@opentelemetry/api`, an
   * optional peer: on when it is installed and a tracer provider records; `false` turns them off,
   * `{ userId: true }` adds `enduser.id`. @default on when `@opentelemetry/api` is installed
   */
  traces?: boolean | WsAuthTracesOptions
}

/** A prom-client `Registry`, as the plugin uses it. */
export interface MetricsRegistry {
  registerMetric (metric: unknown): void
  getSingleMetric (name: string): unknown
}

/** The `metrics` option as an object. */
export interface WsAuthMetricsOptions {
  /** The registry to register the metrics on (`fastify-metrics` can share it). @default prom-client's default registry */
  registry?: MetricsRegistry
  /** The start of every metric name. @default 'ws_auth_' */
  prefix?: string
}

/** The `traces` option as an object. */
export interface WsAuthTracesOptions {
  /** Add the user's id as `enduser.id` to spans (personal data: off unless asked). @default false */
  userId?: boolean
}

/** Route-level `wsAuth`: `false` opts out, `true` (or absent) requires a valid token. */
export type WsAuthRouteSetting = boolean | WsAuthRouteOptions

// The registry: `fastify.wsAuth`.

/** A user id as the registry keys it: the `id` of the loaded user. */
export type UserId = string | number

/** Which sessions a broadcast reaches: all of the named criteria must hold, or a predicate on the user. */
export interface BroadcastFilter {
  /** The user has at least one of these roles. */
  roles?: readonly string[]
  /** The user has all of these permissions (after `rolePermissions` expansion). */
  permissions?: readonly string[]
  /** The route URL pattern, exactly as declared (e.g. `/ws/entries/:id`). */
  route?: string
  /** Route parameters the connection was opened with, e.g. `{ station_id: '3' }` (all must match). */
  params?: Readonly<Record<string, string>>
  /** A predicate on the user and the connection. Cannot cross processes: with a cluster adapter it applies locally only. */
  user?: BroadcastPredicate
}

/** What a broadcast predicate sees of a connection besides its user. */
export interface ConnectionFacts {
  clientId: string
  route: string
  params: Readonly<Record<string, string>>
}

/** A broadcast predicate: `true` to send to this connection. */
export type BroadcastPredicate = (user: WsAuthUser, connection: ConnectionFacts) => boolean

/** One live session, as `connections()` reports it. */
export interface ConnectionInfo {
  clientId: string
  userId: UserId | undefined
  /** The route URL pattern. */
  route: string
  /** ISO time of the upgrade. */
  connectedAt: string
  /** ISO time of the token's `exp`, or `null`. */
  expiresAt: string | null
}

/** Counters since the plugin started, and what is live now. */
export interface WsAuthStats {
  /** Established sessions open now. */
  active: number
  /** Handshakes still authenticating: upgrade requests whose checks have not answered yet, and sockets upgraded and waiting. */
  authenticating: number
  /** Distinct users with an open session. */
  users: number
  /** Upgrade requests that reached a protected route. */
  attempts: number
  /** Sessions established. */
  established: number
  /** Refused handshakes and refreshes, by close code. */
  failures: Record<number, number>
  /** Established sessions the plugin closed (expiry, lifetime, eviction, revalidation...), by close code. */
  ended: Record<number, number>
  /** Revocation entries kept (until their tokens' expiry). */
  revocations: number
  /** Refused messages and subscriptions, by code. */
  refused: Record<number, number>
  /** (socket, topic) subscriptions held now. */
  subscriptions: number
}

/** A subscriber of a topic, as `subscribers()` reports it. */
export interface SubscriberInfo {
  clientId: string
  userId: UserId | undefined
}

/** `subscribers(topic, { cluster: true })`: each entry names its instance. */
export interface ClusterSubscriberInfo extends SubscriberInfo {
  instanceId: string
}

/** What to close a disconnected user's sockets with. */
export interface DisconnectOptions {
  code?: number
  reason?: string
}

/** A count: a number in one process; a promise of the cluster-wide sum with a cluster adapter. */
export type Count = number | Promise<number>

/**
 * `fastify.wsAuth`: reach, inspect or disconnect the users of live sessions, and revoke tokens.
 * With a cluster adapter every call spans all instances and returns a promise; `await` works in
 * both modes.
 */
export interface WsAuthDecorator {
  /** Sends to every open session of a user (objects are JSON-encoded); returns the sockets reached. */
  sendToUser (userId: UserId, data: unknown): Count
  /**
   * Sends to every open session matching the filter (all when none); returns the sockets reached.
   * A predicate (a function, or `filter.user`) applies to this instance's sessions only.
   */
  broadcast (data: unknown, filter?: BroadcastFilter | BroadcastPredicate): Count
  /**
   * Closes every open session of a user, by default with 4001 `Token revoked` (logout everywhere);
   * returns the sockets closed. The client may reconnect with the same token: `revoke` it too.
   */
  disconnectUser (userId: UserId, options?: DisconnectOptions): Count
  /**
   * Revokes a token (`{ jti }`) or every token of a user issued before a time (`{ userId, issuedBefore? }`,
   * default now): live sockets holding one close with 4001 `Token revoked`, and the tokens are
   * refused at handshake and refresh until their `exp` (or `maxTokenLifetime`). Returns the sockets closed.
   */
  revoke (target: RevokeTarget): Count
  /** The open sessions, of one user or of all; `{ cluster: true }` asks every instance. */
  connections (userId?: UserId): ConnectionInfo[]
  connections (userId: UserId | undefined, options: { cluster: true }): Promise<ClusterConnectionInfo[]>
  /** Counters and live counts of this instance; `{ cluster: true }` sums every instance. */
  stats (): WsAuthStats
  stats (options: { cluster: true }): Promise<ClusterStats>
  /**
   * Sends `{"type":"publication","topic","data"}` to every socket subscribed to that exact topic
   * (data JSON-encoded once); returns the sockets reached.
   */
  publish (topic: string, data: unknown): Count
  /**
   * Subscribes a socket of a protected route to a topic, with no policy check (streams bound to
   * their URL); the client gets `{"type":"subscribed","topic"}`. Returns whether the socket holds it.
   */
  subscribe (socket: WebSocket, topic: string): boolean
  /**
   * Ends a socket's subscription (the client gets `unsubscribed`), or every subscription of a user
   * to the topic, on every instance (with code 4003 `Forbidden`). Returns the sockets it ended.
   */
  unsubscribe (socket: WebSocket, topic: string): boolean
  unsubscribe (target: { userId: UserId }, topic: string): Count
  /** The subscribers of a topic on this instance; `{ cluster: true }` asks every instance. */
  subscribers (topic: string): SubscriberInfo[]
  subscribers (topic: string, options: { cluster: true }): Promise<ClusterSubscriberInfo[]>
  /**
   * Issues a one-time connection ticket for the `ticket` source: an opaque string (144 random
   * bits, base64url) that opens one socket, once, within `ttl`. `claims` is what `loadUser`
   * receives at the handshake (typically `request.user` of the HTTP request that asked); their
   * `exp` (seconds), if any, is the session's expiry. With a cluster adapter, any instance redeems it.
   */
  issueTicket (claims: object, options?: IssueTicketOptions): Promise<string>
  /** The close-code table in force (with the `closeCodes` overrides applied). */
  readonly closeCodes: CloseCodeTable
}

/** Options of `issueTicket()`. */
export interface IssueTicketOptions {
  /** How long the ticket can be redeemed, in ms (at most 600000). @default 30000 */
  ttl?: number
  /** The route pattern (as declared, e.g. `/ws/entries/:id`) the ticket opens; any route reading tickets when absent. */
  route?: string
}

// Revocation.

/** What `revoke()` takes: a token id, or every token of a user issued before a time. */
export type RevokeTarget =
  | { jti: string, exp?: number | Date }
  | { userId: UserId, issuedBefore?: Date, exp?: number | Date }

/**
 * A stored revocation, as it travels between instances: plain JSON numbers.
 * `issuedBefore` is in seconds (a token whose `iat` is earlier is revoked); `expiresAt` is in ms.
 */
export type RevocationEntry =
  | { jti: string, expiresAt: number }
  | { userId: UserId, issuedBefore: number, expiresAt: number }

// The cluster contract: what an adapter implements and what it sees of an instance.

/**
 * A registry call as it travels between instances. Data is pre-encoded once by the caller:
 * text as is, binary as base64 with `binary: true`. Predicate filters cannot travel.
 */
export type ClusterCommand =
  | { op: 'sendToUser', userId: UserId, data: string, binary?: boolean }
  | { op: 'broadcast', data: string, binary?: boolean, filter?: { roles?: string[], permissions?: string[], route?: string, params?: Record<string, string> } }
  | { op: 'disconnectUser', userId: UserId, code?: number, reason?: string }
  | { op: 'revoke', entry: RevocationEntry }
  | { op: 'closeClient', clientId: string, failure: FailureClass }
  | { op: 'publish', topic: string, frame: string }
  | { op: 'unsubscribeUser', userId: UserId, topic: string }

/** An open session holding a connection slot, as an adapter re-registers it. */
export interface Slot {
  userId: UserId
  clientId: string
  /** ms since the epoch. */
  connectedAt: number
}

/** `connections()` across instances: each entry names its instance. */
export interface ClusterConnectionInfo extends ConnectionInfo {
  instanceId: string
}

/** `stats({ cluster: true })`: the sum over the instances that answered, and each one's own. */
export interface ClusterStats extends WsAuthStats {
  instances: Record<string, WsAuthStats>
}

/** What an adapter sees of the instance it runs in. */
export interface ClusterNode {
  /** Unique per process and start. */
  readonly instanceId: string
  readonly log: FastifyBaseLogger
  /** Runs a command on this instance's sockets; returns how many it reached (or closed). */
  execute (command: ClusterCommand): number
  /** Open sessions holding a slot, to re-register after the store lost them (a Redis restart). */
  slots (): Slot[]
  connections (userId?: UserId): ConnectionInfo[]
  /** The subscribers of a topic on this instance. */
  subscribers (topic: string): SubscriberInfo[]
  stats (): WsAuthStats
  /** Stores revocations locally without closing anything (loading them at start). */
  addRevocations (entries: RevocationEntry[]): void
  /** Reports how long a request of the adapter to its store took (the `cluster_request_seconds` metric). */
  clusterRequest? (op: 'acquire' | 'fanout' | 'ticket', seconds: number): void
  /** Reports a fan-out that ended at its timeout without every instance's answer. */
  fanoutTimedOut? (): void
}

/** The answer to a slot request under `maxConnectionsPerUser`. */
export interface AcquireResult {
  ok: boolean
  /** With `onLimit: 'evict-oldest'`: the clients (on any instance) to close to make room. */
  evict?: string[]
  /**
   * With `ok: false`: the limit could not be checked (the store is unreachable and the adapter
   * fails closed), so the session closes with 1013 `Try again later` instead of 4029.
   */
  unavailable?: boolean
}

/**
 * A cluster adapter makes the registry and revocations span several instances (see
 * `fastify-ws-auth/redis`). The plugin calls `start` at ready and `close` at shutdown; between
 * them, every call that fans out returns the count summed over the instances that answered.
 * Authentication itself never waits on the adapter, except for the slot of a limited user.
 */
export interface ClusterAdapter {
  start (node: ClusterNode): Promise<void>
  close (): Promise<void>
  /** Atomically takes a slot for a new session under `limit` (with `mode` applied when full). */
  acquire (slot: Slot, limit: number, mode: 'reject' | 'evict-oldest'): Promise<AcquireResult>
  /** Gives a slot back (the session closed). Never throws. */
  release (slot: Slot): void
  /** Runs a command on every instance, this one included. */
  publish (command: ClusterCommand): Promise<number>
  /** Stores a revocation (instances that start later refuse the token too), then publishes it. */
  revoke (entry: RevocationEntry): Promise<number>
  connections (userId?: UserId): Promise<ClusterConnectionInfo[]>
  /** The subscribers of a topic on every instance. Optional: without it, `subscribers(topic, { cluster: true })` rejects. */
  subscribers? (topic: string): Promise<ClusterSubscriberInfo[]>
  /**
   * Stores a ticket's record under `key` (a hash of the ticket, never the ticket) for `ttl` ms.
   * Optional, with `takeTicket`: without them, `issueTicket()` rejects (a ticket must be redeemable on any instance).
   */
  putTicket? (key: string, record: string, ttl: number): Promise<void>
  /** Whether the adapter reaches its store now (the `cluster_up` metric). Optional. */
  isUp? (): boolean
  /** Removes and returns a ticket's record, atomically (two instances never both get it); `null` when absent. */
  takeTicket? (key: string): Promise<string | null>
  stats (): Promise<ClusterStats>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** fastify-ws-auth's registry: reach, inspect or disconnect the users of live sessions. */
    wsAuth: WsAuthDecorator
  }
  interface RouteShorthandOptions<
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    RawServer extends RawServerBase = RawServerDefault
  > {
    /**
     * fastify-ws-auth requirements for this websocket route: `false` opts out, `true` (the
     * default once the plugin is registered) requires a valid token, an object adds requirements.
     */
    wsAuth?: WsAuthRouteSetting
  }
}

declare module 'ws' {
  interface WebSocket {
    /** The authenticated user, set by fastify-ws-auth before the route handler runs. */
    user?: WsAuthUser
  }
}
