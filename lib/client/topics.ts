import { utf8Length } from '../protocol/close-codes.ts'
import type { CloseCodeTable } from '../protocol/close-codes.ts'
import { MAX_TOPIC_BYTES, MessageType } from '../protocol/messages.ts'
import { ClientError, WsAuthError, kindForAdvice } from './errors.ts'
import type { WsAuthErrorInit } from './errors.ts'
import { rowForClose } from './protocol.ts'
import type { ControlMessage } from './protocol.ts'
import type { PublicationInfo, RefusedInfo, Subscription, UnsubscribedInfo } from './types.ts'

/*
 * The client's topics: one `subscribe` per topic on each connection, however many callbacks hold
 * it; sent once established, and again after each reconnect; answers matched by topic and the
 * request's id, so a late answer to an earlier request settles nothing. See docs/client.md, "Topics".
 */

/** What the topics need from their client. */
export interface TopicsHost {
  /** The client's close-code table, with its `closeCodes` overrides. */
  readonly table: CloseCodeTable
  /** Sends a frame when established on an open socket; returns whether it went out. */
  sendNow (frame: string): boolean
  refused (info: RefusedInfo): void
  unsubscribed (info: UnsubscribedInfo): void
  publication (info: PublicationInfo): void
}

/** The facts of a `ready` rejection: a refusal, `unsubscribe()` first, or the client's final close. */
export type Ended = Omit<WsAuthErrorInit, 'cause'>

interface Handle {
  readonly onData: (data: unknown) => void
  /** Settles `ready`; `null` once it has settled. */
  settle: { resolve: () => void, reject: (err: WsAuthError) => void } | null
}

interface Entry {
  readonly topic: string
  readonly handles: Set<Handle>
  /** The id of the `subscribe` sent on this connection; `null` before one was. */
  request: number | null
  /** The server answered `subscribed` on this connection. */
  held: boolean
  /** It was held once: its callbacks' `ready` resolved, so its end is told by `unsubscribed`. */
  active: boolean
}

const noop = (): void => {}
const ENDED_BY_APP: Ended = { code: null, reason: '', kind: 'closed', retry: 'never' }

/** A topic name as the server accepts it: a non-empty string of at most 256 bytes of UTF-8. */
function checkTopic (topic: unknown): string {
  if (typeof topic !== 'string' || topic.length === 0 || utf8Length(topic) > MAX_TOPIC_BYTES) {
    throw new ClientError('FST_WS_AUTH_CLIENT_INVALID_SUBSCRIPTION', `subscribe(): the topic must be a non-empty string of at most ${MAX_TOPIC_BYTES} bytes`)
  }
  return topic
}

function optional<K extends string, V> (key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : { [key]: value } as Record<K, V>
}

function idOf (value: unknown): string | number | undefined {
  return typeof value === 'string' || typeof value === 'number' ? value : undefined
}

export class Topics {
  readonly #host: TopicsHost
  readonly #entries = new Map<string, Entry>()
  /** Topics the server subscribed this socket to by itself (`subscribed` without an id). */
  readonly #pushed = new Set<string>()
  #ids = 0

  constructor (host: TopicsHost) {
    this.#host = host
  }

  subscribe (topic: string, onData: (data: unknown) => void): Subscription {
    checkTopic(topic)
    if (typeof onData !== 'function') {
      throw new ClientError('FST_WS_AUTH_CLIENT_INVALID_SUBSCRIPTION', 'subscribe(): the second argument must be a function, called with each publication\'s data')
    }
    let entry = this.#entries.get(topic)
    if (entry === undefined) {
      entry = { topic, handles: new Set(), request: null, held: false, active: false }
      this.#entries.set(topic, entry)
      this.#request(entry)
    }
    const handle: Handle = { onData, settle: null }
    const ready = new Promise<void>((resolve, reject) => { handle.settle = { resolve, reject } })
    // The app may ignore `ready`: its rejection must not crash Node as an unhandled one.
    ready.catch(noop)
    entry.handles.add(handle)
    if (entry.held) settle(handle)
    const held = entry
    return { ready, unsubscribe: () => this.#drop(held, handle) }
  }

  /** The connection is established: asks for every topic a callback holds. */
  established (): void {
    for (const entry of this.#entries.values()) this.#request(entry)
  }

  /** The connection is gone: nothing is held any more, everything is asked for again at the next one. */
  lost (): void {
    for (const entry of this.#entries.values()) {
      entry.request = null
      entry.held = false
    }
    this.#pushed.clear()
  }

  /** The client stopped for good: every `ready` still pending rejects with the final close's facts. */
  stop (ended: Ended): void {
    for (const entry of this.#entries.values()) {
      for (const handle of entry.handles) reject(handle, entry.topic, ended, 'ended: the client stopped')
    }
    this.#entries.clear()
    this.#pushed.clear()
  }

  /** Reads `subscribed`, `unsubscribed`, `refused` and `publication`; ignores any other type. */
  receive (control: ControlMessage): void {
    const topic = typeof control.topic === 'string' ? control.topic : undefined
    if (control.type === MessageType.Refused) return this.#refused(control, topic)
    if (topic === undefined) return
    if (control.type === MessageType.Publication) return this.#publication(topic, control.data)
    if (control.type === MessageType.Subscribed) return this.#subscribed(topic, idOf(control.id))
    if (control.type === MessageType.Unsubscribed && control.id === undefined) this.#ended(topic, control)
    // An `unsubscribed` with an id answers an `unsubscribe`: the topic was dropped when it was sent.
  }

  #request (entry: Entry): void {
    const id = this.#ids + 1
    if (!this.#host.sendNow(JSON.stringify({ type: MessageType.Subscribe, topic: entry.topic, id }))) return
    this.#ids = id
    entry.request = id
  }

  #drop (entry: Entry, handle: Handle): void {
    if (!entry.handles.delete(handle)) return
    reject(handle, entry.topic, ENDED_BY_APP, 'ended by unsubscribe() before the server confirmed it')
    if (entry.handles.size > 0 || this.#entries.get(entry.topic) !== entry) return
    this.#entries.delete(entry.topic)
    this.#pushed.delete(entry.topic)
    if (entry.request !== null) {
      this.#host.sendNow(JSON.stringify({ type: MessageType.Unsubscribe, topic: entry.topic, id: ++this.#ids }))
    }
  }

  #subscribed (topic: string, id: string | number | undefined): void {
    if (id === undefined) {
      this.#pushed.add(topic)
      return
    }
    const entry = this.#entries.get(topic)
    // Not the answer to this connection's request: a late one to a request since dropped.
    if (entry === undefined || entry.request !== id) return
    entry.held = true
    entry.active = true
    for (const handle of entry.handles) settle(handle)
  }

  #ended (topic: string, control: ControlMessage): void {
    const pushed = this.#pushed.delete(topic)
    const entry = this.#entries.get(topic)
    // A pending entry's request comes after what the server ended: its own answer is still to come.
    const held = entry !== undefined && entry.held
    if (held) this.#entries.delete(topic)
    if (!held && !pushed) return
    const code = typeof control.code === 'number' ? control.code : null
    const reason = typeof control.reason === 'string' ? control.reason : ''
    this.#host.unsubscribed({ topic, code, reason, ...optional('failure', this.#row(code, reason)?.failure) })
  }

  #refused (control: ControlMessage, topic: string | undefined): void {
    // `of`, `code` and `reason` are always sent (PROTOCOL.md section 12); `id` and `topic` may be left out.
    const { of, code, reason } = control as ControlMessage & Pick<RefusedInfo, 'of' | 'code' | 'reason'>
    const id = idOf(control.id)
    const row = this.#row(code, reason)
    this.#host.refused({ of, code, reason, ...optional('failure', row?.failure), ...optional('id', id), ...optional('topic', topic) })
    if (of !== MessageType.Subscribe || topic === undefined) return
    const entry = this.#entries.get(topic)
    if (entry === undefined || entry.request !== id) return
    this.#entries.delete(topic)
    const retry = row?.retry ?? 'backoff'
    const refusal: Ended = { code, reason, kind: kindForAdvice[retry], retry, ...optional('failure', row?.failure) }
    for (const handle of entry.handles) reject(handle, topic, refusal, 'refused')
    // Refused again after a reconnect: a subscription the app saw start has ended.
    if (entry.active) this.#host.unsubscribed({ topic, code, reason, ...optional('failure', row?.failure) })
  }

  #publication (topic: string, data: unknown): void {
    const entry = this.#entries.get(topic)
    if (entry === undefined) {
      // Not asked for through subscribe(): the server's own subscriptions go to the `publication`
      // event; anything else (a publication sent before our `unsubscribe` reached it) is dropped.
      if (this.#pushed.has(topic)) this.#host.publication({ topic, data })
      return
    }
    for (const handle of [...entry.handles]) {
      // A callback may unsubscribe another, or close the client: that stops at once, even within this publication.
      if (!entry.handles.has(handle) || this.#entries.get(topic) !== entry) continue
      try {
        handle.onData(data)
      } catch (err) {
        queueMicrotask(() => { throw err })
      }
    }
  }

  #row (code: number | null, reason: string): ReturnType<typeof rowForClose> {
    return code === null ? undefined : rowForClose(code, reason, this.#host.table)
  }
}

function settle (handle: Handle): void {
  handle.settle?.resolve()
  handle.settle = null
}

function reject (handle: Handle, topic: string, facts: Ended, how: string): void {
  if (handle.settle === null) return
  const detail = facts.code === null ? '' : ` (${facts.code}${facts.reason === '' ? '' : ' ' + facts.reason})`
  handle.settle.reject(new WsAuthError(`fastify-ws-auth client: subscription to ${JSON.stringify(topic)} ${how}${detail}`, facts))
  handle.settle = null
}
