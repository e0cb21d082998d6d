import type { FastifyJWT } from '@fastify/jwt'
import type { FastifyRequest, RawServerBase, RawServerDefault } from 'fastify'
import type { WebsocketPluginOptions } from '@fastify/websocket'
import type { CloseCodeOverrides, FailureClass } from './close-codes.ts'
import type { WsAuthDecorator } from './decorator.ts'
import type { ClusterAdapter } from './adapter.ts'

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

/** Where a token may come from, tried in the order given. */
export type TokenSource = 'query' | 'header' | 'cookie' | 'protocol' | 'message'

/** How a refused handshake is answered. */
export type RejectMode = 'close' | 'http'

/** `authorize` verdict: allow, forbid (4003) or hide the resource (4004). */
export type AuthorizeResult = boolean | 'not_found'

/** Resource ownership check; sees `request.params`. */
export type AuthorizeFn = (request: FastifyRequest, user: WsAuthUser) => AuthorizeResult | Promise<AuthorizeResult>

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
  /** Which source the token came from. */
  source?: TokenSource
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
}

/** Route-level `wsAuth`: `false` opts out, `true` (or absent) requires a valid token. */
export type WsAuthRouteSetting = boolean | WsAuthRouteOptions

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
