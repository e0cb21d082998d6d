import { clock } from '../protocol/clock.ts'
import type { RevocationEntry, RevokeTarget, UserId, WsAuthClaims } from '../types.ts'

/**
 * Revoked tokens, kept until they would have expired anyway. Entries are checked at every
 * handshake and refresh; expired ones are dropped when met and by `sweep()`, so nothing grows
 * without bound.
 */
export class RevocationList {
  private readonly byJti = new Map<string, number>()
  private readonly byUser = new Map<UserId, { issuedBefore: number, expiresAt: number }>()

  /** Turns a `revoke()` argument into an entry; `maxTokenLifetime` (ms) bounds entries without `exp`. */
  static entryFor (target: RevokeTarget, maxTokenLifetime: number, now = clock.now()): RevocationEntry {
    const exp = target.exp
    const expiresAt = exp === undefined ? now + maxTokenLifetime : (exp instanceof Date ? exp.getTime() : exp * 1000)
    if ('jti' in target) return { jti: target.jti, expiresAt }
    // `iat` counts whole seconds: a token whose second began before the time may have been issued
    // before it, and is revoked. Without a time, every token of the current second is (the call's
    // own second included: a token issued in it may predate the call by up to 999 ms).
    const issuedBefore = target.issuedBefore === undefined ? Math.floor(now / 1000) + 1 : Math.ceil(target.issuedBefore.getTime() / 1000)
    return { userId: target.userId, issuedBefore, expiresAt }
  }

  add (entry: RevocationEntry, now = clock.now()): void {
    if (entry.expiresAt <= now) return
    if ('jti' in entry) {
      this.byJti.set(entry.jti, Math.max(entry.expiresAt, this.byJti.get(entry.jti) ?? 0))
      return
    }
    const known = this.byUser.get(entry.userId)
    this.byUser.set(entry.userId, {
      issuedBefore: Math.max(entry.issuedBefore, known?.issuedBefore ?? 0),
      expiresAt: Math.max(entry.expiresAt, known?.expiresAt ?? 0)
    })
  }

  /**
   * Whether a token with these claims, held by this user, is revoked. A token without `iat` is
   * treated as issued at the beginning of time: a user-wide revocation covers it (fail closed).
   */
  isRevoked (claims: WsAuthClaims | undefined, userId: UserId | undefined, now = clock.now()): boolean {
    if (this.byJti.size === 0 && this.byUser.size === 0) return false
    const jti = (claims as { jti?: unknown } | undefined)?.jti
    if (typeof jti === 'string') {
      const until = this.byJti.get(jti)
      if (until !== undefined) {
        if (until > now) return true
        this.byJti.delete(jti)
      }
    }
    if (userId === undefined) return false
    const entry = this.byUser.get(userId)
    if (entry === undefined) return false
    if (entry.expiresAt <= now) {
      this.byUser.delete(userId)
      return false
    }
    const iat = (claims as { iat?: unknown } | undefined)?.iat
    return typeof iat !== 'number' || iat < entry.issuedBefore
  }

  /** Drops entries whose tokens have expired. */
  sweep (now = clock.now()): void {
    for (const [jti, until] of this.byJti) if (until <= now) this.byJti.delete(jti)
    for (const [userId, entry] of this.byUser) if (entry.expiresAt <= now) this.byUser.delete(userId)
  }

  /** Live entries (expired ones are dropped first). */
  count (now = clock.now()): number {
    this.sweep(now)
    return this.byJti.size + this.byUser.size
  }

  /** Every live entry, for a new instance or a cluster adapter to load. */
  entries (now = clock.now()): RevocationEntry[] {
    this.sweep(now)
    const out: RevocationEntry[] = []
    for (const [jti, expiresAt] of this.byJti) out.push({ jti, expiresAt })
    for (const [userId, e] of this.byUser) out.push({ userId, issuedBefore: e.issuedBefore, expiresAt: e.expiresAt })
    return out
  }
}

/** What revocation reads of a live session's token (its `jti` and `iat` claims) and its user id. */
export interface TokenFacts {
  readonly jti: unknown
  readonly iat: unknown
  readonly userId: UserId | undefined
}

/** Whether an entry covers the token of a live session. */
export function covers (entry: RevocationEntry, token: TokenFacts): boolean {
  if ('jti' in entry) return token.jti === entry.jti
  if (token.userId !== entry.userId) return false
  return typeof token.iat !== 'number' || token.iat < entry.issuedBefore
}
