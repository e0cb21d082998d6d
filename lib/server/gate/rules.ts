import type { FastifyRequest } from 'fastify'
import type { FailureClass } from '../../protocol/close-codes.ts'
import type { OptionChecker } from '../../protocol/options.ts'
import { hasRoleAndPermissions, isThenable, type Requirements, type RolePermissions } from '../checks.ts'
import type { AuthorizeResult, WsAuthUser } from '../../types.ts'

/*
 * A rule after the door (a message type's policy, a topic pattern's): the door's vocabulary of
 * roles, permissions and `authorize`, judged against the session's current user.
 */

/** A checked rule: what it requires, and its `authorize` called with the subject (a message, a topic). */
export interface Rule<Subject> extends Requirements {
  readonly authorize: ((request: FastifyRequest, user: WsAuthUser, subject: Subject) => AuthorizeResult | Promise<AuthorizeResult>) | null
}

/** A refusal: the failure class (a row of the close-code table) and, for `internal_error`, what was thrown. */
export interface Refusal {
  readonly failure: FailureClass
  readonly error?: unknown
}

/** `null`: allowed. */
export type Verdict = Refusal | null

export const FORBIDDEN: Refusal = Object.freeze({ failure: 'forbidden' })
const NOT_FOUND: Refusal = Object.freeze({ failure: 'not_found' })
const RULE_KEYS = ['roles', 'permissions', 'authorize']

/** Checks a rule object (`{ roles?, permissions?, authorize? }`) named `name`. */
export function buildRule<Subject> (c: OptionChecker, name: string, value: unknown): Rule<Subject> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw c.problem(name, 'must be true, false or an object of roles, permissions, authorize')
  }
  for (const key of Object.keys(value)) {
    if (!RULE_KEYS.includes(key)) throw c.problem(`${name}.${key}`, `is not a field of a policy (known: ${RULE_KEYS.join(', ')})`)
  }
  const rule = value as { roles?: unknown, permissions?: unknown, authorize?: Rule<Subject>['authorize'] }
  return {
    roles: rule.roles === undefined ? null : new Set(c.stringList(`${name}.roles`, rule.roles)),
    permissions: rule.permissions === undefined ? null : c.stringList(`${name}.permissions`, rule.permissions),
    authorize: c.func(`${name}.authorize`, rule.authorize) ?? null
  }
}

/**
 * Judges a rule: roles and permissions first, then `authorize`. Synchronous unless `authorize`
 * answers with a promise; never throws and never rejects (a throw is `internal_error`).
 */
export function judge<Subject> (rule: Rule<Subject>, rolePermissions: RolePermissions, request: FastifyRequest, user: WsAuthUser, subject: Subject): Verdict | Promise<Verdict> {
  if (!hasRoleAndPermissions(user, rule, rolePermissions)) return FORBIDDEN
  if (rule.authorize === null) return null
  let answer: unknown
  try {
    answer = rule.authorize(request, user, subject)
  } catch (error) {
    return { failure: 'internal_error', error }
  }
  if (!isThenable(answer)) return verdictOf(answer)
  return Promise.resolve(answer).then(verdictOf, (error: unknown): Verdict => ({ failure: 'internal_error', error }))
}

/** `true` allows; `'not_found'` is 4004; anything else (`false`, a typo) is 4003. */
function verdictOf (answer: unknown): Verdict {
  if (answer === true) return null
  return answer === 'not_found' ? NOT_FOUND : FORBIDDEN
}
