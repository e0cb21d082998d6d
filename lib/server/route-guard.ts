import type { FastifyReply, FastifyRequest } from 'fastify'
import { authenticate, idOf, within, type Outcome } from './authenticate.ts'
import { redactRequestSpan } from './redact.ts'
import { isThenable } from './checks.ts'
import type { Host } from './host.ts'
import type { RoutePolicy } from './options.ts'
import { findToken, type FoundToken } from './sources.ts'
import { redeemTicket } from './tickets.ts'
import { leaveVerdict } from './upgrade.ts'

/*
 * The route hook (`preValidation`, first of the route's): Origin, token, verification and the
 * checks after it, before the 101 is written. Its verdict is left for the upgrade, or answered
 * over HTTP with `reject: 'http'`.
 */

type Done = (err?: Error) => void

/** The hook of a route with `wsAuth: false`: marks its upgrades as opted out. */
export function optOutHook (request: FastifyRequest, _reply: FastifyReply, done: Done): void {
  if (request.ws) leaveVerdict(request, null)
  done()
}

/** The hook of a protected route. */
export function routeGuard (host: Host, policy: RoutePolicy) {
  const config = host.config
  // Callback style, so that a handshake whose checks all answer synchronously costs no promise.
  return function wsAuthGuard (request: FastifyRequest, reply: FastifyReply, done: Done): void {
    if (!request.ws) return done()
    host.registry.attempts++
    const found = findToken(request, policy.requestSources, config)
    if (request.url.includes('?')) redactRequestSpan(request, config.secretParams)
    host.observer?.watch(request)
    let outcome: Outcome | Promise<Outcome | undefined> | undefined
    try {
      const origin = request.headers.origin
      const allowed = config.originAllowed === null || origin === undefined ? true : config.originAllowed(origin, request)
      outcome = isThenable(allowed)
        ? Promise.resolve(allowed).then(ok => afterOrigin(host, ok, request, policy, found), (error: unknown): Outcome | undefined => ({ ok: false, failure: 'internal_error', error }))
        : afterOrigin(host, allowed, request, policy, found)
    } catch (error) {
      outcome = { ok: false, failure: 'internal_error', error }
    }
    if (!(outcome instanceof Promise)) return decide(host, outcome, request, reply, policy, found, done)
    host.registry.upgrading++
    within(outcome, policy.authTimeout).then(settled => {
      host.registry.upgrading--
      decide(host, settled, request, reply, policy, found, done)
    })
  }
}

/** After the Origin check: authenticate the token from the request, or wait for the auth message. */
function afterOrigin (host: Host, allowed: unknown, request: FastifyRequest, policy: RoutePolicy, found: FoundToken | undefined): Outcome | Promise<Outcome | undefined> | undefined {
  if (allowed !== true) return { ok: false, failure: 'forbidden' }
  if (found?.source === 'ticket') return redeemTicket(host.tickets, found.token, request, policy, host)
  if (found !== undefined) return authenticate(found.token, request, policy, host)
  return policy.awaitsMessage ? undefined : { ok: false, failure: 'no_token' }
}

/** Leaves the verdict for the upgrade, or answers over HTTP with `reject: 'http'`. */
function decide (host: Host, outcome: Outcome | undefined, request: FastifyRequest, reply: FastifyReply, policy: RoutePolicy, found: FoundToken | undefined, done: Done): void {
  if (policy.reject === 'http' && outcome !== undefined) {
    const refusal = !outcome.ok ? outcome : host.atLimit(outcome.user) ? { ok: false as const, failure: 'too_many_connections' as const, userId: idOf(outcome.user) } : undefined
    if (refusal !== undefined) {
      // An answer from a hook ends the request: done() is not called.
      host.refuseHttp(request, reply, policy, refusal, found)
      return
    }
  }
  // A refusal is logged now, before the upgrade: a client that vanishes meanwhile is still on record.
  if (outcome !== undefined && !outcome.ok) host.logFailure(request, policy, outcome, { token: found?.token, source: found?.source })
  leaveVerdict(request, { request, policy, host, outcome, source: found?.source })
  done()
}
