// Turns the rounds into the figures: one table (text for the terminal, Markdown for
// bench/results.md), the cross-check table, the targets of issue 5 (and of issues 17–19 when their
// servers ran), and the final ratio line.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { canPin } from './proc.mjs'
import { DIST_AT_START, distBuild, frozenBuild } from './build-stamp.mjs'
import { formatSummary, summary } from './stats.mjs'
import { metric, paired, rounds } from './rounds.mjs'
import { DOOR_HEAD, doorTargets, OBSERVABILITY_HEAD, observabilityRatios, observabilityTargets, TICKET_HEAD, ticketTargets } from './issue-targets.mjs'
import { BASELINE_ID, PLUGIN_ID, TICKET_ID } from '../variants.mjs'
import { PUBLISH_IDS } from './publish.mjs'

const ROOT = join(import.meta.dirname, '..', '..')
const PACKAGES = ['fastify', '@fastify/websocket', '@fastify/jwt', 'fast-jwt', 'ws', 'socket.io', 'socket.io-client']

function errorCount (report, id) {
  const r = report.results[id] ?? {}
  return Object.values(r).flat().reduce((sum, round) => sum + (round.errors ?? 0), 0)
}

function mainRows (report) {
  return report.variants.map((v) => {
    if (report.unavailable[v.id]) return [v.label, 'not measured (see notes)']
    const m = (key, name, digits) => formatSummary(metric(report, v.id, key, name), digits)
    return [
      v.label,
      m('handshake', 'hps', 0),
      m('handshake', 'cpuPerHs', 0),
      formatSummary(paired(report, v.id, BASELINE_ID, 'handshake', 'cpuPerHs'), 2),
      m('handshake', 'p50', 2),
      m('handshake', 'p99', 2),
      m('memory', 'rssPerConn', 2),
      m('echo', 'msgsPerS', 0),
      m('echo', 'cpuPerMsg', 1),
      String(errorCount(report, v.id))
    ]
  })
}

const MAIN_HEAD = ['server', 'handshakes/s', 'CPU µs/handshake', '× baseline', 'p50 ms', 'p99 ms', 'RSS KiB/conn', 'echo msgs/s', 'CPU µs/msg', 'errors']

function crossRows (report) {
  return report.variants.filter((v) => v.cross && report.results[v.id]?.cross?.length).map((v) => [
    v.label,
    v.cross === 'sio' ? 'socket.io-client' : 'ws',
    formatSummary(metric(report, v.id, 'cross', 'hps'), 0),
    formatSummary(metric(report, v.id, 'cross', 'cpuPerHs'), 0),
    formatSummary(paired(report, v.id, BASELINE_ID, 'cross', 'cpuPerHs'), 2),
    formatSummary(metric(report, v.id, 'cross', 'p50'), 2),
    formatSummary(metric(report, v.id, 'cross', 'p99'), 2)
  ])
}

const CROSS_HEAD = ['server', 'client', 'handshakes/s', 'CPU µs/handshake', '× baseline (ws client)', 'p50 ms', 'p99 ms']

function memoryRows (report) {
  return report.variants.filter((v) => report.results[v.id]?.memory?.length).map((v) => [
    v.label,
    formatSummary(metric(report, v.id, 'memory', 'held'), 0),
    formatSummary(metric(report, v.id, 'memory', 'rssPerConn'), 2),
    formatSummary(metric(report, v.id, 'memory', 'heapPerConn'), 2),
    formatSummary(metric(report, v.id, 'memory', 'timersPerConn'), 2),
    formatSummary(paired(report, v.id, BASELINE_ID, 'memory', 'rssPerConn', (x, y) => x - y), 2)
  ])
}

const MEMORY_HEAD = ['server', 'idle connections', 'RSS KiB/conn', 'JS heap KiB/conn', 'timers/conn', 'RSS − baseline KiB']

/** How busy the server's core was with other processes while the bench measured (a shared machine). */
function foreignLoad (report) {
  const all = Object.values(report.results).flatMap((r) => r.handshake ?? []).map((r) => r.foreignLoad)
  const s = summary(all)
  if (s.n === 0) return []
  const line = `other processes on the server's core during handshake rounds: ${formatSummary({ ...s, median: 100 * s.median, min: 100 * s.min, max: 100 * s.max }, 0)} % busy`
  return [s.median > 0.1 ? `${line} — a busy machine: expect a wide spread` : line]
}

function targets (report) {
  const hs = (a, b) => paired(report, a, b, 'handshake', 'cpuPerHs')
  const atMost = (limit) => (x) => x <= limit
  return [
    ['plugin HS256 ?token= + roles, CPU/handshake ÷ baseline', '≤ 1.15', hs(PLUGIN_ID, BASELINE_ID), atMost(1.15)],
    ['plugin ÷ hand-written preValidation + @fastify/jwt (3)', '≤ 1.00', hs(PLUGIN_ID, 'hand-hs256'), atMost(1)],
    ['plugin RS256 cached (same tokens reconnecting) ÷ baseline', '≤ 1.25', hs('plugin-rs256-cache', BASELINE_ID), atMost(1.25)],
    ['plugin ES256 cached (same tokens reconnecting) ÷ baseline', '≤ 1.25', hs('plugin-es256-cache', BASELINE_ID), atMost(1.25)],
    ['plugin ÷ socket.io + JWT, lean clients', '≤ 0.60', hs(PLUGIN_ID, 'socketio'), atMost(0.6)],
    ['plugin (ws client) ÷ socket.io + JWT (socket.io-client)', '≤ 0.60', paired(report, PLUGIN_ID, 'socketio', 'cross', 'cpuPerHs'), atMost(0.6)],
    ['echo msgs/s, plugin ÷ baseline', '≥ 0.97', paired(report, PLUGIN_ID, BASELINE_ID, 'echo', 'msgsPerS'), (x) => x >= 0.97],
    ['echo CPU/msg, plugin ÷ baseline', '≤ 1.03', paired(report, PLUGIN_ID, BASELINE_ID, 'echo', 'cpuPerMsg'), atMost(1.03)],
    ['plugin ÷ baseline with the same lean sockets: authentication alone', '(info)', hs(PLUGIN_ID, 'baseline-lean'), null],
    ['baseline with lean sockets ÷ baseline', '(info)', hs('baseline-lean', BASELINE_ID), null],
    ['plugin with verify: fastify.jwt.verify ÷ plugin (no request.jwtVerify())', '(info)', hs('plugin-direct', PLUGIN_ID), null],
    ['first-message auth, CPU/handshake ÷ baseline', '(info)', hs('plugin-message', BASELINE_ID), null],
    ['plugin RS256 ÷ hand-written RS256 (3)', '(info)', hs('plugin-rs256', 'hand-rs256'), null],
    ['plugin ES256 ÷ hand-written ES256 (3)', '(info)', hs('plugin-es256', 'hand-es256'), null],
    ['plugin ES256 cached ÷ hand-written ES256 cached (3)', '(info)', hs('plugin-es256-cache', 'hand-es256-cache'), null],
    ['logger on: plugin ÷ baseline', '(info)', hs('plugin-hs256-logged', 'baseline-logged'), null],
    ['logger on: plugin ÷ hand-written (3)', '(info)', hs('plugin-hs256-logged', 'hand-hs256-logged'), null],
    ['RSS per idle connection, plugin − baseline (KiB)', '≤ 1.00', paired(report, PLUGIN_ID, BASELINE_ID, 'memory', 'rssPerConn', (x, y) => x - y), atMost(1)],
    ['RSS per idle connection, plugin − baseline with lean sockets (KiB)', '(info)', paired(report, PLUGIN_ID, 'baseline-lean', 'memory', 'rssPerConn', (x, y) => x - y), null],
    ['timers per idle authenticated connection (plugin)', '≤ 1', metric(report, PLUGIN_ID, 'memory', 'timersPerConn'), atMost(1)]
  ].filter(([, , s, test]) => s.n > 0 || test !== null)
    .map(([what, goal, s, test]) => [what, goal, formatSummary(s, 2), s.n === 0 ? 'n/a' : test === null ? '' : test(s.median) ? 'met' : 'NOT met'])
}

const TARGET_HEAD = ['target (issue 5)', 'goal', 'measured: median (min–max)', '']

function publishRows (report) {
  return Object.entries(PUBLISH_IDS).filter(([, id]) => report.results[id]?.publish?.length).map(([via, id]) => [
    via === 'plugin' ? 'app.wsAuth.publish' : 'old hand-written hub (restaurant example)',
    formatSummary(summary(rounds(report, id, 'publish').map((r) => r.cpuPerPublish / 1000)), 2),
    formatSummary(metric(report, id, 'publish', 'cpuPerSend'), 2),
    formatSummary(paired(report, id, PUBLISH_IDS.hand, 'publish', 'cpuPerPublish'), 3)
  ])
}

const PUBLISH_HEAD = ['publisher', 'CPU ms/publish', 'CPU µs/subscriber', '× hand-written hub']

function versionOf (name) {
  try {
    return JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return '?'
  }
}

function gitCommit () {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib'], { cwd: ROOT, encoding: 'utf8' }).trim()
    return dirty ? `${head} + uncommitted lib/ changes` : head
  } catch {
    return '?'
  }
}

/** Which build the servers ran: a hash of the lib/ sources dist/ was built from. */
function built () {
  const frozen = frozenBuild()
  return frozen === null ? `dist/ build ${DIST_AT_START} (a hash of the lib/ sources it was built from)` : `a frozen copy of dist/ build ${frozen} (a hash of the lib/ sources it was built from; \`--frozen\`)`
}

function machine (report) {
  const cpus = os.cpus()
  return [
    ...foreignLoad(report),
    `${cpus.length} × ${cpus[0]?.model.trim() ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}`,
    `Node ${process.version}; ${PACKAGES.map((p) => `${p} ${versionOf(p)}`).join(', ')}`,
    canPin ? 'servers pinned to core 0, load generator to core 1 (taskset)' : 'NOT pinned (taskset missing)'
  ]
}

function parameters (report) {
  const m = report.opts.mode
  const publish = report.opts.publish ? `; publish ${m.publishRounds} rounds × ${m.publishes} publishes per side to ${m.subscribers} subscribers` : ''
  if (m.afterDoor) return `issue 17 rows (--after-door), ${report.seconds.toFixed(0)} s: echo ${m.echoRounds} rounds × ${m.echoConns} connections × ${m.echoMs} ms` + publish
  if (m.observability) {
    return `issue 19 rows (--observability), ${report.seconds.toFixed(0)} s: ${m.blocks} blocks of fresh server processes × ${m.rounds} rounds × ${m.handshakes} handshakes per server, ${m.concurrency} in flight (after ${m.warmMin}–${m.warmMax} warm-up handshakes in each block); ` +
      `scrape ${m.scrapeRounds} rounds × ${m.scrapes} scrapes with no session, then with ${m.conns} open`
  }
  if (m.tickets) return `issue 18 row (--tickets), ${report.seconds.toFixed(0)} s: ${m.rounds} rounds × ${m.handshakes} handshakes per server, ${m.concurrency} in flight (after ${m.warmMin}–${m.warmMax} warm-up handshakes)`
  return `${m.quick ? 'quick' : 'full'} run, ${report.seconds.toFixed(0)} s: ${m.rounds} rounds × ${m.handshakes} handshakes per server, ` +
    `${m.concurrency} in flight (after ${m.warmMin}–${m.warmMax} warm-up handshakes); echo ${m.echoRounds} rounds × ${m.echoConns} connections × ${m.echoMs} ms; ` +
    `memory ${m.memRounds} round(s) × ${m.conns} idle connections in fresh processes; cross-check ${m.crossRounds} × ${m.crossHandshakes} handshakes` + publish
}

function pad (rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) => r.map((cell, i) => (cell ?? '').padEnd(widths[i])).join('  ').trimEnd()).join('\n')
}

function markdown (head, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [line(head), line(head.map(() => '---')), ...rows.map((r) => line([...r, ...Array(head.length - r.length).fill('')]))].join('\n')
}

function notes (report) {
  const lines = []
  const now = distBuild()
  if (now !== DIST_AT_START && frozenBuild() === null) lines.push(`dist/ was rebuilt during the run (build ${DIST_AT_START} at the start, ${now} now): servers started after the rebuild (fresh processes of the memory and publish phases) measured the new build`)
  for (const [id, why] of Object.entries(report.unavailable)) lines.push(`${id}: not measured (${why})`)
  for (const [id, r] of Object.entries(report.results)) {
    for (const [key, list] of Object.entries(r)) {
      const bad = list.filter((round) => round.errors > 0)
      if (bad.length) lines.push(`${id} ${key}: errors in ${bad.length} round(s), first: ${bad[0].firstError}`)
    }
  }
  return lines
}

/** Whether the run measured one issue's rows alone (no targets of issue 5). */
function alone ({ opts: { mode } }) {
  return mode.afterDoor || mode.tickets || mode.observability
}

/** The terminal report. */
export function textTable (report) {
  const parts = [parameters(report), ...machine(report), '', pad([MAIN_HEAD, ...mainRows(report)])]
  const cross = crossRows(report)
  if (cross.length) parts.push('', 'cross-check with off-the-shelf clients:', pad([CROSS_HEAD, ...cross]))
  const memory = memoryRows(report)
  if (memory.length) parts.push('', 'memory of idle authenticated connections (fresh processes, after GC):', pad([MEMORY_HEAD, ...memory]))
  const published = publishRows(report)
  if (published.length) parts.push('', `publish to ${report.opts.mode.subscribers} subscribers (one server, the same sockets):`, pad([PUBLISH_HEAD, ...published]))
  if (!alone(report)) parts.push('', pad([TARGET_HEAD, ...targets(report)]))
  const door = doorTargets(report)
  if (door.length) parts.push('', pad([DOOR_HEAD, ...door]))
  const tickets = ticketTargets(report)
  if (tickets.length) parts.push('', pad([TICKET_HEAD, ...tickets]))
  const observed = observabilityTargets(report)
  if (observed.length) parts.push('', pad([OBSERVABILITY_HEAD, ...observed]))
  const n = notes(report)
  if (n.length) parts.push('', ...n)
  return parts.join('\n')
}

/** bench/results.md. */
export function markdownReport (report) {
  const cross = crossRows(report)
  const n = notes(report)
  const published = publishRows(report)
  const door = doorTargets(report)
  const tickets = ticketTargets(report)
  const observed = observabilityTargets(report)
  const { afterDoor, tickets: ticketMode, observability, quick } = report.opts.mode
  const flag = afterDoor ? ' --after-door' : ticketMode ? ' --tickets' : observability ? ' --observability' : quick ? ' --quick' : ''
  return [
    '# Benchmark results', '',
    `Generated by \`node bench/run.mjs${flag}\` on ${new Date().toISOString()}, commit ${gitCommit()}, ${built()}.`, '',
    ...machine(report).map((l) => `- ${l}`), `- ${parameters(report)}`, '',
    'Cells are `median (min–max)` over rounds. CPU is the server process\'s own `process.cpuUsage()` over the measured window; ' +
    '`× baseline` is the ratio of the two medians (bare `@fastify/websocket` measured in the same rounds), its spread that of the per-round ratios. ' +
    'RSS per connection is measured in fresh processes.', '',
    markdown(MAIN_HEAD, mainRows(report)), '',
    ...(cross.length ? ['Cross-check with off-the-shelf clients (`ws`, socket.io-client):', '', markdown(CROSS_HEAD, cross), ''] : []),
    ...(memoryRows(report).length ? ['Memory of idle authenticated connections (fresh processes, after GC):', '', markdown(MEMORY_HEAD, memoryRows(report)), ''] : []),
    ...(published.length ? [`Publish to ${report.opts.mode.subscribers.toLocaleString('en-US')} subscribers (one server, the same sockets; CPU from the first publish until the clients hold every frame):`, '', markdown(PUBLISH_HEAD, published), ''] : []),
    ...(alone(report) ? [] : ['## Targets', '', markdown(TARGET_HEAD, targets(report)), '']),
    ...(door.length ? ['## Targets of issue 17', '', markdown(DOOR_HEAD, door), ''] : []),
    ...(tickets.length ? ['## Target of issue 18', '', markdown(TICKET_HEAD, tickets), ''] : []),
    ...(observed.length ? ['## Targets of issue 19', '', markdown(OBSERVABILITY_HEAD, observed), ''] : []),
    ...(n.length ? ['## Notes', '', ...n.map((l) => `- ${l}`), ''] : [])
  ].join('\n')
}

/**
 * The last line of every run: `plugin/baseline cpu-per-handshake: <ratio>`; before it, when the
 * ticket route was measured, `ticket/hs256-query cpu-per-handshake: <ratio>`, and when issue 19's
 * servers were, `metrics-on/off` and `traces-auto/off`.
 */
export function finalLine (report) {
  const s = paired(report, PLUGIN_ID, BASELINE_ID, 'handshake', 'cpuPerHs')
  const why = report.unavailable[PLUGIN_ID] ?? 'not measured'
  const t = paired(report, TICKET_ID, PLUGIN_ID, 'handshake', 'cpuPerHs')
  const ticket = t.n ? `ticket/hs256-query cpu-per-handshake: ${t.median.toFixed(3)} (${t.min.toFixed(3)}–${t.max.toFixed(3)})\n` : ''
  const { metrics, auto } = observabilityRatios(report)
  const ratio = (name, r) => r.n ? `${name} cpu-per-handshake: ${r.median.toFixed(3)} (${r.min.toFixed(3)}–${r.max.toFixed(3)})\n` : ''
  return `${ticket}${ratio('metrics-on/off', metrics)}${ratio('traces-auto/off', auto)}plugin/baseline cpu-per-handshake: ${s.n ? s.median.toFixed(2) : `n/a (${why})`}`
}
