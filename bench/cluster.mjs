// The scale run (issue 20): `node bench/cluster.mjs [--quick]` after `npm run build`, or
// `npm run bench -- --cluster [--quick]`. Three sets of plugin instances side by side, each
// instance its own process: without an adapter (the baseline), with the Redis adapter on one
// Redis, and with it on a Redis Cluster of 3 primaries (all started here, on loopback). Instances
// join one at a time, each then holding `sockets` idle authenticated sockets (4 × 4,000 per set in
// the full run, 48,000 in all) opened by several load generators, each from source addresses of
// its own (127.0.0.2 and up). Figures (see docs/benchmarks.md, "Scale run"):
//  - RSS per idle socket of each instance, adapter on vs off;
//  - server CPU per handshake on ÷ off, per instance, for users under maxConnectionsPerUser and
//    for sessions without a user id (the limit does not apply), in interleaved rounds;
//  - sendToUser from the first instance to a socket on the last: delivery p50/p99;
//  - broadcast to every socket, and publish to a topic every socket holds, from the first
//    instance: time until the last client has it ÷ the slowest instance's local one (baseline);
//  - the limit under a storm of handshakes of 100 users over every instance: over-admissions;
//  - the latency and delivery times at 1, 2 and 4 instances, charted (bench/results-cluster.svg).
// Servers are pinned to core 0; load generators and redis-servers to core 1. Everything started
// here is stopped at the end, on error and on SIGINT/SIGTERM.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Child, canPin, coreBusyUs, processCpuUs } from './lib/proc.mjs'
import { signJwt } from './lib/tokens.mjs'
import { startRedis, startRedisCluster } from './lib/redis-server.mjs'
import { summary } from './lib/stats.mjs'
import { clusterChart, machine, markdownReport, textReport } from './lib/cluster-report.mjs'
import { randomBytes, randomUUID } from 'node:crypto'

const HERE = import.meta.dirname
const TMP = join(HERE, '.tmp')
const SERVER = join(HERE, 'servers', 'server.mjs')
const LOADGEN = join(HERE, 'loadgen.mjs')
const SERVER_CPU = 0
const CLIENT_CPU = 1
const LIMIT = 5
const EXPECT = '"type":"connection_established"'
/** Source addresses per load generator: 127.0.0.(2 + 8 l) to 127.0.0.(9 + 8 l). */
const SPREAD = 8
const MODES = {
  quick: { instances: 2, sockets: 500, loadgens: 2, warm: 200, rounds: 2, handshakes: 250, sends: 300, sendWarm: 50, fanRounds: 3, fanWarm: 1, storm: 2000, stormUsers: 100, points: [1, 2], limitMs: 3 * 60_000 },
  full: { instances: 4, sockets: 4000, loadgens: 4, warm: 2000, rounds: 8, handshakes: 800, sends: 5000, sendWarm: 200, fanRounds: 11, fanWarm: 2, storm: 2000, stormUsers: 100, points: [1, 2, 4], limitMs: 14 * 60_000 }
}
const SETS = [
  { id: 'off', label: 'no adapter (baseline)' },
  { id: 'redis', label: 'Redis adapter, one Redis' },
  { id: 'cluster', label: 'Redis adapter, Redis Cluster (3 primaries)' }
]

const T0 = performance.now()
function log (line) {
  process.stderr.write(`bench cluster ${((performance.now() - T0) / 1000).toFixed(1).padStart(5)}s: ${line}\n`)
}

function nowUs () {
  return Number(process.hrtime.bigint() / 1000n)
}

/** Everything started, stopped by `stopAll` (at the end, on error, on a signal): the processes, then the redis-servers. */
const children = []
const services = []
async function stopAll () {
  for (const list of [children, services]) {
    await Promise.all(list.splice(0).map((stop) => stop().catch((err) => log(`stop: ${err.message}`))))
  }
}

/** CPU time (µs) of every process of the run still alive: to tell how much of the machine others took. */
const cpuOf = [() => { const c = process.cpuUsage(); return c.user + c.system }]

function spawnChild (script, opts) {
  const child = new Child(script, opts)
  children.push(() => child.stop())
  cpuOf.push(() => processCpuUs(child.proc.pid))
  return child
}

/** The share of the machine's CPU (all cores) that processes other than the run's took since `since`. */
function othersLoad (since) {
  const busy = coreBusyUs()
  if (busy === null || since.busy === null) return NaN
  const all = busy.reduce((a, b) => a + b, 0) - since.busy.reduce((a, b) => a + b, 0)
  const ours = cpuOf.reduce((sum, f) => sum + f(), 0) - since.ours
  return Math.max(0, all - ours) / ((performance.now() - since.at) * 1000 * busy.length)
}

async function ask (child, cmd, fields = {}, timeoutMs = 60_000) {
  const answer = await child.request(cmd, fields, timeoutMs)
  if (answer.error) throw new Error(`${child.name}: ${cmd}: ${answer.error}`)
  return answer
}

/** The tokens of the run (HS256, one secret per run; never printed nor written). */
function makeTokens (mode) {
  const secret = randomBytes(32).toString('hex')
  const iat = Math.floor(Date.now() / 1000)
  const sign = (claims) => signJwt('HS256', { HS256: secret }, { ...claims, iat, exp: iat + 3600 })
  const range = (n, f) => Array.from({ length: n }, (_, i) => f(i))
  return {
    secret,
    // One user per idle socket: each holds a slot under maxConnectionsPerUser.
    idle: range(mode.instances, (i) => range(mode.sockets, (j) => sign({ sub: `idle-${i}-${j}` }))),
    limited: range(1000, (i) => sign({ sub: `hs-${i}` })),
    // No `sub` (no user id): the limit, and so the adapter, is not asked.
    unlimited: range(100, (i) => sign({ n: i })),
    probe: sign({ sub: 'probe' }),
    storm: range(mode.stormUsers, (i) => sign({ sub: `storm-${i}` }))
  }
}

function target (port, path, tokens, from) {
  return { port, path, auth: 'query', protocol: 'ws', expect: EXPECT, tokens, spread: SPREAD, spreadFrom: 2 + SPREAD * from }
}

async function handshakes (lg, from, port, tokens, n, concurrency = 50) {
  const timeoutMs = Math.max(30_000, n * 10)
  return ask(lg, 'handshakes', { target: target(port, '/hs', tokens, from), client: 'lean', n, concurrency, timeoutMs }, timeoutMs + 10_000)
}

/** Starts the next instance of `set`, warms it up, and opens its idle sockets over every load generator, RSS measured around them. */
async function addInstance (ctx, set) {
  const { mode, tokens, loadgens } = ctx
  const i = set.instances.length
  const config = { kind: 'cluster', secret: tokens.secret, limit: LIMIT, adapter: set.adapter }
  const env = { BENCH_SERVER: JSON.stringify(config), BENCH_MAX_LIFETIME_MS: String(mode.limitMs) }
  const child = spawnChild(SERVER, { cpu: SERVER_CPU, nofile: mode.sockets + mode.storm + 2048, nodeArgs: ['--expose-gc'], name: `${set.id}-${i}`, env })
  const { port } = await child.ready()
  const instance = { child, port, held: 0 }
  set.instances.push(instance)
  await handshakes(loadgens[0], 0, port, tokens.limited, mode.warm)
  await handshakes(loadgens[0], 0, port, tokens.unlimited, mode.warm)
  const before = await ask(child, 'mem')
  const share = mode.sockets / loadgens.length
  const timeoutMs = Math.max(30_000, mode.sockets * 10)
  const opened = await Promise.all(loadgens.map((lg, l) => {
    const slice = tokens.idle[i].slice(l * share, (l + 1) * share)
    return ask(lg, 'open', { target: target(port, '/ws', slice, l), client: 'lean', n: share, concurrency: 50, timeoutMs }, timeoutMs + 10_000)
  }))
  opened.forEach((o, l) => { ctx.held[l][`${set.id}-${i}`] = o.ok })
  instance.held = opened.reduce((n, o) => n + o.ok, 0)
  if (instance.held !== mode.sockets) throw new Error(`${set.id}-${i}: ${instance.held}/${mode.sockets} idle sockets opened (first error: ${opened.find((o) => o.firstError)?.firstError})`)
  await ask(child, 'settle', { active: instance.held })
  const after = await ask(child, 'mem')
  ctx.results.memory.push({ set: set.id, instance: i, rssKiB: (after.rss - before.rss) / instance.held / 1024, heapKiB: (after.heapUsed - before.heapUsed) / instance.held / 1024 })
  log(`${set.id}-${i} on port ${port}: ${instance.held} idle sockets, RSS +${((after.rss - before.rss) / 2 ** 20).toFixed(1)} MiB`)
}

/**
 * One fan-out: `cmd` ('broadcast' or 'publish') on each of `from` (at one common instant when
 * several), then the time until the last client of `to` (instance keys) has the frame.
 */
async function fanOnce (ctx, cmd, from, to, expectedCount) {
  const seq = `${cmd}-${ctx.seq++}`
  const data = { type: 'bench', seq, pad: 'x'.repeat(160) }
  await Promise.all(ctx.loadgens.map((lg) => ask(lg, 'arm', { match: `"seq":"${seq}"` })))
  const atUs = from.length > 1 ? nowUs() + 50_000 : 0
  const calls = await Promise.all(from.map((s) => ask(s.child, cmd, { data, atUs })))
  const got = await Promise.all(ctx.loadgens.map((lg, l) => {
    const n = to.reduce((sum, key) => sum + (ctx.held[l][key] ?? 0), 0)
    return ask(lg, 'received', { n, timeoutMs: 30_000 }, 40_000).then((r) => ({ ...r, n }))
  }))
  const reached = calls.reduce((sum, c) => sum + c.count, 0)
  const missing = got.reduce((sum, g) => sum + Math.max(0, g.n - g.count), 0) + Math.max(0, expectedCount - reached)
  const firstCall = Math.min(...calls.map((c) => c.t0Us))
  return {
    deliveryMs: (Math.max(...got.map((g) => g.lastUs)) - firstCall) / 1000,
    callMs: Math.max(...calls.map((c) => c.callMs)),
    errors: missing
  }
}

async function fanRounds (ctx, cmd, from, to, expectedCount) {
  const rounds = []
  for (let r = 0; r < ctx.mode.fanWarm + ctx.mode.fanRounds; r++) {
    const round = await fanOnce(ctx, cmd, from, to, expectedCount)
    if (r >= ctx.mode.fanWarm) rounds.push(round)
  }
  const errors = rounds.reduce((n, r) => n + r.errors, 0)
  if (errors > 0) log(`${cmd} from ${from.length} instance(s): ${errors} frames missing`)
  return { deliveryMs: summary(rounds.map((r) => r.deliveryMs)), callMs: summary(rounds.map((r) => r.callMs)), errors }
}

/** The figures at `k` instances: sendToUser latency, broadcast and publish delivery. */
async function scalePoint (ctx, set, k) {
  const { mode, tokens } = ctx
  const live = set.instances.slice(0, k)
  const keys = live.map((_, i) => `${set.id}-${i}`)
  const total = live.reduce((n, s) => n + s.held, 0)
  const [first] = live
  // Without an adapter sendToUser reaches this instance's sockets only: the probe is local.
  const probe = set.adapter === null ? first : live.at(-1)
  const send = await ask(first.child, 'fanout', { userId: 'probe', token: tokens.probe, probePort: probe.port, n: mode.sends, warm: mode.sendWarm }, 120_000)
  const point = { set: set.id, k, sockets: total, send: { delivery: send.delivery, call: send.call, remote: probe !== first } }
  for (const cmd of ['broadcast', 'publish']) {
    if (set.adapter !== null) {
      point[cmd] = await fanRounds(ctx, cmd, [first], keys, total)
      continue
    }
    // The baseline: each instance's own, alone (the slowest counts), and all at one instant.
    const alone = []
    for (let i = 0; i < k; i++) alone.push(await fanRounds(ctx, cmd, [live[i]], [keys[i]], live[i].held))
    const slowest = alone.reduce((a, b) => (b.deliveryMs.median > a.deliveryMs.median ? b : a))
    point[cmd] = { ...slowest, alone: alone.map((a) => a.deliveryMs.median), together: await fanRounds(ctx, cmd, live, keys, total) }
  }
  ctx.results.scale.push(point)
  log(`${set.id} at ${k} instance(s), ${total} sockets: sendToUser p99 ${send.delivery.p99.toFixed(3)} ms, broadcast ${point.broadcast.deliveryMs.median.toFixed(1)} ms, publish ${point.publish.deliveryMs.median.toFixed(1)} ms`)
}

async function handshakeRound (ctx, set, i, kind) {
  const s = set.instances[i]
  await ask(s.child, 'mark')
  const redis0 = set.redisCpuUs()
  const r = await handshakes(ctx.loadgens[0], 0, s.port, ctx.tokens[kind], ctx.mode.handshakes)
  await ask(s.child, 'settle', { active: s.held })
  const stats = await ask(s.child, 'stats')
  return {
    set: set.id,
    instance: i,
    kind,
    cpuPerHs: r.ok > 0 ? stats.cpuUs / r.ok : NaN,
    hps: r.ok / (r.wallMs / 1000),
    redisPerHs: r.ok > 0 ? (set.redisCpuUs() - redis0) / r.ok : NaN,
    errors: r.errors,
    firstError: r.firstError
  }
}

/** Handshake rounds on every instance, the three sets' rounds of one instance back to back, their order rotating. */
async function handshakePhase (ctx) {
  const { mode, sets } = ctx
  for (let r = -1; r < mode.rounds; r++) {
    for (let i = 0; i < mode.instances; i++) {
      for (const kind of ['limited', 'unlimited']) {
        const k = (r + 1 + i) % sets.length
        for (const set of [...sets.slice(k), ...sets.slice(0, k)]) {
          const round = await handshakeRound(ctx, set, i, kind)
          if (round.errors > 0) log(`${set.id}-${i} ${kind}: ${round.errors} handshake errors (first: ${round.firstError})`)
          if (r >= 0) ctx.results.handshake.push(round)
        }
      }
    }
    log(`handshake round ${r + 1}/${mode.rounds}${r < 0 ? ' (warm-up, not counted)' : ''}`)
  }
}

/** `mode.storm` handshakes of `stormUsers` users at once, spread evenly over the set's instances; sessions per user counted on the servers. */
async function stormPhase (ctx, set) {
  const { mode, tokens, storm } = ctx
  const per = mode.storm / set.instances.length
  const timeoutMs = 60_000
  const opened = await Promise.all(set.instances.map((s) => ask(storm, 'open', {
    target: target(s.port, '/hs', tokens.storm, mode.loadgens),
    client: 'lean',
    n: per,
    concurrency: Math.min(per, 250),
    timeoutMs
  }, timeoutMs + 10_000)))
  const counts = {}
  for (const s of set.instances) {
    await ask(s.child, 'settle', { active: s.held + mode.storm })
    const { counts: here } = await ask(s.child, 'users', { prefix: 'storm-' })
    for (const [user, n] of Object.entries(here)) counts[user] = (counts[user] ?? 0) + n
  }
  await ask(storm, 'release', { timeoutMs: 20_000 }, 30_000)
  for (const s of set.instances) await ask(s.child, 'settle', { active: s.held })
  const sessions = Object.values(counts)
  const result = {
    set: set.id,
    attempts: mode.storm,
    users: mode.stormUsers,
    established: opened.reduce((n, o) => n + o.ok, 0),
    admitted: sessions.reduce((a, b) => a + b, 0),
    overAdmissions: sessions.reduce((n, c) => n + Math.max(0, c - LIMIT), 0),
    usersOver: sessions.filter((c) => c > LIMIT).length,
    maxPerUser: Math.max(0, ...sessions)
  }
  ctx.results.storm.push(result)
  log(`storm on ${set.id}: ${result.admitted} admitted of ${result.attempts}, ${result.overAdmissions} over the limit`)
}

async function main () {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
  const name = values.quick ? 'quick' : 'full'
  const mode = MODES[name]
  const limit = setTimeout(() => {
    log(`time limit of ${mode.limitMs / 60_000} min reached, stopping`)
    stopAll().finally(() => process.exit(1))
  }, mode.limitMs)
  mkdirSync(TMP, { recursive: true })
  if (!canPin) log('taskset not found: servers and load generators are NOT pinned to separate cores')
  const tokens = makeTokens(mode)

  const since = { busy: coreBusyUs(), ours: cpuOf[0](), at: performance.now() }
  const redis = await startRedis({ cpu: CLIENT_CPU })
  services.push(() => redis.stop())
  cpuOf.push(() => redis.cpuUs())
  const cluster = await startRedisCluster({ primaries: 3, cpu: CLIENT_CPU })
  services.push(() => cluster.stop())
  cpuOf.push(() => cluster.cpuUs())
  log(`redis-server on port ${redis.port}; Redis Cluster on ports ${cluster.nodes.map((n) => n.port).join(', ')}`)
  const prefix = 'bench-' + randomUUID().slice(0, 8)
  const sets = SETS.map((s) => ({ ...s, instances: [] }))
  sets[0].adapter = null
  sets[0].redisCpuUs = () => 0
  sets[1].adapter = { url: redis.url, prefix }
  sets[1].redisCpuUs = () => redis.cpuUs()
  sets[2].adapter = { cluster: { nodes: cluster.nodes }, prefix }
  sets[2].redisCpuUs = () => cluster.cpuUs()

  const lgEnv = { BENCH_MAX_LIFETIME_MS: String(mode.limitMs) }
  const perLoadgen = (SETS.length * mode.instances * mode.sockets) / mode.loadgens
  const loadgens = Array.from({ length: mode.loadgens }, (_, l) => spawnChild(LOADGEN, { cpu: CLIENT_CPU, nofile: perLoadgen + 1024, name: `loadgen-${l}`, env: lgEnv }))
  const storm = spawnChild(LOADGEN, { cpu: CLIENT_CPU, nofile: mode.storm + 1024, name: 'loadgen-storm', env: lgEnv })
  await Promise.all([...loadgens, storm].map((c) => c.ready()))
  log(`${mode.loadgens} load generators, ${perLoadgen} idle sockets each; ${mode.instances} instances per set, ${mode.sockets} idle sockets each`)

  const results = { memory: [], scale: [], handshake: [], storm: [] }
  const ctx = { mode, tokens, loadgens, storm, sets, results, held: loadgens.map(() => ({})), seq: 0 }
  for (let k = 1; k <= mode.instances; k++) {
    for (const set of sets) await addInstance(ctx, set)
    if (mode.points.includes(k)) for (const set of sets) await scalePoint(ctx, set, k)
  }
  await handshakePhase(ctx)
  for (const set of sets) await stormPhase(ctx, set)
  clearTimeout(limit)

  const report = { name, mode, limit: LIMIT, results, othersLoad: othersLoad(since), seconds: (performance.now() - T0) / 1000, machine: await machine(), command: `node bench/cluster.mjs${values.quick ? ' --quick' : ''}` }
  await stopAll()
  const dir = values.quick ? TMP : HERE
  const svg = join(dir, values.quick ? 'results-cluster-quick.svg' : 'results-cluster.svg')
  const md = join(dir, values.quick ? 'results-cluster-quick.md' : 'results-cluster.md')
  writeFileSync(svg, clusterChart(report))
  writeFileSync(md, markdownReport(report, svg))
  writeFileSync(join(TMP, 'cluster-rounds.json'), JSON.stringify(report, null, 1))
  process.stdout.write(textReport(report) + '\n')
  log(`wrote ${md} and ${svg} (every round: bench/.tmp/cluster-rounds.json)`)
}

let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    interrupted = true
    log(`${signal}: stopping every process started`)
    stopAll().finally(() => process.exit(130))
  })
}

main().catch(async (err) => {
  // Stopped by a signal: the requests under way fail as their processes exit, and that is all.
  if (interrupted) return
  log(err.stack)
  await stopAll()
  process.exit(1)
})
