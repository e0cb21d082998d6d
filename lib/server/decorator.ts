import { closeCodes, isSendableCloseCode, MAX_REASON_BYTES, utf8Length } from '../protocol/close-codes.ts'
import { InvalidArgumentError } from '../errors.ts'
import type { Host } from './host.ts'
import { encode } from '../cluster/registry.ts'
import { RevocationList } from '../cluster/revocation.ts'
import { MessageType } from '../protocol/messages.ts'
import { MAX_TOPIC_BYTES, topicName } from './gate/topics.ts'
import { sessionOf, type Session } from './session.ts'
import type { BroadcastFilter, BroadcastPredicate, ClusterCommand, Count, DisconnectOptions, RevokeTarget, UserId, WsAuthDecorator } from '../types.ts'

export function buildDecorator (host: Host): WsAuthDecorator {
  const { registry, config } = host
  const adapter = config.adapter
  /** Without an adapter, a `{ cluster: true }` list is this instance's, each entry naming it. */
  function here<T extends object> (entries: T[]): Promise<Array<T & { instanceId: string }>> {
    return Promise.resolve(entries.map(entry => ({ ...entry, instanceId: host.instanceId })))
  }
  function run (command: ClusterCommand): Count {
    return adapter === null ? host.execute(command) : adapter.publish(command)
  }
  return {
    sendToUser (userId, data) {
      return run({ op: 'sendToUser', userId: checkUserId(userId), ...wire(data) })
    },
    broadcast (data, filter) {
      const checked = checkFilter(filter)
      if (adapter === null || typeof checked === 'function' || checked?.user !== undefined) {
        // A predicate cannot cross processes: it applies here only (documented).
        return registry.broadcast(data, checked)
      }
      return adapter.publish({ op: 'broadcast', ...wire(data), filter: travelling(checked) })
    },
    disconnectUser (userId, options) {
      const { code, reason } = checkClose(options)
      return run({ op: 'disconnectUser', userId: checkUserId(userId), code, reason })
    },
    revoke (target) {
      const entry = RevocationList.entryFor(checkTarget(target), config.maxTokenLifetime)
      return adapter === null ? host.revokeLocal(entry) : adapter.revoke(entry)
    },
    connections (userId?: UserId, options?: { cluster: true }) {
      const id = userId === undefined ? undefined : checkUserId(userId)
      if (options?.cluster === true) {
        if (adapter !== null) return adapter.connections(id)
        return here(registry.connections(id))
      }
      return registry.connections(id)
    },
    stats (options?: { cluster: true }) {
      if (options?.cluster === true) {
        if (adapter !== null) return adapter.stats()
        const own = registry.stats()
        return Promise.resolve({ ...own, instances: { [host.instanceId]: own } })
      }
      return registry.stats()
    },
    publish (topic, data) {
      const name = checkTopic('publish', topic)
      const frame = publication(name, data)
      return adapter === null ? registry.publish(name, frame) : adapter.publish({ op: 'publish', topic: name, frame })
    },
    subscribe (socket, topic) {
      const name = checkTopic('subscribe', topic)
      return checkSocket('subscribe', socket).subscribe(name)
    },
    unsubscribe (target: unknown, topic: string) {
      const name = checkTopic('unsubscribe', topic)
      const session = sessionOf(target)
      if (session !== undefined) return session.unsubscribe(name)
      const userId = (target as { userId?: unknown } | null)?.userId
      if (target === null || typeof target !== 'object' || userId === undefined) {
        throw new InvalidArgumentError('unsubscribe', 'takes a socket of a protected route, or { userId }')
      }
      return run({ op: 'unsubscribeUser', userId: checkUserId(userId), topic: name })
    },
    subscribers (topic: string, options?: { cluster: true }) {
      const name = checkTopic('subscribers', topic)
      if (options?.cluster !== true) return registry.subscribers(name)
      if (adapter === null) return here(registry.subscribers(name))
      if (adapter.subscribers === undefined) return Promise.reject(new InvalidArgumentError('subscribers: { cluster: true }', 'needs an adapter with a subscribers() method'))
      return adapter.subscribers(name)
    },
    issueTicket (claims, options) {
      return host.tickets.issue(claims, options)
    },
    closeCodes: config.table
  } as WsAuthDecorator
}

/** The `publication` frame, encoded once for every subscriber (and every instance). */
function publication (topic: string, data: unknown): string {
  let encoded: string | undefined
  try {
    encoded = JSON.stringify(data)
  } catch {
    throw new InvalidArgumentError('publish: data', 'cannot be encoded as JSON (a BigInt, a cycle, or a toJSON that threw)')
  }
  return '{"type":"' + MessageType.Publication + '","topic":' + JSON.stringify(topic) + ',"data":' + (encoded ?? 'null') + '}'
}

function checkTopic (call: string, topic: unknown): string {
  const name = topicName(topic)
  if (name === undefined) throw new InvalidArgumentError(`${call}: topic`, `must be a non-empty string of at most ${MAX_TOPIC_BYTES} bytes`)
  return name
}

function checkSocket (call: string, socket: unknown): Session {
  const session = sessionOf(socket)
  if (session === undefined) throw new InvalidArgumentError(`${call}: socket`, 'must be a socket of a route protected by fastify-ws-auth')
  return session
}

/** Encodes data once, in a form that can travel between instances. */
function wire (data: unknown): { data: string, binary?: boolean } {
  const encoded = encode(data)
  if (typeof encoded === 'string') return { data: encoded }
  const bytes = Buffer.isBuffer(encoded)
    ? encoded
    : encoded instanceof ArrayBuffer ? Buffer.from(encoded) : Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength)
  return { data: bytes.toString('base64'), binary: true }
}

function travelling (filter: BroadcastFilter | undefined): NonNullable<Extract<ClusterCommand, { op: 'broadcast' }>['filter']> | undefined {
  if (filter === undefined) return undefined
  return {
    roles: filter.roles && [...filter.roles],
    permissions: filter.permissions && [...filter.permissions],
    route: filter.route,
    params: filter.params && { ...filter.params }
  }
}

function checkClose (options: DisconnectOptions | undefined): DisconnectOptions {
  if (options === undefined || (options.code === undefined && options.reason === undefined)) return {}
  const code = options.code ?? closeCodes.token_revoked.code
  const reason = options.reason ?? ''
  if (!isSendableCloseCode(code)) throw new InvalidArgumentError('disconnectUser: code', `${String(code)} cannot be sent in a close frame`)
  if (typeof reason !== 'string' || utf8Length(reason) > MAX_REASON_BYTES) {
    throw new InvalidArgumentError('disconnectUser: reason', `must be a string of at most ${MAX_REASON_BYTES} bytes`)
  }
  return { code, reason }
}

function checkUserId (userId: unknown): UserId {
  if (typeof userId !== 'string' && typeof userId !== 'number') throw new InvalidArgumentError('userId', 'must be a string or a number')
  return userId
}

function checkTarget (target: unknown): RevokeTarget {
  const t = target as Partial<{ jti: unknown, userId: unknown, issuedBefore: unknown, exp: unknown }> | null
  if (t === null || typeof t !== 'object') throw new InvalidArgumentError('revoke', 'takes { jti } or { userId, issuedBefore? }')
  if (t.exp !== undefined && !(t.exp instanceof Date) && !(typeof t.exp === 'number' && Number.isFinite(t.exp))) {
    throw new InvalidArgumentError('revoke: exp', 'must be a Date or a number of seconds since the epoch (a JWT exp)')
  }
  if (t.jti !== undefined) {
    if (typeof t.jti !== 'string' || t.jti.length === 0) throw new InvalidArgumentError('revoke: jti', 'must be a non-empty string')
    return t as RevokeTarget
  }
  checkUserId(t.userId)
  if (t.issuedBefore !== undefined && !(t.issuedBefore instanceof Date && !Number.isNaN(t.issuedBefore.getTime()))) {
    throw new InvalidArgumentError('revoke: issuedBefore', 'must be a valid Date')
  }
  return t as RevokeTarget
}

function checkFilter (filter: unknown): BroadcastFilter | BroadcastPredicate | undefined {
  if (filter === undefined || typeof filter === 'function') return filter as undefined
  if (filter === null || typeof filter !== 'object') throw new InvalidArgumentError('broadcast: filter', 'must be an object or a function')
  return filter as BroadcastFilter
}
