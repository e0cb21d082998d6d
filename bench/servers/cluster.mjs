// One instance of the scale run (bench/cluster.mjs): the plugin imported by name, as a user would
// (`fastify-ws-auth` and `fastify-ws-auth/redis`, the built dist/), with `maxConnectionsPerUser`
// and, unless `config.adapter` is null, the Redis adapter: `{ url }` for one Redis, `{ cluster:
// { nodes } }` for a Redis Cluster, the same `prefix` on every instance of a set.
// Two routes: `/ws`, whose every socket is subscribed to TOPIC (the idle sockets, which
// broadcasts and publishes reach), and `/hs`, which does nothing (the handshake rounds and the
// sendToUser probe). No heartbeat: 4,000 pings would land in the measured windows.
// Commands (besides bench/servers/server.mjs's): settle, fanout, broadcast, publish, users.
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import WebSocket from 'ws'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { LISTEN } from './common.mjs'
import { percentile } from '../lib/stats.mjs'

export const TOPIC = 'bench:all'
/** The releases of slots go to Redis in batches of 5 ms: wait that much more before reading CPU time. */
const RELEASE_MS = 20

function nowUs () {
  return Number(process.hrtime.bigint() / 1000n)
}

export async function start (config) {
  const { default: wsAuth } = await import('fastify-ws-auth')
  const app = Fastify({ logger: false })
  await app.register(jwt, { secret: config.secret })
  const adapter = config.adapter === null ? {} : { adapter: (await import('fastify-ws-auth/redis')).redisAdapter(config.adapter) }
  await app.register(wsAuth, { heartbeatInterval: false, maxConnectionsPerUser: config.limit, ...adapter })
  app.get('/ws', { websocket: true }, (socket) => { app.wsAuth.subscribe(socket, TOPIC) })
  app.get('/hs', { websocket: true }, () => {})
  await app.listen(LISTEN)
  const { port } = app.server.address()
  return { server: app.server, close: () => app.close(), commands: commands(app, port) }
}

function commands (app, port) {
  return {
    /** Waits (bounded) until no handshake is under way and at most `active` sessions are open, then for the slot releases. */
    async settle ({ active, timeoutMs = 10_000 }) {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline) {
        const s = app.wsAuth.stats()
        if (s.authenticating === 0 && s.active <= active) break
        await sleep(5)
      }
      await sleep(RELEASE_MS)
      return { active: app.wsAuth.stats().active }
    },
    /**
     * `n` sequential sendToUser(userId) from this instance to a socket of this process's own, opened
     * to `probePort` (another instance, or this one) with `token`: `delivery` = call to arrival,
     * `call` = call to the promise resolving (every instance's count in), on one clock.
     */
    async fanout ({ userId, token, probePort, n, warm }) {
      const client = new WebSocket(`ws://127.0.0.1:${probePort}/hs?token=${token}`)
      try {
        const [first] = await Promise.race([once(client, 'message'), sleep(10_000).then(() => [''])])
        if (!first.toString().includes('connection_established')) return { error: 'the probe socket was not established' }
        const delivery = []
        const call = []
        for (let i = 0; i < warm + n; i++) {
          let arrivedAt = 0
          const arrived = new Promise((resolve) => client.once('message', () => { arrivedAt = performance.now(); resolve() }))
          const t0 = performance.now()
          const count = await app.wsAuth.sendToUser(userId, 'x')
          const t1 = performance.now()
          await Promise.race([arrived, sleep(5000)])
          if (count !== 1 || arrivedAt === 0) return { error: `sendToUser reached ${count} sockets (expected 1), arrived: ${arrivedAt !== 0}` }
          if (i < warm) continue
          call.push(t1 - t0)
          delivery.push(arrivedAt - t0)
        }
        const d = delivery.sort((a, b) => a - b)
        const c = call.sort((a, b) => a - b)
        return { n, delivery: { p50: percentile(d, 0.5), p99: percentile(d, 0.99) }, call: { p50: percentile(c, 0.5), p99: percentile(c, 0.99) } }
      } finally {
        client.terminate()
      }
    },
    /** broadcast(data) to every session (of every instance with the adapter): when it was called (µs, monotonic) and what it reached. */
    async broadcast ({ data, atUs = 0 }) {
      await waitUntil(atUs)
      const t0 = nowUs()
      const count = await app.wsAuth.broadcast(data)
      return { t0Us: t0, count, callMs: (nowUs() - t0) / 1000 }
    },
    /** publish(TOPIC, data): as `broadcast`. */
    async publish ({ data, atUs = 0 }) {
      await waitUntil(atUs)
      const t0 = nowUs()
      const count = await app.wsAuth.publish(TOPIC, data)
      return { t0Us: t0, count, callMs: (nowUs() - t0) / 1000 }
    },
    /** This instance's open sessions per user id starting with `prefix`. */
    users ({ prefix }) {
      const counts = {}
      for (const c of app.wsAuth.connections()) {
        if (typeof c.userId === 'string' && c.userId.startsWith(prefix)) counts[c.userId] = (counts[c.userId] ?? 0) + 1
      }
      return { counts, active: app.wsAuth.stats().active, port }
    }
  }
}

/** Waits until the monotonic clock reads `atUs` (a common start for several instances), spinning the last millisecond. */
async function waitUntil (atUs) {
  const ahead = atUs - nowUs()
  if (ahead > 2000) await sleep(Math.floor(ahead / 1000) - 1)
  while (nowUs() < atUs);
}
