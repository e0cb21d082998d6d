import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import type { CloseCodeEntry, FailureClass } from './close-codes.ts'
import type { Outcome } from './authenticate.ts'
import type { RoutePolicy } from './options.ts'
import type { WsAuthUser } from './types.ts'

/** What the plugin does for a session; implemented in index.ts, where config and logging live. */
export interface SessionHost {
  readonly maxAuthMessageBytes: number
  readonly maxPendingMessages: number
  readonly maxPendingBytes: number
  entry (failure: FailureClass): CloseCodeEntry
  /** What the client sees of the user in `connection_established`. */
  publicUser (user: WsAuthUser): unknown
  /** Authenticates the token of an auth message. */
  authenticateMessage (token: string, request: FastifyRequest, policy: RoutePolicy): Promise<Outcome>
  /** Logs and audits a failure. */
  failed (request: FastifyRequest, policy: RoutePolicy, outcome: Extract<Outcome, { ok: false }>, token?: string): void
  /** Logs and audits a success. */
  succeeded (request: FastifyRequest, policy: RoutePolicy, session: Session): void
}

/** Hands the socket to @fastify/websocket, which then calls the route handler. */
export type Handoff = (ws: WebSocket) => void

const AUTHENTICATING = 0
const HOLDING = 1
const OPEN = 2
const CLOSED = 3

const protoEmit = EventEmitter.prototype.emit

/**
 * One authenticated (or authenticating) socket: the auth-message phase, the message gate that
 * holds client messages until the route handler listens, and `connection_established`.
 */
export class Session {
  readonly clientId = randomUUID()
  user: WsAuthUser | undefined = undefined
  expiresAt: number | null = null
  private state = AUTHENTICATING
  private authStarted = false
  private held: Array<[unknown, unknown]> = []
  private heldBytes = 0
  private timer: NodeJS.Timeout | undefined = undefined

  constructor (
    readonly ws: WebSocket,
    readonly request: FastifyRequest,
    readonly policy: RoutePolicy,
    private readonly host: SessionHost,
    private readonly handoff: Handoff
  ) {
    const session = this
    // The one interception point for client messages: ws emits every frame through `emit`.
    ws.emit = function gatedEmit (this: WebSocket, event: string | symbol, data?: unknown, isBinary?: unknown): boolean {
      if (event === 'message') return session.receive(data, isBinary)
      return Reflect.apply(protoEmit, this, arguments)
    }
    ws.on('error', onSocketError)
    ws.once('close', () => this.closed())
  }

  /** Waits for `{"type":"auth","token":"..."}` as the first message, for `authTimeout` ms. */
  awaitAuthMessage (): void {
    this.timer = setTimeout(() => this.fail({ ok: false, failure: 'auth_timeout' }), this.policy.authTimeout)
  }

  /** Authentication succeeded: decorate, greet, hand over to the route handler, release held messages. */
  establish (outcome: Extract<Outcome, { ok: true }>): void {
    if (this.state === CLOSED) return
    clearTimeout(this.timer)
    this.user = outcome.user
    this.expiresAt = outcome.expiresAt
    this.request.user = outcome.user as typeof this.request.user
    ;(this.ws as WebSocket & { user?: unknown }).user = outcome.user
    if (this.policy.established) {
      this.ws.send(JSON.stringify({
        type: 'connection_established',
        client_id: this.clientId,
        user: this.host.publicUser(outcome.user),
        timestamp: new Date().toISOString(),
        expires_at: outcome.expiresAt === null ? null : new Date(outcome.expiresAt).toISOString()
      }))
    }
    this.host.succeeded(this.request, this.policy, this)
    this.state = HOLDING
    // @fastify/websocket attaches its own error listener in the handoff.
    this.ws.removeListener('error', onSocketError)
    this.ws.on('newListener', this.onNewListener)
    this.handoff(this.ws)
    if (this.ws.listenerCount('message') > 0) this.release()
  }

  /** Closes with the table entry of a failure, logging it. The route handler never runs. */
  fail (outcome: Extract<Outcome, { ok: false }>, token?: string): void {
    if (this.state === CLOSED) return
    this.host.failed(this.request, this.policy, outcome, token)
    this.close(outcome.failure)
  }

  /** Closes the socket with a row of the close-code table. */
  close (failure: FailureClass): void {
    const { code, reason } = this.host.entry(failure)
    this.finish()
    this.ws.close(code, reason)
  }

  private readonly onNewListener = (event: string | symbol): void => {
    if (event !== 'message') return
    this.ws.removeListener('newListener', this.onNewListener)
    // The listener is added right after this event: deliver once it is in place.
    queueMicrotask(() => this.release())
  }

  /** Delivers held messages in order, then lets messages through as they come. */
  private release (): void {
    if (this.state !== HOLDING) return
    this.ws.removeListener('newListener', this.onNewListener)
    const held = this.held
    this.held = []
    this.heldBytes = 0
    for (const [data, isBinary] of held) {
      if (this.isClosed()) return
      protoEmit.call(this.ws, 'message', data, isBinary)
    }
    this.state = OPEN
    // Nothing left to intercept: give the socket back its own emit, at no cost per message.
    delete (this.ws as { emit?: unknown }).emit
  }

  private receive (data: unknown, isBinary: unknown): boolean {
    if (this.state === OPEN) return protoEmit.call(this.ws, 'message', data, isBinary)
    if (this.state === CLOSED) return false
    if (this.state === AUTHENTICATING && !this.authStarted) {
      this.authStarted = true
      this.onAuthMessage(data as Buffer, isBinary === true)
      return true
    }
    this.hold(data, isBinary)
    return true
  }

  private hold (data: unknown, isBinary: unknown): void {
    this.held.push([data, isBinary])
    this.heldBytes += byteLength(data)
    if (this.held.length <= this.host.maxPendingMessages && this.heldBytes <= this.host.maxPendingBytes) return
    if (this.state === AUTHENTICATING) return this.fail({ ok: false, failure: 'policy_violation' })
    this.request.log.warn({ route: this.policy.url, clientId: this.clientId, held: this.held.length },
      'websocket closed: the route handler did not listen for messages before the hold buffer filled')
    this.close('policy_violation')
  }

  private onAuthMessage (data: Buffer, isBinary: boolean): void {
    if (isBinary) return this.fail({ ok: false, failure: 'policy_violation' })
    if (byteLength(data) > this.host.maxAuthMessageBytes) return this.fail({ ok: false, failure: 'message_too_big' })
    const token = parseAuthMessage(data)
    if (token === undefined) return this.fail({ ok: false, failure: 'invalid_auth_message' })
    this.host.authenticateMessage(token, this.request, this.policy).then(outcome => {
      if (outcome.ok) this.establish(outcome)
      else this.fail(outcome, token)
    }, /* c8 ignore next */ (error: unknown) => this.fail({ ok: false, failure: 'internal_error', error }, token))
  }

  private isClosed (): boolean {
    return this.state === CLOSED
  }

  private finish (): void {
    this.state = CLOSED
    clearTimeout(this.timer)
    this.held = []
    this.ws.removeListener('newListener', this.onNewListener)
  }

  private closed (): void {
    if (this.state !== CLOSED) this.finish()
  }
}

function onSocketError (): void {
  // A socket error before the handler runs (a client that vanished mid-handshake) only ends the
  // socket; ws closes it and emits 'close', where the session cleans up.
}

function byteLength (data: unknown): number {
  if (Buffer.isBuffer(data)) return data.length
  if (data instanceof ArrayBuffer) return data.byteLength
  if (Array.isArray(data)) return data.reduce((n: number, b: Buffer) => n + b.length, 0)
  return 0
}

/** The token of `{"type":"auth","token":"<non-empty string>"}`, or `undefined` for anything else. */
export function parseAuthMessage (data: Buffer): string | undefined {
  let message: unknown
  try {
    message = JSON.parse(data.toString('utf8'))
  } catch {
    return undefined
  }
  if (message === null || typeof message !== 'object') return undefined
  const { type, token } = message as { type?: unknown, token?: unknown }
  if (type !== 'auth' || typeof token !== 'string' || token.length === 0) return undefined
  return token
}
