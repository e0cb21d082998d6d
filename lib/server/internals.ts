import type { IncomingMessage } from 'node:http'
import type { FastifyRequest } from 'fastify'
import type { WebSocket, WebSocketServer } from 'ws'

/*
 * Every use of a dependency's private or undocumented behaviour, in one room. Each entry says what
 * it is for, the versions it was checked against, and what happens when the internal is missing;
 * test/internals.test.ts holds a test per entry that fails when the dependency changes it (run
 * `npm run test:latest` to see that before users do). No other file touches a `_` field of a
 * dependency, a symbol of one, or relies on how one calls itself.
 */

// ws: frame limit of the receiver (checked: ws 8.18 to 8.23) ----------------------------------

interface Receiver { _maxPayload?: unknown }

/**
 * Lowers the largest frame ws accepts on this socket to `cap` (ws keeps it in
 * `ws._receiver._maxPayload`; 0 means no limit). Until a session is authenticated, ws would
 * otherwise buffer up to its `maxPayload` (100 MiB by default) for an unknown client. Returns the
 * previous limit, for `restoreFramePayload`; `undefined` when the field is missing, and then
 * nothing is capped (the hold buffer's byte limit still applies, after the frame arrived).
 */
export function capFramePayload (ws: WebSocket, cap: number): number | undefined {
  const receiver = (ws as unknown as { _receiver?: Receiver })._receiver
  if (receiver === undefined || typeof receiver._maxPayload !== 'number') return undefined
  const saved = receiver._maxPayload
  if (saved === 0 || saved > cap) receiver._maxPayload = cap
  return saved
}

export function restoreFramePayload (ws: WebSocket, saved: number): void {
  const receiver = (ws as unknown as { _receiver?: Receiver })._receiver
  if (receiver !== undefined) receiver._maxPayload = saved
}

// ws: how it closes on an oversized frame (checked: ws 8.18 to 8.23) -------------------------

/**
 * ws answers a frame over its limit by calling the socket's own `close(1009)` with no reason,
 * before buffering the frame. `onOverCap` is asked first at each such call: `true` means it
 * closed the socket itself (with the table's row, a log line, the audit hook). If ws stops calling
 * `close` so, the client sees ws's own 1009 instead: still a close, only not logged.
 */
export function catchOverCapClose (ws: WebSocket, tooBigCode: number, onOverCap: () => boolean): void {
  const close = ws.close
  ws.close = function closeOverCap (this: WebSocket, code?: number, reason?: string | Buffer): void {
    if (code === tooBigCode && reason === undefined && onOverCap()) return
    close.call(this, code, reason)
  }
}

/** Gives the socket back the `close` of its class. */
export function releaseOverCapClose (ws: WebSocket): void {
  // Assigned, not deleted: deleting a property that is not the last one added would turn the
  // socket into a dictionary-mode object, slower at every later property access.
  ws.close = (Object.getPrototypeOf(ws) as WebSocket).close
}

// ws: every event goes through `this.emit` (checked: ws 8.18 to 8.23) ------------------------

/**
 * Replaces the socket's `emit`: ws emits every frame, pong, error and its close through the
 * socket's `emit` property, looked up at each call, so a session sees them all without adding a
 * listener. There is no fallback: were ws to capture `emit` elsewhere, no message would be held
 * or checked, so the test of this entry is a gate.
 */
export function interceptEmit (ws: WebSocket, emit: WebSocket['emit']): void {
  ws.emit = emit
}

// ws: streams ended again after a close (checked: ws 8.18 to 8.23) ---------------------------

/** A writable stream as `endUnlessFinished` reads it (public getters of Node's Writable). */
interface Endable {
  end: (...args: unknown[]) => unknown
  readonly writableFinished: boolean
  readonly destroyed: boolean
  readonly writableCorked: number
}

/**
 * `end()` for a stream that is finished or destroyed does nothing but build an error nobody
 * receives (`ERR_STREAM_ALREADY_FINISHED`, `ERR_STREAM_DESTROYED`), and Node builds it with a full
 * stack trace. ws does this three times per connection after every close handshake (its receiver
 * and its socket, when the peer's FIN arrives, and its receiver again at the socket's close):
 * a third of the instructions a bare @fastify/websocket server spends per connection. This `end`
 * returns at once in exactly that case; any other call, and every call with arguments (a callback
 * must still hear of the error), goes to the stream's own `end`.
 */
function endUnlessFinished (this: Endable): unknown {
  if (arguments.length === 0 && (this.writableFinished || this.destroyed) && this.writableCorked === 0) return this
  return Reflect.apply((Object.getPrototypeOf(this) as Endable).end, this, arguments)
}

/**
 * Gives a session socket's receiver and TCP socket (`ws._receiver`, `ws._socket`) the `end`
 * above. Where ws has neither, nothing changes but the cost of those errors.
 */
export function quietEnds (ws: WebSocket): void {
  const internals = ws as unknown as { _receiver?: unknown, _socket?: unknown }
  quiet(internals._receiver)
  quiet(internals._socket)
}

function quiet (stream: unknown): void {
  if (stream !== null && typeof stream === 'object' && typeof (stream as Endable).end === 'function' && 'writableFinished' in stream) {
    (stream as Endable).end = endUnlessFinished
  }
}

// @fastify/websocket: the upgrade's head kept on the request (checked: 11.0 to 11.3) ----------

const EMPTY = Buffer.alloc(0)
/** The key under which @fastify/websocket keeps the upgrade's `head` on the raw request (found once). */
let headKey: symbol | undefined

/**
 * @fastify/websocket keeps the `head` of an upgrade on the raw request (under a private symbol),
 * which it keeps for as long as the socket lives; `head` is a slice of the bytes the request came
 * in, so those bytes (the request line and every header: a query token, cookies) stay in memory
 * with it. Once ws has taken `head` (it puts any bytes it holds back into the socket), an empty
 * buffer is left there. Where no symbol holds `head`, nothing is released.
 */
export function releaseHead (req: IncomingMessage, head: Buffer): void {
  const raw = req as unknown as Record<symbol, unknown>
  if (headKey === undefined || raw[headKey] !== head) {
    const key = Object.getOwnPropertySymbols(raw).find(k => raw[k] === head)
    if (key === undefined) return
    headKey = key
  }
  raw[headKey] = EMPTY
}

// ws: WebSocketServer#handleUpgrade and options.handleProtocols (checked: ws 8.18 to 8.23) ----

/** `handleUpgrade` as @fastify/websocket calls it. */
export type HandleUpgrade = (this: WebSocketServer, req: IncomingMessage, socket: import('node:stream').Duplex, head: Buffer, callback: (ws: WebSocket) => void) => void

/**
 * Puts `wrap` in front of a WebSocketServer's `handleUpgrade` (an own property, over the class's
 * method), handing it the method it replaces. @fastify/websocket calls `wss.handleUpgrade` for
 * every upgrade of its routes, looked up at each call.
 */
export function wrapHandleUpgrade (wss: WebSocketServer, wrap: (original: HandleUpgrade) => HandleUpgrade): void {
  const original = wss.handleUpgrade as unknown as HandleUpgrade
  wss.handleUpgrade = wrap(original) as unknown as WebSocketServer['handleUpgrade']
}

/**
 * Puts `wrap` in front of `handleUpgrade` on the WebSocketServer class itself (the prototype of
 * `wss`): every other WebSocketServer of the same `ws` (a second @fastify/websocket) goes through
 * it. Once per prototype; `false` when it was already done.
 */
export function wrapEveryHandleUpgrade (wss: WebSocketServer, mark: symbol, wrap: (original: HandleUpgrade) => HandleUpgrade): boolean {
  const proto = Object.getPrototypeOf(wss) as Record<symbol, unknown> & { handleUpgrade: unknown }
  if (proto[mark] === true) return false
  proto[mark] = true
  proto.handleUpgrade = wrap(proto.handleUpgrade as HandleUpgrade)
  return true
}

/** The app's own `handleProtocols` (from the options of @fastify/websocket), if any. */
export type ProtocolHandler = (protocols: Set<string>, request: unknown) => string | false

/**
 * Replaces the server's subprotocol selection: ws reads `handleProtocols` from its options object
 * at each upgrade, so a function set there after construction applies to every later upgrade.
 * Hands `choose` the app's own handler, if it had one.
 */
export function replaceProtocolHandler (wss: WebSocketServer, choose: (app: ProtocolHandler | undefined) => ProtocolHandler): void {
  const options = wss.options as { handleProtocols?: ProtocolHandler }
  const app = typeof options.handleProtocols === 'function' ? options.handleProtocols : undefined
  options.handleProtocols = choose(app)
}

// Fastify: request.headers and scopes (checked: fastify 5.0 to 5.12) ---------------------------

/**
 * Fastify's `request.headers` is an accessor: once the app assigned `request.headers` (a hook
 * adding a header, a validator returning a copy), it returns the assigned copy merged over the raw
 * headers, and the copy's `authorization` wins over the raw one. This gives the request an own
 * `headers` property (over the accessor) whose `authorization` is `bearer`, for one call; returns
 * what the request had as its own `headers` before, for `unshadowHeaders`. Throws when even that
 * does not make `request.headers.authorization` read `bearer` (fail closed: 1011).
 */
export function shadowHeaders (request: FastifyRequest, bearer: string): PropertyDescriptor | undefined {
  const before = Object.getOwnPropertyDescriptor(request, 'headers')
  Object.defineProperty(request, 'headers', { value: { ...request.headers, authorization: bearer }, configurable: true, enumerable: true, writable: true })
  if (request.headers.authorization !== bearer) {
    unshadowHeaders(request, before)
    throw new Error('fastify-ws-auth: request.headers cannot be given the token to verify')
  }
  return before
}

export function unshadowHeaders (request: FastifyRequest, before: PropertyDescriptor | undefined): void {
  if (before === undefined) delete (request as { headers?: unknown }).headers
  else Object.defineProperty(request, 'headers', before)
}

/**
 * Whether `outer` is an enclosing scope of `inner`: Fastify makes each encapsulated scope with
 * `Object.create(parent)`. Were it to stop, nested plugin instances would both guard a route
 * (the outer one last, as in 0.1.0), and the test of this entry fails.
 */
export function isEnclosingScope (outer: object, inner: object): boolean {
  return Object.prototype.isPrototypeOf.call(outer, inner)
}

// pino: the logger's serializers (checked: pino 9.0 to 10.4) ----------------------------------

/**
 * The live serializers object of a pino logger (kept under its `Symbol(pino.serializers)`), to
 * wrap its `req` serializer; `undefined` when the logger is not pino (a custom
 * `loggerInstance`): then each protected route gets a serializer of its own instead.
 */
export function pinoSerializers (log: object): Record<string | symbol, unknown> | undefined {
  for (let o: object | null = log; o !== null; o = Object.getPrototypeOf(o)) {
    const found = Object.getOwnPropertySymbols(o).find(s => s.description === 'pino.serializers')
    if (found === undefined) continue
    const serializers = (log as Record<symbol, unknown>)[found]
    return serializers !== null && typeof serializers === 'object' && !Object.isFrozen(serializers) ? serializers as Record<string | symbol, unknown> : undefined
  }
  return undefined
}

// @fastify/jwt: request.jwtVerify (checked: @fastify/jwt 9.0 to 10.2) --------------------------

type VerifyCallback = (err: Error | null, user?: unknown) => void
/** A request with @fastify/jwt's `jwtVerify` decorator. */
export type JwtRequest = FastifyRequest & { jwtVerify: (options: undefined, callback: VerifyCallback) => void }

/**
 * Calls `request.jwtVerify(undefined, callback)` (its global verifier, with its cache, `trusted`,
 * `formatUser` and a `secret` function) for `token`, which @fastify/jwt does not take as an
 * argument: it reads `request.headers.authorization` at once, synchronously, inside the call.
 *
 * So the header is lent on the raw request's headers for the call only, and taken back as soon as
 * the call returns, before anything else runs. (Fastify's `request.headers` setter would do too,
 * but then every read of `request.headers` copies all the headers, and @fastify/jwt reads it three
 * times.) Where the app assigned `request.headers` itself, the raw header is not what @fastify/jwt
 * would read: `request.headers` is shadowed for the call (`shadowHeaders`). Either way the token
 * @fastify/jwt reads is exactly `token`, the one the plugin reads its facts from.
 *
 * @fastify/jwt sets `request[decoratorName]` to what it verified, before it calls back: the
 * identity the request had (a session's user, during a refresh) is put back at once, so that it
 * never switches while a refresh, maybe with another user's token, is checked. At a handshake
 * (no identity yet) @fastify/jwt's value stays until the session sets its user.
 */
export function callJwtVerify (request: JwtRequest, token: string, decoratorName: string, callback: VerifyCallback): void {
  const headers = request.raw.headers
  const bearer = 'Bearer ' + token
  const had = headers.authorization
  const lent = had !== bearer
  const holder = request as unknown as Record<string, unknown>
  const identity = holder[decoratorName]
  let shadow: PropertyDescriptor | undefined | null = null
  if (lent) headers.authorization = bearer
  try {
    if (request.headers.authorization !== bearer) shadow = shadowHeaders(request, bearer)
    // `undefined` options, not the callback alone: with a function first, @fastify/jwt takes it as
    // options given, and builds a new verifier per call (no cache) instead of its global one.
    request.jwtVerify(undefined, (err, user) => {
      if (identity !== null && identity !== undefined) holder[decoratorName] = identity
      callback(err, user)
    })
  } finally {
    if (lent) {
      if (had === undefined) delete headers.authorization
      else headers.authorization = had
    }
    if (shadow !== null) unshadowHeaders(request, shadow)
  }
}
