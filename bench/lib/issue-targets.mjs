// The targets of issues 17–19, each measured side by side in one run (`--after-door`, `--tickets`,
// `--observability`, and the full run): rows of [what, goal, measured, verdict] for bench/lib/report.mjs.
import { chanceAbove, formatSummary, summary } from './stats.mjs'
import { metric, paired, rounds } from './rounds.mjs'
import { PUBLISH_IDS } from './publish.mjs'
import { MESSAGES_IDS, OBSERVABILITY_IDS, PLUGIN_ID, TICKET_ID } from '../variants.mjs'

/** Issue 17's rows: message policies on the echo path, publish ÷ the old hand-written hub. */
export function doorTargets (report) {
  const [unlisted, listed] = MESSAGES_IDS
  const echo = (id) => paired(report, id, PLUGIN_ID, 'echo', 'cpuPerMsg')
  const atMost = (limit) => (x) => x <= limit
  const rows = [
    ['echo CPU/msg, route with `messages`, unlisted type ÷ same route without', '≤ 1.05', echo(unlisted), atMost(1.05)],
    ['echo CPU/msg, route with `messages`, listed type with a roles policy ÷ same route without', '≤ 1.10', echo(listed), atMost(1.1)],
    [`publish to ${report.opts.mode.subscribers.toLocaleString('en-US')} subscribers, CPU/publish, plugin ÷ old hand-written hub`, '≤ 1.05',
      paired(report, PUBLISH_IDS.plugin, PUBLISH_IDS.hand, 'publish', 'cpuPerPublish'), atMost(1.05)]
  ]
  if (rows.every(([, , s]) => s.n === 0)) return []
  return rows.map(([what, goal, s, test]) => [what, goal, formatSummary(s, 3), s.n === 0 ? 'n/a' : test(s.median) ? 'met' : 'NOT met'])
}

export const DOOR_HEAD = ['target (issue 17; timed, see docs/benchmarks.md for instruction counts)', 'goal', 'measured: median (min–max)', '']

/**
 * Issue 18's row: the route reading one-time tickets ÷ the same route reading HS256 `?token=`, CPU
 * per handshake in the same rounds; and what issuing cost (measured apart, before each round).
 */
export function ticketTargets (report) {
  const ratio = paired(report, TICKET_ID, PLUGIN_ID, 'handshake', 'cpuPerHs')
  if (ratio.n === 0) return []
  // Issuing and redeeming ÷ the token handshake, like `paired`: the ratio of the medians, the spread of the rounds'.
  const token = rounds(report, PLUGIN_ID, 'handshake')
  const perRound = summary(rounds(report, TICKET_ID, 'handshake').slice(0, token.length).map((r, i) => (r.cpuPerHs + r.issueUs) / token[i].cpuPerHs))
  const median = (metric(report, TICKET_ID, 'handshake', 'cpuPerHs').median + metric(report, TICKET_ID, 'handshake', 'issueUs').median) / metric(report, PLUGIN_ID, 'handshake', 'cpuPerHs').median
  const withIssue = { ...perRound, median, min: Math.min(perRound.min, median), max: Math.max(perRound.max, median) }
  return [
    ['ticket handshake ÷ HS256 query-token handshake, CPU/handshake (same route, same rounds)', '≤ 1.00', formatSummary(ratio, 3), ratio.median <= 1 ? 'met' : 'NOT met'],
    ['issueTicket, server CPU µs per ticket (issued before each round, outside the handshake window)', '(info)', formatSummary(metric(report, TICKET_ID, 'handshake', 'issueUs'), 1), ''],
    ['(issueTicket + ticket handshake) ÷ HS256 query-token handshake', '(info)', formatSummary(withIssue, 3), '']
  ]
}

export const TICKET_HEAD = ['target (issue 18; timed, see docs/benchmarks.md for instruction counts)', 'goal', 'measured: median (min–max)', '']

/** Issue 19's rows, server CPU per handshake of the same route in the same rounds, each ÷ traces: false. */
export function observabilityRatios (report) {
  const { off, metrics, auto } = OBSERVABILITY_IDS
  const ratio = (id) => paired(report, id, off, 'handshake', 'cpuPerHs')
  return { metrics: ratio(metrics), auto: ratio(auto) }
}

/**
 * The verdict of a "no measurable cost" row: met at or under `limit`; above it, "within noise"
 * when the rounds' own ratios are no more often above 1 than chance allows (sign test, p > 0.025).
 */
function noCostVerdict (report, id, limit) {
  const { off } = OBSERVABILITY_IDS
  const a = rounds(report, id, 'handshake')
  const b = rounds(report, off, 'handshake')
  const sign = chanceAbove(a.slice(0, b.length).map((r, i) => r.cpuPerHs / b[i].cpuPerHs), 1)
  const count = `${sign.above} of ${sign.n} rounds above 1, p = ${sign.p.toFixed(2)}`
  if (paired(report, id, off, 'handshake', 'cpuPerHs').median <= limit) return `met (${count})`
  return sign.p > 0.025 ? `within noise (${count})` : `NOT met (${count})`
}

export function observabilityTargets (report) {
  const { metrics, auto } = observabilityRatios(report)
  const scrape = rounds(report, OBSERVABILITY_IDS.metrics, 'scrape')
  if (metrics.n === 0 && auto.n === 0 && scrape.length === 0) return []
  const held = summary(scrape.map((r) => r.held)).median
  const s = (name) => summary(scrape.map((r) => r[name]))
  const perSession = summary(scrape.map((r) => ((r.loadedUs - r.emptyUs) * 1000) / r.held))
  const rows = [
    ['metrics on ÷ off, CPU/handshake (same route, traces: false on both)', '≤ 1.03', formatSummary(metrics, 3), metrics.n === 0 ? 'n/a' : metrics.median <= 1.03 ? 'met' : 'NOT met'],
    ['traces \'auto\' without a tracer provider (the default) ÷ traces: false, CPU/handshake', '≤ 1.01 or within noise', formatSummary(auto, 3), auto.n === 0 ? 'n/a' : noCostVerdict(report, OBSERVABILITY_IDS.auto, 1.01)]
  ]
  if (scrape.length === 0) return rows
  return [
    ...rows,
    [`registry.metrics() with ${held.toLocaleString('en-US')} open sessions, wall µs per scrape`, '(info)', formatSummary(s('loadedUs'), 0), ''],
    [`the same, CPU µs per scrape (${s('bytes').median.toLocaleString('en-US')} bytes of text)`, '(info)', formatSummary(s('loadedCpuUs'), 0), ''],
    ['registry.metrics() with no session open, wall / CPU µs per scrape', '(info)', `${formatSummary(s('emptyUs'), 0)} / ${formatSummary(s('emptyCpuUs'), 0)}`, ''],
    ['scrape time per open session, ns ((with − without) ÷ sessions)', '(info)', formatSummary(perSession, 0), '']
  ]
}

export const OBSERVABILITY_HEAD = ['target (issue 19; timed, see docs/benchmarks.md for instruction counts)', 'goal', 'measured: median (min–max)', '']
