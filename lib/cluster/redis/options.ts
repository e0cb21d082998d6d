import type { Cluster, Redis } from 'ioredis'
import { OptionChecker } from '../../protocol/options.ts'
import { InvalidOptionError } from '../../errors.ts'

/** What to do with a limited user's new connection while Redis cannot be reached. */
export type OnRedisError = 'fail-open' | 'fail-closed'

/** A Redis (Sentinel, Cluster node) address. */
export interface RedisAddress {
  host: string
  port: number
}

/** Options of `redisAdapter()`. Give exactly one of `url`, `client`, `sentinels` and `cluster`. */
export interface RedisAdapterOptions {
  /** A `redis://` or `rediss://` URL; the adapter opens (and closes) its own two connections. */
  url?: string
  /**
   * An ioredis client to use for commands: `new Redis(...)` (one Redis, or a Sentinel group's
   * primary) or `new Cluster(...)` (Redis Cluster, Redis >= 7: docs/cluster.md, "Redis Cluster").
   * The adapter adds a pub/sub client of its own (`client.duplicate()`; sharded, with
   * `shardedSubscribers`, for a Cluster), closes that one at shutdown and leaves yours open.
   * Sentinel clients of a replica (`role: 'slave'`) are refused: the adapter writes.
   */
  client?: Redis | Cluster
  /**
   * The Sentinels of a primary and its replicas, with `name`: the adapter asks them for the
   * primary, opens its two connections to it, and follows a failover to the replica they promote
   * (docs/cluster.md, "Sentinel"). For passwords, TLS or other ioredis Sentinel options, pass a
   * `client` (`new Redis({ sentinels, name, ... })`) instead.
   * ```ts
   * redisAdapter({ sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: '10.0.0.2', port: 26379 }], name: 'mymaster' })
   * ```
   */
  sentinels?: ReadonlyArray<RedisAddress>
  /** The master name the Sentinels monitor (`sentinel monitor <name> …`); required with `sentinels`, and only with them. */
  name?: string
  /**
   * A Redis Cluster (Redis >= 7), by some of its nodes: the adapter discovers the others, keeps
   * its registry keys in one hash slot and fans out over sharded Pub/Sub (`SPUBLISH`), following
   * failovers and resharding (docs/cluster.md, "Redis Cluster"). For passwords, TLS, NAT maps or
   * other ioredis Cluster options, pass a `client` (`new Cluster(nodes, { ... })`) instead.
   * ```ts
   * redisAdapter({ cluster: { nodes: [{ host: '10.0.0.1', port: 6379 }, { host: '10.0.0.2', port: 6379 }] } })
   * ```
   */
  cluster?: { nodes: ReadonlyArray<RedisAddress> }
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
  client: Redis | Cluster | undefined
  sentinels: RedisAddress[] | undefined
  /** The master name, with `sentinels`. */
  name: string | undefined
  /** The startup nodes of a Redis Cluster the adapter connects to itself. */
  nodes: RedisAddress[] | undefined
  /** Redis Cluster (`cluster`, or a Cluster `client`): hash-tagged registry keys, sharded pub/sub. */
  clustered: boolean
  /** `<prefix>:ws-auth:` or `ws-auth:`: the start of every key and channel. */
  namespace: string
  requestTimeout: number
  instanceTtl: number
  onRedisError: OnRedisError
}

const KNOWN = new Set<string>(['url', 'client', 'sentinels', 'name', 'cluster', 'prefix', 'requestTimeout', 'instanceTtl', 'onRedisError'] satisfies (keyof RedisAdapterOptions)[])

/** Checks the options once, at creation; every error names the option at fault. */
export function buildRedisConfig (opts: RedisAdapterOptions): RedisConfig {
  if (opts === null || typeof opts !== 'object') throw new InvalidOptionError('redisAdapter', 'takes an object: { url }, { client }, { sentinels, name } or { cluster: { nodes } }')
  check.knownKeys(opts, KNOWN, 'redisAdapter')
  const targets = TARGETS.filter(name => opts[name] !== undefined)
  if (targets.length > 1) throw fail(targets[1], `cannot be combined with "${targets[0]}": give one of "url", "client", "sentinels" and "cluster"`)
  if (targets.length === 0) throw fail('url', 'is required (or "client": an ioredis instance, "sentinels" with "name", or "cluster": { nodes })')
  if (opts.name !== undefined && opts.sentinels === undefined) throw fail('name', 'goes with "sentinels" only (a client names its master itself)')
  const client = opts.client === undefined ? undefined : ioredisClient(opts.client)
  const nodes = opts.cluster === undefined ? undefined : clusterNodes(opts.cluster)
  return {
    url: opts.url === undefined ? undefined : redisUrl(opts.url),
    client,
    sentinels: opts.sentinels === undefined ? undefined : addressList('sentinels', opts.sentinels, 'a Sentinel address'),
    name: opts.sentinels === undefined ? undefined : masterName(opts.name),
    nodes,
    clustered: nodes !== undefined || client?.isCluster === true,
    namespace: namespace(opts.prefix),
    requestTimeout: check.milliseconds('requestTimeout', opts.requestTimeout, 1000, 1),
    instanceTtl: check.milliseconds('instanceTtl', opts.instanceTtl, 30_000, 300),
    onRedisError: check.oneOf('onRedisError', opts.onRedisError, ['fail-open', 'fail-closed'] as const, 'fail-open')
  }
}

/** Where Redis is: exactly one of them. */
const TARGETS = ['url', 'client', 'sentinels', 'cluster'] as const satisfies (keyof RedisAdapterOptions)[]

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

function ioredisClient (value: unknown): Redis | Cluster {
  const client = value as Partial<Redis> & { isCluster?: boolean } | null
  if (client === null || typeof client !== 'object') throw fail('client', 'must be an ioredis client (new Redis(...) or new Cluster(...))')
  const missing = (['duplicate', 'evalsha', 'eval', 'publish', 'zadd', 'on'] as const).filter(m => typeof client[m] !== 'function')
  if (missing.length > 0) throw fail('client', `must be an ioredis client (new Redis(...) or new Cluster(...)); missing: ${missing.join(', ')}`)
  const options = (client as { options?: { sentinels?: unknown, role?: unknown, shardedSubscribers?: unknown } }).options
  if (client.isCluster === true) {
    // The option ioredis's Cluster routes SSUBSCRIBE with (its own default is false: the adapter's pub/sub client turns it on).
    if (typeof options?.shardedSubscribers !== 'boolean') throw fail('client', 'is a Cluster client of an ioredis without sharded Pub/Sub (the Cluster option "shardedSubscribers"): upgrade ioredis (5.11 is tested)')
    return client as unknown as Cluster
  }
  if (options?.sentinels != null && options.role === 'slave') {
    throw fail('client', 'connects to a replica (Sentinel role "slave"): the adapter writes, give it a client of the primary (role "master")')
  }
  return client as Redis
}

function clusterNodes (value: unknown): RedisAddress[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw fail('cluster', 'must be an object { nodes: [{ host, port }, ...] }')
  const { nodes, ...rest } = value as { nodes?: unknown }
  const extra = Object.keys(rest)
  if (extra.length > 0) throw fail(`cluster.${extra[0]}`, 'is not an option of "cluster" (nodes; for other ioredis Cluster options, pass a "client": new Cluster(nodes, options))')
  return addressList('cluster.nodes', nodes, 'a Cluster node address')
}

/** A non-empty list of { host, port }: Sentinels, or Cluster nodes. */
function addressList (name: string, value: unknown, what: string): RedisAddress[] {
  if (!Array.isArray(value) || value.length === 0) throw fail(name, 'must be a non-empty array of { host, port }')
  return value.map((entry: unknown, i) => {
    const at = `${name}[${i}]`
    if (entry === null || typeof entry !== 'object') throw fail(at, 'must be an object { host, port }')
    const { host, port, ...rest } = entry as { host?: unknown, port?: unknown }
    const extra = Object.keys(rest)
    if (extra.length > 0) throw fail(`${at}.${extra[0]}`, `is not a field of ${what} (host, port; for other ioredis options, pass a "client")`)
    if (typeof host !== 'string' || host.length === 0) throw fail(`${at}.host`, 'must be a non-empty string')
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw fail(`${at}.port`, 'must be a port number from 1 to 65535')
    return { host, port }
  })
}

function masterName (value: unknown): string {
  if (value === undefined) throw fail('name', 'is required with "sentinels": the master name they monitor (e.g. "mymaster")')
  return check.string('name', value, '')
}

function namespace (value: unknown): string {
  if (value === undefined) return 'ws-auth:'
  if (typeof value !== 'string' || !/^[^\s{}]{1,100}$/.test(value)) {
    throw fail('prefix', 'must be a string of 1 to 100 characters without spaces or braces')
  }
  return `${value}:ws-auth:`
}
