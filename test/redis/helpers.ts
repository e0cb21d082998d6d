import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Redis, type Cluster } from 'ioredis'
import { buildApp, connect, logCapture, refusal, WAIT_MS, type Client, type TestApp } from '../helpers/index.ts'
import { redisAdapter, type RedisAdapterOptions } from '../../lib/cluster/redis/index.ts'
import type { WsAuthPluginOptions } from '../../lib/types.ts'

/** The kit's, here too for the Redis tests that import them from this file. */
export { bounded, stillOpen } from '../helpers/index.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** One instance of the cluster: a test app with its log lines. */
export interface Instance extends TestApp {
  logs: ReturnType<typeof logCapture>
  /** Log records whose msg contains `text`. */
  logged (text: string): Array<Record<string, unknown>>
}

export interface InstanceOptions {
  auth?: WsAuthPluginOptions
  /** Adapter options; `client`, `sentinels` (with `name`) or `cluster` take the place of the URL. */
  redis?: Omit<RedisAdapterOptions, 'url' | 'client'> & { url?: string, client?: Redis | Cluster }
  routes?: (app: FastifyInstance) => void
}

/** A fresh namespace for one test, so tests sharing a redis-server do not see each other. */
export function prefix (): string {
  return 'test-' + randomUUID().slice(0, 8)
}

/** Routes `/ws/a` and `/ws/b` that ignore messages. */
export function routes (app: FastifyInstance): void {
  app.get('/ws/a', { websocket: true }, (socket) => { socket.on('message', () => {}) })
  app.get('/ws/b', { websocket: true }, (socket) => { socket.on('message', () => {}) })
}

/** Starts one instance with a Redis adapter (its log kept at info level); closed at teardown. */
export async function instance (t: Teardown, url: string, namespace: string, opts: InstanceOptions = {}): Promise<Instance> {
  const logs = logCapture()
  const { url: own, client, ...rest } = opts.redis ?? {}
  const target = client !== undefined ? { client } : rest.sentinels !== undefined || rest.cluster !== undefined ? {} : { url: own ?? url }
  const adapter = redisAdapter({ ...target, prefix: namespace, ...rest })
  const app = await buildApp(t, {
    auth: { heartbeatInterval: false, ...opts.auth, adapter },
    routes: opts.routes ?? routes,
    fastify: { logger: { level: 'info', stream: logs.stream } }
  })
  const logged = (text: string) => logs.records().filter(r => typeof r.msg === 'string' && r.msg.includes(text))
  return { ...app, logs, logged }
}

/** `n` instances on one Redis and prefix. */
export async function cluster (t: Teardown, url: string, n: number, opts: InstanceOptions = {}): Promise<Instance[]> {
  const namespace = prefix()
  const instances: Instance[] = []
  for (let i = 0; i < n; i++) instances.push(await instance(t, url, namespace, opts))
  return instances
}

/** A plain client to look at what the adapter stored; disconnected at teardown. */
export function inspector (t: Teardown, url: string): Redis {
  const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  return redis
}

/**
 * Resolves once the async `condition()` holds: checked now, and again after each change Redis
 * reports to a key (keyspace notifications, which `startRedis` and `startRedisCluster` turn on),
 * never on a timer. Rejects after WAIT_MS, naming `what`. For state held in Redis (slots,
 * registrations, stored revocations), which the adapter announces by no event of its own. On a
 * Redis Cluster, give every node's URL: each node reports its own keys only.
 */
export async function whenRedis (urls: string | string[], what: string, condition: () => Promise<boolean>): Promise<void> {
  const all = (Array.isArray(urls) ? urls : [urls]).map(url => new Redis(url, { maxRetriesPerRequest: 1 }))
  for (const events of all) events.on('error', () => {})
  try {
    await Promise.all(all.map(events => events.psubscribe('__keyspace@*__:*')))
    await new Promise<void>((resolve, reject) => {
      let checking = false
      let again = false
      const timer = setTimeout(() => reject(new Error(`${what}: not so in Redis within ${WAIT_MS} ms`)), WAIT_MS)
      const check = async (): Promise<void> => {
        if (checking) {
          again = true
          return
        }
        checking = true
        try {
          do {
            again = false
            if (await condition()) {
              clearTimeout(timer)
              resolve()
              return
            }
          } while (again)
        } catch (err) {
          clearTimeout(timer)
          reject(err)
        } finally {
          checking = false
        }
      }
      for (const events of all) events.on('pmessage', () => { check().catch(() => {}) })
      check().catch(() => {})
    })
  } finally {
    for (const events of all) events.disconnect()
  }
}

/** How a handshake ended: `'established'`, or the close code and reason (`'4029 Too many connections'`). */
export async function outcome (client: Client): Promise<string> {
  const ended = await refusal(client)
  if ('message' in ended) {
    const m = ended.message as { type?: unknown }
    return m.type === 'connection_established' ? 'established' : `message ${JSON.stringify(m)}`
  }
  return `${ended.code} ${ended.reason}`
}

/** `n` handshakes of one user at once, spread over the instances in turn, with each one's outcome. */
export async function storm (instances: Instance[], n: number, user = 'u1'): Promise<{ clients: Client[], outcomes: string[], count: (what: string) => number }> {
  const clients: Client[] = []
  for (let i = 0; i < n; i++) {
    const app = instances[i % instances.length]
    clients.push(connect(app.url('/ws/a?token=' + app.sign({ sub: user }))))
  }
  const outcomes = await Promise.all(clients.map(outcome))
  return { clients, outcomes, count: (what) => outcomes.filter(o => o === what).length }
}
