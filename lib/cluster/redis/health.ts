import type { FastifyBaseLogger } from 'fastify'
import type { OnRedisError } from './options.ts'

/** What degrades while Redis is unreachable; each is logged once per outage, when it first happens. */
export type Degradation = 'limits' | 'fanout'

/**
 * Whether Redis is usable, and the outage log: one warning when an outage starts, one per
 * degraded feature the first time it degrades during that outage, one line when Redis is back.
 * A flapping Redis logs once per outage, not once per handshake.
 */
export class Health {
  private downSince: number | null = null
  private readonly noted = new Set<Degradation>()

  constructor (private readonly log: FastifyBaseLogger, private readonly mode: OnRedisError) {}

  get isDown (): boolean {
    return this.downSince !== null
  }

  down (err: unknown): void {
    if (this.downSince !== null) return
    this.downSince = Date.now()
    this.noted.clear()
    this.log.warn({ err: describe(err) }, 'fastify-ws-auth: Redis unavailable; retrying in the background')
  }

  degraded (what: Degradation): void {
    if (this.downSince === null) this.down(new Error('Redis not ready'))
    if (this.noted.has(what)) return
    this.noted.add(what)
    this.log.warn({ onRedisError: this.mode }, MESSAGES[what === 'limits' ? this.mode : what])
  }

  up (details: Record<string, unknown>): void {
    if (this.downSince === null) return
    this.log.info({ ...details, outageMs: Date.now() - this.downSince }, 'fastify-ws-auth: Redis recovered; slots re-registered and revocations synced')
    this.downSince = null
  }
}

const MESSAGES = {
  'fail-open': 'fastify-ws-auth: Redis unavailable: maxConnectionsPerUser is checked against this instance only (onRedisError: fail-open)',
  'fail-closed': 'fastify-ws-auth: Redis unavailable: new connections of limited users are refused with 1013 (onRedisError: fail-closed)',
  fanout: 'fastify-ws-auth: Redis unavailable: registry calls and revocations reach this instance only'
} as const

/** The error as a plain object (message, code), without a stack: enough to tell a refused connection from a timeout. */
function describe (err: unknown): { message: string, code?: string } {
  // ioredis, `within()` and the adapter reject only with Errors; anything else becomes one.
  const error = err instanceof Error ? err : new Error(String(err))
  const code = (error as Error & { code?: unknown }).code
  return typeof code === 'string' ? { message: error.message, code } : { message: error.message }
}
