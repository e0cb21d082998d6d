import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, Redis } from 'ioredis'
import { eventually } from '../helpers/index.ts'
import { freePort, REDIS_SERVER, spawnGuarded, type Guarded } from './server.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** Hash slots of a Redis Cluster. */
const SLOTS = 16384

/** One primary of the cluster, on its own loopback port (its cluster bus on another). */
export interface ClusterNode {
  readonly port: number
  /** The first and last hash slot it serves. */
  readonly slots: readonly [number, number]
  /** Stops it (SIGTERM) and waits for its exit: its data is gone (no persistence), its slots unserved. */
  stop (): Promise<void>
  /** Starts it again with its nodes.conf (same id, same slots) and waits until the cluster is whole again. */
  restart (): Promise<void>
}

/** Three primaries, no replicas, on loopback: every slot served, stopped at teardown. */
export interface RedisCluster {
  /** The nodes' addresses, as `redisAdapter({ cluster: { nodes } })` and `new Cluster()` take them. */
  readonly nodes: Array<{ host: string, port: number }>
  /** `redis://127.0.0.1:<port>` of each node (for `whenRedis`: keyspace notifications are on). */
  readonly urls: string[]
  readonly primaries: ClusterNode[]
  /** A plain client of one node (for PUBSUB and CLUSTER commands, which answer for that node). */
  admin (node: ClusterNode): Redis
  /** The primary serving `key`'s slot (hash tags honoured). */
  nodeOf (key: string): Promise<ClusterNode>
  /** A plain Cluster client to look at what the adapter stored; disconnected at teardown. */
  inspector (): Cluster
  /** Resolves once every node reports cluster_state:ok and knows the others; rejects after WAIT_MS. */
  whole (): Promise<void>
}

/**
 * Starts three `redis-server --cluster-enabled yes` under the guard of server.ts (each dies with
 * the test, even one killed by its timeout), gives each a third of the slots and introduces them
 * (what `redis-cli --cluster create --cluster-replicas 0` does, without its one-second polls),
 * then waits until the cluster is whole. `cluster-require-full-coverage no`: a stopped primary
 * takes down its own slots only, as a managed cluster's shard failure does for its keys.
 */
export async function startRedisCluster (t: Teardown): Promise<RedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'ws-auth-cluster-'))
  const servers: Array<Guarded | undefined> = []
  const clients: Array<Redis | Cluster> = []
  t.teardown(async () => {
    for (const c of clients) c.disconnect()
    for (const s of servers) await s?.stop()
    await rm(dir, { recursive: true, force: true })
  })
  const ports = await Promise.all([0, 1, 2].map(async () => [await freePort(), await freePort()] as const))
  const start = async (i: number) => {
    const [port, bus] = ports[i]
    servers[i] = await spawnGuarded(REDIS_SERVER, ['--port', String(port), '--cluster-port', String(bus), '--bind', '127.0.0.1',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000',
      '--cluster-require-full-coverage', 'no', '--notify-keyspace-events', 'KA', '--save', '', '--appendonly', 'no', '--dir', dir], port, 'Ready to accept connections')
  }
  await Promise.all([0, 1, 2].map(start))
  const admin = (port: number) => {
    const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: true })
    client.on('error', () => {})
    clients.push(client)
    return client
  }
  const admins = ports.map(([port]) => admin(port))
  const ranges = [0, 1, 2].map(i => [Math.floor(i * SLOTS / 3), Math.floor((i + 1) * SLOTS / 3) - 1] as const)
  await Promise.all(admins.map(async (a, i) => {
    await a.call('CLUSTER', 'ADDSLOTSRANGE', ranges[i][0], ranges[i][1])
    await a.call('CLUSTER', 'SET-CONFIG-EPOCH', i + 1)
  }))
  for (const [port, bus] of ports.slice(1)) await admins[0].call('CLUSTER', 'MEET', '127.0.0.1', port, bus)

  // Gossip (a node joining) is announced to no outsider: asked again every 50 ms.
  const whole = () => eventually(async () => {
    const infos = await Promise.all(admins.map(a => a.call('CLUSTER', 'INFO').then(String, () => '')))
    return infos.every(info => info.includes('cluster_state:ok') && info.includes('cluster_known_nodes:3'))
  }, 'Redis Cluster: every node reporting cluster_state:ok and knowing the two others', 50)
  await whole()

  const primaries: ClusterNode[] = ports.map(([port], i) => ({
    port,
    slots: ranges[i],
    stop: async () => { await servers[i]?.stop() },
    restart: async () => {
      await start(i)
      await whole()
    }
  }))
  const nodes = ports.map(([port]) => ({ host: '127.0.0.1', port }))
  return {
    admin: (node) => admins[primaries.indexOf(node)],
    nodes,
    urls: nodes.map(n => `redis://${n.host}:${n.port}`),
    primaries,
    whole,
    nodeOf: async (key) => {
      const slot = Number(await admins.find(a => a.status === 'ready')!.call('CLUSTER', 'KEYSLOT', key))
      return primaries.find(p => p.slots[0] <= slot && slot <= p.slots[1])!
    },
    inspector: () => {
      const client = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 1 } })
      client.on('error', () => {})
      clients.push(client)
      return client
    }
  }
}
