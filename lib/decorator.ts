import { isSendableCloseCode, MAX_REASON_BYTES, utf8Length, type CloseCodeTable } from './close-codes.ts'
import { InvalidArgumentError } from './errors.ts'
import type { Host } from './host.ts'
import type { Config } from './options.ts'
import type { BroadcastFilter, ConnectionInfo, DisconnectOptions, UserId, WsAuthStats } from './registry.ts'
import type { Session } from './session.ts'
import type { WsAuthUser } from './types.ts'

/** `fastify.wsAuth`: reach, inspect or disconnect the users of live sessions. */
export interface WsAuthDecorator {
  /** Sends to every open session of a user (objects are JSON-encoded); returns the sockets reached. */
  sendToUser (userId: UserId, data: unknown): number
  /** Sends to every open session matching the filter (all when none); returns the sockets reached. */
  broadcast (data: unknown, filter?: BroadcastFilter | ((user: WsAuthUser) => boolean)): number
  /**
   * Closes every open session of a user, by default with 4001 `Token revoked` (logout everywhere);
   * returns the sockets closed. The client may reconnect with the same token unless it is revoked.
   */
  disconnectUser (userId: UserId, options?: DisconnectOptions): number
  /** The open sessions, of one user or of all. */
  connections (userId?: UserId): ConnectionInfo[]
  /** Counters and live counts. */
  stats (): WsAuthStats
  /** The close-code table in force (with the `closeCodes` overrides applied). */
  readonly closeCodes: CloseCodeTable
}

export function buildDecorator (host: Host, config: Config): WsAuthDecorator {
  const registry = host.registry
  return {
    sendToUser: (userId, data) => registry.sendToUser(checkUserId(userId), data),
    broadcast: (data, filter) => registry.broadcast(data, checkFilter(filter)),
    disconnectUser (userId, options) {
      const close = closerFor(options)
      return registry.disconnectUser(checkUserId(userId), close)
    },
    connections: (userId) => registry.connections(userId === undefined ? undefined : checkUserId(userId)),
    stats: () => registry.stats(),
    closeCodes: config.table
  }
}

function closerFor (options: DisconnectOptions | undefined): (session: Session) => void {
  if (options === undefined || (options.code === undefined && options.reason === undefined)) {
    return session => session.end('token_revoked')
  }
  const code = options.code ?? 4001
  const reason = options.reason ?? ''
  if (!isSendableCloseCode(code)) throw new InvalidArgumentError('disconnectUser: code', `${String(code)} cannot be sent in a close frame`)
  if (typeof reason !== 'string' || utf8Length(reason) > MAX_REASON_BYTES) {
    throw new InvalidArgumentError('disconnectUser: reason', `must be a string of at most ${MAX_REASON_BYTES} bytes`)
  }
  return session => session.endWith(code, reason)
}

function checkUserId (userId: unknown): UserId {
  if (typeof userId !== 'string' && typeof userId !== 'number') throw new InvalidArgumentError('userId', 'must be a string or a number')
  return userId
}

function checkFilter (filter: unknown): BroadcastFilter | ((user: WsAuthUser) => boolean) | undefined {
  if (filter === undefined || typeof filter === 'function') return filter as undefined
  if (filter === null || typeof filter !== 'object') throw new InvalidArgumentError('broadcast: filter', 'must be an object or a function')
  return filter as BroadcastFilter
}
