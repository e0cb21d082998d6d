import type { ClusterCommand, RevocationEntry, UserId } from '../../types.ts'

/** Questions an instance asks the others (answered with data, not a count). */
export type Query = ListQuery | { op: 'stats' }

/** Questions answered with a list of entries, each naming its instance. */
export type ListQuery = { op: 'connections', userId?: UserId } | { op: 'subscribers', topic: string }

/** Revocations Redis had lost, re-stored by one instance: the others add them without closing anything. */
export interface Restored { op: 'revocations', entries: RevocationEntry[] }

/** Requests of the adapter's own, besides the registry's commands. */
export type Internal = Query | Restored

/** What travels on the commands channel. */
export interface Envelope {
  /** Unique per requesting instance: the answers name it. */
  id: number
  /** The requesting instance: answers go to its replies channel. */
  from: string
  command: ClusterCommand | Internal
}

/** What travels on an instance's replies channel. */
export interface Reply {
  id: number
  from: string
  /** Sockets reached or closed, for a command. */
  count?: number
  /** The answer to a query. */
  data?: unknown
}

/** Parses a message of the commands channel; `undefined` for anything malformed (ignored). */
export function parseEnvelope (raw: string): Envelope | undefined {
  const value = parse(raw) as Partial<Envelope> | undefined
  if (typeof value?.id !== 'number' || typeof value.from !== 'string') return undefined
  const command = value.command as { op?: unknown } | undefined
  if (command === null || typeof command !== 'object' || typeof command.op !== 'string') return undefined
  return value as Envelope
}

/** Parses a message of a replies channel; `undefined` for anything malformed (ignored). */
export function parseReply (raw: string): Reply | undefined {
  const value = parse(raw) as Partial<Reply> | undefined
  if (typeof value?.id !== 'number' || typeof value.from !== 'string') return undefined
  if (value.count !== undefined && typeof value.count !== 'number') return undefined
  return value as Reply
}

/** A revocation entry read from Redis or a message, checked field by field; `undefined` when invalid. */
export function revocationEntry (value: unknown): RevocationEntry | undefined {
  const e = value as Partial<{ jti: unknown, userId: unknown, issuedBefore: unknown, expiresAt: unknown }> | null
  if (e === null || typeof e !== 'object' || typeof e.expiresAt !== 'number' || !Number.isFinite(e.expiresAt)) return undefined
  if (typeof e.jti === 'string') return { jti: e.jti, expiresAt: e.expiresAt }
  if ((typeof e.userId === 'string' || typeof e.userId === 'number') && typeof e.issuedBefore === 'number') {
    return { userId: e.userId, issuedBefore: e.issuedBefore, expiresAt: e.expiresAt }
  }
  return undefined
}

/** The member naming an entry in the revoked set: JSON with its fields in a fixed order. */
export function revocationMember (entry: RevocationEntry): string {
  return 'jti' in entry
    ? JSON.stringify({ jti: entry.jti, expiresAt: entry.expiresAt })
    : JSON.stringify({ userId: entry.userId, issuedBefore: entry.issuedBefore, expiresAt: entry.expiresAt })
}

function parse (raw: string): unknown {
  try {
    return JSON.parse(raw)
  } catch {
    return undefined
  }
}

interface Pending {
  /** Receivers of the request (PUBLISH's answer), this instance's own echo included; Infinity until known. */
  expected: number
  /** Replies and echoes seen. */
  seen: number
  replies: Reply[]
  timer: NodeJS.Timeout
  resolve: (replies: Reply[]) => void
}

/**
 * Requests this instance sent and the answers they gathered. A request ends when every receiver
 * PUBLISH counted has answered (this instance's own echo counts as one), or at its timeout,
 * with what arrived.
 */
export class Requests {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()

  /** `timedOut`: hears of each request that ended at its timeout without every answer. */
  constructor (private readonly timedOut: () => void = () => {}) {}

  open (timeoutMs: number): { id: number, done: Promise<Reply[]> } {
    const id = this.nextId++
    const done = new Promise<Reply[]>(resolve => {
      const timer = setTimeout(() => {
        this.timedOut()
        this.finish(id)
      }, timeoutMs)
      this.pending.set(id, { expected: Infinity, seen: 0, replies: [], timer, resolve })
    })
    return { id, done }
  }

  /** How many receivers PUBLISH reached. */
  expect (id: number, receivers: number): void {
    const p = this.pending.get(id)
    if (p === undefined) return
    p.expected = receivers
    if (p.seen >= p.expected) this.finish(id)
  }

  /** Our own request came back on the commands channel: one receiver accounted for. */
  echo (id: number): void {
    this.seen(id)
  }

  reply (reply: Reply): void {
    this.pending.get(reply.id)?.replies.push(reply)
    this.seen(reply.id)
  }

  /** Ends a request now, with what it has (PUBLISH failed, or shutdown). */
  finish (id: number): void {
    const p = this.pending.get(id)
    if (p === undefined) return
    this.pending.delete(id)
    clearTimeout(p.timer)
    p.resolve(p.replies)
  }

  finishAll (): void {
    for (const id of [...this.pending.keys()]) this.finish(id)
  }

  private seen (id: number): void {
    const p = this.pending.get(id)
    if (p === undefined) return
    p.seen++
    if (p.seen >= p.expected) this.finish(id)
  }
}
