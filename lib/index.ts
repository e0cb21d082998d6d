import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyBaseLogger, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import type { WebSocket, WebSocketServer } from 'ws'
import { authenticate, isThenable, type Outcome, type Verifier } from './authenticate.ts'
import { CookiePluginMissingError, InvalidRouteOptionError, UnguardedRouteError } from './errors.ts'
import { Host } from './host.ts'
import { buildConfig, buildRoutePolicy, type Config, type RoutePolicy } from './options.ts'
import { buildReqSerializer, redactRequestLogs, redactUrl } from './redact.ts'
import { Session, type Handoff } from './session.ts'
import { findToken, selectProtocol, type FoundToken, type ProtocolHandler } from './sources.ts'
import { jwtVerifier } from './jwt.ts'
import { releaseHead } from './lean-sockets.ts'
import type { WsAuthPluginOptions, WsAuthRouteSetting } from './types.ts'
import { buildDecorator } from './decorator.ts'

/** Set on the raw request by the route hook: what the socket should do once upgraded. */
const kPending = Symbol.for('fastify-ws-auth.pending')
/** Marks a WebSocketServer whose upgrades this plugin already guards. */
const kGuarded = Symbol.for('fastify-ws-auth.guarded')
/**
 * Set on every raw upgrade request of an HTTP server the plugin serves (the logger to warn with):
 * such an upgrade is refused by any WebSocketServer the plugin does not guard.
 */
const kUpgradeOf = Symbol.for('fastify-ws-auth.upgrade-of')
/** Marks the WebSocketServer prototype whose `handleUpgrade` refuses upgrades nobody guarded. */
const kFailClosed = Symbol.for('fastify-ws-auth.fail-closed')
/** Marks the plugin's route hooks with the instance that added them. */
const kOwner = Symbol.for('fastify-ws-auth.owner')

interface Pending {
  request: FastifyRequest
  policy: RoutePolicy
  host: Host
  /** `undefined` while the token is still to come in the first message. */
  outcome: Outcome | undefined
}
/** Marks an upgrade to a route with `wsAuth: false`. */
const OPTED_OUT = Object.freeze({ optedOut: true })

type RawRequest = IncomingMessage & { [kPending]?: Pending | typeof OPTED_OUT, [kUpgradeOf]?: FastifyBaseLogger | null }
type WebsocketRoute = RouteOptions & { wsAuth?: WsAuthRouteSetting, websocket?: boolean, wsHandler?: unknown }
type RouteHook = ((...args: never[]) => unknown) & { [kOwner]?: FastifyInstance }
/** What an upgrade refused before the route hook answered gets: the row of `auth_timeout`. */
const TIMED_OUT: Outcome = Object.freeze({ ok: false, failure: 'auth_timeout' })

const wsAuthPlugin: FastifyPluginAsync<WsAuthPluginOptions> = async function fastifyWsAuth (fastify, opts) {
  const config = buildConfig(opts)
  const host = new Host(config, fastify.log)
  // Every request line of the app's logger, 404s included; else a serializer per protected route.
  const serializeRequest = redactRequestLogs(fastify.log, config.queryParam) ? null : buildReqSerializer(config.queryParam)
  let usesCookie = config.sources.includes('cookie')

  if (usesCookie && config.originAllowed === null) {
    fastify.log.warn('fastify-ws-auth: the "cookie" source is enabled without "allowedOrigins": any web page can open an authenticated socket with the user\'s cookie (cross-site WebSocket hijacking)')
  }
  if (!fastify.hasRequestDecorator('user')) fastify.decorateRequest('user', null as never)
  // A token sent to a path with no route would reach the 404 handler's log line and its answer.
  fastify.addHook('onRequest', function redactNotFound (request, _reply, done) {
    if (request.is404 && request.raw.url !== undefined && request.raw.url.includes('?')) {
      request.raw.url = redactUrl(request.raw.url, config.queryParam)
    }
    done()
  })
  fastify.decorate('wsAuth', buildDecorator(host))

  fastify.addHook('onRoute', function onRoute (route: WebsocketRoute) {
    const isWebsocket = route.websocket === true || route.wsHandler !== undefined
    if (!isWebsocket) {
      if (route.wsAuth !== undefined && route.method !== 'HEAD') {
        throw new InvalidRouteOptionError(route.url, 'wsAuth', 'is set on a route that is not a websocket route (add websocket: true)')
      }
      return
    }
    // Fastify adds a HEAD twin of every GET route; it cannot be upgraded.
    if (route.method === 'HEAD') return
    const hooks = toArray(route.preValidation as RouteHook | RouteHook[] | undefined)
    // With the plugin registered in nested scopes, the innermost instance governs the route alone.
    if (hooks.some(hook => hook[kOwner] !== undefined && hook[kOwner] !== fastify && isAncestor(fastify, hook[kOwner]))) return
    const policy = buildRoutePolicy(config, route.url, route.wsAuth)
    const guard: RouteHook = policy === null ? markOptedOut : guardRoute(policy)
    guard[kOwner] = fastify
    route.preValidation = [guard, ...hooks.filter(hook => hook[kOwner] === undefined)] as RouteOptions['preValidation']
    if (policy === null) return
    if (policy.requestSources.includes('cookie')) usesCookie = true
    if (serializeRequest === null) return
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
  failClosed(fastify.websocketServer, fastify.server, fastify.log)
  scrubClientErrors(fastify.server)

  const timers: NodeJS.Timeout[] = []
  fastify.addHook('onReady', async function start () {
    if (usesCookie && !fastify.hasRequestDecorator('cookies')) throw new CookiePluginMissingError()
    host.verifier = config.verify === undefined ? jwtVerifier(fastify) : config.verify as Verifier
    if (config.heartbeatInterval !== null) timers.push(setInterval(() => host.registry.heartbeat(), config.heartbeatInterval).unref())
    if (config.revalidateInterval !== null) timers.push(setInterval(() => { host.revalidate() }, config.revalidateInterval).unref())
    timers.push(setInterval(() => host.revocations.sweep(), 60_000).unref())
    if (config.adapter !== null) await config.adapter.start(host)
    // Added once Fastify has added its own close handler: onClose handlers run last-added first,
    // so this one runs before every preClose hook, and sockets see 1001 whatever the order of
    // registration (@fastify/websocket's preClose closes them without a code).
    fastify.addHook('onClose', async function goingAway () {
      for (const timer of timers) clearInterval(timer)
      host.registry.closeAll('going_away')
      host.deadlines.stop()
      if (config.adapter !== null) await config.adapter.close()
    })
  })

  function markOptedOut (request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
    if (request.ws) (request.raw as RawRequest)[kPending] = OPTED_OUT
    done()
  }

  function guardRoute (policy: RoutePolicy) {
    // Callback style, so that a handshake whose checks all answer synchronously costs no promise.
    return function wsAuthGuard (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
      if (!request.ws) return done()
      host.registry.attempts++
      const found = findToken(request, policy.requestSources, config)
      const token = found?.token
      let outcome: Outcome | Promise<Outcome | undefined> | undefined
      try {
        const origin = request.headers.origin
        const allowed = config.originAllowed === null || origin === undefined ? true : config.originAllowed(origin, request)
        outcome = isThenable(allowed)
          ? Promise.resolve(allowed).then(ok => afterOrigin(ok, request, policy, found), (error: unknown): Outcome | undefined => ({ ok: false, failure: 'internal_error', error }))
          : afterOrigin(allowed, request, policy, found)
      } catch (error) {
        outcome = { ok: false, failure: 'internal_error', error }
      }
      if (outcome instanceof Promise) {
        host.registry.upgrading++
        within(outcome, policy.authTimeout).then(settled => {
          host.registry.upgrading--
          decide(settled, request, reply, policy, token, done)
        })
      } else {
        decide(outcome, request, reply, policy, token, done)
      }
    }
  }

  /** After the Origin check: authenticate the token from the request, or wait for the auth message. */
  function afterOrigin (allowed: unknown, request: FastifyRequest, policy: RoutePolicy, found: FoundToken | undefined): Outcome | Promise<Outcome | undefined> | undefined {
    if (allowed !== true) return { ok: false, failure: 'forbidden' }
    if (found !== undefined) return authenticate(found.token, request, policy, host)
    return policy.awaitsMessage ? undefined : { ok: false, failure: 'no_token' }
  }

  /** Leaves the verdict for the upgrade, or answers over HTTP with `reject: 'http'`. */
  function decide (outcome: Outcome | undefined, request: FastifyRequest, reply: FastifyReply, policy: RoutePolicy, token: string | undefined, done: () => void): void {
    if (policy.reject === 'http' && outcome !== undefined) {
      const refusal = !outcome.ok ? outcome : host.atLimit(outcome.user) ? { ok: false as const, failure: 'too_many_connections' as const } : undefined
      if (refusal !== undefined) {
        // An answer from a hook ends the request: done() is not called.
        host.refuseHttp(request, reply, policy, refusal, token)
        return
      }
    }
    // A refusal is logged now, before the upgrade: a client that vanishes meanwhile is still on record.
    if (outcome !== undefined && !outcome.ok) host.logFailure(request, policy, outcome, token)
    ;(request.raw as RawRequest)[kPending] = { request, policy, host, outcome }
    done()
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
    // The 101 and connection_established (or the close frame) leave in one write; the socket is
    // uncorked before the route handler runs, so nothing the handler does can hold them back.
    socket.cork()
    const handoff: Handoff = (ws) => {
      socket.uncork()
      callback(ws)
    }
    try {
      handleUpgrade.call(this, req, socket, head, (ws: WebSocket) => {
        releaseHead(req, head)
        const session = new Session(ws, request, policy, host, handoff)
        if (outcome === undefined) session.awaitAuthMessage()
        else if (outcome.ok) session.admit(outcome)
        else session.close(outcome.failure)
        // Most sessions are established or refused by now; the registry keeps the others until they are.
        if (session.isAlive && !session.isOpen) host.registry.track(session)
      })
    } finally {
      socket.uncork()
    }
  } as unknown as typeof wss.handleUpgrade

  // ws reads handleProtocols from its options at each upgrade: never answer with a token entry.
  const options = wss.options as { handleProtocols?: ProtocolHandler }
  const appHandler = typeof options.handleProtocols === 'function' ? options.handleProtocols : undefined
  options.handleProtocols = (offered, request) =>
    selectProtocol(offered, request, config.protocolPrefix, config.protocolTokenPrefix, appHandler)
}

const kScrubbing = Symbol.for('fastify-ws-auth.scrubbing')

/**
 * Node attaches the raw request bytes to a client error (`err.rawPacket`, e.g. for a 431 on an
 * oversized URL) and Fastify logs the error at trace level: those bytes carry the URL token.
 * A listener placed before Fastify's drops them from the error first.
 */
function scrubClientErrors (server: FastifyInstance['server'] & { [kScrubbing]?: true }): void {
  if (server[kScrubbing] === true) return
  server[kScrubbing] = true
  server.prependListener('clientError', (err: Error & { rawPacket?: unknown }) => {
    if (err.rawPacket !== undefined) delete err.rawPacket
  })
}

/**
 * Makes every WebSocketServer of the app fail closed, not only the one the plugin guards: a second
 * @fastify/websocket (in a sibling scope, or in a child scope registered before the plugin) has its
 * own WebSocketServer, whose routes the plugin never saw. The app's upgrade requests are marked as
 * they arrive; a WebSocketServer of the same `ws` that the plugin does not guard refuses a marked
 * request (HTTP 500 and a warning naming the route) instead of upgrading it.
 */
function failClosed (wss: WebSocketServer, server: FastifyInstance['server'] & { [kUpgradeOf]?: true }, log: FastifyBaseLogger): void {
  if (server[kUpgradeOf] !== true) {
    server[kUpgradeOf] = true
    server.prependListener('upgrade', (req: RawRequest) => { req[kUpgradeOf] = log })
  }
  const proto = Object.getPrototypeOf(wss) as WebSocketServer & { [kFailClosed]?: true }
  if (proto[kFailClosed] === true) return
  proto[kFailClosed] = true
  const handleUpgrade = proto.handleUpgrade as unknown as (this: WebSocketServer, req: RawRequest, ...rest: unknown[]) => void
  proto.handleUpgrade = function unguardedUpgrade (this: WebSocketServer, req: RawRequest, socket: Duplex, ...rest: unknown[]) {
    const appLog = req[kUpgradeOf]
    if (appLog === undefined || appLog === null || (this as { [kGuarded]?: true })[kGuarded] === true) return handleUpgrade.call(this, req, socket, ...rest)
    refuseUnguarded(req, socket, appLog)
  } as unknown as typeof proto.handleUpgrade
}

/** Resolves with the outcome, or with `auth_timeout` once `ms` have passed without one. */
function within (outcome: Promise<Outcome | undefined>, ms: number): Promise<Outcome | undefined> {
  return new Promise(resolve => {
    const timer = setTimeout(resolve, ms, TIMED_OUT)
    outcome.then(settled => {
      clearTimeout(timer)
      resolve(settled)
    })
  })
}

/** Whether `ancestor` is an enclosing scope of `scope` (Fastify makes each scope from its parent). */
function isAncestor (ancestor: object, scope: object): boolean {
  return Object.prototype.isPrototypeOf.call(ancestor, scope)
}

function refuseUnguarded (req: RawRequest, socket: Duplex, log: FastifyBaseLogger): void {
  // Two @fastify/websocket on one server route each upgrade twice: refuse (and warn) once.
  if (req[kUpgradeOf] === null) return
  req[kUpgradeOf] = null
  // A warning, not an error: a client asking to upgrade a plain HTTP route lands here too.
  log.warn({ err: new UnguardedRouteError(req.url?.split('?')[0] ?? '') }, 'fastify-ws-auth: refused an unguarded WebSocket upgrade')
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
  InvalidOptionError, InvalidRouteOptionError, InvalidArgumentError, NoVerifierError, CookiePluginMissingError,
  UnguardedRouteError, InvalidTokenError, TokenExpiredError
} from './errors.ts'
export { defaultLoadUser } from './options.ts'
export { tokenShapeProblem, claimsProblem } from './token-shape.ts'
export type { BroadcastFilter, BroadcastPredicate, ConnectionFacts, ConnectionInfo, DisconnectOptions, WsAuthStats, UserId } from './registry.ts'
export type { WsAuthDecorator, Count } from './decorator.ts'
export type { RevokeTarget, RevocationEntry } from './revocation.ts'
export type { ClusterAdapter, ClusterNode, ClusterCommand, Slot, AcquireResult, ClusterConnectionInfo, ClusterStats } from './adapter.ts'
export type * from './types.ts'
