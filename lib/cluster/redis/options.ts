import type { Redis } from 'ioredis'
import { OptionChecker } from '../../protocol/options.ts'
import { InvalidOptionError } from '../../errors.ts'

/** What to do with a limited user's new connection while Redis cannot be reached. */
export type OnRedisError = 'fail-open' | 'fail-closed'

/** Options of `redisAdapter()`. Give exactly one of `url` and `client`. */
export interface RedisAdapterOptions {
  /** A `redis://` or `rediss://` URL; the adapter opens (and closes) its own two connections. */
  url?: string
  /**
   * An ioredis client to use for commands. The adapter adds one connection of its own
   * (`client.duplicate()`) for pub/sub, closes that one at shutdown and leaves yours open.
   * Redis Cluster clients are not supported (the adapter needs one Redis, or one Sentinel group).
   */
  client?: Redis
  /**
   * Namespace of every key and channel: they are all named `<prefix>:ws-auth:…`. Instances
   * share state when, and only when, they use the same prefix on the same Redis.
   * @default none (names start with `ws-auth:`)
   */
  prefix?: string
  /**
   * How long a fan-out (`sendToUser`, `broadcast`, `disconnectUser`, `revoke`, `connections`,
   * `stats`) waits for the other instances to answer, in ms; also how long a limited user's
   * handshake waits for Redis (up to a quarter more) before `onRedisError` applies. Counts are
   * summed over the instances that answered in time.
   * @default 1000
   */
  requestTimeout?: number
  /**
   * An instance refreshes its registration every `instanceTtl / 3` ms; when one stops (killed,
   * frozen, cut off), its connection slots stop counting against `maxConnectionsPerUser` at most
   * `instanceTtl` ms after its last refresh.
   * @default 30000
   */
  instanceTtl?: number
  /**
   * While Redis cannot be reached: `'fail-open'` checks `maxConnectionsPerUser` against this
   * instance's sessions only; `'fail-closed'` refuses a limited user's new connection with 1013
   * `Try again later`. Authentication itself never depends on Redis, in either mode.
   * @default 'fail-open'
   */
  onRedisError?: OnRedisError
}

/** Options once checked, with defaults applied. */
export interface RedisConfig {
  url: string | undefined
  client: Redis | undefined
  /** `<prefix>:ws-auth:` or `ws-auth:`: the start of every key and channel. */
  namespace: string
  requestTimeout: number
  instanceTtl: number
  onRedisError: OnRedisError
}

const KNOWN = new Set<string>(['url', 'client', 'prefix', 'requestTimeout', 'instanceTtl', 'onRedisError'] satisfies (keyof RedisAdapterOptions)[])

/** Checks the options once, at creation; every error names the option at fault. */
export function buildRedisConfig (opts: RedisAdapterOptions): RedisConfig {
  if (opts === null || typeof opts !== 'object') throw new InvalidOptionError('redisAdapter', 'takes an object: { url } or { client }')
  check.knownKeys(opts, KNOWN, 'redisAdapter')
  if (opts.url !== undefined && opts.client !== undefined) throw fail('client', 'cannot be combined with "url": give one of them')
  if (opts.url === undefined && opts.client === undefined) throw fail('url', 'is required (or "client": an ioredis instance)')
  return {
    url: opts.url === undefined ? undefined : redisUrl(opts.url),
    client: opts.client === undefined ? undefined : ioredisClient(opts.client),
    namespace: namespace(opts.prefix),
    requestTimeout: check.milliseconds('requestTimeout', opts.requestTimeout, 1000, 1),
    instanceTtl: check.milliseconds('instanceTtl', opts.instanceTtl, 30_000, 300),
    onRedisError: check.oneOf('onRedisError', opts.onRedisError, ['fail-open', 'fail-closed'] as const, 'fail-open')
  }
}

function fail (name: string, problem: string) {
  return new InvalidOptionError(`redisAdapter.${name}`, problem)
}

const check = new OptionChecker(fail)

function redisUrl (value: unknown): string {
  if (typeof value !== 'string') throw fail('url', 'must be a string such as "redis://127.0.0.1:6379"')
  let protocol: string
  try {
    protocol = new URL(value).protocol
  } catch (err) {
    throw new InvalidOptionError('redisAdapter.url', 'is not a valid URL (expected "redis://host:port" or "rediss://host:port")', { cause: err })
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') throw fail('url', `must use redis: or rediss:, not ${protocol}`)
  return value
}

function ioredisClient (value: unknown): Redis {
  const client = value as Partial<Redis> & { isCluster?: boolean } | null
  if (client === null || typeof client !== 'object') throw fail('client', 'must be an ioredis client (new Redis(...))')
  if (client.isCluster === true) throw fail('client', 'is a Redis Cluster client: not supported (use one Redis, or Sentinel)')
  const missing = (['duplicate', 'evalsha', 'eval', 'publish', 'zadd', 'on'] as const).filter(m => typeof client[m] !== 'function')
  if (missing.length > 0) throw fail('client', `must be an ioredis client (new Redis(...)); missing: ${missing.join(', ')}`)
  return client as Redis
}

function namespace (value: unknown): string {
  if (value === undefined) return 'ws-auth:'
  if (typeof value !== 'string' || !/^[^\s{}]{1,100}$/.test(value)) {
    throw fail('prefix', 'must be a string of 1 to 100 characters without spaces or braces')
  }
  return `${value}:ws-auth:`
}
