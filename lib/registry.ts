import type { WebSocket } from 'ws'
import type { FailureClass } from './close-codes.ts'
import type { Session } from './session.ts'
import type { WsAuthUser } from './types.ts'

/** A user id as the registry keys it: the `id` of the loaded user. */
export type UserId = string | number

/** Which sessions a broadcast reaches: all of the named criteria must hold, or a predicate on the user. */
export interface BroadcastFilter {
  /** The user has at least one of these roles. */
  roles?: readonly string[]
  /** The user has all of these permissions (after `rolePermissions` expansion). */
  permissions?: readonly string[]
  /** The route URL pattern, exactly as declared (e.g. `/ws/entries/:id`). */
  route?: string
  /** Route parameters the connection was opened with, e.g. `{ station_id: '3' }` (all must match). */
  params?: Readonly<Record<string, string>>
  /** A predicate on the user and the connection. Cannot cross processes: with a cluster adapter it applies locally only. */
  user?: BroadcastPredicate
}

/** What a broadcast predicate sees of a connection besides its user. */
export interface ConnectionFacts {
  clientId: string
  route: string
  params: Readonly<Record<string, string>>
}

/** A broadcast predicate: `true` to send to this connection. */
export type BroadcastPredicate = (user: WsAuthUser, connection: ConnectionFacts) => boolean

/** One live session, as `connections()` reports it. */
export interface ConnectionInfo {
  clientId: string
  userId: UserId | undefined
  /** The route URL pattern. */
  route: string
  /** ISO time of the upgrade. */
  connectedAt: string
  /** ISO time of the token's `exp`, or `null`. */
  expiresAt: string | null
}

/** Counters since the plugin started, and what is live now. */
export interface WsAuthStats {
  /** Established sessions open now. */
  active: number
  /** Handshakes still authenticating: upgrade requests whose checks have not answered yet, and sockets upgraded and waiting. */
  authenticating: number
  /** Distinct users with an open session. */
  users: number
  /** Upgrade requests that reached a protected route. */
  attempts: number
  /** Sessions established. */
  established: number
  /** Refused handshakes and refreshes, by close code. */
  failures: Record<number, number>
  /** Established sessions the plugin closed (expiry, lifetime, eviction, revalidation...), by close code. */
  ended: Record<number, number>
  /** Revocation entries kept (until their tokens' expiry). */
  revocations: number
}

/** What to close a disconnected user's sockets with. */
export interface DisconnectOptions {
  code?: number
  reason?: string
}

/**
 * The in-process registry of sessions: every socket from its upgrade to its close, established
 * sessions by user, counters, and the sweeps that visit them all (heartbeat, revalidation).
 * A cluster adapter fans the same calls out to the registries of other instances.
 */
export class LocalRegistry {
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
      revocations: this.revocationCount()
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
    for (const session of [...this.pending, ...this.open]) session.close(failure)
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
function beat (session: Session): void {
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
