import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import { idOf, within, type Outcome } from './authenticate.ts'
import { isThenable } from './checks.ts'
import type { FailureClass } from '../protocol/close-codes.ts'
import { clock } from '../protocol/clock.ts'
import { MessageType } from '../protocol/messages.ts'
import { readControl } from './control.ts'
import type { Deadlines, Timed } from './deadlines.ts'
import { Gate, type GateHost } from './gate/gate.ts'
import type { RoutePolicy } from './options.ts'
import { IsoClock } from './iso.ts'
import { interceptEmit, quietEnds } from './internals.ts'
import { authMessageToken, Waiting } from './waiting.ts'
import type { Observer } from './observer.ts'
import type { TokenSource, WsAuthClaims, WsAuthUser } from '../types.ts'

type Failure = Extract<Outcome, { ok: false }>
type Success = Extract<Outcome, { ok: true }>

/** What a session needs from the plugin: limits, verification, the registry, logging. Implemented in host.ts. */
export interface SessionHost extends GateHost<Session> {
  readonly maxAuthMessageBytes: number
  readonly maxPendingMessages: number
  readonly maxPendingBytes: number
  readonly appPing: boolean
  /** Whether sessions keep the claims `loadUser` was given (only revalidation reads them again). */
  readonly keepsClaims: boolean
  /** ms before `exp` to send `token_expiring`, or `null`. */
  readonly expiryWarning: number | null
  /** The one timer for every session's deadlines. */
  readonly deadlines: Deadlines
  authenticate (token: string, request: FastifyRequest, policy: RoutePolicy): Outcome | Promise<Outcome>
  /** Takes a connection slot for the session's user; `false` when over the limit. */
  admit (session: Session): boolean | Promise<boolean>
  publicUser (user: WsAuthUser): unknown
  /** Closes the socket with a row of the close-code table. */
  closeSocket (ws: WebSocket, failure: FailureClass): void
  /** A handshake or refresh was refused: log, audit, count. */
  failed (session: Session, outcome: Failure, token?: string): void
  /** A session ended by the plugin after it was established (expiry, lifetime, eviction, `disconnectUser`...). */
  ended (session: Session, how: FailureClass | AppClose): void
  established (session: Session): void
  refreshed (session: Session): void
  /** The socket closed, for whatever reason, with `code` (sent, or received from the client). */
  gone (session: Session, code: number): void
  /** Metrics and spans, when either is on. */
  readonly observer: Observer | null
}

/** Hands the socket to @fastify/websocket, which then calls the route handler. */
export type Handoff = (ws: WebSocket) => void

/** A close with the application's own code and reason (`disconnectUser` with options). */
export interface AppClose {
  code: number
  reason: string
}

/** The close code counted for a client that left while its handshake was being answered. */
const LEFT = 1006

const AUTHENTICATING = 0
const HOLDING = 1
const OPEN = 2
const CLOSED = 3

const protoEmit = EventEmitter.prototype.emit
/** The session of a socket, for `gatedEmit`, which all sockets share. */
const kSession = Symbol('fastify-ws-auth.session')
/** Times sent in messages: now, and token expiries. */
const nowClock = new IsoClock()
const expiryClock = new IsoClock()

type SessionSocket = WebSocket & { [kSession]: Session }

/**
 * A random UUID as one flat string. Node builds it by concatenation: kept as it comes, each
 * session would hold a tree of 15 string pieces (~480 bytes) instead of ~60 bytes.
 */
function flatUUID (): string {
  const id = randomUUID()
  id.charCodeAt(0) // V8 flattens the pieces into one string here
  return id
}

/**
 * One socket of a protected route, from the upgrade to its close: the auth-message phase, the
 * gate that holds client messages until the route handler listens, `connection_established`,
 * control messages (in-band refresh, app ping), and its one timer (auth timeout, then the next of
 * expiry warning, expiry and lifetime).
 */
export class Session implements Timed {
  // Thousands of these live at once: fields that only the auth-message phase or the hold buffer
  // need live in `waiting`, made when needed; times that derive from others are getters.
  readonly clientId = flatUUID()
  readonly connectedAt = clock.now()
  user: WsAuthUser | undefined = undefined
  userId: string | number | undefined = undefined
  /** What `loadUser` was given, kept only when sessions are revalidated. */
  claims: WsAuthClaims | undefined = undefined
  /** The token's `jti` and `iat` claims, for revocation. */
  jti: unknown = undefined
  iat: unknown = undefined
  /** The token's `exp` (seconds, as the token has it), or `null`. */
  private exp: number | null = null
  /** Set by a pong; cleared by each heartbeat sweep. */
  alive = true
  private state = AUTHENTICATING
  private warned = false
  deadlineSlot: number | undefined = undefined
  private refreshing: Promise<void> | undefined = undefined
  private waiting: Waiting | undefined = undefined
  /** Message policies, topic requests and held topics: made at the first frame of a gated route, or the first topic. */
  private gate: Gate<Session> | undefined = undefined

  constructor (
    readonly ws: WebSocket,
    readonly request: FastifyRequest,
    readonly policy: RoutePolicy,
    private readonly host: SessionHost,
    /** Where the token came from: the handshake's source, `'message'` once one came in a message (the first, or a refresh); logs, audit hooks and spans read it. */
    public source: TokenSource | undefined,
    /** Called once, at the open; dropped then, with all it holds (the upgrade's closures). */
    private handoff: Handoff | undefined
  ) {
    ;(ws as SessionSocket)[kSession] = this
    // The one interception point: ws emits every frame, pong, error and its close through
    // `emit`, so a session adds no listener to its socket.
    interceptEmit(ws, gatedEmit as WebSocket['emit'])
    quietEnds(ws)
  }

  /** When the token expires (ms since the epoch), or `null`. */
  get expiresAt (): number | null {
    return this.exp === null ? null : this.exp * 1000
  }

  /** When `maxLifetime` ends the session (ms since the epoch), or `null`. */
  private get endsAt (): number | null {
    return this.policy.maxLifetime === null ? null : this.connectedAt + this.policy.maxLifetime
  }

  get isOpen (): boolean {
    return this.state === HOLDING || this.state === OPEN
  }

  /** Not closed yet (authenticating or open). */
  get isAlive (): boolean {
    return this.state !== CLOSED
  }

  /** Waits for `{"type":"auth","token":"..."}` as the first message, for `authTimeout` ms. */
  awaitAuthMessage (): void {
    const waiting = this.wait()
    waiting.startTimer(this.policy.authTimeout, () => this.refuse({ ok: false, failure: 'auth_timeout' }))
    // An over-cap frame closed by ws itself becomes a refusal like any other (the table's code and
    // reason, a log line, the audit hook).
    waiting.capFrames(this.ws, Math.max(this.host.maxAuthMessageBytes, this.host.maxPendingBytes), () => {
      if (this.state !== AUTHENTICATING) return false
      this.refuse({ ok: false, failure: 'message_too_big' })
      return true
    })
  }

  private wait (): Waiting {
    this.waiting ??= new Waiting()
    return this.waiting
  }

  /** Verification succeeded: take a connection slot, then establish. */
  admit (outcome: Success): void {
    if (this.state === CLOSED) return
    this.setIdentity(outcome)
    let admitted: boolean | Promise<boolean>
    try {
      admitted = this.host.admit(this)
    /* c8 ignore start: fail closed should a host's admit throw; Host's never does (the local count
       cannot throw, and the cluster path is async: it rejects, handled below) */
    } catch (error) {
      return this.refuse({ ok: false, failure: 'internal_error', userId: this.userId, error })
    }
    /* c8 ignore stop */
    if (admitted === true) return this.establish(outcome)
    if (admitted === false) return this.refuse({ ok: false, failure: 'too_many_connections', userId: this.userId })
    admitted.then(
      ok => ok ? this.establish(outcome) : this.refuse({ ok: false, failure: 'too_many_connections', userId: this.userId }),
      error => this.refuse({ ok: false, failure: 'internal_error', userId: this.userId, error }))
  }

  /*
   * A session ends in one of three ways: `refuse` (a handshake or refresh refused: logged as a
   * failure), `close` (the plugin or the app ends it: logged as ended), or `closed` (the socket
   * closed, whoever closed it). Each is a no-op once the session is closed.
   */

  /** Refuses the handshake (or a refresh): logs it and closes with the table entry. */
  refuse (outcome: Failure, token?: string): void {
    if (this.state === CLOSED) return
    this.host.failed(this, outcome, token)
    this.close(outcome.failure, false)
  }

  /**
   * Closes with a row of the close-code table, or with the app's own code and reason. `report`:
   * count and log it as a session ended by the plugin (not for a refusal logged already, nor at
   * shutdown).
   */
  close (how: FailureClass | AppClose, report = true): void {
    if (this.state === CLOSED) return
    const own = typeof how === 'object'
    if (report) this.host.ended(this, how)
    this.finish(own ? how.code : this.host.table[how].code)
    if (own) this.ws.close(how.code, how.reason)
    else this.host.closeSocket(this.ws, how)
  }

  /** Sends JSON (or a ready string) to the client, if the socket is open. */
  send (data: string): void {
    if (this.state !== CLOSED && this.ws.readyState === 1) this.ws.send(data)
  }

  /** Replaces the user after a revalidation (same id); the caller has checked it. */
  replaceUser (user: WsAuthUser): void {
    this.user = user
    this.request.user = user as typeof this.request.user
    ;(this.ws as WebSocket & { user?: unknown }).user = user
  }

  private setIdentity (outcome: Success): void {
    this.replaceUser(outcome.user)
    this.userId = idOf(outcome.user)
    this.claims = this.host.keepsClaims ? outcome.claims : undefined
    const { jti, iat, exp } = outcome.payload as { jti?: unknown, iat?: unknown, exp?: unknown }
    this.jti = jti
    this.iat = iat
    this.exp = typeof exp === 'number' ? exp : null
    this.warned = false
  }

  private establish (outcome: Success): void {
    if (this.state === CLOSED) return
    // The client may have started closing while its token was being checked (counted as 1006:
    // its own code, if it sent one, is not read before the close event, which then finds the session ended).
    if (this.ws.readyState !== 1) return this.finish(LEFT)
    this.stopAuthTimer()
    if (!this.policy.established) return this.open()
    let shown: unknown
    try {
      shown = this.host.publicUser(outcome.user)
    } catch (error) {
      return this.refuse({ ok: false, failure: 'internal_error', userId: this.userId, error })
    }
    if (!isThenable(shown)) return this.greet(shown)
    Promise.resolve(shown).then(
      value => this.greet(value),
      error => this.refuse({ ok: false, failure: 'internal_error', userId: this.userId, error }))
  }

  /** Sends `connection_established`, then opens the session. */
  private greet (shown: unknown): void {
    if (this.state === CLOSED) return
    if (this.ws.readyState !== 1) return this.finish(LEFT)
    let user: string
    try {
      user = JSON.stringify(shown)
    } catch (error) {
      return this.refuse({ ok: false, failure: 'internal_error', userId: this.userId, error })
    }
    // client_id is a UUID and the times are ISO strings: nothing in them needs escaping.
    const expires = this.expiresAt === null ? 'null' : '"' + expiryClock.format(this.expiresAt) + '"'
    this.ws.send('{"type":"' + MessageType.ConnectionEstablished + '","client_id":"' + this.clientId + '","user":' + (user ?? 'null') +
      ',"timestamp":"' + nowClock.format(clock.now()) + '","expires_at":' + expires + '}')
    this.open()
  }

  /** Hands the socket to the route handler and releases held messages once it listens. */
  private open (): void {
    this.waiting?.restoreFrames(this.ws)
    this.state = HOLDING
    this.host.established(this)
    this.schedule()
    const handoff = this.handoff!
    this.handoff = undefined
    handoff(this.ws)
    // On a route with a gate, frames held while authenticating go through it now: refusals and
    // topic requests are answered at once, and what it lets through waits for the handler.
    const early = this.policy.gate === null ? null : this.waiting?.take() ?? null
    if (this.ws.listenerCount('message') > 0) this.release()
    // The handler listens later (after an await, say): release held messages once it does.
    else if (this.state === HOLDING) this.ws.on('newListener', onNewListener as (event: string | symbol) => void)
    if (early === null) return
    for (const [data, isBinary] of early) {
      if (this.isClosed()) return
      this.deliver(data, isBinary)
    }
  }

  /** Files the next deadline (expiry warning, expiry or lifetime) with the shared timer. */
  private schedule (): void {
    let next = Infinity
    if (this.expiresAt !== null) {
      next = this.expiresAt
      const warnAt = this.host.expiryWarning === null ? null : this.expiresAt - this.host.expiryWarning
      if (warnAt !== null && !this.warned) next = Math.min(next, warnAt)
    }
    if (this.endsAt !== null) next = Math.min(next, this.endsAt)
    if (next === Infinity) this.host.deadlines.delete(this)
    else this.host.deadlines.set(this, next)
  }

  /** Called by the shared timer once the filed deadline has passed. */
  onDeadline (now: number): void {
    if (this.state === CLOSED) return
    if (this.expiresAt !== null && now >= this.expiresAt) return this.close('token_expired')
    if (this.endsAt !== null && now >= this.endsAt) return this.close('lifetime_exceeded')
    if (this.expiresAt !== null && this.host.expiryWarning !== null && !this.warned && now >= this.expiresAt - this.host.expiryWarning) {
      this.warned = true
      this.send(JSON.stringify({ type: MessageType.TokenExpiring, expires_at: isoOrNull(this.expiresAt) }))
    }
    this.schedule()
  }

  /** Delivers held messages in order, then lets messages through as they come. */
  release (): void {
    if (this.state !== HOLDING) return
    this.ws.removeListener('newListener', onNewListener)
    const held = this.waiting?.take() ?? null
    this.waiting = undefined
    this.state = OPEN
    if (held === null) return
    // Behind a gate, held messages have passed it already.
    const passed = this.policy.gate !== null
    for (const [data, isBinary] of held) {
      if (this.isClosed()) return
      if (passed) protoEmit.call(this.ws, 'message', data, isBinary)
      else this.deliver(data, isBinary)
    }
  }

  receive (data: unknown, isBinary: unknown): boolean {
    if (this.state === OPEN) return this.deliver(data, isBinary)
    if (this.state === CLOSED) return false
    const waiting = this.waiting
    if (this.state === AUTHENTICATING && waiting !== undefined && !waiting.authStarted && waiting.timing) {
      waiting.authStarted = true
      this.onAuthMessage(data, isBinary === true)
      return true
    }
    // Open, the handler not listening yet: a gate judges now (what it lets through is held),
    // and refresh and ping are the plugin's, not the handler's: answered at once.
    if (this.state === HOLDING && this.policy.gate !== null) return this.deliver(data, isBinary)
    if (this.state === HOLDING && isBinary !== true && Buffer.isBuffer(data) && this.isControl(data)) return true
    this.hold(data, isBinary)
    return true
  }

  /**
   * Passes an app message to the handler, after one cheap check for a control message; on a route
   * with `messages` or `topics`, through the gate.
   */
  private deliver (data: unknown, isBinary: unknown): boolean {
    if (isBinary !== true && Buffer.isBuffer(data) && this.isControl(data)) return true
    if (this.policy.gate === null) return protoEmit.call(this.ws, 'message', data, isBinary)
    this.gateOf().receive(data, isBinary)
    return true
  }

  /** Hands a message the gate let through to the route handler, or holds it until the handler listens. */
  emitMessage (data: unknown, isBinary: unknown): boolean {
    if (this.state === HOLDING) {
      this.hold(data, isBinary)
      return true
    }
    return protoEmit.call(this.ws, 'message', data, isBinary)
  }

  private gateOf (): Gate<Session> {
    this.gate ??= new Gate<Session>(this, this.host)
    return this.gate
  }

  /** Holds a topic without a policy check (`fastify.wsAuth.subscribe`); `false` once closed. */
  subscribe (topic: string): boolean {
    if (!this.isOpen) return false
    if (this.gateOf().hold(topic, null)) this.send(JSON.stringify({ type: MessageType.Subscribed, topic }))
    return true
  }

  /** Leaves a topic (`fastify.wsAuth.unsubscribe`); `false` when it was not held. */
  unsubscribe (topic: string): boolean {
    if (this.gate === undefined || !this.gate.drop(topic)) return false
    this.send(JSON.stringify({ type: MessageType.Unsubscribed, topic }))
    return true
  }

  /** Ends a subscription from the server's side, with a row of the table; `false` when it was not held. */
  endSubscription (topic: string, failure: FailureClass): boolean {
    return this.gate?.end(topic, failure) ?? false
  }

  /** Checks the subscriptions again with the current user (after a refresh or a revalidation). */
  recheckTopics (): void {
    this.gate?.recheck()
  }

  /**
   * Handles `auth` (refresh) and, with `appPing`, `ping`; returns `false` for app messages. A
   * refresh larger than `maxAuthMessageBytes` closes with 1009 rather than reaching the handler.
   */
  private isControl (data: Buffer): boolean {
    const message = readControl(data, this.host.appPing)
    if (message === undefined) return false
    if (message.type === MessageType.Ping) {
      this.send(JSON.stringify({ type: MessageType.Pong, timestamp: nowClock.format(clock.now()) }))
      return true
    }
    if (data.length > this.host.maxAuthMessageBytes) {
      this.refuse({ ok: false, failure: 'message_too_big', userId: this.userId })
      return true
    }
    this.refresh(typeof message.token === 'string' ? message.token : '')
    return true
  }

  /** In-band refresh: a new token for the same user, checked like a new handshake. */
  private refresh (token: string): void {
    this.source = 'message'
    const previous = this.refreshing ?? Promise.resolve()
    this.refreshing = previous.then(async () => {
      if (this.isClosed()) return
      this.host.observer?.refreshing(this)
      // Bounded like a handshake: a key source that hangs must not hold the refreshes queued behind it.
      const outcome = await within(Promise.resolve(this.host.authenticate(token, this.request, this.policy)), this.policy.authTimeout)
      if (this.isClosed()) return
      if (!outcome.ok) return this.refuse({ ...outcome, userId: outcome.userId ?? this.userId }, token)
      if (idOf(outcome.user) !== this.userId) return this.refuse({ ok: false, failure: 'invalid_token', userId: this.userId }, token)
      this.setIdentity(outcome)
      this.schedule()
      this.send(JSON.stringify({ type: MessageType.TokenRefreshed, expires_at: isoOrNull(this.expiresAt) }))
      this.host.refreshed(this)
      this.gate?.recheck()
    }).catch(error => this.refuse({ ok: false, failure: 'internal_error', userId: this.userId, error }, token))
  }

  private hold (data: unknown, isBinary: unknown): void {
    const waiting = this.wait()
    if (waiting.hold(data, isBinary, this.host.maxPendingMessages, this.host.maxPendingBytes)) return
    if (this.state === AUTHENTICATING) return this.refuse({ ok: false, failure: 'policy_violation', userId: this.userId })
    this.request.log.warn({ route: this.policy.url, clientId: this.clientId, held: waiting.count },
      'websocket closed: the route handler did not listen for messages before the hold buffer filled')
    this.close('policy_violation')
  }

  private onAuthMessage (data: unknown, isBinary: boolean): void {
    const found = authMessageToken(data, isBinary, this.host.maxAuthMessageBytes)
    if (typeof found === 'string') return this.refuse({ ok: false, failure: found })
    const token = found.token
    this.source = 'message'
    Promise.resolve(this.host.authenticate(token, this.request, this.policy)).then(outcome => {
      if (outcome.ok) this.admit(outcome)
      else this.refuse(outcome, token)
    }).catch(error => this.refuse({ ok: false, failure: 'internal_error', error }, token))
  }

  private stopAuthTimer (): void {
    this.waiting?.stopTimer()
  }

  private isClosed (): boolean {
    return this.state === CLOSED
  }

  /** Ends the session; `code`: the close code sent, or received (1006: none). */
  private finish (code: number): void {
    if (this.state === CLOSED) return
    this.state = CLOSED
    this.waiting?.restoreFrames(this.ws)
    this.stopAuthTimer()
    this.host.deadlines.delete(this)
    this.waiting = undefined
    this.ws.removeListener('newListener', onNewListener)
    this.gate?.dropAll()
    this.host.gone(this, code)
  }

  /** The socket's close event, with the code it closed with. */
  closed (code: number): void {
    this.finish(code)
  }
}

/** The session of a socket of a protected route, or `undefined`. */
export function sessionOf (ws: unknown): Session | undefined {
  if (ws === null || typeof ws !== 'object') return undefined
  return (ws as Partial<SessionSocket>)[kSession]
}

/**
 * Every session socket's `emit`: messages go through the session; the session sees its close
 * (before any listener) and pongs; other events pass as they are.
 */
function gatedEmit (this: SessionSocket, event: string | symbol, a?: unknown, b?: unknown): boolean {
  if (event === 'message') return this[kSession].receive(a, b)
  if (event === 'close') this[kSession].closed(a as number)
  else if (event === 'pong') this[kSession].alive = true
  // Nothing listens before the handler runs (a client that vanished mid-handshake, a bad frame):
  // ws closes the socket itself and emits 'close'. An error nobody listens for must not throw.
  else if (event === 'error' && this.listenerCount('error') === 0) return false
  switch (arguments.length) {
    case 1: return protoEmit.call(this, event)
    case 2: return protoEmit.call(this, event, a)
    case 3: return protoEmit.call(this, event, a, b)
    default: return Reflect.apply(protoEmit, this, arguments)
  }
}

function onNewListener (this: SessionSocket, event: string | symbol): void {
  if (event !== 'message') return
  this.removeListener('newListener', onNewListener)
  const session = this[kSession]
  // The listener is added right after this event: deliver once it is in place.
  queueMicrotask(() => session.release())
}

function isoOrNull (ms: number | null): string | null {
  return ms === null ? null : expiryClock.format(ms)
}
