import type { WsAuthUser } from '../types.ts'

/*
 * The checks every gate shares (the door, a message policy, a topic pattern): roles, permissions
 * with `rolePermissions` applied, and whether a hook answered with a promise.
 */

/** `role -> permissions` from the plugin's `rolePermissions`, or `null`. */
export type RolePermissions = ReadonlyMap<string, readonly string[]> | null

/** What a rule requires: at least one of `roles`, all of `permissions` (`null`: no requirement). */
export interface Requirements {
  readonly roles: ReadonlySet<string> | null
  readonly permissions: readonly string[] | null
}

/** Whether a value is a promise or promise-like (its `then` is read once, guarded). */
export function isThenable (value: unknown): value is PromiseLike<unknown> {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false
  try {
    return typeof (value as { then?: unknown }).then === 'function'
  } catch {
    return false
  }
}

/** Whether the user holds one of the required roles and all of the required permissions. */
export function hasRoleAndPermissions (user: WsAuthUser, required: Requirements, rolePermissions: RolePermissions): boolean {
  if (required.roles === null && required.permissions === null) return true
  if (required.roles !== null && !hasAnyOf((user as { roles?: unknown }).roles, required.roles)) return false
  if (required.permissions === null) return true
  const granted = permissionsOf(user, rolePermissions)
  return required.permissions.every(permission => granted.has(permission))
}

/** The user's own permissions plus those `rolePermissions` grants to its roles. */
export function permissionsOf (user: WsAuthUser, rolePermissions: RolePermissions): Set<string> {
  const granted = new Set(listOf((user as { permissions?: unknown }).permissions))
  if (rolePermissions === null) return granted
  for (const role of listOf((user as { roles?: unknown }).roles)) {
    for (const permission of rolePermissions.get(role) ?? []) granted.add(permission)
  }
  return granted
}

/** Whether `value` is an array holding one of `wanted`. */
function hasAnyOf (value: unknown, wanted: ReadonlySet<string>): boolean {
  if (!Array.isArray(value)) return false
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] === 'string' && wanted.has(value[i])) return true
  }
  return false
}

function listOf (value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []
}
