// The journal's data, behind the two look-ups the WebSocket route needs. In-memory here; a real
// app puts its database behind the same interface.

// A type alias, not an interface: the plugin's default user type has an index signature, which
// an alias satisfies implicitly (an interface would need `[key: string]: unknown`).
export type JournalUser = {
  id: string
  username: string
  active: boolean
  roles: string[]
  permissions: string[]
}

export interface JournalEntry {
  id: string
  userId: string
  title: string
  body: string
  mood: string
}

export interface JournalStore {
  findUser (id: string): Promise<JournalUser | undefined>
  findEntry (id: string): Promise<JournalEntry | undefined>
}

export const DEMO_USERS: readonly JournalUser[] = [
  { id: 'alice', username: 'alice', active: true, roles: ['writer'], permissions: [] },
  { id: 'bob', username: 'bob', active: true, roles: ['writer'], permissions: [] },
  { id: 'carol', username: 'carol', active: false, roles: ['writer'], permissions: [] }
]

export const DEMO_ENTRIES: readonly JournalEntry[] = [
  {
    id: 'e1',
    userId: 'alice',
    title: 'First swim of the year',
    body: 'The lake was colder than I expected. I stayed in anyway, and felt awake all afternoon.',
    mood: 'bright'
  },
  {
    id: 'e2',
    userId: 'bob',
    title: 'Moving day',
    body: 'Boxes everywhere. I found letters I had forgotten about.',
    mood: 'tired'
  }
]

export function memoryStore (users: readonly JournalUser[] = DEMO_USERS, entries: readonly JournalEntry[] = DEMO_ENTRIES): JournalStore {
  const userById = new Map(users.map(u => [u.id, u]))
  const entryById = new Map(entries.map(e => [e.id, e]))
  return {
    async findUser (id) { return userById.get(id) },
    async findEntry (id) { return entryById.get(id) }
  }
}
