import { MessageType, parseJsonObject } from '../../protocol/messages.ts'
import type { OptionChecker } from '../../protocol/options.ts'
import type { WsAuthMessage, WsAuthRouteOptions } from '../../types.ts'
import { StringFinder } from './frames.ts'
import { buildRule, type Rule } from './rules.ts'
import { TopicPatterns } from './topics.ts'

/*
 * A route's authorization after the door, checked once at declaration: who may send which message
 * (`messages`), which topics may be subscribed to (`topics`, `maxTopics`), and what a refused
 * message does (`onRefused`). A route with neither has no gate at all.
 */

/** A `messages` entry: `true` allowed, `false` never, or a rule. */
export type MessageEntry = boolean | Rule<WsAuthMessage>

/** What a frame is, as far as the gate needs to know. */
export interface Frame {
  /** Its `type`, when it is a JSON object with a string `type`, and was read; else `null`. */
  readonly type: string | null
  /** The parsed object, when it was read (`null`: not read, or not a JSON object). */
  readonly message: Record<string, unknown> | null
}

const UNREAD: Frame = Object.freeze({ type: null, message: null })
const DEFAULT_MAX_TOPICS = 100

export class GatePolicy {
  /** Entries by message type (`'*'` left out). */
  private readonly byType = new Map<string, MessageEntry>()
  /** The `'*'` entry: every frame of another type, not JSON, or binary. */
  readonly other: MessageEntry = true
  /** Finds frames that may be of a listed type (or a subscribe); `null` when nothing is listed. */
  private readonly finder: StringFinder | null
  readonly topics: TopicPatterns | null
  readonly maxTopics: number
  readonly closeOnRefusal: boolean

  constructor (c: OptionChecker, opts: WsAuthRouteOptions, appPing: boolean) {
    this.topics = opts.topics === undefined ? null : new TopicPatterns(c, 'topics', opts.topics)
    if (opts.maxTopics !== undefined && this.topics === null) throw c.problem('maxTopics', 'has no effect without wsAuth.topics')
    if (opts.onRefused !== undefined && opts.messages === undefined) throw c.problem('onRefused', 'has no effect without wsAuth.messages')
    this.maxTopics = c.count('maxTopics', opts.maxTopics, DEFAULT_MAX_TOPICS)
    this.closeOnRefusal = c.oneOf('onRefused', opts.onRefused, ['reply', 'close'] as const, 'reply') === 'close'
    const reserved = new Set<string>([MessageType.Auth])
    if (appPing) reserved.add(MessageType.Ping)
    if (this.topics !== null) reserved.add(MessageType.Subscribe).add(MessageType.Unsubscribe)
    if (opts.messages !== undefined) {
      const messages = opts.messages as unknown
      if (messages === null || typeof messages !== 'object' || Array.isArray(messages)) throw c.problem('messages', 'must be an object of message type -> policy')
      for (const [type, value] of Object.entries(messages)) {
        if (type.length === 0) throw c.problem('messages', 'cannot list an empty message type')
        if (reserved.has(type)) throw c.problem(`messages.${type}`, `names a message the plugin handles itself (reserved here: ${[...reserved].join(', ')})`)
        const entry: MessageEntry = typeof value === 'boolean' ? value : buildRule<WsAuthMessage>(c, `messages.${type}`, value)
        if (type === '*') this.other = entry
        else this.byType.set(type, entry)
      }
    }
    const wanted = [...this.byType.keys()]
    if (this.topics !== null) wanted.push(MessageType.Subscribe, MessageType.Unsubscribe)
    this.finder = wanted.length === 0 ? null : new StringFinder(wanted)
  }

  /**
   * Reads what the gate needs of a frame. A text frame is parsed only when its type matters: it
   * may be a listed type (or a subscribe), or every frame is checked (`'*'` is not `true`).
   */
  read (data: unknown, isBinary: unknown): Frame {
    if (isBinary === true || !Buffer.isBuffer(data)) return UNREAD
    if (this.other === true && (this.finder === null || !this.finder.mayHold(data))) return UNREAD
    const message = parseJsonObject(data.toString('utf8'))
    if (message === undefined) return UNREAD
    return { type: typeof message.type === 'string' ? message.type : null, message }
  }

  /** Whether a frame is a `subscribe` or `unsubscribe` this route handles. */
  isTopicRequest (frame: Frame): boolean {
    return this.topics !== null && (frame.type === MessageType.Subscribe || frame.type === MessageType.Unsubscribe)
  }

  /** The entry that governs a message of this type. */
  entryFor (type: string | null): MessageEntry {
    if (type === null) return this.other
    return this.byType.get(type) ?? this.other
  }
}
