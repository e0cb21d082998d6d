import { createHash, randomBytes } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { admitClaims, type AuthContext, type Outcome } from './authenticate.ts'
import { isThenable } from './checks.ts'
import { InvalidArgumentError, InvalidOptionError } from '../errors.ts'
import type { RoutePolicy } from './options.ts'
import { claimsProblem } from './token-shape.ts'
import type { ClusterAdapter, IssueTicketOptions, WsAuthClaims } from '../types.ts'

/*
 * One-time connection tickets: `issueTicket()` keeps the claims under a hash of a random ticket
 * for `ttl`; the `ticket` source takes them back, once, and the handshake goes on from `loadUser`
 * as if a token had carried them. Kept here, or by the cluster adapter so that any instance
 * redeems a ticket (and only one does).
 */

/** Random bytes in a ticket: 144 bits, 24 base64url characters. */
const TICKET_BYTES = 18
const TICKET = /^[A-Za-z0-9_-]{24}$/
const DEFAULT_TTL = 30_000
const MAX_TTL = 600_000
/** The largest claims a ticket holds, in bytes of JSON. */
export const MAX_TICKET_CLAIMS_BYTES = 8192
/** Tickets this instance keeps at most without an adapter; beyond, the oldest are dropped. */
const MAX_LOCAL_TICKETS = 100_000

/** Where tickets wait: this instance's memory, or the cluster adapter's store. */
interface TicketStore {
  put (key: string, record: string, ttl: number): Promise<void> | void
  take (key: string): Promise<string | null> | string | null
}

/** What a ticket's redemption gave: its claims, or why not. */
type Redeemed = { ok: true, claims: WsAuthClaims } | Extract<Outcome, { ok: false }>

const INVALID: Redeemed = Object.freeze({ ok: false, failure: 'invalid_ticket' })

/** Tickets of one plugin instance. */
export class Tickets {
  /** The routes that read tickets (their `sources` list `ticket`), by pattern. */
  readonly routes = new Set<string>()
  private readonly store: TicketStore

  constructor (adapter: ClusterAdapter | null) {
    this.store = adapter === null ? new LocalTickets() : adapterStore(adapter)
  }

  async issue (claims: unknown, options: IssueTicketOptions | undefined): Promise<string> {
    const { ttl, route } = this.checkOptions(options)
    const record = JSON.stringify({ route, claims: checkClaims(claims) })
    const ticket = randomBytes(TICKET_BYTES).toString('base64url')
    await this.store.put(keyOf(ticket), record, ttl)
    return ticket
  }

  /** Takes a ticket back for a handshake to `route`; never throws, never rejects. */
  redeem (ticket: string, route: string): Redeemed | Promise<Redeemed> {
    if (!TICKET.test(ticket)) return INVALID
    let record: string | null | Promise<string | null>
    try {
      record = this.store.take(keyOf(ticket))
    } catch (error) {
      return { ok: false, failure: 'try_again_later', error }
    }
    if (!isThenable(record)) return opened(record, route)
    return Promise.resolve(record).then(
      taken => opened(taken, route),
      (error: unknown): Redeemed => ({ ok: false, failure: 'try_again_later', error }))
  }

  private checkOptions (options: IssueTicketOptions | undefined): { ttl: number, route: string | null } {
    if (options === undefined) return { ttl: DEFAULT_TTL, route: null }
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('issueTicket: options', 'must be an object of ttl, route')
    const ttl = options.ttl ?? DEFAULT_TTL
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL) {
      throw new InvalidArgumentError('issueTicket: ttl', `must be a whole number of ms from 1 to ${MAX_TTL}`)
    }
    const route = options.route ?? null
    if (route !== null && (typeof route !== 'string' || (this.routes.size > 0 && !this.routes.has(route)))) {
      throw new InvalidArgumentError('issueTicket: route', `must be the pattern of a route that reads tickets (${[...this.routes].join(', ') || 'none here'})`)
    }
    return { ttl, route }
  }
}

/** The handshake of a ticket: redeemed, then the checks after verification (revocation, `loadUser`, ...). */
export function redeemTicket (tickets: Tickets, ticket: string, request: FastifyRequest, policy: RoutePolicy, ctx: AuthContext): Outcome | Promise<Outcome> {
  const redeemed = tickets.redeem(ticket, policy.url)
  if (isThenable(redeemed)) return redeemed.then(r => r.ok ? admitClaims(r.claims, r.claims, request, policy, ctx) : r)
  return redeemed.ok ? admitClaims(redeemed.claims, redeemed.claims, request, policy, ctx) : redeemed
}

/** The claims of a taken record, when it was issued for this route (or any) and they have not expired. */
function opened (record: string | null, route: string): Redeemed {
  if (record === null) return INVALID
  const parsed = JSON.parse(record) as { route: string | null, claims: WsAuthClaims }
  if (parsed.route !== null && parsed.route !== route) return INVALID
  const exp = parsed.claims.exp
  if (typeof exp === 'number' && exp * 1000 <= Date.now()) return { ok: false, failure: 'token_expired' }
  return { ok: true, claims: parsed.claims }
}

function checkClaims (claims: unknown): unknown {
  const problem = claimsProblem(claims)
  if (problem !== undefined) throw new InvalidArgumentError('issueTicket: claims', `must be verified claims: ${problem}`)
  let json: string
  try {
    json = JSON.stringify(claims)
  } catch (cause) {
    throw new InvalidArgumentError('issueTicket: claims', `cannot be encoded as JSON (${(cause as Error).message})`)
  }
  if (Buffer.byteLength(json) > MAX_TICKET_CLAIMS_BYTES) {
    throw new InvalidArgumentError('issueTicket: claims', `must be at most ${MAX_TICKET_CLAIMS_BYTES} bytes of JSON`)
  }
  const exp = (claims as { exp?: number }).exp
  if (exp !== undefined && exp * 1000 <= Date.now()) throw new InvalidArgumentError('issueTicket: claims.exp', 'has passed')
  return claims
}

/** Where a ticket is kept: its SHA-256, so that neither memory nor Redis holds a redeemable ticket. */
function keyOf (ticket: string): string {
  return createHash('sha256').update(ticket).digest('base64url')
}

/** Tickets in this instance's memory; an expired one is dropped when met, or when newer ones pass it. */
class LocalTickets implements TicketStore {
  private readonly records = new Map<string, { record: string, expiresAt: number }>()

  put (key: string, record: string, ttl: number): void {
    const now = Date.now()
    this.records.set(key, { record, expiresAt: now + ttl })
    // Oldest first: drop the expired ones at the front, and the oldest beyond the bound.
    for (const [oldest, entry] of this.records) {
      if (entry.expiresAt > now && this.records.size <= MAX_LOCAL_TICKETS) break
      this.records.delete(oldest)
    }
  }

  take (key: string): string | null {
    const entry = this.records.get(key)
    if (entry === undefined) return null
    this.records.delete(key)
    return entry.expiresAt > Date.now() ? entry.record : null
  }
}

function adapterStore (adapter: ClusterAdapter): TicketStore {
  const { putTicket, takeTicket } = adapter
  if (typeof putTicket !== 'function' || typeof takeTicket !== 'function') {
    const missing = (): never => {
      throw new InvalidOptionError('adapter', 'has no putTicket/takeTicket: tickets need an adapter that stores them, so that any instance can redeem them (redisAdapter() does)')
    }
    return { put: missing, take: missing }
  }
  return { put: putTicket.bind(adapter), take: takeTicket.bind(adapter) }
}
