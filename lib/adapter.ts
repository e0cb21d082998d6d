import type { FastifyBaseLogger } from 'fastify'
import type { FailureClass } from './close-codes.ts'
import type { ConnectionInfo, UserId, WsAuthStats } from './registry.ts'
import type { RevocationEntry } from './revocation.ts'

/**
 * A registry call as it travels between instances. Data is pre-encoded once by the caller:
 * text as is, binary as base64 with `binary: true`. Predicate filters cannot travel.
 */
export type ClusterCommand =
  | { op: 'sendToUser', userId: UserId, data: string, binary?: boolean }
  | { op: 'broadcast', data: string, binary?: boolean, filter?: { roles?: string[], permissions?: string[], route?: string, params?: Record<string, string> } }
  | { op: 'disconnectUser', userId: UserId, code?: number, reason?: string }
  | { op: 'revoke', entry: RevocationEntry }
  | { op: 'closeClient', clientId: string, failure: FailureClass }

/** An open session holding a connection slot, as an adapter re-registers it. */
export interface Slot {
  userId: UserId
  clientId: string
  /** ms since the epoch. */
  connectedAt: number
}

/** `connections()` across instances: each entry names its instance. */
export interface ClusterConnectionInfo extends ConnectionInfo {
  instanceId: string
}

/** `stats({ cluster: true })`: the sum over the instances that answered, and each one's own. */
export interface ClusterStats extends WsAuthStats {
  instances: Record<string, WsAuthStats>
}

/** What an adapter sees of the instance it runs in. */
export interface ClusterNode {
  /** Unique per process and start. */
  readonly instanceId: string
  readonly log: FastifyBaseLogger
  /** Runs a command on this instance's sockets; returns how many it reached (or closed). */
  execute (command: ClusterCommand): number
  /** Open sessions holding a slot, to re-register after the store lost them (a Redis restart). */
  slots (): Slot[]
  connections (userId?: UserId): ConnectionInfo[]
  stats (): WsAuthStats
  /** Stores revocations locally without closing anything (loading them at start). */
  addRevocations (entries: RevocationEntry[]): void
}

/** The answer to a slot request under `maxConnectionsPerUser`. */
export interface AcquireResult {
  ok: boolean
  /** With `onLimit: 'evict-oldest'`: the clients (on any instance) to close to make room. */
  evict?: string[]
  /**
   * With `ok: false`: the limit could not be checked (the store is unreachable and the adapter
   * fails closed), so the session closes with 1013 `Try again later` instead of 4029.
   */
  unavailable?: boolean
}

/**
 * A cluster adapter makes the registry and revocations span several instances (see
 * `fastify-ws-auth/redis`). The plugin calls `start` at ready and `close` at shutdown; between
 * them, every call that fans out returns the count summed over the instances that answered.
 * Authentication itself never waits on the adapter, except for the slot of a limited user.
 */
export interface ClusterAdapter {
  start (node: ClusterNode): Promise<void>
  close (): Promise<void>
  /** Atomically takes a slot for a new session under `limit` (with `mode` applied when full). */
  acquire (slot: Slot, limit: number, mode: 'reject' | 'evict-oldest'): Promise<AcquireResult>
  /** Gives a slot back (the session closed). Never throws. */
  release (slot: Slot): void
  /** Runs a command on every instance, this one included. */
  publish (command: ClusterCommand): Promise<number>
  /** Stores a revocation (instances that start later refuse the token too), then publishes it. */
  revoke (entry: RevocationEntry): Promise<number>
  connections (userId?: UserId): Promise<ClusterConnectionInfo[]>
  stats (): Promise<ClusterStats>
}
