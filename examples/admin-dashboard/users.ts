// The admin console's accounts, in memory, with scrypt password hashes. A real app keeps them in
// its database; the login route only needs `checkPassword` and the WebSocket route `findUser`.
import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto'

export type AdminUser = {
  id: string
  username: string
  roles: string[]
  permissions: string[]
}

export interface Account { username: string, password: string, roles: string[] }

/**
 * The demo accounts: an admin; a viewer, who may open the admin socket but not ask for stats; and a
 * guest, who may log in but not open the socket.
 */
export const DEMO_ACCOUNTS: readonly Account[] = [
  { username: 'admin', password: 'admin-password', roles: ['admin'] },
  { username: 'viewer', password: 'viewer-password', roles: ['viewer'] },
  { username: 'guest', password: 'guest-password', roles: ['guest'] }
]

export interface UserStore {
  /** The user, if the password is right; `undefined` otherwise (same work either way). */
  checkPassword (username: string, password: string): AdminUser | undefined
  findUser (id: string): AdminUser | undefined
}

export function memoryUsers (accounts: readonly Account[] = DEMO_ACCOUNTS): UserStore {
  const records = new Map(accounts.map((a) => {
    const salt = randomBytes(16)
    const user: AdminUser = { id: a.username, username: a.username, roles: [...a.roles], permissions: [] }
    return [a.username, { user, salt, hash: scryptSync(a.password, salt, 32) }]
  }))
  // Hashed for unknown usernames too, so a wrong name takes as long as a wrong password.
  const decoy = { salt: randomBytes(16), hash: randomBytes(32) }
  return {
    checkPassword (username, password) {
      const record = records.get(username)
      const { salt, hash } = record ?? decoy
      const ok = timingSafeEqual(scryptSync(password, salt, 32), hash)
      return ok && record !== undefined ? record.user : undefined
    },
    findUser: (id) => records.get(id)?.user
  }
}
