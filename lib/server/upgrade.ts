import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import type { WebSocket, WebSocketServer } from 'ws'
import { UnguardedRouteError } from '../errors.ts'
import type { Outcome } from './authenticate.ts'
import type { Host } from './host.ts'
import { releaseHead, replaceProtocolHandler, wrapEveryHandleUpgrade, wrapHandleUpgrade, type HandleUpgrade } from './internals.ts'
import type { Config, RoutePolicy } from './options.ts'
import { Session, type Handoff } from './session.ts'
import { selectProtocol } from './sources.ts'
import type { TokenSource } from '../types.ts'

/*
 * The upgrade guard: the route hook leaves its verdict on the raw request; the WebSocketServer
 * acts on it once the socket is upgraded, and refuses any upgrade that carries none (fail closed).
 */

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
const kScrubbing = Symbol.for('fastify-ws-auth.scrubbing')

/** The route hook's verdict on an upgrade to a protected route. */
export interface Verdict {
  request: FastifyRequest
  policy: RoutePolicy
  host: Host
  /** `undefined` while the token is still to come in the first message. */
  outcome: Outcome | undefined
  /** Where the token was found (`undefined`: none, yet). */
  source: TokenSource | undefined
}
/** Marks an upgrade to a route with `wsAuth: false`. */
const OPTED_OUT = Object.freeze({ optedOut: true })

type RawRequest = IncomingMessage & { [kPending]?: Verdict | typeof OPTED_OUT, [kUpgradeOf]?: FastifyBaseLogger | null }

/** Leaves the verdict of a protected route, or `null` for a route with `wsAuth: false`. */
export function leaveVerdict (request: FastifyRequest, verdict: Verdict | null): void {
  (request.raw as RawRequest)[kPending] = verdict ?? OPTED_OUT
}

/**
 * Takes over the upgrade of every request that reaches the plugin's WebSocketServer: the route
 * hook has left its verdict on the raw request; an upgrade without one reached a route this plugin
 * does not guard and is refused (fail closed). Never answers with a token entry as subprotocol.
 */
export function guardServer (wss: WebSocketServer & { [kGuarded]?: true }, config: Config, log: FastifyBaseLogger): void {
  if (wss[kGuarded] === true) return
  wss[kGuarded] = true
  wrapHandleUpgrade(wss, (handleUpgrade) => function guardedUpgrade (this: WebSocketServer, req: RawRequest, socket, head, callback) {
    const pending = req[kPending]
    if (pending === undefined) return refuseUnguarded(req, socket, log)
    req[kPending] = undefined
    if (pending === OPTED_OUT) return handleUpgrade.call(this, req, socket, head, callback)
    upgrade.call(this, handleUpgrade, req, socket, head, callback, pending as Verdict)
  })
  replaceProtocolHandler(wss, (app) => (offered, request) =>
    selectProtocol(offered, request, config.protocolPrefix, config.protocolTokenPrefix, app))
}

function upgrade (this: WebSocketServer, handleUpgrade: HandleUpgrade, req: RawRequest, socket: Duplex, head: Buffer, callback: Handoff, verdict: Verdict): void {
  const { request, policy, host, outcome, source } = verdict
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
      const session = new Session(ws, request, policy, host, source, handoff)
      if (outcome === undefined) session.awaitAuthMessage()
      else if (outcome.ok) session.admit(outcome)
      // Logged before the upgrade already: closed without a second line.
      else session.close(outcome.failure, false)
      // Most sessions are established or refused by now; the registry keeps the others until they are.
      if (session.isAlive && !session.isOpen) host.registry.track(session)
    })
  } finally {
    socket.uncork()
  }
}

/**
 * Makes every WebSocketServer of the app fail closed, not only the one the plugin guards: a second
 * @fastify/websocket (in a sibling scope, or in a child scope registered before the plugin) has its
 * own WebSocketServer, whose routes the plugin never saw. The app's upgrade requests are marked as
 * they arrive; a WebSocketServer of the same `ws` that the plugin does not guard refuses a marked
 * request (HTTP 500 and a warning naming the route) instead of upgrading it.
 */
export function failClosed (wss: WebSocketServer, server: FastifyInstance['server'] & { [kUpgradeOf]?: true }, log: FastifyBaseLogger): void {
  if (server[kUpgradeOf] !== true) {
    server[kUpgradeOf] = true
    server.prependListener('upgrade', (req: RawRequest) => { req[kUpgradeOf] = log })
  }
  wrapEveryHandleUpgrade(wss, kFailClosed, (handleUpgrade) => function unguardedUpgrade (this: WebSocketServer & { [kGuarded]?: true }, req: RawRequest, socket, head, callback) {
    const appLog = req[kUpgradeOf]
    if (appLog === undefined || appLog === null || this[kGuarded] === true) return handleUpgrade.call(this, req, socket, head, callback)
    refuseUnguarded(req, socket, appLog)
  })
}

function refuseUnguarded (req: RawRequest, socket: Duplex, log: FastifyBaseLogger): void {
  // Two @fastify/websocket on one server route each upgrade twice: refuse (and warn) once.
  if (req[kUpgradeOf] === null) return
  req[kUpgradeOf] = null
  // A warning, not an error: a client asking to upgrade a plain HTTP route lands here too.
  log.warn({ err: new UnguardedRouteError(req.url?.split('?')[0] ?? '') }, 'fastify-ws-auth: refused an unguarded WebSocket upgrade')
  socket.end('HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
}

/**
 * Node attaches the raw request bytes to a client error (`err.rawPacket`, e.g. for a 431 on an
 * oversized URL) and Fastify logs the error at trace level: those bytes carry the URL token.
 * A listener placed before Fastify's drops them from the error first.
 */
export function scrubClientErrors (server: FastifyInstance['server'] & { [kScrubbing]?: true }): void {
  if (server[kScrubbing] === true) return
  server[kScrubbing] = true
  server.prependListener('clientError', (err: Error & { rawPacket?: unknown }) => {
    if (err.rawPacket !== undefined) delete err.rawPacket
  })
}
