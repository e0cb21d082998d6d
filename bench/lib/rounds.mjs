// Figures over the rounds of a report (`report.results[id][key]`: one object per round), for the
// tables of bench/lib/report.mjs and bench/lib/issue-targets.mjs.
import { summary } from './stats.mjs'

export function rounds (report, id, key) {
  return report.results[id]?.[key] ?? []
}

export function metric (report, id, key, name) {
  return summary(rounds(report, id, key).map((r) => r[name]))
}

/**
 * a/b (or a−b) as the ratio of the two medians, each robust to a round disturbed by another
 * process; the spread is that of the per-round ratios (both sides from the same round).
 */
export function paired (report, a, b, key, name, op = (x, y) => x / y) {
  const ra = rounds(report, a, key)
  const rb = rounds(report, b, key)
  const perRound = []
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) perRound.push(op(ra[i][name], rb[i][name]))
  const spread = summary(perRound)
  if (spread.n === 0) return spread
  const median = op(metric(report, a, key, name).median, metric(report, b, key, name).median)
  return { ...spread, median, min: Math.min(spread.min, median), max: Math.max(spread.max, median) }
}
