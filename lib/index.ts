import { STATUS_CODES } from 'node:http'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyBaseLogger, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import type { WebSocket, WebSocketServer } from 'ws'
import { authenticate, idOf, type Outcome, type Verifier } from './authenticate.ts'
import type { FailureClass } from './close-codes.ts'
import { CookiePluginMissingError, InvalidRouteOptionError, NoVerifierError, UnguardedRouteError } from './errors.ts'
import { buildConfig, buildRoutePolicy, type Config, type RoutePolicy } from './options.ts'
import { buildReqSerializer, scrubError } from './redact.ts'
import { Session, type Handoff, type SessionHost } from './session.ts'
import { findToken, selectProtocol, type ProtocolHandler } from './sources.ts'
import type { AuthAttempt, WsAuthPluginOptions, WsAuthRouteSetting, WsAuthUser } from './types.ts'

/** Set on the raw request by the route hook: what the socket should do once upgraded. */
const kPending = Symbol.for('fastify-ws-auth.pending')
/** Marks a WebSocketServer whose upgrades this plugin already guards. */
const kGuarded = Symbol.for('fastify-ws-auth.guarded')

interface Pending {
  request: FastifyRequest
  policy: RoutePolicy
  host: Host
  /** `undefined` while the token is still to come in the first message. */
  outcome: Outcome | undefined
}
/** Marks an upgrade to a route with `wsAuth: false`. */
const OPTED_OUT = Object.freeze({ optedOut: true })

type RawRequest = IncomingMessage & { [kPending]?: Pending | typeof OPTED_OUT }
type Failure = Extract<Outcome, { ok: false }>

const wsAuthPlugin: FastifyPluginAsync<WsAuthPluginOptions> = async function fastifyWsAuth (fastify, opts) {
  const config = buildConfig(opts)
  const host = new Host(config)
  const serializeRequest = buildReqSerializer(config.queryParam)
  let usesCookie = config.sources.includes('cookie')

  if (usesCookie && config.originAllowed === null) {
    fastify.log.warn('fastify-ws-auth: the "cookie" source is enabled without "allowedOrigins": any web page can open an authenticated socket with the user\'s cookie (cross-site WebSocket hijacking)')
  }
  if (!fastify.hasRequestDecorator('user')) fastify.decorateRequest('user', null as unknown as string)

  fastify.addHook('onRoute', function onRoute (route: RouteOptions & { wsAuth?: WsAuthRouteSetting, websocket?: boolean, wsHandler?: unknown }) {
    const isWebsocket = route.websocket === true || route.wsHandler !== undefined
    if (!isWebsocket) {
      if (route.wsAuth !== undefined && route.method !== 'HEAD') {
        throw new InvalidRouteOptionError(route.url, '', 'is set on a route that is not a websocket route (add websocket: true)')
      }
      return
    }
    // Fastify adds a HEAD twin of every GET route; it cannot be upgraded.
    if (route.method === 'HEAD') return
    const policy = buildRoutePolicy(config, route.url, route.wsAuth)
    const hook = policy === null ? markOptedOut : guardRoute(policy)
    route.preValidation = [hook, ...toArray(route.preValidation)]
    if (policy === null) return
    if (policy.requestSources.includes('cookie')) usesCookie = true
    // Fastify's own `incoming request` line is written before any hook: redact its URL.
    if (route.logSerializers) route.logSerializers.req = serializeRequest
    else route.logSerializers = { req: serializeRequest }
  })

  if (fastify.hasDecorator('websocketServer')) {
    if (config.websocket !== undefined) {
      fastify.log.warn('fastify-ws-auth: option "websocket" is ignored: @fastify/websocket was registered before fastify-ws-auth')
    }
  } else {
    await fastify.register(websocket, config.websocket ?? {})
  }
  guardServer(fastify.websocketServer, config, fastify.log)

  fastify.addHook('onReady', async function checkDependencies () {
    if (usesCookie && !fastify.hasRequestDecorator('cookies')) throw new CookiePluginMissingError()
    if (config.verify !== undefined) {
      host.verifier = config.verify as Verifier
      return
    }
    const jwt = (fastify as FastifyInstance & { jwt?: { verify?: (token: string) => unknown } }).jwt
    if (typeof jwt?.verify !== 'function') throw new NoVerifierError()
    // The verifier @fastify/jwt built once at registration, with its cache if configured.
    host.verifier = (token) => jwt.verify!(token)
  })

  function markOptedOut (request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
    if (request.ws) (request.raw as RawRequest)[kPending] = OPTED_OUT
    done()
  }

  function guardRoute (policy: RoutePolicy) {
    return async function wsAuthGuard (request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
      if (!request.ws) return
      const raw = request.raw as RawRequest
      let outcome: Outcome | undefined
      let token: string | undefined
      try {
        const origin = request.headers.origin
        if (config.originAllowed !== null && origin !== undefined && !config.originAllowed(origin, request)) {
          outcome = { ok: false, failure: 'forbidden' }
        } else {
          const found = findToken(request, policy.requestSources, config)
          token = found?.token
          if (found !== undefined) outcome = await authenticate(found.token, request, policy, config, host.verifier)
          else if (!policy.awaitsMessage) outcome = { ok: false, failure: 'no_token' }
        }
      } catch (error) {
        outcome = { ok: false, failure: 'internal_error', error }
      }
      if (outcome !== undefined && !outcome.ok && policy.reject === 'http') {
        return host.refuseHttp(request, reply, policy, outcome, token)
      }
      if (outcome?.ok === true) request.user = outcome.user as typeof request.user
      raw[kPending] = { request, policy, host, outcome }
    }
  }
}

/** Everything a session needs from the plugin: the table, limits, logging and audit hooks. */
class Host implements SessionHost {
  readonly maxAuthMessageBytes: number
  readonly maxPendingMessages: number
  readonly maxPendingBytes: number
  verifier: Verifier = () => { throw new NoVerifierError() }

  constructor (private readonly config: Config) {
    this.maxAuthMessageBytes = config.maxAuthMessageBytes
    this.maxPendingMessages = config.maxPendingMessages
    this.maxPendingBytes = config.maxPendingBytes
  }

  entry (failure: FailureClass) {
    return this.config.table[failure]
  }

  publicUser (user: WsAuthUser): unknown {
    return this.config.publicUser(user)
  }

  authenticateMessage (token: string, request: FastifyRequest, policy: RoutePolicy): Promise<Outcome> {
    return authenticate(token, request, policy, this.config, this.verifier)
  }

  failed (request: FastifyRequest, policy: RoutePolicy, outcome: Failure, token?: string, status?: number): void {
    const attempt: AuthAttempt = {
      route: policy.url,
      ip: request.ip,
      failure: outcome.failure,
      code: this.config.table[outcome.failure].code,
      userId: outcome.userId
    }
    if (status !== undefined) attempt.status = status
    if (outcome.failure === 'internal_error') {
      request.log.error({ ...attempt, err: scrubError(outcome.error, token) }, 'websocket authentication error')
    } else {
      request.log.warn(attempt, 'websocket authentication failed')
    }
    this.audit(this.config.onAuthFailure, attempt, request)
  }

  succeeded (request: FastifyRequest, policy: RoutePolicy, session: Session): void {
    const attempt: AuthAttempt = {
      route: policy.url,
      ip: request.ip,
      userId: session.user === undefined ? undefined : idOf(session.user),
      clientId: session.clientId
    }
    request.log.info(attempt, 'websocket authenticated')
    this.audit(this.config.onAuthSuccess, attempt, request)
  }

  refuseHttp (request: FastifyRequest, reply: FastifyReply, policy: RoutePolicy, outcome: Failure, token: string | undefined): FastifyReply {
    const entry = this.config.table[outcome.failure]
    const status = entry.status ?? 401
    this.failed(request, policy, outcome, token, status)
    return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status], message: entry.reason, failure: outcome.failure })
  }

  /** Runs an audit hook; its errors are logged, never thrown into the handshake. */
  private audit (hook: WsAuthPluginOptions['onAuthSuccess'], attempt: AuthAttempt, request: FastifyRequest): void {
    if (hook === undefined) return
    const report = (err: unknown) => request.log.error({ err }, 'fastify-ws-auth: audit hook failed')
    try {
      const result = hook(attempt, request)
      if (result !== undefined && typeof (result as Promise<void>).then === 'function') (result as Promise<void>).then(undefined, report)
    } catch (err) {
      report(err)
    }
  }
}

/**
 * Takes over the upgrade of every request that reaches the WebSocketServer: the route hook has
 * left its verdict on the raw request; an upgrade without one reached a route this plugin does
 * not guard and is refused (fail closed).
 */
function guardServer (wss: WebSocketServer & { [kGuarded]?: true }, config: Config, log: FastifyBaseLogger): void {
  if (wss[kGuarded] === true) return
  wss[kGuarded] = true
  const handleUpgrade = wss.handleUpgrade as unknown as (this: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer, callback: Handoff) => void
  wss.handleUpgrade = function guardedUpgrade (this: WebSocketServer, req: RawRequest, socket: Duplex, head: Buffer, callback: Handoff) {
    const pending = req[kPending]
    if (pending === undefined) return refuseUnguarded(req, socket, log)
    req[kPending] = undefined
    if (pending === OPTED_OUT) return handleUpgrade.call(this, req, socket, head, callback)
    const { request, policy, host, outcome } = pending as Pending
    return handleUpgrade.call(this, req, socket, head, (ws: WebSocket) => {
      const session = new Session(ws, request, policy, host, callback)
      if (outcome === undefined) session.awaitAuthMessage()
      else if (outcome.ok) session.establish(outcome)
      else session.fail(outcome)
    })
  } as unknown as typeof wss.handleUpgrade

  // ws reads handleProtocols from its options at each upgrade: never answer with a token entry.
  const options = wss.options as { handleProtocols?: ProtocolHandler }
  const appHandler = typeof options.handleProtocols === 'function' ? options.handleProtocols : undefined
  options.handleProtocols = (offered, request) =>
    selectProtocol(offered, request, config.protocolPrefix, config.protocolTokenPrefix, appHandler)
}

function refuseUnguarded (req: RawRequest, socket: Duplex, log: FastifyBaseLogger): void {
  log.error({ err: new UnguardedRouteError(req.url?.split('?')[0] ?? '') }, 'fastify-ws-auth: refused an unguarded WebSocket upgrade')
  socket.end('HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
}

function toArray<T> (value: T | T[] | undefined): T[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value : [value]
}

/**
 * The plugin. Register it once, next to `@fastify/jwt`; it registers `@fastify/websocket` too when
 * the app has not. Every `websocket: true` route declared after it requires a valid token.
 */
export const fastifyWsAuth = fp(wsAuthPlugin, {
  fastify: '5.x',
  name: 'fastify-ws-auth'
})

export default fastifyWsAuth
export { closeCodes, mergeCloseCodes, entryForCode, MAX_REASON_BYTES } from './close-codes.ts'
export type { CloseCodeEntry, CloseCodeOverrides, CloseCodeTable, FailureClass, RetryAdvice } from './close-codes.ts'
export {
  InvalidOptionError, InvalidRouteOptionError, NoVerifierError, CookiePluginMissingError,
  UnguardedRouteError, InvalidTokenError, TokenExpiredError
} from './errors.ts'
export { defaultLoadUser } from './options.ts'
export type * from './types.ts'
