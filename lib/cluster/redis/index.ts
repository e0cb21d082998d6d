import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import { RedisAdapter } from './adapter.ts'
import type { Client, Connections } from './connections.ts'
import { buildRedisConfig, type RedisAdapterOptions, type RedisConfig } from './options.ts'
import type { ClusterAdapter } from '../../types.ts'

/**
 * A cluster adapter on Redis (`fastify-ws-auth/redis`): `sendToUser`, `broadcast`,
 * `disconnectUser`, `revoke`, `connections` and `stats` reach every instance,
 * `maxConnectionsPerUser` holds cluster-wide, and revocations are stored so that instances
 * started later refuse the tokens too. See docs/cluster.md.
 * ```ts
 * await app.register(wsAuth, { adapter: redisAdapter({ url: 'redis://127.0.0.1:6379', prefix: 'app' }) })
 * // or, behind Sentinels: redisAdapter({ sentinels: [{ host, port }, ...], name: 'mymaster', prefix: 'app' })
 * // or, on a Redis Cluster (Redis >= 7): redisAdapter({ cluster: { nodes: [{ host, port }, ...] }, prefix: 'app' })
 * ```
 * Options are checked here, at creation (`FST_WS_AUTH_INVALID_OPTION` naming the option);
 * connections open when the app starts and close with it.
 */
export function redisAdapter (options: RedisAdapterOptions): ClusterAdapter {
  const config = buildRedisConfig(options)
  return new RedisAdapter(config, () => connections(config))
}

/** Reconnects for ever, backing off to one attempt a second: everything resumes when Redis returns. */
function retryStrategy (attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 5), 1000)
}

function connections (config: RedisConfig): Connections {
  const own = config.client === undefined
  const command = config.client ?? ownClient(config)
  if (config.clustered) return { command, subscriber: clusterSubscriber(command as Cluster), ownsCommand: own, sharded: true }
  const subscriber = (command as Redis).duplicate({
    lazyConnect: true,
    retryStrategy,
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    // The adapter subscribes again itself at each reconnection: ioredis's own resubscription
    // leaves its promise unhandled, and a connection lost again before Redis answered it would
    // be an unhandled rejection (a crash under Node's default) in the app.
    autoResubscribe: false
  } satisfies RedisOptions)
  return { command, subscriber, ownsCommand: own, sharded: false }
}

/**
 * The pub/sub client on a Cluster: with `shardedSubscribers`, ioredis keeps one subscriber
 * connection per shard that holds a channel of ours, sends each SSUBSCRIBE to the shard of its
 * slot and subscribes again by itself when slots move or a shard's primary changes.
 */
function clusterSubscriber (command: Cluster): Cluster {
  return command.duplicate([], {
    shardedSubscribers: true,
    lazyConnect: true,
    enableOfflineQueue: true,
    clusterRetryStrategy: retryStrategy
  } satisfies Partial<ClusterOptions>)
}

/** Fail at once while disconnected, and never replay a command whose answer was lost: the adapter falls back and resyncs instead of waiting on a queue. */
const FAIL_FAST = { enableOfflineQueue: false, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false } as const

/** The command client the adapter opens itself: to `url`, to the primary the Sentinels name, or to the Cluster. */
function ownClient (config: RedisConfig): Client {
  if (config.nodes !== undefined) {
    // Slots are discovered from these nodes; a node's failure shows as its commands failing
    // (the adapter resyncs at its next heartbeat), the whole Cluster's as 'close' and 'ready'.
    // No retry of a command whose connection closed, nor of one refused with CLUSTERDOWN: sent
    // late, after requestTimeout, a PUBLISH would deliver a message its caller was told reached
    // no one, and one in flight when the connection closed may have run already (a replay).
    // MOVED and ASK are still followed: slots move.
    return new Cluster(config.nodes, {
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: retryStrategy,
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 0,
      redisOptions: FAIL_FAST
    })
  }
  const options: RedisOptions = { lazyConnect: true, retryStrategy, ...FAIL_FAST }
  if (config.sentinels === undefined) return new Redis(config.url!, options)
  // A failover is seen as the connection dropping (a killed primary's, or a demoted one's: the
  // Sentinels close its clients); each reconnection asks a Sentinel for the primary again, and
  // ioredis's default sentinelRetryStrategy keeps trying them, for ever, when none answers.
  // duplicate() keeps all this for the subscriber.
  return new Redis({ ...options, sentinels: config.sentinels, name: config.name })
}

export type { RedisAdapterOptions, RedisAddress, OnRedisError } from './options.ts'
