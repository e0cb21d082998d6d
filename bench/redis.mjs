// The Redis adapter's cost (issue 7): `node bench/redis.mjs [--quick]`, after `npm run build`.
//  1. Handshake CPU: server-side CPU per handshake (upgrade, verify, limit check, established,
//     close, slot release) with maxConnectionsPerUser on, with the Redis adapter vs without it,
//     in interleaved rounds on the same core. Target: ratio <= 1.3. Redis's own CPU is shown apart.
//  2. Fan-out latency: sendToUser called on instance A for a user whose socket is on instance B;
//     `delivery` = call to arrival at the client, `call` = call to the promise resolving (B's
//     count is in). The client lives in A's process, so both are read on one clock.
// Starts its own redis-server (Debian's /usr/bin/redis-server, or REDIS_SERVER) on a free
// loopback port and stops it, and every server process, at the end.
import { randomBytes, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { Child, canPin } from './lib/proc.mjs'
import { startRedis } from './lib/redis-server.mjs'
import { formatSummary, percentile, summary } from './lib/stats.mjs'
import { signJwt } from './lib/tokens.mjs'

const SELF = import.meta.filename
const MODES = {
  quick: { rounds: 5, handshakes: 1500, warmup: 4000, concurrency: 50, sends: 2000 },
  full: { rounds: 10, handshakes: 4000, warmup: 10_000, concurrency: 50, sends: 20_000 }
}
const USERS = 1000
const LIMIT = 5
const TARGET_RATIO = 1.3
const SERVER_CPU = 0
const REDIS_CPU = 1

if (process.env.BENCH_REDIS_SERVER) serve(JSON.parse(process.env.BENCH_REDIS_SERVER))
else main().catch((err) => { console.error(err); process.exitCode = 1 })

// ---------------------------------------------------------------- harness (parent process)

async function main () {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, profile: { type: 'string' } } })
  const mode = MODES[values.quick ? 'quick' : 'full']
  const secret = randomBytes(32).toString('hex')
  const iat = Math.floor(Date.now() / 1000)
  const tokens = Array.from({ length: USERS }, (_, i) => signJwt('HS256', { HS256: secret }, { sub: `user-${i}`, iat, exp: iat + 3600 }))
  const redis = await startRedis({ cpu: REDIS_CPU })
  const children = []
  const ask = async (s, cmd, fields, timeoutMs) => {
    const answer = await s.c.request(cmd, fields, timeoutMs)
    if (answer.error) throw new Error(`${s.c.name}: ${cmd}: ${answer.error}`)
    return answer
  }
  const child = async (name, config) => {
    // --profile DIR: a V8 CPU profile of each server process, written to DIR at its exit.
    const nodeArgs = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`, `--cpu-prof-name=${name}.cpuprofile`] : []
    const c = new Child(SELF, { cpu: SERVER_CPU, name, nodeArgs, env: { BENCH_REDIS_SERVER: JSON.stringify({ ...config, secret }) } })
    children.push(c)
    const { port } = await c.ready()
    return { c, port }
  }
  try {
    const prefix = 'bench-' + randomUUID().slice(0, 8)
    const off = await child('adapter-off', { adapter: false })
    const on = await child('adapter-on', { adapter: true, url: redis.url, prefix })
    log(`redis-server on port ${redis.port}; servers pinned to core ${SERVER_CPU}, redis-server to core ${REDIS_CPU}: ${canPin ? 'yes' : 'no (taskset missing)'}`)

    for (const s of [off, on]) await handshakes(s.port, tokens, mode.warmup, mode.concurrency)
    const cpu = { off: [], on: [], redis: [] }
    for (let round = 0; round < mode.rounds; round++) {
      for (const [name, s] of round % 2 ? [['on', on], ['off', off]] : [['off', off], ['on', on]]) {
        await ask(s, 'mark')
        const redisBefore = redis.cpuUs()
        await handshakes(s.port, tokens, mode.handshakes, mode.concurrency)
        const { cpuUs } = await ask(s, 'cpu')
        cpu[name].push(cpuUs / mode.handshakes)
        if (name === 'on') cpu.redis.push((redis.cpuUs() - redisBefore) / mode.handshakes)
      }
      log(`round ${round + 1}/${mode.rounds}: off ${cpu.off.at(-1).toFixed(0)} µs, on ${cpu.on.at(-1).toFixed(0)} µs per handshake`)
    }
    const ratios = cpu.on.map((v, i) => v / cpu.off[i])

    const b = await child('adapter-on-b', { adapter: true, url: redis.url, prefix })
    await ask(on, 'client', { url: `ws://127.0.0.1:${b.port}/ws?token=${tokens[0]}` })
    await ask(on, 'fanout', { userId: 'user-0', n: Math.min(200, mode.sends) })
    const fan = await ask(on, 'fanout', { userId: 'user-0', n: mode.sends }, 120_000)

    const ratio = summary(ratios)
    const lines = [
      '',
      `Redis adapter bench (${values.quick ? 'quick' : 'full'}): ${mode.rounds} rounds x ${mode.handshakes} handshakes, ` +
        `concurrency ${mode.concurrency}, ${USERS} users, maxConnectionsPerUser ${LIMIT}`,
      `  handshake CPU, adapter off     ${formatSummary(summary(cpu.off))} µs/handshake (median (min–max) over rounds)`,
      `  handshake CPU, adapter on      ${formatSummary(summary(cpu.on))} µs/handshake`,
      `  ratio on/off                   ${formatSummary(ratio, 2)}  (target <= ${TARGET_RATIO}: ${ratio.median <= TARGET_RATIO ? 'met' : 'NOT met'})`,
      `  redis-server CPU (adapter on)  ${formatSummary(summary(cpu.redis))} µs/handshake (not in the ratio)`,
      `  sendToUser A -> socket on B, ${fan.n} sequential calls:`,
      `    delivery  p50 ${fan.delivery.p50.toFixed(3)} ms  p99 ${fan.delivery.p99.toFixed(3)} ms`,
      `    call      p50 ${fan.call.p50.toFixed(3)} ms  p99 ${fan.call.p99.toFixed(3)} ms  (promise resolved with both instances' counts)`,
      ''
    ]
    console.log(lines.join('\n'))
  } finally {
    await Promise.all(children.map((c) => c.stop()))
    await redis.stop()
  }
}

/** `total` handshakes, `concurrency` at a time: open with a token, wait for connection_established, close. */
async function handshakes (port, tokens, total, concurrency) {
  let next = 0
  let failed = 0
  const worker = async () => {
    while (next < total) {
      const i = next++
      const ok = await handshake(`ws://127.0.0.1:${port}/ws?token=${tokens[i % tokens.length]}`)
      if (!ok) failed++
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  if (failed > 0) throw new Error(`${failed} of ${total} handshakes failed`)
}

function handshake (url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url)
    let established = false
    const timer = setTimeout(() => ws.terminate(), 10_000)
    ws.once('message', (data) => {
      established = data.toString().includes('connection_established')
      ws.close()
    })
    ws.once('error', () => {})
    ws.once('close', () => {
      clearTimeout(timer)
      resolve(established)
    })
  })
}

function log (line) {
  process.stderr.write(`bench redis: ${line}\n`)
}

// ---------------------------------------------------------------- server (child process)

/** The package as a user imports it. */
async function importPackage () {
  const { default: wsAuth } = await import('fastify-ws-auth')
  return { wsAuth, redisAdapter: (await import('fastify-ws-auth/redis')).redisAdapter }
}

async function serve (config) {
  process.on('disconnect', () => process.exit(0))
  setTimeout(() => process.exit(2), 30 * 60_000).unref()
  const { default: Fastify } = await import('fastify')
  const { default: jwt } = await import('@fastify/jwt')
  const { wsAuth, redisAdapter } = await importPackage()
  const app = Fastify({ logger: false })
  await app.register(jwt, { secret: config.secret })
  await app.register(wsAuth, {
    heartbeatInterval: false,
    maxConnectionsPerUser: LIMIT,
    ...(config.adapter ? { adapter: redisAdapter({ url: config.url, prefix: config.prefix }) } : {})
  })
  app.get('/ws', { websocket: true }, (socket) => { socket.on('message', () => {}) })
  await app.listen({ host: '127.0.0.1', port: 0, backlog: 4096 })

  let mark = process.cpuUsage()
  let client = null
  const commands = {
    mark () {
      mark = process.cpuUsage()
      return {}
    },
    /** CPU since `mark`, once every session of the round has closed (so releases are counted). */
    async cpu () {
      for (let i = 0; i < 500 && app.wsAuth.stats().active + app.wsAuth.stats().authenticating > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      const cpu = process.cpuUsage(mark)
      return { cpuUs: cpu.user + cpu.system }
    },
    /** Opens the fan-out target: a client in this process, connected to another instance. */
    async client ({ url }) {
      client = new WebSocket(url)
      const [first] = await once(client, 'message')
      return { established: first.toString().includes('connection_established') }
    },
    async fanout ({ userId, n }) {
      const delivery = []
      const call = []
      for (let i = 0; i < n; i++) {
        let arrivedAt = 0
        const arrived = new Promise((resolve) => client.once('message', () => { arrivedAt = performance.now(); resolve() }))
        const t0 = performance.now()
        const count = await app.wsAuth.sendToUser(userId, 'x')
        call.push(performance.now() - t0)
        await arrived
        delivery.push(arrivedAt - t0)
        if (count !== 1) throw new Error(`sendToUser reached ${count} sockets, expected 1`)
      }
      const d = delivery.sort((a, b) => a - b)
      const c = call.sort((a, b) => a - b)
      return { n, delivery: { p50: percentile(d, 0.5), p99: percentile(d, 0.99) }, call: { p50: percentile(c, 0.5), p99: percentile(c, 0.99) } }
    },
    async exit () {
      client?.terminate()
      await Promise.race([app.close(), new Promise((resolve) => setTimeout(resolve, 3000))])
      process.exit(0)
    }
  }
  process.on('message', async (msg) => {
    const command = commands[msg.cmd]
    try {
      const reply = command ? await command(msg) : { error: `unknown command ${msg.cmd}` }
      process.send({ id: msg.id, ...reply })
    } catch (err) {
      process.send({ id: msg.id, error: err.message })
    }
  })
  process.send({ type: 'ready', port: app.server.address().port })
}
