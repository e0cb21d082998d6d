import type { FastifyRequest } from 'fastify'
import type { CloseCodeTable, FailureClass } from '../../protocol/close-codes.ts'
import { MessageType } from '../../protocol/messages.ts'
import type { TopicIndex } from '../../cluster/topics.ts'
import { isThenable, type RolePermissions } from '../checks.ts'
import { byteLength } from '../waiting.ts'
import type { RefusalPhase, Topic, UserId, WsAuthUser } from '../../types.ts'
import type { Frame, GatePolicy } from './policy.ts'
import { FORBIDDEN, judge, type Verdict } from './rules.ts'
import { topicName, type MatchedTopic } from './topics.ts'

/*
 * One session's gate after the door: every client message of a route with `messages` or `topics`
 * passes it in arrival order (a check that awaits holds the ones behind it), and the topics the
 * socket holds live here.
 */

/** What a gate needs of its session (the server's `Session` is one). */
export interface GateMember {
  readonly clientId: string
  readonly userId: UserId | undefined
  readonly user: WsAuthUser | undefined
  readonly request: FastifyRequest
  readonly policy: { readonly url: string, readonly gate: GatePolicy | null }
  readonly isOpen: boolean
  send (data: string): void
  close (how: FailureClass): void
  /** Hands a message to the route handler. */
  emitMessage (data: unknown, isBinary: unknown): boolean
}

/** A refusal as it is logged, counted and audited. */
export interface RefusalReport {
  readonly phase: Exclude<RefusalPhase, 'handshake'>
  readonly failure: FailureClass
  readonly error?: unknown
  readonly messageType?: string | null
  readonly topic?: string
}

/** What a gate needs of the plugin. */
export interface GateHost<Member> {
  readonly rolePermissions: RolePermissions
  readonly maxPendingMessages: number
  readonly maxPendingBytes: number
  readonly table: CloseCodeTable
  readonly topicIndex: TopicIndex<Member>
  refused (member: Member, report: RefusalReport): void
  /** A check failed while re-checking subscriptions (the subscription is kept). */
  recheckFailed (member: Member, topic: string, error: unknown): void
}

type Queued = [data: unknown, isBinary: unknown]

export class Gate<Member extends GateMember> {
  /** Held topics: the pattern matched (re-checked when the user changes), or `null` for a server-side subscription. */
  readonly topics = new Map<string, MatchedTopic | null>()
  /** Frames waiting behind a check that awaits; `null` while none does. */
  private queue: Queued[] | null = null
  private queuedBytes = 0

  constructor (private readonly member: Member, private readonly host: GateHost<Member>) {}

  /** A client frame of an open session. */
  receive (data: unknown, isBinary: unknown): void {
    if (this.queue !== null) return this.enqueue(data, isBinary)
    const pending = this.handle(data, isBinary)
    if (pending === undefined) return
    this.queue = []
    pending.then(() => this.drain())
  }

  /** Handles a frame; returns a promise when its check awaits (frames behind it then wait). */
  private handle (data: unknown, isBinary: unknown): Promise<void> | undefined {
    const policy = this.member.policy.gate!
    const frame = policy.read(data, isBinary)
    if (policy.isTopicRequest(frame)) {
      return frame.type === MessageType.Subscribe ? this.subscribeRequest(frame.message!) : this.unsubscribeRequest(frame.message!)
    }
    const entry = policy.entryFor(frame.type)
    if (entry === true) {
      this.member.emitMessage(data, isBinary)
      return undefined
    }
    const verdict = entry === false ? FORBIDDEN : judge(entry, this.host.rolePermissions, this.member.request, this.member.user!, frame.message)
    if (!isThenable(verdict)) return this.settleMessage(verdict, data, isBinary, frame)
    return verdict.then(v => this.settleMessage(v, data, isBinary, frame))
  }

  private settleMessage (verdict: Verdict, data: unknown, isBinary: unknown, frame: Frame): undefined {
    if (!this.member.isOpen) return undefined
    if (verdict === null) {
      this.member.emitMessage(data, isBinary)
      return undefined
    }
    this.host.refused(this.member, { phase: 'message', failure: verdict.failure, error: verdict.error, messageType: frame.type })
    if (this.member.policy.gate!.closeOnRefusal) {
      this.member.close(verdict.failure)
      return undefined
    }
    this.member.send(this.refusal(frame.type, verdict.failure, requestId(frame.message)))
    return undefined
  }

  private enqueue (data: unknown, isBinary: unknown): void {
    const queue = this.queue!
    queue.push([data, isBinary])
    this.queuedBytes += byteLength(data)
    if (queue.length <= this.host.maxPendingMessages && this.queuedBytes <= this.host.maxPendingBytes) return
    this.member.request.log.warn({ route: this.member.policy.url, clientId: this.member.clientId, held: queue.length },
      'websocket closed: too many messages waiting behind a message check')
    this.queue = null
    this.member.close('policy_violation')
  }

  /** Handles the frames that waited, in order, until one awaits again. */
  private drain (): void {
    const queue = this.queue
    // Closed meanwhile (the queue overflowed): nothing waits any more.
    if (queue === null) return
    while (queue.length > 0 && this.member.isOpen) {
      const [data, isBinary] = queue.shift()!
      this.queuedBytes -= byteLength(data)
      const pending = this.handle(data, isBinary)
      if (pending !== undefined) {
        pending.then(() => this.drain())
        return
      }
    }
    this.queue = null
    this.queuedBytes = 0
  }

  private subscribeRequest (message: Record<string, unknown>): Promise<void> | undefined {
    const id = requestId(message)
    const name = topicName(message.topic)
    if (name === undefined) return this.refuseTopic(MessageType.Subscribe, 'not_found', undefined, id)
    if (this.topics.has(name)) return this.answer(MessageType.Subscribed, name, id)
    const policy = this.member.policy.gate!
    const topic = policy.topics!.match(name)
    if (topic === undefined) return this.refuseTopic(MessageType.Subscribe, 'not_found', name, id)
    if (this.topics.size >= policy.maxTopics) return this.refuseTopic(MessageType.Subscribe, 'too_many_subscriptions', name, id)
    const verdict = judge(topic.rule, this.host.rolePermissions, this.member.request, this.member.user!, publicTopic(topic))
    if (!isThenable(verdict)) return this.settleSubscribe(verdict, topic, id)
    return verdict.then(v => this.settleSubscribe(v, topic, id))
  }

  private settleSubscribe (verdict: Verdict, topic: MatchedTopic, id: string | number | undefined): undefined {
    if (!this.member.isOpen) return undefined
    if (verdict !== null) return this.refuseTopic(MessageType.Subscribe, verdict.failure, topic.name, id, verdict.error)
    this.hold(topic.name, topic)
    return this.answer(MessageType.Subscribed, topic.name, id)
  }

  private unsubscribeRequest (message: Record<string, unknown>): undefined {
    const id = requestId(message)
    const name = topicName(message.topic)
    if (name === undefined) return this.refuseTopic(MessageType.Unsubscribe, 'not_found', undefined, id)
    this.drop(name)
    return this.answer(MessageType.Unsubscribed, name, id)
  }

  /** Holds a topic (a server-side subscription when `topic` is `null`); `false` if it was held already. */
  hold (name: string, topic: MatchedTopic | null): boolean {
    if (this.topics.has(name)) return false
    this.topics.set(name, topic)
    this.host.topicIndex.add(name, this.member)
    return true
  }

  /** Leaves a topic; `false` if it was not held. */
  drop (name: string): boolean {
    if (!this.topics.delete(name)) return false
    this.host.topicIndex.delete(name, this.member)
    return true
  }

  /** Leaves a topic the server ends, telling the client why. */
  end (name: string, failure: FailureClass): boolean {
    if (!this.drop(name)) return false
    const { code, reason } = this.host.table[failure]
    this.member.send(JSON.stringify({ type: MessageType.Unsubscribed, topic: name, code, reason }))
    return true
  }

  /** Leaves every topic (the socket closed). */
  dropAll (): void {
    for (const name of this.topics.keys()) this.host.topicIndex.delete(name, this.member)
    this.topics.clear()
  }

  /**
   * Checks every subscription the client asked for again, with the session's current user (after
   * a refresh or a revalidation); those refused now end with their code. A check that throws keeps
   * the subscription (logged): an outage of what `authorize` reads does not unsubscribe everyone.
   */
  recheck (): void {
    for (const [name, topic] of this.topics) {
      if (topic === null) continue
      const verdict = judge(topic.rule, this.host.rolePermissions, this.member.request, this.member.user!, publicTopic(topic))
      if (isThenable(verdict)) verdict.then(v => this.afterRecheck(name, topic, v))
      else this.afterRecheck(name, topic, verdict)
    }
  }

  private afterRecheck (name: string, topic: MatchedTopic, verdict: Verdict): void {
    if (verdict === null || !this.member.isOpen || this.topics.get(name) !== topic) return
    if (verdict.failure === 'internal_error') return this.host.recheckFailed(this.member, name, verdict.error)
    this.end(name, verdict.failure)
  }

  private answer (type: string, topic: string, id: string | number | undefined): undefined {
    this.member.send(JSON.stringify(id === undefined ? { type, topic } : { type, topic, id }))
    return undefined
  }

  private refuseTopic (of: string, failure: FailureClass, topic: string | undefined, id: string | number | undefined, error?: unknown): undefined {
    this.host.refused(this.member, { phase: 'subscribe', failure, error, messageType: of, topic })
    this.member.send(this.refusal(of, failure, id, topic))
    return undefined
  }

  /** `{"type":"refused","of","topic"?,"code","reason","id"?}`, with the row of the table in force. */
  private refusal (of: string | null, failure: FailureClass, id: string | number | undefined, topic?: string): string {
    const { code, reason } = this.host.table[failure]
    const refusal: Record<string, unknown> = { type: MessageType.Refused, of }
    if (topic !== undefined) refusal.topic = topic
    refusal.code = code
    refusal.reason = reason
    if (id !== undefined) refusal.id = id
    return JSON.stringify(refusal)
  }
}

/** What `authorize` sees of a topic (without the rule). */
function publicTopic (topic: MatchedTopic): Topic {
  return { name: topic.name, pattern: topic.pattern, params: { ...topic.params } }
}

/** A request's `id`, when it is a string or a number. */
function requestId (message: Record<string, unknown> | null): string | number | undefined {
  const id = message?.id
  return typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)) ? id : undefined
}
