// The status board of the MCP servers the feed reports on. Health checks (or anything else) call
// `set`; the WebSocket route listens to 'change'.
import { EventEmitter } from 'node:events'

export type Health = 'up' | 'degraded' | 'down'

export interface ServerStatus {
  name: string
  status: Health
  checked_at: string
}

export interface StatusChange {
  server: string
  previous: Health
  status: Health
  timestamp: string
}

export const DEMO_SERVERS: readonly string[] = ['filesystem', 'github', 'postgres', 'slack']

export class StatusBoard extends EventEmitter<{ change: [StatusChange] }> {
  private readonly statuses = new Map<string, ServerStatus>()

  constructor (names: readonly string[] = DEMO_SERVERS) {
    super()
    const now = new Date().toISOString()
    for (const name of names) this.statuses.set(name, { name, status: 'up', checked_at: now })
  }

  /** Every server's current status, by name. */
  snapshot (): ServerStatus[] {
    return [...this.statuses.values()].map(s => ({ ...s }))
  }

  /** Records a check; emits 'change' when the status differs from the last one. */
  set (name: string, status: Health): void {
    const current = this.statuses.get(name)
    if (current === undefined) throw new Error(`unknown MCP server ${name}`)
    const timestamp = new Date().toISOString()
    const previous = current.status
    this.statuses.set(name, { name, status, checked_at: timestamp })
    if (previous !== status) this.emit('change', { server: name, previous, status, timestamp })
  }
}
