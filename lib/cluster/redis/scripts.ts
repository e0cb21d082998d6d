import { createHash } from 'node:crypto'
import type { UserId } from '../../types.ts'

/**
 * Every Redis key and channel of the adapter, under one namespace (`<prefix>:ws-auth:`).
 * On a Redis Cluster (`tagged`) the registry's keys (instances, revoked, slots:*, conns:*) carry
 * the namespace as a hash tag (`{<prefix>:ws-auth:}instances`): they all live in one slot, which
 * the scripts and pipelines that touch several of them at once need. Tickets and channels keep
 * plain names and spread over the slots. docs/cluster.md lists them with their lifetimes; keep
 * the two in step.
 */
export class Keyspace {
  /** ZSET instanceId -> deadline (ms, Redis clock): the instances alive, refreshed by heartbeats. */
  readonly instances: string
  /** ZSET of canonical revocation entries (JSON) -> expiresAt (ms); pruned by score. */
  readonly revoked: string
  /** STRING: a counter, incremented whenever revocations are stored; heartbeats read it. */
  readonly revision: string
  /** Channel every instance subscribes to: commands and queries. */
  readonly commands: string
  /** The start of the registry's keys: the namespace, hash-tagged on a Cluster. */
  private readonly registry: string

  constructor (readonly namespace: string, tagged: boolean) {
    this.registry = tagged ? `{${namespace}}` : namespace
    this.instances = this.registry + 'instances'
    this.revoked = this.registry + 'revoked'
    this.revision = this.registry + 'revoked:revision'
    this.commands = namespace + 'commands'
  }

  /** HASH clientId -> user part: the slots one instance holds (cleaned up by whoever outlives it). */
  slots (instanceId: string): string {
    return this.registry + 'slots:' + instanceId
  }

  /** ZSET `<instanceId>|<clientId>` -> connectedAt: one user's slots, cluster-wide. */
  conns (userId: UserId): string {
    return this.registry + 'conns:' + userPart(userId)
  }

  /** STRING: a ticket's record, under the SHA-256 of the ticket, expiring with it. */
  ticket (key: string): string {
    return this.namespace + 'ticket:' + key
  }

  /** Channel on which an instance receives the answers to its own requests. */
  replies (instanceId: string): string {
    return this.namespace + 'replies:' + instanceId
  }
}

/** A user id as it appears in key names: JSON, so that the number 1 and the string "1" differ. */
export function userPart (userId: UserId): string {
  return JSON.stringify(userId)
}

/** A Lua script and its SHA1, for EVALSHA with a fallback to EVAL after a Redis restart. */
export interface Script {
  readonly name: string
  readonly body: string
  readonly sha: string
}

function script (name: string, body: string): Script {
  const full = PRELUDE + body
  return { name, body: full, sha: createHash('sha1').update(full).digest('hex') }
}

// KEYS[1] is always the instances key: the registry's namespace (with any ioredis keyPrefix, and
// its hash tag on a Cluster) is derived from it, so that keys named inside a script match the
// ones the client names, in the same slot.
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ns = string.sub(KEYS[1], 1, #KEYS[1] - #'instances')
local function alive (instance)
  local deadline = tonumber(redis.call('ZSCORE', KEYS[1], instance))
  return deadline ~= nil and deadline >= now
end
local function forget (instance, slots)
  local held = redis.call('HGETALL', slots)
  for i = 1, #held, 2 do redis.call('ZREM', ns .. 'conns:' .. held[i + 1], instance .. '|' .. held[i]) end
  redis.call('DEL', slots)
end
`

/**
 * Takes a slot under the limit, in one step: drops the user's slots held by dead instances,
 * counts the rest, then adds ours, refuses, or (evict mode) removes the oldest and names them.
 * KEYS: instances, conns of the user, slots of this instance.
 * ARGV: instanceId, clientId, connectedAt, limit, 'evict' | 'reject', user part.
 * Returns {1, evicted clientIds...} (taken), {0} (refused) or {-1} (this instance is not
 * registered: re-register first, so that no slot is written under a name others think dead).
 */
export const ACQUIRE = script('acquire', `
local me, client, limit = ARGV[1], ARGV[2], tonumber(ARGV[4])
if not alive(me) then return {-1} end
local mine = me .. '|' .. client
local known = {}
local live = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local instance = string.match(member, '^[^|]*')
  local ok = known[instance]
  if ok == nil then
    ok = alive(instance)
    known[instance] = ok
  end
  if not ok then
    redis.call('ZREM', KEYS[2], member)
  elseif member == mine then
    return {1}
  else
    live[#live + 1] = member
  end
end
local result = {1}
if #live >= limit then
  if ARGV[5] ~= 'evict' then return {0} end
  for i = 1, #live - limit + 1 do
    redis.call('ZREM', KEYS[2], live[i])
    result[#result + 1] = string.sub(live[i], #string.match(live[i], '^[^|]*') + 2)
  end
end
redis.call('ZADD', KEYS[2], ARGV[3], mine)
redis.call('HSET', KEYS[3], client, ARGV[6])
return result
`)

/**
 * Gives slots back (their sockets closed). KEYS: instances, slots of this instance.
 * ARGV: instanceId, then (user part, clientId) for each slot.
 */
export const RELEASE = script('release', `
for i = 2, #ARGV, 2 do
  redis.call('ZREM', ns .. 'conns:' .. ARGV[i], ARGV[1] .. '|' .. ARGV[i + 1])
  redis.call('HDEL', KEYS[2], ARGV[i + 1])
end
return 1
`)

/**
 * Replaces everything Redis holds for this instance with what it really holds (after a Redis
 * restart, a missed heartbeat or a lost reply), and registers it alive.
 * KEYS: instances, slots of this instance. ARGV: instanceId, ttl, then (clientId, user part,
 * connectedAt) for each slot.
 */
export const RESYNC = script('resync', `
local me = ARGV[1]
forget(me, KEYS[2])
for i = 3, #ARGV, 3 do
  redis.call('ZADD', ns .. 'conns:' .. ARGV[i + 1], ARGV[i + 2], me .. '|' .. ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), me)
return (#ARGV - 2) / 3
`)

/**
 * Keeps this instance alive, and cleans up after dead ones (at most `budget` slots per call).
 * KEYS: instances. ARGV: instanceId, ttl, budget.
 * Returns -1 when this instance was not registered (or already counted dead): resync; else the
 * revision of the revoked set (0 before the first revocation).
 */
export const HEARTBEAT = script('heartbeat', `
local me, budget = ARGV[1], tonumber(ARGV[3])
if not alive(me) then return -1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), me)
for _, instance in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, 10)) do
  if budget <= 0 then break end
  local slots = ns .. 'slots:' .. instance
  local scan = redis.call('HSCAN', slots, 0, 'COUNT', budget)
  local held = scan[2]
  for i = 1, #held, 2 do
    redis.call('ZREM', ns .. 'conns:' .. held[i + 1], instance .. '|' .. held[i])
    redis.call('HDEL', slots, held[i])
  end
  budget = budget - #held / 2
  if redis.call('EXISTS', slots) == 0 then redis.call('ZREM', KEYS[1], instance) end
end
return tonumber(redis.call('GET', ns .. 'revoked:revision') or '0')
`)

/** Removes this instance and its slots (shutdown). KEYS: instances, slots of this instance. ARGV: instanceId. */
export const LEAVE = script('leave', `
forget(ARGV[1], KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`)
