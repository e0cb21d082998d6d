import type { IncomingMessage } from 'node:http'
import type { WebSocket } from 'ws'

/*
 * Two things a bare @fastify/websocket server pays per connection that this plugin spares its own
 * sockets (README.md, Benchmarks, has the figures): errors built and thrown away at every close,
 * and the upgrade request's bytes kept for the life of the socket.
 */

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

/** Gives a session socket's receiver and TCP socket the `end` above (where ws has them). */
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

const EMPTY = Buffer.alloc(0)
/** The key under which @fastify/websocket keeps the upgrade's `head` on the raw request (found once). */
let headKey: symbol | undefined

/**
 * @fastify/websocket keeps the `head` of an upgrade on the raw request, which it keeps for as long
 * as the socket lives; `head` is a slice of the bytes the request came in, so those bytes (the
 * request line and every header: a query token, cookies) stay in memory with it. Once ws has taken
 * `head` (it puts any bytes it holds back into the socket), the plugin leaves an empty buffer there.
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
