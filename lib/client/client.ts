import { MAX_REASON_BYTES, closeCodes, isSendableCloseCode, utf8Length } from '../protocol/close-codes.ts'
import { clock } from '../protocol/clock.ts'
import { MessageType } from '../protocol/messages.ts'
import { backoffDelay, setLongTimeout } from './backoff.ts'
import { Emitter } from './emitter.ts'
import { ClientError, WsAuthError, kindForAdvice } from './errors.ts'
import { normalize } from './options.ts'
import type { Config } from './options.ts'
import { authMessage, handshake, parseControl, rowForClose, rowForStatus, ticketHandshake, watchHttpRejection } from './protocol.ts'
import type { ControlMessage, HttpRejection, Row } from './protocol.ts'
import { Topics } from './topics.ts'
import type {
  ClientEvents, ClientOptions, ClientState, CloseInfo, EstablishedInfo, PublicUser, RefreshedInfo,
  Subscription, TicketContext, WebSocketLike
} from './types.ts'

/** The code of a normal close, the app's own: the table's `normal_closure` row. */
const NORMAL_CLOSURE = closeCodes.normal_closure.code

const EVENTS = ['established', 'message', 'refreshed', 'close', 'error', 'refused', 'unsubscribed', 'publication'] as const
const noop = (): void => {}
const OPEN = 1

/** Why a connection is opened: a token's `refresh` never opens one. */
type ConnectReason = TicketContext['reason']

/** A close before the retry decision: what the server said and the table row it matches. */
type Closing = Pick<CloseInfo, 'code' | 'reason' | 'kind' | 'failure' | 'status'>

function closing (code: number | null, reason: string, row: Row | undefined, status?: number): Closing {
  const info: Closing = { code, reason, kind: kindForAdvice[row?.retry ?? 'backoff'] }
  if (row !== undefined) info.failure = row.failure
  if (status !== undefined) info.status = status
  return info
}

function isBinary (data: unknown): boolean {
  return data instanceof ArrayBuffer || ArrayBuffer.isView(data) ||
    (typeof Blob !== 'undefined' && data instanceof Blob)
}

function encode (data: unknown): unknown {
  if (typeof data === 'string' || isBinary(data)) return data
  const text = JSON.stringify(data)
  if (text === undefined) throw new ClientError('FST_WS_AUTH_CLIENT_INVALID_MESSAGE', `send() cannot encode ${typeof data} as JSON`)
  return text
}

/**
 * A WebSocket client for routes guarded by fastify-ws-auth: authenticates with each connect (a
 * token, or a new one-time ticket), reconnects or gives up as the close-code table says,
 * refreshes its token in band, and queues messages sent while it is not established. Build one
 * with `createClient()`.
 */
export class WsAuthClient<User = PublicUser> {
  readonly #config: Config
  /** What the app's function hands over, as messages name it: `token` or `ticket`. */
  readonly #credentialName: 'token' | 'ticket'
  readonly #events = new Emitter<ClientEvents<User>>(EVENTS)
  readonly #topics: Topics
  #state: ClientState = 'connecting'
  #socket: WebSocketLike | null = null
  #generation = 0
  #queue: unknown[] = []
  #cancelReconnect: (() => void) | null = null
  #cancelRefresh: (() => void) | null = null
  #refreshing = false
  // Server clock minus ours, from connection_established, so expires_at is read on the server's clock.
  #skew = 0
  // Reconnections since the last established connection (bounded by maxAttempts).
  #attempts = 0
  // Counted since the last connection that stayed established for reconnect.stableAfter ms, so a
  // server that accepts and drops at once meets a growing backoff, not a reconnect loop.
  #backoffStep = 0
  #reauthenticated = false
  #restarted = false
  #establishedAt: number | null = null

  constructor (options: ClientOptions) {
    this.#config = normalize(options)
    this.#credentialName = this.#config.ticket === null ? 'token' : 'ticket'
    this.#topics = new Topics({
      table: this.#config.table,
      sendNow: (frame) => this.#sendNow(frame),
      refused: (info) => this.#events.emit('refused', info),
      unsubscribed: (info) => this.#events.emit('unsubscribed', info),
      publication: (info) => this.#events.emit('publication', info)
    })
    // Connect from a microtask so that listeners added right after createClient() see everything.
    queueMicrotask(() => { this.#connect('connect').catch(noop) })
  }

  /** Where the client is: `connecting`, `authenticating`, `open`, `reconnecting` or `closed`. */
  get state (): ClientState {
    return this.#state
  }

  /** The subprotocol the server selected on the current connection (`''` when none). */
  get protocol (): string {
    return this.#socket?.protocol ?? ''
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents<User>> (event: K, listener: (payload: ClientEvents<User>[K]) => void): () => void {
    return this.#events.on(event, listener)
  }

  /** Removes a listener. */
  off<K extends keyof ClientEvents<User>> (event: K, listener: (payload: ClientEvents<User>[K]) => void): void {
    this.#events.off(event, listener)
  }

  /**
   * Sends `data` (strings and binary as they are, anything else JSON-encoded) once established;
   * before that, queues it. Throws when the queue is full or the client is closed.
   */
  send (data: unknown): void {
    if (this.#state === 'closed') throw new ClientError('FST_WS_AUTH_CLIENT_CLOSED', 'send() after the client closed')
    const frame = encode(data)
    if (this.#sendNow(frame)) return
    if (this.#queue.length >= this.#config.queue) {
      throw new ClientError('FST_WS_AUTH_CLIENT_QUEUE_FULL',
        `send() while ${this.#state}: the queue already holds ${this.#config.queue} messages (option "queue"); wait for "established" or raise the limit`)
    }
    this.#queue.push(frame)
  }

  /**
   * Subscribes to `topic` on a route with `topics`, and calls `onData` with the `data` of each
   * publication on it. The `subscribe` request goes out once established (before the queued
   * messages) and again after each reconnect; several callbacks on one topic share one request.
   * Throws a `ClientError` for a topic that is not a non-empty string of at most 256 bytes, and
   * after the client closed.
   * @example
   * const sub = client.subscribe('queue:42', (order) => render(order))
   * await sub.ready // rejects with a WsAuthError when refused (e.g. 4003, kind 'refused')
   * sub.unsubscribe()
   */
  subscribe<Data = unknown> (topic: string, onData: (data: Data) => void): Subscription {
    if (this.#state === 'closed') throw new ClientError('FST_WS_AUTH_CLIENT_CLOSED', 'subscribe() after the client closed')
    return this.#topics.subscribe(topic, onData as (data: unknown) => void)
  }

  /**
   * Closes the connection for good (no reconnect, including a pending one) and emits `close`
   * with `kind: 'closed'`, `willRetry: false` and the queued messages as `unsent`.
   * @param code 1000 or 3000-4999 @default 1000
   * @param reason at most 123 bytes @default ''
   */
  close (code: number = NORMAL_CLOSURE, reason = ''): void {
    if (code !== NORMAL_CLOSURE && !(code >= 3000 && code <= 4999 && isSendableCloseCode(code))) {
      throw new ClientError('FST_WS_AUTH_CLIENT_INVALID_CLOSE', `close(${code}): the code must be 1000 or 3000-4999`)
    }
    if (typeof reason !== 'string' || utf8Length(reason) > MAX_REASON_BYTES) {
      throw new ClientError('FST_WS_AUTH_CLIENT_INVALID_CLOSE', `close(): the reason must be a string of at most ${MAX_REASON_BYTES} bytes`)
    }
    if (this.#state === 'closed') return
    const socket = this.#socket
    this.#detach()
    this.#shutdown()
    this.#topics.stop({ code, reason, kind: 'closed', retry: 'never' })
    if (socket !== null) socket.close(code, reason)
    this.#events.emit('close', { code, reason, kind: 'closed', willRetry: false, delay: 0, attempt: this.#attempts, unsent: this.#queue.splice(0) })
  }

  async #connect (reason: ConnectReason): Promise<void> {
    if (this.#state === 'closed') return
    const generation = ++this.#generation
    this.#setState('connecting')
    let credential: string | null | undefined
    try {
      credential = await this.#obtain(reason)
    } catch (err) {
      if (generation === this.#generation) this.#credentialFailed(err)
      return
    }
    if (generation !== this.#generation) return
    if (typeof credential !== 'string' || credential === '') {
      const row = { ...this.#config.table.no_token, failure: 'no_token' as const }
      const name = this.#credentialName
      this.#stop(closing(row.code, row.reason, row), `${name}() returned no ${name}`)
      return
    }
    this.#open(credential)
  }

  /** The token, or a new ticket: one is never used twice. */
  #obtain (reason: ConnectReason): string | null | undefined | Promise<string | null | undefined> {
    const { token, ticket } = this.#config
    const context = { reason, attempt: this.#attempts }
    if (ticket !== null) return ticket(context)
    return typeof token === 'function' ? token(context) : token
  }

  /** Opens a socket that carries `credential` (a token or a ticket). */
  #open (credential: string): void {
    const config = this.#config
    const { url, protocols, authMessage } = config.ticket === null
      ? handshake({ ...config, token: credential })
      : ticketHandshake({ ...config, ticket: credential })
    let socket: WebSocketLike
    try {
      socket = new config.WebSocket(url, protocols)
    } catch (err) {
      // The platform's message may quote the URL or the subprotocols, hence the token or ticket.
      const cause = new Error(String((err as Error)?.message ?? err).split(credential).join(`[${this.#credentialName}]`))
      this.#stop({ code: null, reason: '', kind: 'refused' }, `the WebSocket constructor refused ${config.url}`, cause)
      return
    }
    this.#socket = socket
    let rejection: HttpRejection | undefined
    watchHttpRejection(socket, (answer) => { rejection = answer })
    socket.onopen = () => this.#onOpen(socket, authMessage)
    socket.onmessage = (event: { data: unknown }) => { if (this.#socket === socket) this.#onMessage(event.data) }
    socket.onclose = (event: { code: number, reason: string }) => {
      if (this.#socket === socket) this.#onClose(event.code, event.reason, rejection)
    }
    // `ws` throws on an 'error' event nobody listens to; the close event that follows does the work.
    socket.onerror = noop
  }

  #onOpen (socket: WebSocketLike, auth: string | null): void {
    if (this.#socket !== socket) return
    this.#setState('authenticating')
    if (auth !== null) socket.send(auth)
    if (!this.#config.established) this.#establish(null)
  }

  #onMessage (data: unknown): void {
    const control = parseControl(data)
    if (control === undefined) {
      // The server lets app messages through only on authenticated sockets.
      if (this.#state === 'authenticating') this.#establish(null)
      this.#events.emit('message', data as ClientEvents<User>['message'])
      return
    }
    if (control.type === 'connection_established') this.#establish(control as unknown as EstablishedInfo<User>)
    else if (control.type === 'token_expiring') this.#refresh().catch(noop)
    else if (control.type === 'token_refreshed') this.#refreshed(control)
    else if (control.type !== MessageType.Pong) this.#topicMessage(control)
    // 'pong' (an answer to {"type":"ping"}) is consumed here.
  }

  /** `subscribed`, `unsubscribed`, `refused` or `publication`. */
  #topicMessage (control: ControlMessage): void {
    // Like app messages, they come only on authenticated sockets (the server may send no connection_established).
    if (this.#state === 'authenticating') this.#establish(null)
    this.#topics.receive(control)
  }

  #establish (info: EstablishedInfo<User> | null): void {
    this.#setState('open')
    this.#attempts = 0
    this.#establishedAt = clock.now()
    if (info !== null) {
      const serverNow = Date.parse(info.timestamp)
      this.#skew = Number.isNaN(serverNow) ? 0 : serverNow - clock.now()
      this.#scheduleRefresh(info.expires_at)
    }
    this.#topics.established()
    const socket = this.#socket as WebSocketLike
    for (const frame of this.#queue.splice(0)) socket.send(frame)
    if (info !== null) this.#events.emit('established', info)
  }

  #onClose (code: number, reason: string, rejection: HttpRejection | undefined): void {
    this.#detach()
    if (this.#establishedAt !== null && clock.now() - this.#establishedAt >= this.#config.reconnect.stableAfter) {
      this.#backoffStep = 0
      this.#reauthenticated = false
      this.#restarted = false
    }
    this.#establishedAt = null
    if (rejection === undefined) {
      this.#decide(closing(code, reason, rowForClose(code, reason, this.#config.table)))
      return
    }
    const row = rowForStatus(rejection.status, rejection.failure, this.#config.table)
    this.#decide(row === undefined
      ? closing(code, reason, undefined, rejection.status)
      : closing(row.code, row.reason, row, rejection.status))
  }

  #decide (info: Closing): void {
    const backoff = (): number => backoffDelay(this.#backoffStep++, this.#config.reconnect)
    switch (info.kind) {
      case 'done': return this.#stop(info, null)
      case 'refused': return this.#stop(info, 'the server refused the connection')
      case 'unauthenticated':
        if (this.#reauthenticated) return this.#stop(info, `the server refused a fresh ${this.#credentialName} too`)
        this.#reauthenticated = true
        return this.#retry(info, 0, 'reauthenticate')
      case 'restart':
        if (this.#restarted) return this.#retry(info, backoff(), 'reconnect')
        this.#restarted = true
        return this.#retry(info, 0, 'reconnect')
      default: return this.#retry(info, backoff(), 'reconnect')
    }
  }

  #retry (info: Closing, delay: number, reason: ConnectReason): void {
    if (this.#attempts >= this.#config.reconnect.maxAttempts) {
      this.#stop(info, `gave up after ${this.#attempts} reconnect attempts (option "reconnect.maxAttempts")`)
      return
    }
    this.#attempts++
    this.#setState('reconnecting')
    this.#events.emit('close', { ...info, willRetry: true, delay, attempt: this.#attempts })
    if (this.#state !== 'reconnecting') return // a listener called close()
    this.#cancelReconnect = setLongTimeout(() => {
      this.#cancelReconnect = null
      this.#connect(reason).catch(noop)
    }, delay)
  }

  /** `token()` or `ticket()` threw (or rejected): reported, then backoff, as for a transient close. */
  #credentialFailed (err: unknown): void {
    const name = this.#credentialName
    const info: Closing = { code: null, reason: `${name}() failed`, kind: 'token' }
    this.#events.emit('error', new WsAuthError(`fastify-ws-auth client: ${name}() threw`, { ...info, retry: 'backoff', cause: err }))
    if (this.#state === 'closed') return
    this.#retry(info, backoffDelay(this.#backoffStep++, this.#config.reconnect), 'reconnect')
  }

  #stop (info: Closing, problem: string | null, cause?: unknown): void {
    this.#shutdown()
    const unsent = this.#queue.splice(0)
    const retry = info.failure !== undefined ? this.#config.table[info.failure].retry : info.code === null ? 'never' : 'backoff'
    this.#topics.stop({ ...info, retry })
    if (problem !== null) {
      const detail = info.code === null ? '' : ` (${info.code}${info.reason === '' ? '' : ' ' + info.reason})`
      this.#events.emit('error', new WsAuthError(`fastify-ws-auth client: ${problem}${detail}`, { ...info, retry, cause }))
    }
    this.#events.emit('close', { ...info, willRetry: false, delay: 0, attempt: this.#attempts, unsent })
  }

  /** Only a token function refreshes: a ticket session ends at its expiry, and the reconnect takes a new ticket. */
  #refreshable (): boolean {
    return this.#config.refresh && typeof this.#config.token === 'function'
  }

  #scheduleRefresh (expiresAt: string | null | undefined): void {
    this.#cancelRefresh?.()
    this.#cancelRefresh = null
    if (!this.#refreshable() || typeof expiresAt !== 'string') return
    const remaining = Date.parse(expiresAt) - (clock.now() + this.#skew)
    if (Number.isNaN(remaining)) return
    const delay = remaining - Math.min(this.#config.refreshMargin, remaining / 2)
    this.#cancelRefresh = setLongTimeout(() => {
      this.#cancelRefresh = null
      this.#refresh().catch(noop)
    }, delay)
  }

  async #refresh (): Promise<void> {
    if (!this.#refreshable() || this.#refreshing || this.#state !== 'open') return
    const socket = this.#socket as WebSocketLike
    const provider = this.#config.token as Exclude<Config['token'], string | null>
    this.#refreshing = true
    this.#cancelRefresh?.()
    this.#cancelRefresh = null
    let token: string | null | undefined
    try {
      token = await provider({ reason: 'refresh', attempt: 0 })
    } catch (err) {
      if (this.#socket !== socket) return
      this.#refreshing = false
      this.#events.emit('error', new WsAuthError('fastify-ws-auth client: token() threw during a refresh',
        { code: null, reason: 'token() failed', kind: 'token', retry: 'reauthenticate', cause: err }))
      return
    }
    if (this.#socket !== socket || this.#state !== 'open') return
    // No token: nothing to send; the server closes at expiry and the reconnect asks again.
    if (typeof token !== 'string' || token === '') {
      this.#refreshing = false
      return
    }
    socket.send(authMessage(token))
  }

  #refreshed (control: ControlMessage): void {
    this.#refreshing = false
    this.#scheduleRefresh(control.expires_at)
    this.#events.emit('refreshed', control as RefreshedInfo)
  }

  /** Sends at once when established on an open socket; returns whether it did. */
  #sendNow (frame: unknown): boolean {
    const socket = this.#socket
    // Once closing, a socket drops what it is given without a word: the caller keeps it for the next one.
    if (this.#state !== 'open' || socket === null || socket.readyState !== OPEN) return false
    socket.send(frame)
    return true
  }

  #detach (): void {
    const socket = this.#socket
    this.#socket = null
    this.#topics.lost()
    this.#cancelRefresh?.()
    this.#cancelRefresh = null
    this.#refreshing = false
    if (socket === null) return
    socket.onopen = null
    socket.onmessage = null
    socket.onclose = null
    socket.onerror = noop
  }

  #shutdown (): void {
    this.#generation++
    this.#cancelReconnect?.()
    this.#cancelReconnect = null
    this.#setState('closed')
  }

  #setState (state: ClientState): void {
    this.#state = state
  }
}
