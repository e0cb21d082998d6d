import type { WebSocket } from 'ws'
import type { FailureClass } from '../protocol/close-codes.ts'
import type { BroadcastFilter, BroadcastPredicate, ConnectionInfo, SubscriberInfo, UserId, WsAuthStats, WsAuthUser } from '../types.ts'
import { TopicIndex } from './topics.ts'

/**
 * What the registry needs of a session (the server's `Session` is one): the registry is written
 * against this role, so that it is tested and reused without the server.
 */
export interface Member {
  readonly clientId: string
  /** ms since the epoch. */
  readonly connectedAt: number
  readonly userId: UserId | undefined
  readonly user: WsAuthUser | undefined
  /** When the token expires (ms since the epoch), or `null`. */
  readonly expiresAt: number | null
  readonly ws: WebSocket
  readonly policy: { readonly url: string }
  readonly request: { readonly params: unknown }
  /** Set by a pong; cleared by each heartbeat sweep. */
  alive: boolean
  /** Closes the socket with a row of the close-code table; `report: false` leaves it out of the ended counts and logs. */
  close (failure: FailureClass, report?: boolean): void
  /** Ends the socket's subscription to a topic, telling the client why; `false` when it did not hold it. */
  endSubscription (topic: string, failure: FailureClass): boolean
}

/**
 * The in-process registry of sessions: every socket from its upgrade to its close, established
 * sessions by user, counters, and the sweeps that visit them all (heartbeat, revalidation).
 * A cluster adapter fans the same calls out to the registries of other instances.
 */
export class LocalRegistry<Session extends Member = Member> {
  /** Sessions still authenticating after their upgrade (waiting for the auth message or a hook). */
  private readonly pending = new Set<Session>()
  /** Established sessions, oldest first. */
  private readonly open = new Set<Session>()
  /** Established sessions with a user id, by user: the session itself while it is the user's only one. */
  private readonly byUser = new Map<UserId, Session | Set<Session>>()
  attempts = 0
  /** Upgrade requests whose checks are still running before the upgrade (bounded by `authTimeout`). */
  upgrading = 0
  private establishedCount = 0
  private readonly failures: Record<number, number> = Object.create(null)
  private readonly endedCodes: Record<number, number> = Object.create(null)
  private readonly refusedCodes: Record<number, number> = Object.create(null)
  /** Which sessions hold which topic. */
  readonly topics = new TopicIndex<Session>()

  constructor (
    private readonly permissionsOf: (user: WsAuthUser) => ReadonlySet<string>,
    private readonly revocationCount: () => number
  ) {}

  /** A session that did not settle at its upgrade (most are established or refused there and then). */
  track (session: Session): void {
    this.pending.add(session)
  }

  opened (session: Session): void {
    if (this.pending.size > 0) this.pending.delete(session)
    this.open.add(session)
    this.establishedCount++
    const userId = session.userId
    if (userId === undefined) return
    const had = this.byUser.get(userId)
    if (had === undefined) this.byUser.set(userId, session)
    else if (had instanceof Set) had.add(session)
    else this.byUser.set(userId, new Set([had, session]))
  }

  gone (session: Session): void {
    if (this.pending.size > 0) this.pending.delete(session)
    if (!this.open.delete(session) || session.userId === undefined) return
    const had = this.byUser.get(session.userId)
    if (had === session) {
      this.byUser.delete(session.userId)
    } else if (had instanceof Set) {
      had.delete(session)
      if (had.size === 0) this.byUser.delete(session.userId)
    }
  }

  countFailure (code: number): void {
    this.failures[code] = (this.failures[code] ?? 0) + 1
  }

  countEnded (code: number): void {
    this.endedCodes[code] = (this.endedCodes[code] ?? 0) + 1
  }

  countRefused (code: number): void {
    this.refusedCodes[code] = (this.refusedCodes[code] ?? 0) + 1
  }

  /** Open sessions of a user, oldest first. */
  sessionsOf (userId: UserId): readonly Session[] {
    const had = this.byUser.get(userId)
    if (had === undefined) return []
    return had instanceof Set ? [...had] : [had]
  }

  /** Open sessions, oldest first. */
  openSessions (): Session[] {
    return [...this.open]
  }

  byClientId (clientId: string): Session | undefined {
    for (const session of this.open) if (session.clientId === clientId) return session
    return undefined
  }

  countOf (userId: UserId): number {
    const had = this.byUser.get(userId)
    if (had === undefined) return 0
    return had instanceof Set ? had.size : 1
  }

  sendToUser (userId: UserId, data: unknown): number {
    const sessions = this.sessionsOf(userId)
    if (sessions.length === 0) return 0
    const payload = encode(data)
    let reached = 0
    for (const session of sessions) {
      if (sendTo(session.ws, payload)) reached++
    }
    return reached
  }

  broadcast (data: unknown, filter?: BroadcastFilter | BroadcastPredicate): number {
    const match = typeof filter === 'function' ? { user: filter } : filter
    const payload = encode(data)
    let reached = 0
    for (const session of this.open) {
      if (match !== undefined && !this.matches(session, match)) continue
      if (sendTo(session.ws, payload)) reached++
    }
    return reached
  }

  /** Sends a ready `publication` frame to every session holding the topic; returns the sockets reached. */
  publish (topic: string, frame: string): number {
    const members = this.topics.membersOf(topic)
    if (members === undefined) return 0
    let reached = 0
    for (const session of members) {
      if (sendTo(session.ws, frame)) reached++
    }
    return reached
  }

  /** The sessions holding a topic. */
  subscribers (topic: string): SubscriberInfo[] {
    return [...this.topics.membersOf(topic) ?? []].map(s => ({ clientId: s.clientId, userId: s.userId }))
  }

  /** Ends a user's subscriptions to a topic with `failure`; returns the sockets it ended. */
  unsubscribeUser (userId: UserId, topic: string, failure: FailureClass): number {
    let ended = 0
    for (const session of this.sessionsOf(userId)) {
      if (session.endSubscription(topic, failure)) ended++
    }
    return ended
  }

  /** Closes every open session of a user with `failure`, or with a custom code and reason. */
  disconnectUser (userId: UserId, close: (session: Session) => void): number {
    const sessions = this.sessionsOf(userId)
    for (const session of sessions) close(session)
    return sessions.length
  }

  connections (userId?: UserId): ConnectionInfo[] {
    const sessions = userId === undefined ? [...this.open] : this.sessionsOf(userId)
    return sessions.map(s => ({
      clientId: s.clientId,
      userId: s.userId,
      route: s.policy.url,
      connectedAt: new Date(s.connectedAt).toISOString(),
      expiresAt: s.expiresAt === null ? null : new Date(s.expiresAt).toISOString()
    }))
  }

  stats (): WsAuthStats {
    return {
      active: this.open.size,
      authenticating: this.pending.size + this.upgrading,
      users: this.byUser.size,
      attempts: this.attempts,
      established: this.establishedCount,
      failures: { ...this.failures },
      ended: { ...this.endedCodes },
      revocations: this.revocationCount(),
      refused: { ...this.refusedCodes },
      subscriptions: this.topics.size
    }
  }

  /** Terminates sockets that missed the last ping, pings the rest. One timer for all sockets. */
  heartbeat (): void {
    for (const session of this.pending) beat(session)
    for (const session of this.open) beat(session)
  }

  /** Open sessions grouped by user (sessions without a user id each alone). */
  openGroups (): Session[][] {
    const groups: Session[][] = [...this.byUser.values()].map(had => had instanceof Set ? [...had] : [had])
    for (const session of this.open) {
      if (session.userId === undefined) groups.push([session])
    }
    return groups
  }

  /** Closes every live socket with `failure` (shutdown). */
  closeAll (failure: FailureClass): void {
    for (const session of [...this.pending, ...this.open]) session.close(failure, false)
  }

  private matches (session: Session, filter: BroadcastFilter): boolean {
    const user = session.user as WsAuthUser
    if (filter.route !== undefined && session.policy.url !== filter.route) return false
    if (filter.params !== undefined) {
      const params = session.request.params as Record<string, string> | undefined
      for (const [name, value] of Object.entries(filter.params)) {
        if (params?.[name] !== value) return false
      }
    }
    if (filter.roles !== undefined) {
      const roles = (user as { roles?: unknown }).roles
      if (!Array.isArray(roles) || !filter.roles.some(r => roles.includes(r))) return false
    }
    if (filter.permissions !== undefined) {
      const granted = this.permissionsOf(user)
      if (!filter.permissions.every(p => granted.has(p))) return false
    }
    if (filter.user === undefined) return true
    const facts = { clientId: session.clientId, route: session.policy.url, params: (session.request.params ?? {}) as Record<string, string> }
    return filter.user(user, facts) === true
  }
}

/** Objects are JSON-encoded once for all recipients; strings and binary data go as they are. */
export function encode (data: unknown): string | Buffer | ArrayBuffer | ArrayBufferView {
  if (typeof data === 'string' || Buffer.isBuffer(data) || data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data
  return JSON.stringify(data)
}

/** Terminates a socket that missed the last ping; pings it otherwise. */
function beat (session: Member): void {
  if (!session.alive) {
    session.ws.terminate()
    return
  }
  session.alive = false
  try {
    session.ws.ping()
  } catch {
    // The socket is closing: it leaves on its own 'close'.
  }
}

function sendTo (ws: WebSocket, payload: string | Buffer | ArrayBuffer | ArrayBufferView): boolean {
  if (ws.readyState !== 1) return false
  ws.send(payload)
  return true
}
