// The bench harness: `npm run bench` (full) or `npm run bench -- --quick` (under a minute);
// `npm run bench -- --after-door` runs only issue 17's rows (message policies, publish);
// `npm run bench -- --tickets` only issue 18's (ticket handshake ÷ HS256 query-token handshake);
// `npm run bench -- --observability` only issue 19's (metrics on ÷ off, traces 'auto' without a
// tracer provider ÷ traces off, and the time of a scrape with 10,000 open sessions).
// `npm run bench -- --cluster [--quick]` runs issue 20's scale run instead (bench/cluster.mjs).
// Servers run each in their own process pinned to core 0, the load generator in its own process
// pinned to core 1; every figure is a median over rounds with its spread, and every ratio is
// taken to the bare @fastify/websocket baseline measured in the same round. See docs/benchmarks.md.
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Child, canPin, coreBusyUs, fileLimits } from './lib/proc.mjs'
import { jwtSecret, makeKeys, tokenPool } from './lib/tokens.mjs'
import { heapReport } from './lib/heap.mjs'
import { profileReport } from './lib/profile.mjs'
import { publishPhase } from './lib/publish.mjs'
import { roundTarget } from './lib/tickets.mjs'
import { scrapePhase } from './lib/scrape.mjs'
import { freezeDist } from './lib/build-stamp.mjs'
import { finalLine, markdownReport, textTable } from './lib/report.mjs'
import { BASELINE_ID, MESSAGES_IDS, OBSERVABILITY_IDS, PLUGIN_ID, TICKET_ID, variants } from './variants.mjs'

const HERE = import.meta.dirname
const TMP = join(HERE, '.tmp')
const PROFILE_DIR = join(TMP, 'prof')
const SERVER_CPU = 0
const LOADGEN_CPU = 1
const TOKENS_PER_ALG = 100
/** The servers whose memory `--quick` measures: those of the memory target. */
const QUICK_MEMORY = new Set([BASELINE_ID, PLUGIN_ID, 'hand-hs256'])

// Per server: rounds × handshakes measured handshakes (full: 8 × 2,500 = 20,000), in rounds
// interleaved with the other servers' so that a disturbance hits a round, not a server.
// The publish row (not in --quick): publishRounds × publishes per side to `subscribers` sockets (bench/lib/publish.mjs).
const PUBLISH = { subscribers: 10_000, publishes: 20, publishWarm: 10, publishRounds: 7 }
// The scrape figure (issue 19; not in --quick): scrapeRounds × `scrapes` timed scrapes of the metrics
// server's registry with no session, then with `conns` idle sessions open (bench/lib/scrape.mjs).
const SCRAPE = { scrapeRounds: 5, scrapes: 50 }
const MODES = {
  quick: { handshakes: 1000, warmMin: 3000, warmMax: 4000, rounds: 6, echoRounds: 3, concurrency: 50, echoConns: 50, echoMs: 150, conns: 1000, memRounds: 1, crossHandshakes: 500, crossRounds: 2, limitMs: 120_000, ...PUBLISH, subscribers: 0, ...SCRAPE, scrapeRounds: 0 },
  full: { handshakes: 2500, warmMin: 6000, warmMax: 12_000, rounds: 8, echoRounds: 5, concurrency: 50, echoConns: 50, echoMs: 1000, conns: 10_000, memRounds: 3, crossHandshakes: 5000, crossRounds: 3, limitMs: 45 * 60_000, ...PUBLISH, ...SCRAPE },
  // Issue 17's rows alone: echo on the plugin's route with and without `messages`, and publish.
  afterDoor: { handshakes: 0, warmMin: 0, warmMax: 0, rounds: 0, echoRounds: 9, concurrency: 50, echoConns: 50, echoMs: 1000, conns: 0, memRounds: 0, crossHandshakes: 0, crossRounds: 0, limitMs: 15 * 60_000, ...PUBLISH, ...SCRAPE, scrapeRounds: 0 },
  // Issue 18's row alone: handshakes of the plugin's route with tickets and with HS256 tokens (and the baseline).
  tickets: { handshakes: 2500, warmMin: 6000, warmMax: 12_000, rounds: 15, echoRounds: 0, concurrency: 50, echoConns: 50, echoMs: 0, conns: 0, memRounds: 0, crossHandshakes: 0, crossRounds: 0, limitMs: 10 * 60_000, ...PUBLISH, subscribers: 0, ...SCRAPE, scrapeRounds: 0 },
  // Issue 19's rows alone: handshakes of the plugin's route with metrics, with traces off and with
  // the default traces 'auto' (and the baseline), in `blocks` of fresh processes, `rounds` rounds each;
  // then the scrape figure with `conns` open sessions.
  observability: { blocks: 4, balanced: true, handshakes: 2500, warmMin: 6000, warmMax: 12_000, rounds: 6, echoRounds: 0, concurrency: 50, echoConns: 50, echoMs: 0, conns: 10_000, memRounds: 0, crossHandshakes: 0, crossRounds: 0, limitMs: 15 * 60_000, ...PUBLISH, subscribers: 0, ...SCRAPE }
}
const AFTER_DOOR_IDS = new Set([BASELINE_ID, PLUGIN_ID, ...MESSAGES_IDS])
const TICKET_IDS = new Set([BASELINE_ID, PLUGIN_ID, TICKET_ID])
const OBSERVABILITY_SET = new Set([BASELINE_ID, ...Object.values(OBSERVABILITY_IDS)])

const OUT = {
  quick: [TMP, 'results-quick.md'],
  full: [HERE, 'results.md'],
  afterDoor: [HERE, 'results-after-door.md'],
  tickets: [HERE, 'results-tickets.md'],
  observability: [HERE, 'results-observability.md']
}

function options () {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      'after-door': { type: 'boolean', default: false },
      tickets: { type: 'boolean', default: false },
      observability: { type: 'boolean', default: false },
      cluster: { type: 'boolean', default: false },
      only: { type: 'string' },
      rounds: { type: 'string' },
      blocks: { type: 'string' },
      handshakes: { type: 'string' },
      conns: { type: 'string' },
      'echo-ms': { type: 'string' },
      subscribers: { type: 'string' },
      profile: { type: 'string' },
      heap: { type: 'string' },
      out: { type: 'string' },
      'no-echo': { type: 'boolean', default: false },
      'no-memory': { type: 'boolean', default: false },
      'no-cross': { type: 'boolean', default: false },
      'no-publish': { type: 'boolean', default: false },
      'no-scrape': { type: 'boolean', default: false },
      frozen: { type: 'boolean', default: false }
    }
  })
  const afterDoor = values['after-door']
  const tickets = values.tickets && !afterDoor
  const observability = values.observability && !afterDoor && !tickets
  const alone = afterDoor || tickets || observability
  const name = afterDoor ? 'afterDoor' : tickets ? 'tickets' : observability ? 'observability' : values.quick ? 'quick' : 'full'
  const mode = { ...MODES[name], quick: values.quick && !alone, afterDoor, tickets, observability }
  if (values.rounds && !tickets && !observability) mode.echoRounds = mode.publishRounds = Number(values.rounds)
  if (values.rounds && !afterDoor) mode.rounds = mode.memRounds = mode.crossRounds = Number(values.rounds)
  if (values.blocks) mode.blocks = Number(values.blocks)
  if (values.handshakes) mode.handshakes = Number(values.handshakes)
  if (values.conns) mode.conns = Number(values.conns)
  if (values['echo-ms']) mode.echoMs = Number(values['echo-ms'])
  if (values.subscribers) mode.subscribers = Number(values.subscribers)
  const only = values.only ? new Set([BASELINE_ID, ...values.only.split(',')]) : afterDoor ? AFTER_DOOR_IDS : tickets ? TICKET_IDS : observability ? OBSERVABILITY_SET : null
  return {
    cluster: values.cluster,
    mode,
    selected: variants.filter((v) => (only ? only.has(v.id) : mode.quick ? v.quick : true)),
    profile: new Set(values.profile ? values.profile.split(',') : []),
    heap: new Set(values.heap ? values.heap.split(',') : []),
    out: values.out ?? join(...OUT[name]),
    echo: !values['no-echo'] && !tickets && !observability,
    memory: !values['no-memory'] && !alone,
    cross: !values['no-cross'] && !alone,
    publish: !values['no-publish'] && !tickets && !observability && (afterDoor || !mode.quick),
    scrape: !values['no-scrape'] && mode.scrapeRounds > 0,
    frozen: values.frozen
  }
}

const T0 = performance.now()

function log (line) {
  process.stderr.write(`bench ${((performance.now() - T0) / 1000).toFixed(1).padStart(5)}s: ${line}\n`)
}

/** Starts one server process per variant, in parallel; a server that fails to start is reported, not fatal. */
async function startServers (list, { keys, tokens, opts, env = {} }) {
  const nofile = Math.max(opts.mode.conns, opts.mode.subscribers) + 1024
  return Promise.all(list.map(async (variant) => {
    const nodeArgs = ['--expose-gc']
    const config = { ...variant, secret: variant.alg ? jwtSecret(variant.alg, keys) : null }
    const child = new Child(join(HERE, 'servers', 'server.mjs'), {
      cpu: SERVER_CPU, nofile, nodeArgs, name: variant.id, env: { ...env, BENCH_SERVER: JSON.stringify(config), BENCH_MAX_LIFETIME_MS: String(opts.mode.limitMs) }
    })
    try {
      const { port } = await child.ready()
      const target = { port, path: '/ws', auth: variant.auth, protocol: variant.protocol, expect: variant.expect, tokens: variant.auth === 'none' ? [] : tokens[variant.alg] }
      return { variant, child, target }
    } catch (err) {
      await child.stop()
      return { variant, child: null, error: err.message }
    }
  }))
}

function rotate (list, by) {
  const k = by % list.length
  return [...list.slice(k), ...list.slice(0, k)]
}

/**
 * Round `r`'s order of `list` in a Williams design: over `list.length` rounds (an even count), every
 * server runs right after every other exactly once, so that what a round leaves behind (the caches,
 * the kernel's closing sockets, the load generator's garbage) weighs on no server more than on
 * another; with `rotate`, each server always follows the same one. Odd lengths alternate the design
 * with its mirror. Issue 19's rows (--observability) measure 1 % differences this way.
 */
function balanced (list, r) {
  const n = list.length
  const first = Array.from({ length: n }, (_, j) => (j % 2 === 0 ? j / 2 : n - (j + 1) / 2))
  const row = first.map((k) => list[(k + r) % n])
  return n % 2 === 1 && Math.floor(r / n) % 2 === 1 ? row.reverse() : row
}

function handshakeTimeout (n) {
  return Math.max(30_000, n * 5)
}

/** The server's target for a round of `n` connections: with `n` fresh tickets for a ticket route, issued now. */
function targetFor (server, n) {
  return roundTarget(server.variant, server.target, n, (cmd, fields, timeoutMs) => server.child.request(cmd, fields, timeoutMs))
}

async function handshakeRound (loadgen, server, n, client, concurrency) {
  const { target, issueUs } = await targetFor(server, n)
  const busy0 = coreBusyUs()
  await server.child.request('mark')
  const timeoutMs = handshakeTimeout(n)
  const r = await loadgen.request('handshakes', { target, client, n, concurrency, timeoutMs }, timeoutMs + 10_000)
  const stats = await server.child.request('stats', { drainMs: 3000 })
  const busy1 = coreBusyUs()
  return {
    // Busy time on the server's core not spent by the server: other processes competing with it.
    foreignLoad: busy0 && busy1 ? Math.max(0, busy1[SERVER_CPU] - busy0[SERVER_CPU] - stats.cpuUs) / (stats.elapsedMs * 1000) : NaN,
    hps: r.ok / (r.wallMs / 1000),
    cpuPerHs: r.ok > 0 ? stats.cpuUs / r.ok : NaN,
    p50: r.p50,
    p99: r.p99,
    serverBusy: stats.cpuUs / (r.wallMs * 1000),
    clientBusy: r.clientCpuUs / (r.wallMs * 1000),
    ok: r.ok,
    errors: r.errors,
    firstError: r.firstError,
    issueUs
  }
}

async function echoRound (loadgen, server, mode) {
  const { target } = await targetFor(server, mode.echoConns)
  const opened = await loadgen.request('open', { target, client: 'lean', n: mode.echoConns, concurrency: mode.concurrency, timeoutMs: 20_000 }, 30_000)
  try {
    if (opened.ok === 0) return { msgsPerS: NaN, cpuPerMsg: NaN, errors: opened.errors, firstError: opened.firstError }
    await server.child.request('mark')
    const e = await loadgen.request('echo', { durationMs: mode.echoMs }, mode.echoMs + 10_000)
    const stats = await server.child.request('stats')
    return {
      messages: e.messages,
      msgsPerS: e.counted / (e.wallMs / 1000),
      cpuPerMsg: stats.cpuUs / e.messages,
      serverBusy: stats.cpuUs / (stats.elapsedMs * 1000),
      clientBusy: e.clientCpuUs / (e.wallMs * 1000),
      errors: opened.errors + e.unanswered,
      firstError: opened.firstError
    }
  } finally {
    await loadgen.request('release', {}, 15_000)
  }
}

async function memoryRound (loadgen, server, mode, snapshots) {
  // Grow the young generation to its working size first, so that the delta is the connections.
  const warm = await targetFor(server, 1000)
  await loadgen.request('handshakes', { target: warm.target, client: 'lean', n: 1000, concurrency: mode.concurrency, timeoutMs: 20_000 }, 30_000)
  const before = await server.child.request('mem')
  // Tickets issued after `before`: redeemed (and dropped) by the time of `after`, so not counted.
  const { target } = await targetFor(server, mode.conns)
  const timeoutMs = handshakeTimeout(mode.conns)
  const opened = await loadgen.request('open', { target, client: 'lean', n: mode.conns, concurrency: mode.concurrency, timeoutMs }, timeoutMs + 10_000)
  const after = await server.child.request('mem')
  if (snapshots) {
    const file = join(PROFILE_DIR, `${server.variant.id}.heapsnapshot`)
    await server.child.request('snapshot', { file }, 120_000)
    snapshots.push({ id: server.variant.id, file, connections: opened.ok })
  }
  await loadgen.request('release', { timeoutMs: 10_000 }, 20_000)
  return {
    held: opened.ok,
    rssPerConn: opened.ok > 0 ? (after.rss - before.rss) / opened.ok / 1024 : NaN,
    heapPerConn: opened.ok > 0 ? (after.heapUsed - before.heapUsed) / opened.ok / 1024 : NaN,
    timersPerConn: opened.ok > 0 ? (after.timers - before.timers) / opened.ok : NaN,
    errors: opened.errors,
    firstError: opened.firstError
  }
}

function record (results, id, key, round) {
  results[id] ??= { handshake: [], echo: [], memory: [], cross: [], publish: [], scrape: [] }
  results[id][key].push(round)
  if (round.errors > 0) log(`${id} ${key}: ${round.errors} errors (first: ${round.firstError})`)
}

/**
 * A server's cost per handshake keeps falling for thousands of handshakes (JIT, heap sizing):
 * warm up in chunks until a chunk is no longer 5% cheaper than the one before.
 */
async function warmUp (loadgen, server, opts) {
  const { mode } = opts
  if (mode.warmMax === 0) {
    // No handshake rounds (--after-door): warm the echo path up instead.
    for (let i = 0; i < 3; i++) await echoRound(loadgen, server, mode)
    log(`warm-up ${server.variant.id}: 3 echo rounds`)
    return
  }
  const chunk = 1000
  let done = 0
  let previous = Infinity
  let last
  while (done < mode.warmMax) {
    last = await handshakeRound(loadgen, server, chunk, 'lean', mode.concurrency)
    done += chunk
    if (done >= mode.warmMin && last.cpuPerHs > previous * 0.95) break
    previous = last.cpuPerHs
  }
  if (opts.echo) await echoRound(loadgen, server, { ...mode, echoMs: 100 })
  log(`warm-up ${server.variant.id}: ${done} handshakes, last ${last.cpuPerHs.toFixed(0)} µs/handshake`)
  server.warmup = done
}

/** Runs `body` with the CPU profiler on in the servers named by `--profile`; one file per server and phase. */
async function profiling (running, opts, profiles, phase, body) {
  const profiled = running.filter((s) => opts.profile.has(s.variant.id))
  for (const server of profiled) await server.child.request('profile', { action: 'start' })
  await body()
  for (const server of profiled) {
    const file = join(PROFILE_DIR, `${server.variant.id}.${phase.name}.cpuprofile`)
    await server.child.request('profile', { action: 'stop', file })
    profiles.push({ id: server.variant.id, file, phase: phase.name, unit: phase.unit, count: phase.count(server.variant.id) })
  }
}

function total (results, id, key, field) {
  return (results[id]?.[key] ?? []).reduce((n, r) => n + r[field], 0)
}

/** `first`: the number of handshake rounds of earlier blocks, where the order of servers goes on from. */
async function throughputPhases (loadgen, running, results, opts, profiles, first = 0) {
  const { mode } = opts
  mkdirSync(PROFILE_DIR, { recursive: true })
  for (const server of running) await warmUp(loadgen, server, opts)
  const handshakes = { name: 'handshake', unit: 'handshake', count: (id) => total(results, id, 'handshake', 'ok') }
  await profiling(running, opts, profiles, handshakes, async () => {
    for (let r = 0; r < mode.rounds; r++) {
      log(`handshake round ${r + 1}/${mode.rounds}`)
      for (const server of (mode.balanced ? balanced : rotate)(running, first + r)) record(results, server.variant.id, 'handshake', await handshakeRound(loadgen, server, mode.handshakes, 'lean', mode.concurrency))
    }
  })
  const echoes = { name: 'echo', unit: 'message', count: (id) => total(results, id, 'echo', 'messages') }
  await profiling(running, opts.echo ? opts : { ...opts, profile: new Set() }, profiles, echoes, async () => {
    for (let r = 0; opts.echo && r < mode.echoRounds; r++) {
      log(`echo round ${r + 1}/${mode.echoRounds}`)
      for (const server of rotate(running, r)) record(results, server.variant.id, 'echo', await echoRound(loadgen, server, mode))
    }
  })
  const crossed = running.filter((s) => s.variant.cross)
  for (let r = 0; opts.cross && r < mode.crossRounds; r++) {
    log(`cross-check round ${r + 1}/${mode.crossRounds} (ws / socket.io-client)`)
    for (const server of rotate(crossed, r)) {
      record(results, server.variant.id, 'cross', await handshakeRound(loadgen, server, mode.crossHandshakes, server.variant.cross, mode.concurrency))
    }
  }
}

async function memoryPhase (loadgen, results, opts, ctx, snapshots) {
  for (let r = 0; r < opts.mode.memRounds; r++) {
    log(`memory round ${r + 1}/${opts.mode.memRounds}: ${opts.mode.conns} idle connections per server, fresh processes`)
    const fresh = await startServers(opts.selected, { ...ctx, opts, env: { BENCH_TRACK_TIMERS: '1' } })
    for (const server of fresh) {
      const snap = r === 0 && opts.heap.has(server.variant.id) ? snapshots : null
      if (server.child) record(results, server.variant.id, 'memory', await memoryRound(loadgen, server, opts.mode, snap))
      await server.child?.stop()
    }
  }
}

/**
 * Starts the servers, runs the throughput phases and the scrape figure on them, stops them; resolves
 * with the variants that ran. With `mode.blocks` > 1 (--observability), all of it again on fresh
 * processes per block: each server process's JIT settles its own way, which weighs on every round of
 * that process alike (a few per cent between two processes of the same code), so that one process
 * per server would give a ratio off by that much however many rounds it ran. The CPU profile
 * (`--profile`) covers the first block; the scrape figure, the last.
 */
async function throughputBlocks (loadgen, results, unavailable, opts, ctx, profiles) {
  const blocks = opts.mode.blocks ?? 1
  let running = []
  for (let b = 0; b < blocks; b++) {
    if (blocks > 1) log(`block ${b + 1}/${blocks}: fresh server processes`)
    const servers = await startServers(opts.selected, { ...ctx, opts })
    for (const s of servers.filter((s) => s.error)) {
      unavailable[s.variant.id] = s.error
      log(`${s.variant.id} not measured: ${s.error}`)
    }
    running = servers.filter((s) => s.child)
    if (!running.some((s) => s.variant.id === BASELINE_ID)) throw new Error('the baseline server did not start')
    await throughputPhases(loadgen, running, results, b === 0 ? opts : { ...opts, profile: new Set() }, profiles, b * opts.mode.rounds)
    const scraped = running.find((s) => s.variant.id === OBSERVABILITY_IDS.metrics)
    if (opts.scrape && scraped && b === blocks - 1) await scrapePhase(loadgen, scraped, opts.mode, (id, round) => record(results, id, 'scrape', round), log)
    await Promise.all(running.map((s) => s.child.stop()))
  }
  return running.map((s) => s.variant)
}

/** `--cluster`: the scale run, a harness of its own (bench/cluster.mjs), with `--quick` passed on. */
function clusterRun (quick) {
  const run = spawnSync(process.execPath, [join(HERE, 'cluster.mjs'), ...(quick ? ['--quick'] : [])], { stdio: 'inherit' })
  process.exitCode = run.status ?? 1
}

async function main () {
  const opts = options()
  if (opts.cluster) return clusterRun(opts.mode.quick)
  if (opts.frozen) log(`servers import a frozen copy of dist/ build ${freezeDist()}`)
  const started = performance.now()
  const limit = setTimeout(() => { log('overall time limit reached, stopping'); process.exit(1) }, opts.mode.limitMs)
  mkdirSync(TMP, { recursive: true })
  if (!canPin) log('taskset not found: server and load generator are NOT pinned to separate cores')
  const limits = fileLimits()
  if (opts.mode.conns + 1024 > limits.hard && process.getuid?.() !== 0) log(`open-file hard limit ${limits.hard} may be too low for ${opts.mode.conns} connections`)

  const keys = makeKeys()
  const tokens = Object.fromEntries(['HS256', 'RS256', 'ES256'].map((alg) => [alg, tokenPool(alg, keys, TOKENS_PER_ALG)]))
  const ctx = { keys, tokens }
  const loadgen = new Child(join(HERE, 'loadgen.mjs'), { cpu: LOADGEN_CPU, nofile: Math.max(opts.mode.conns, opts.mode.subscribers) + 1024, name: 'loadgen', env: { BENCH_MAX_LIFETIME_MS: String(opts.mode.limitMs) } })
  await loadgen.ready()

  const results = {}
  const unavailable = {}
  const profiles = []
  const ran = await throughputBlocks(loadgen, results, unavailable, opts, ctx, profiles)
  if (opts.publish) {
    const failed = await publishPhase(loadgen, (list) => startServers(list, { ...ctx, opts }), opts.mode, (id, round) => record(results, id, 'publish', round), log)
    if (failed !== null) unavailable.topics = failed
  }
  const measured = ran.filter((v) => !opts.mode.quick || QUICK_MEMORY.has(v.id))
  const snapshots = []
  if (opts.memory) await memoryPhase(loadgen, results, { ...opts, selected: measured }, ctx, snapshots)
  await loadgen.stop()
  clearTimeout(limit)

  const report = { opts, results, unavailable, variants: opts.selected, seconds: (performance.now() - started) / 1000 }
  process.stdout.write(textTable(report) + '\n')
  writeFileSync(opts.out, markdownReport(report))
  writeFileSync(join(TMP, 'rounds.json'), JSON.stringify({ mode: opts.mode, results, unavailable }, null, 1))
  log(`wrote ${opts.out} (every round: bench/.tmp/rounds.json)`)
  if (profiles.length) process.stdout.write(profileReport(profiles, BASELINE_ID) + '\n')
  if (snapshots.length) process.stdout.write(heapReport(snapshots, BASELINE_ID) + '\n')
  process.stdout.write(finalLine(report) + '\n')
}

main().catch((err) => {
  log(err.stack)
  process.exit(1)
})
