// The scale run's figures (bench/cluster.mjs): the targets of issue 20 with the tables behind
// them, as text for the terminal and Markdown for bench/results-cluster.md, and its chart.
import { createRequire } from 'node:module'
import os from 'node:os'
import { basename } from 'node:path'
import { canPin } from './proc.mjs'
import { redisVersion } from './redis-server.mjs'
import { formatNumber as fixed, formatSummary, summary } from './stats.mjs'
import { lineChart } from './svg-chart.mjs'

const require = createRequire(import.meta.url)
const ON = ['redis', 'cluster']
const NAMES = { off: 'no adapter', redis: 'one Redis', cluster: 'Redis Cluster' }
const TARGETS = { limited: 1.3, unlimited: 1.05, p99Ms: 2, fan: 1.3 }

export async function machine () {
  const cpus = os.cpus()
  return {
    cores: cpus.length,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    redis: await redisVersion(),
    ioredis: require('ioredis/package.json').version,
    fastify: require('fastify/package.json').version,
    websocket: require('@fastify/websocket/package.json').version,
    date: new Date().toISOString()
  }
}

function median (values) {
  return summary(values).median
}

/** Per instance: the median CPU per handshake of `set` ÷ that of the baseline, same rounds. */
function handshakeRatios (report, set, kind) {
  const rows = report.results.handshake.filter((r) => r.kind === kind)
  return Array.from({ length: report.mode.instances }, (_, i) => {
    const of = (id) => rows.filter((r) => r.set === id && r.instance === i)
    return median(of(set).map((r) => r.cpuPerHs)) / median(of('off').map((r) => r.cpuPerHs))
  })
}

function point (report, set, k) {
  return report.results.scale.find((p) => p.set === set && p.k === k)
}

function met (ok) {
  return ok ? 'met' : '**not met**'
}

/** The targets of issue 20: [what, goal, measured, met]. */
export function targetRows (report) {
  const k = report.mode.instances
  const rows = []
  for (const [kind, what] of [['limited', 'users under maxConnectionsPerUser'], ['unlimited', 'sessions without a user id (no limit)']]) {
    for (const set of ON) {
      const ratios = summary(handshakeRatios(report, set, kind))
      rows.push([`handshake CPU on ÷ off, ${what}, ${NAMES[set]} (median of ${k} instances (min–max))`, `≤ ${TARGETS[kind]}`, formatSummary(ratios, 2), met(ratios.median <= TARGETS[kind])])
    }
  }
  for (const set of ON) {
    const p = point(report, set, k)
    rows.push([`sendToUser to a socket on another instance, ${NAMES[set]}, delivery p50 / p99 (${k} instances)`, `p99 ≤ ${TARGETS.p99Ms} ms`, `${fixed(p.send.delivery.p50, 3)} / ${fixed(p.send.delivery.p99, 3)} ms`, met(p.send.delivery.p99 <= TARGETS.p99Ms)])
  }
  const off = point(report, 'off', k)
  for (const cmd of ['broadcast', 'publish']) {
    for (const set of ON) {
      const ratio = point(report, set, k)[cmd].deliveryMs.median / off[cmd].deliveryMs.median
      rows.push([`${cmd} to all ${fixed(off.sockets, 0)} sockets, ${NAMES[set]}: until the last has it ÷ slowest instance's local ${cmd} of its own`, `≤ ${TARGETS.fan}`, fixed(ratio, 2), met(ratio <= TARGETS.fan)])
    }
    for (const set of ON) {
      const ratio = point(report, set, k)[cmd].deliveryMs.median / off[cmd].together.deliveryMs.median
      rows.push([`(context) the same ÷ every instance's local ${cmd} of its own at one instant (the same CPU to share)`, '(info)', fixed(ratio, 2), ''])
    }
  }
  for (const set of ON) {
    const s = report.results.storm.find((r) => r.set === set)
    rows.push([`over-admissions, ${fixed(s.attempts, 0)} handshakes of ${s.users} users over ${k} instances, limit ${report.limit}, ${NAMES[set]}`, '0', `${s.overAdmissions} (${s.admitted} admitted)`, met(s.overAdmissions === 0)])
  }
  return rows
}

function memoryRows (report) {
  const kib = (set) => summary(report.results.memory.filter((m) => m.set === set).map((m) => m.rssKiB)).median
  const medians = ['median', ...['off', ...ON].map((set) => `${fixed(kib(set), 2)} KiB${set === 'off' ? '' : `, × ${fixed(kib(set) / kib('off'), 2)}`}`)]
  return [...Array.from({ length: report.mode.instances }, (_, i) => {
    const of = (set) => report.results.memory.find((m) => m.set === set && m.instance === i)
    const off = of('off')
    return [String(i + 1), ...['off', ...ON].map((set) => {
      const m = of(set)
      const mb = `${fixed(m.rssKiB, 2)} KiB (${fixed(m.rssKiB / 1024, 4)} MB; heap ${fixed(m.heapKiB, 2)} KiB)`
      return set === 'off' ? mb : `${mb}, × ${fixed(m.rssKiB / off.rssKiB, 2)}`
    })]
  }), medians]
}

function handshakeRows (report) {
  const rows = []
  for (const kind of ['limited', 'unlimited']) {
    for (const set of ['off', ...ON]) {
      const of = report.results.handshake.filter((r) => r.kind === kind && r.set === set)
      const perInstance = Array.from({ length: report.mode.instances }, (_, i) => formatSummary(summary(of.filter((r) => r.instance === i).map((r) => r.cpuPerHs)), 0))
      const ratios = set === 'off' ? '1' : handshakeRatios(report, set, kind).map((r) => fixed(r, 2)).join(' / ')
      rows.push([kind === 'limited' ? 'limited user' : 'no user id', NAMES[set], ...perInstance, ratios,
        formatSummary(summary(of.map((r) => r.hps)), 0), set === 'off' ? '–' : formatSummary(summary(of.map((r) => r.redisPerHs)), 0),
        String(of.reduce((n, r) => n + r.errors, 0))])
    }
  }
  return rows
}

function scaleRows (report) {
  return report.results.scale.map((p) => {
    const fan = (f) => {
      const base = `${formatSummary(f.deliveryMs, 1)}`
      return p.set === 'off' ? `${base} (all ${p.k} at once: ${formatSummary(f.together.deliveryMs, 1)})` : base
    }
    return [String(p.k), fixed(p.sockets, 0), NAMES[p.set], p.send.remote ? 'another' : 'same',
      `${fixed(p.send.delivery.p50, 3)} / ${fixed(p.send.delivery.p99, 3)}`, `${fixed(p.send.call.p50, 3)} / ${fixed(p.send.call.p99, 3)}`,
      fan(p.broadcast), fan(p.publish), String(p.broadcast.errors + p.publish.errors)]
  })
}

function stormRows (report) {
  return report.results.storm.map((s) => [NAMES[s.set], fixed(s.attempts, 0), String(s.users), fixed(s.established, 0), fixed(s.admitted, 0), String(s.maxPerUser), String(s.usersOver), String(s.overAdmissions)])
}

const HEADS = {
  targets: ['target (issue 20)', 'goal', 'measured', ''],
  memory: ['instance', 'RSS per idle socket, no adapter', 'one Redis (× no adapter)', 'Redis Cluster (× no adapter)'],
  handshake: (n) => ['sessions', 'set', ...Array.from({ length: n }, (_, i) => `CPU µs/handshake, instance ${i + 1}`), '× no adapter, per instance', 'handshakes/s (wall, 50 in flight)', 'redis-server CPU µs/handshake', 'errors'],
  scale: ['instances', 'sockets', 'set', 'probe on', 'sendToUser delivery p50 / p99 ms', 'call p50 / p99 ms', 'broadcast: last client has it, ms', 'publish: last client has it, ms', 'frames missing'],
  storm: ['set', 'handshakes', 'users', 'established (client side)', 'sessions held (server side)', 'most of one user', 'users over the limit', 'over-admissions']
}

function table (head, rows) {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

function text (head, rows) {
  const all = [head, ...rows].map((r) => r.map((c) => c.replace(/\*\*/g, '')))
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)))
  return all.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ')).join('\n')
}

export function textReport (report) {
  const m = report.mode
  return [
    '',
    `Scale run (${report.name}): ${m.instances} instances × ${m.sockets} idle sockets per set, ${Math.round(report.seconds)} s; other processes took ${fixed(report.othersLoad * 100, 0)} % of the CPU`,
    '', text(HEADS.targets, targetRows(report)),
    '', text(HEADS.memory, memoryRows(report)),
    '', text(HEADS.handshake(m.instances), handshakeRows(report)),
    '', text(HEADS.scale, scaleRows(report)),
    '', text(HEADS.storm, stormRows(report)),
    ''
  ].join('\n')
}

export function markdownReport (report, svgPath) {
  const m = report.mode
  const x = report.machine
  return [
    '# Scale run results (issue 20)',
    '',
    `Generated by \`${report.command}\` (after \`npm run build\`) on ${x.date}, in ${Math.round(report.seconds)} s. Method: [docs/benchmarks.md, Scale run](../docs/benchmarks.md#scale-run).`,
    '',
    `- ${x.cores} × ${x.cpu}, ${x.memGiB} GiB, ${x.kernel}; per-process open-file limit 20,000`,
    `- Node ${x.node}; redis-server ${x.redis}; ioredis ${x.ioredis}; fastify ${x.fastify}, @fastify/websocket ${x.websocket}`,
    `- instances pinned to core 0, load generators and redis-servers to core 1: ${canPin ? 'yes (taskset)' : 'no (taskset missing)'}`,
    `- processes other than the run's took ${fixed(report.othersLoad * 100, 0)} % of the machine's CPU (both cores) during the run${report.othersLoad > 0.1 ? ': a shared, busy machine, expect a wide spread' : ''}`,
    `- per set: ${m.instances} instances (processes) × ${fixed(m.sockets, 0)} idle authenticated sockets (each its own user, each subscribed to one topic), opened by ${m.loadgens} load generators from 127.0.0.2–${1 + 8 * m.loadgens}; maxConnectionsPerUser ${report.limit}; heartbeat off`,
    `- handshakes: ${m.rounds} rounds × ${fixed(m.handshakes, 0)} per instance, set and kind (after ${fixed(m.warm, 0)} of each kind per instance and one uncounted round), 50 in flight; sendToUser: ${fixed(m.sends, 0)} sequential calls (after ${m.sendWarm}); broadcast and publish: ${m.fanRounds} rounds (after ${m.fanWarm})`,
    '',
    '## Targets',
    '',
    table(HEADS.targets, targetRows(report)),
    '',
    `![latency and delivery time against the number of instances](${basename(svgPath)})`,
    '',
    '## Memory: RSS per idle socket, each instance as it joined',
    '',
    table(HEADS.memory, memoryRows(report)),
    '',
    '## Handshakes: server CPU per handshake, median (min–max) over rounds',
    '',
    table(HEADS.handshake(m.instances), handshakeRows(report)),
    '',
    '## Against the number of instances',
    '',
    'Broadcast and publish from the first instance; without an adapter each instance sends to its own sockets only: the figure is the slowest instance\'s, each alone, and in brackets all of them at one instant. Cells: median (min–max) over rounds.',
    '',
    table(HEADS.scale, scaleRows(report)),
    '',
    '## The limit under a storm of handshakes',
    '',
    table(HEADS.storm, stormRows(report)),
    '',
    '## Commands',
    '',
    '```sh',
    'npm run build',
    report.command,
    '```',
    ''
  ].join('\n')
}

/** Latency and delivery time against the number of instances, one panel each. */
export function clusterChart (report) {
  const xs = report.mode.points
  const series = (set, f) => xs.map((k) => [k, f(point(report, set, k))])
  const latency = [
    { name: 'one Redis, p99', points: series('redis', (p) => p.send.delivery.p99), color: 0 },
    { name: 'Redis Cluster, p99', points: series('cluster', (p) => p.send.delivery.p99), color: 1 },
    { name: 'one Redis, p50', points: series('redis', (p) => p.send.delivery.p50), color: 0, dashed: true },
    { name: 'Redis Cluster, p50', points: series('cluster', (p) => p.send.delivery.p50), color: 1, dashed: true },
    { name: 'no adapter (same instance), p99', points: series('off', (p) => p.send.delivery.p99), color: 7 },
    { name: `target: p99 ≤ ${TARGETS.p99Ms} ms`, points: xs.map((k) => [k, TARGETS.p99Ms]), color: 2, dashed: true }
  ]
  const delivery = [
    { name: 'broadcast, one Redis', points: series('redis', (p) => p.broadcast.deliveryMs.median), color: 0 },
    { name: 'broadcast, Redis Cluster', points: series('cluster', (p) => p.broadcast.deliveryMs.median), color: 1 },
    { name: 'publish, one Redis', points: series('redis', (p) => p.publish.deliveryMs.median), color: 0, dashed: true },
    { name: 'publish, Redis Cluster', points: series('cluster', (p) => p.publish.deliveryMs.median), color: 1, dashed: true },
    { name: 'no adapter: slowest local broadcast', points: series('off', (p) => p.broadcast.deliveryMs.median), color: 7 },
    { name: 'no adapter: all local broadcasts at once', points: series('off', (p) => p.broadcast.together.deliveryMs.median), color: 7, dashed: true }
  ]
  return lineChart({
    xs,
    panels: [
      { title: 'sendToUser, first instance to a socket on the last', xLabel: 'instances', yLabel: 'delivery, ms', series: latency },
      { title: `to every socket (${report.mode.sockets.toLocaleString('en-US')} per instance)`, xLabel: 'instances', yLabel: 'until the last client has it, ms', series: delivery }
    ],
    caption: `${report.name} run, ${report.machine.date.slice(0, 10)}: ${report.machine.cores} cores, Node ${report.machine.node}, Redis ${report.machine.redis}; instances on one core, clients and Redis on the other`
  })
}
