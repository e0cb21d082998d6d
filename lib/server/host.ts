import { STATUS_CODES } from 'node:http'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import { randomUUID } from 'node:crypto'
import { authenticate, idOf, type AuthContext, type Outcome, type Verifier } from './authenticate.ts'
import { hasRoleAndPermissions, permissionsOf } from './checks.ts'
import { closeCodes, type FailureClass } from '../protocol/close-codes.ts'
import { Deadlines } from './deadlines.ts'
import { NoVerifierError } from '../errors.ts'
import type { Config, RoutePolicy } from './options.ts'
import { scrubError } from './redact.ts'
import { findToken, type FoundToken } from './sources.ts'
import { Tickets } from './tickets.ts'
import type { GaugeSource } from './metrics.ts'
import type { Observer } from './observer.ts'
import { LocalRegistry } from '../cluster/registry.ts'
import { covers, RevocationList } from '../cluster/revocation.ts'
import type { AppClose, Session, SessionHost } from './session.ts'
import type { RefusalReport } from './gate/gate.ts'
import type { RolePermissions } from './checks.ts'
import type { TopicIndex } from '../cluster/topics.ts'
import type { CloseCodeTable } from '../protocol/close-codes.ts'
import type { AcquireResult, AuthAttempt, ClusterCommand, ClusterNode, RefusalPhase, RevocationEntry, Slot, SubscriberInfo, TokenSource, UserId, WsAuthClaims, WsAuthPluginOptions, WsAuthUser } from '../types.ts'

type Failure = Extract<Outcome, { ok: false }>

/** What a refusal's log line and audit hook are told besides the outcome. */
interface FailureFacts {
  /** The token refused, scrubbed from any error logged. */
  token?: string | undefined
  source?: TokenSource | undefined
  /** The HTTP status answered, with `reject: 'http'`. */
  status?: number
  /** The open session whose refresh was refused. */
  refreshing?: Session | undefined
}

const ALL_REQUEST_SOURCES = ['query', 'header', 'cookie', 'protocol', 'ticket'] as const

/**
 * What sessions need from the plugin, in one place: the close-code table, verification, the
 * registry and limits, logging and the audit hooks.
 */
export class Host implements SessionHost, AuthContext, ClusterNode {
  readonly instanceId = randomUUID()
  readonly revocations = new RevocationList()
  readonly maxAuthMessageBytes: number
  readonly maxPendingMessages: number
  readonly maxPendingBytes: number
  readonly appPing: boolean
  readonly keepsClaims: boolean
  readonly expiryWarning: number | null
  readonly registry: LocalRegistry<Session>
  readonly rolePermissions: RolePermissions
  readonly table: CloseCodeTable
  readonly topicIndex: TopicIndex<Session>
  readonly tickets: Tickets
  /** Session deadlines fire within this many ms after they are due. */
  readonly deadlines = new Deadlines(200)
  verifier: Verifier = () => { throw new NoVerifierError() }
  /** Metrics and spans: set at registration when either is on (the one check a handshake pays otherwise). */
  observer: Observer | null = null
  private revalidating = false

  /** Sessions holding a slot in the cluster adapter. */
  private readonly slotted = new WeakSet<Session>()

  constructor (readonly config: Config, readonly log: FastifyBaseLogger) {
    this.maxAuthMessageBytes = config.maxAuthMessageBytes
    this.maxPendingMessages = config.maxPendingMessages
    this.maxPendingBytes = config.maxPendingBytes
    this.appPing = config.appPing
    this.keepsClaims = config.revalidateInterval !== null
    this.expiryWarning = config.expiryWarning
    this.registry = new LocalRegistry(user => permissionsOf(user, config.rolePermissions), () => this.revocations.count())
    this.rolePermissions = config.rolePermissions
    this.table = config.table
    this.topicIndex = this.registry.topics
    this.tickets = new Tickets(config.adapter)
  }

  authenticate (token: string, request: FastifyRequest, policy: RoutePolicy): Outcome | Promise<Outcome> {
    return authenticate(token, request, policy, this)
  }

  isRevoked (claims: WsAuthClaims, userId: UserId | undefined): boolean {
    return this.revocations.isRevoked(claims, userId)
  }

  /** Whether a new session of this user fits under `maxConnectionsPerUser` (evicting the oldest if so configured). */
  admit (session: Session): boolean | Promise<boolean> {
    const max = this.config.maxConnectionsPerUser
    if (max === null || session.userId === undefined) return true
    if (this.config.adapter !== null) return this.admitCluster(session, max)
    const sessions = this.registry.sessionsOf(session.userId)
    if (sessions.length < max) return true
    if (this.config.onLimit === 'reject') return false
    for (let i = 0; i <= sessions.length - max; i++) sessions[i].close('too_many_connections')
    return true
  }

  private async admitCluster (session: Session, max: number): Promise<boolean> {
    const slot = slotOf(session)
    const result: AcquireResult = await this.config.adapter!.acquire(slot, max, this.config.onLimit)
    if (!result.ok) {
      // Refused here with its own row; the session's later refusal (4029) is then a no-op.
      if (result.unavailable === true) session.refuse({ ok: false, failure: 'try_again_later', userId: session.userId })
      return false
    }
    this.slotted.add(session)
    // The session may have closed while the slot was being taken.
    if (!session.isAlive) this.releaseSlot(session)
    for (const clientId of result.evict ?? []) {
      if (this.execute({ op: 'closeClient', clientId, failure: 'too_many_connections' }) === 0) {
        this.config.adapter!.publish({ op: 'closeClient', clientId, failure: 'too_many_connections' }).catch(() => {})
      }
    }
    return true
  }

  /** With `reject: 'http'`: whether this user is already at the limit (checked before the upgrade). */
  atLimit (user: WsAuthUser): boolean {
    const max = this.config.maxConnectionsPerUser
    const userId = idOf(user)
    return max !== null && this.config.onLimit === 'reject' && userId !== undefined && this.registry.countOf(userId) >= max
  }

  publicUser (user: WsAuthUser): unknown {
    const own = (user as { permissions?: unknown }).permissions
    const permissions = this.config.rolePermissions === null && Array.isArray(own) && own.every(p => typeof p === 'string')
      ? own as string[]
      : [...permissionsOf(user, this.config.rolePermissions)]
    return this.config.publicUser(user, { permissions })
  }

  closeSocket (ws: WebSocket, failure: FailureClass): void {
    const { code, reason } = this.config.table[failure]
    ws.close(code, reason)
  }

  failed (session: Session, outcome: Failure, token?: string): void {
    this.logFailure(session.request, session.policy, outcome, { token, source: session.source, refreshing: session.isOpen ? session : undefined })
  }

  /** Logs, counts and audits a refused handshake, or the refused refresh of an open session (`facts.refreshing`). */
  logFailure (request: FastifyRequest, policy: RoutePolicy, outcome: Failure, facts: FailureFacts = {}): void {
    const { token, status } = facts
    this.observer?.failed(request, policy.url, outcome, facts.source, facts.refreshing)
    const attempt = this.refusedAttempt(request, policy.url, outcome.failure, outcome.userId, 'handshake')
    if (facts.source !== undefined) attempt.source = facts.source
    if (status !== undefined) attempt.status = status
    this.registry.countFailure(attempt.code!)
    if (outcome.failure === 'internal_error') {
      this.logScrubbed(request, attempt, outcome.error, 'websocket authentication error', token)
    } else if (outcome.failure === 'try_again_later' && outcome.error !== undefined) {
      // Why the keys or the ticket store could not answer: an operator needs it, scrubbed.
      request.log.warn({ ...attempt, err: scrubError(outcome.error, token) }, 'websocket authentication failed')
    } else {
      request.log.warn(attempt, 'websocket authentication failed')
    }
    this.audit(this.config.onAuthFailure, attempt, request)
  }

  /** Logs, counts and audits a refused message or subscription. */
  refused (session: Session, report: RefusalReport): void {
    const request = session.request
    const attempt = this.refusedAttempt(request, session.policy.url, report.failure, session.userId, report.phase)
    this.observer?.refused(session.policy.url, report.phase, attempt.code!)
    this.registry.countRefused(attempt.code!)
    attempt.clientId = session.clientId
    attempt.messageType = shortened(report.messageType)
    if (report.topic !== undefined) attempt.topic = report.topic
    const what = report.phase === 'message' ? 'message' : 'subscription'
    if (report.failure === 'internal_error') {
      this.logScrubbed(request, attempt, report.error, `websocket ${what} check failed`)
    } else {
      request.log.warn(attempt, `websocket ${what} refused`)
    }
    this.audit(this.config.onAuthFailure, attempt, request)
  }

  recheckFailed (session: Session, topic: string, error: unknown): void {
    this.logScrubbed(session.request, { route: session.policy.url, userId: session.userId, clientId: session.clientId, topic }, error,
      'websocket subscription check failed; subscription kept')
  }

  /** The facts of a refusal, as logged and audited (the ip only when a line or a hook will show it). */
  private refusedAttempt (request: FastifyRequest, route: string, failure: FailureClass, userId: UserId | undefined, phase: RefusalPhase): AuthAttempt {
    const attempt = attemptOf(request, route, 'warn', this.config.onAuthFailure !== undefined)
    attempt.failure = failure
    attempt.code = this.config.table[failure].code
    attempt.userId = userId
    attempt.phase = phase
    return attempt
  }

  /**
   * Logs an error a hook threw, at `error`. A hook may have quoted the request (its URL, its
   * headers): the token it carried (`token`, else the one in the request) is scrubbed from it.
   */
  private logScrubbed (request: FastifyRequest, fields: object, error: unknown, msg: string, token?: string): void {
    const carried = token ?? findToken(request, ALL_REQUEST_SOURCES, this.config)?.token
    request.log.error({ ...fields, err: scrubError(error, carried) }, msg)
  }

  refuseHttp (request: FastifyRequest, reply: FastifyReply, policy: RoutePolicy, outcome: Failure, found: FoundToken | undefined): FastifyReply {
    const entry = this.config.table[outcome.failure]
    const status = entry.status ?? 401
    this.logFailure(request, policy, outcome, { token: found?.token, source: found?.source, status })
    return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status], message: entry.reason, failure: outcome.failure })
  }

  ended (session: Session, how: FailureClass | AppClose): void {
    const failure = typeof how === 'object' ? undefined : how
    const code = typeof how === 'object' ? how.code : this.config.table[how].code
    this.registry.countEnded(code)
    session.request.log.info({ route: session.policy.url, userId: session.userId, clientId: session.clientId, code, failure },
      'websocket session ended')
  }

  established (session: Session): void {
    this.registry.opened(session)
    this.observer?.established(session)
    const audited = this.config.onAuthSuccess !== undefined
    if (!audited && !wouldLog(session.request.log, 'info')) return
    // Logged or audited: the ip is wanted (attemptOf would ask the logger again).
    const attempt: AuthAttempt = { route: session.policy.url, ip: session.request.ip }
    attempt.userId = session.userId
    attempt.clientId = session.clientId
    if (session.source !== undefined) attempt.source = session.source
    session.request.log.info(attempt, 'websocket authenticated')
    this.audit(this.config.onAuthSuccess, attempt, session.request)
  }

  refreshed (session: Session): void {
    this.observer?.refreshed(session)
    session.request.log.info({ route: session.policy.url, userId: session.userId, clientId: session.clientId }, 'websocket token refreshed')
  }

  /** The socket closed, with `code` (sent, or received from the client). */
  gone (session: Session, code: number): void {
    this.registry.gone(session)
    this.observer?.gone(session, code)
    this.releaseSlot(session)
  }

  private releaseSlot (session: Session): void {
    if (this.slotted.delete(session)) this.config.adapter!.release(slotOf(session))
  }

  /** Stores a revocation and closes the local sessions it covers with 4001 `Token revoked`. */
  revokeLocal (entry: RevocationEntry): number {
    this.revocations.add(entry)
    let closed = 0
    for (const session of this.registry.openSessions()) {
      if (covers(entry, session)) {
        session.close('token_revoked')
        closed++
      }
    }
    return closed
  }

  /** What the gauges read at scrape time. */
  gaugeSource (): GaugeSource {
    return {
      sessionsByRoute: () => {
        const byRoute = new Map<string, number>()
        for (const session of this.registry.openSessions()) byRoute.set(session.policy.url, (byRoute.get(session.policy.url) ?? 0) + 1)
        return byRoute
      },
      authenticating: () => this.registry.stats().authenticating,
      revocations: () => this.revocations.count(),
      subscriptions: () => this.registry.stats().subscriptions,
      clusterUp: () => {
        const up = this.config.adapter?.isUp?.()
        return up === undefined ? undefined : up ? 1 : 0
      }
    }
  }

  // ClusterNode: what a cluster adapter sees of this instance.

  clusterRequest (op: 'acquire' | 'fanout' | 'ticket', seconds: number): void {
    this.observer?.metrics?.clusterRequest(op, seconds)
  }

  fanoutTimedOut (): void {
    this.observer?.metrics?.fanoutTimedOut()
  }

  execute (command: ClusterCommand): number {
    switch (command.op) {
      case 'sendToUser': return this.registry.sendToUser(command.userId, decodeData(command.data, command.binary))
      case 'broadcast': return this.registry.broadcast(decodeData(command.data, command.binary), command.filter)
      case 'disconnectUser': return this.registry.disconnectUser(command.userId, closerFor(command.code, command.reason))
      case 'revoke': return this.revokeLocal(command.entry)
      // Commands from other instances arrive through Redis: the fields are checked, not trusted.
      case 'publish': return typeof command.frame === 'string' ? this.registry.publish(String(command.topic), command.frame) : 0
      case 'unsubscribeUser': return this.registry.unsubscribeUser(command.userId, String(command.topic), 'forbidden')
      case 'closeClient': {
        const session = this.registry.byClientId(command.clientId)
        if (session === undefined) return 0
        session.close(command.failure)
        return 1
      }
      default: return 0
    }
  }

  slots (): Slot[] {
    return this.registry.openSessions().filter(s => this.slotted.has(s)).map(slotOf)
  }

  connections (userId?: UserId) {
    return this.registry.connections(userId)
  }

  subscribers (topic: string): SubscriberInfo[] {
    return this.registry.subscribers(topic)
  }

  stats () {
    return this.registry.stats()
  }

  addRevocations (entries: RevocationEntry[]): void {
    for (const entry of entries) this.revocations.add(entry)
  }

  /**
   * Calls `loadUser` again for every user with an open session (once per user, with the claims
   * and request of its newest session): a user now missing closes with 4002, one that lost a
   * role or permission of a route with 4003. A `loadUser` that throws is logged and the sessions
   * stay: an outage of the user store does not log everyone out.
   */
  async revalidate (): Promise<void> {
    if (this.revalidating) return
    this.revalidating = true
    try {
      await Promise.all(this.registry.openGroups().map(group => this.revalidateGroup(group)))
    } finally {
      this.revalidating = false
    }
  }

  private async revalidateGroup (group: Session[]): Promise<void> {
    const newest = group[group.length - 1]
    let user: WsAuthUser | null | undefined
    try {
      user = await this.config.loadUser(newest.claims!, newest.request) as WsAuthUser | null | undefined
    } catch (err) {
      this.log.error({ err, userId: newest.userId }, 'fastify-ws-auth: revalidation failed; sessions kept')
      return
    }
    for (const session of group) {
      if (!session.isOpen) continue
      if (!user || idOf(user) !== session.userId) {
        session.close('user_not_found')
        continue
      }
      session.replaceUser(user)
      if (!hasRoleAndPermissions(user, session.policy, this.config.rolePermissions)) session.close('forbidden')
      else session.recheckTopics()
    }
  }

  /** Runs an audit hook; its errors are logged, never thrown into the handshake. */
  private audit (hook: WsAuthPluginOptions['onAuthSuccess'], attempt: AuthAttempt, request: FastifyRequest): void {
    if (hook === undefined) return
    const report = (err: unknown) => request.log.error({ err }, 'fastify-ws-auth: audit hook failed')
    try {
      const result = hook(attempt, request)
      if (result !== undefined && typeof (result as Promise<void>).then === 'function') (result as Promise<void>).then(undefined, report)
    } catch (err) {
      report(err)
    }
  }
}

/** A message type as logged: at most 256 characters (it is the client's to choose). */
function shortened (type: string | null | undefined): string | null | undefined {
  return typeof type === 'string' && type.length > 256 ? type.slice(0, 256) + '…' : type
}

function slotOf (session: Session): Slot {
  return { userId: session.userId!, clientId: session.clientId, connectedAt: session.connectedAt }
}

/** Data of a cluster command: text as is, binary as base64. */
function decodeData (data: string, binary: boolean | undefined): string | Buffer {
  return binary === true ? Buffer.from(data, 'base64') : data
}

/** How a disconnected session closes: 4001 `Token revoked` unless a code is given. */
function closerFor (code: number | undefined, reason: string | undefined): (session: Session) => void {
  if (code === undefined && reason === undefined) return session => session.close('token_revoked')
  // A reason alone closes with the code of `token_revoked` as the table has it by default.
  const how: AppClose = { code: code ?? closeCodes.token_revoked.code, reason: reason ?? '' }
  return session => session.close(how)
}

/**
 * The facts of an attempt. `ip` costs a system call on a fresh socket: it is read only when a log
 * line at `level` would be written or an audit hook will see it.
 */
function attemptOf (request: FastifyRequest, route: string, level: 'info' | 'warn', audited: boolean): AuthAttempt {
  const ip = audited || wouldLog(request.log, level) ? request.ip : ''
  return { route, ip }
}

/** Whether a logger writes at `level`; Fastify's logger for `logger: false` writes nothing. */
function wouldLog (log: FastifyBaseLogger, level: 'info' | 'warn'): boolean {
  const check = (log as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled
  if (typeof check === 'function') return check.call(log, level)
  return log[level].name !== 'noop'
}
