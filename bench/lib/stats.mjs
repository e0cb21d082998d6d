// Small statistics: percentiles of one round, medians and spreads over rounds.

/** The q-quantile (0..1) of an ascending array, nearest-rank; NaN when empty. */
export function percentile (sorted, q) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

/** { median, min, max, n } of the finite values; NaNs when there are none. */
export function summary (values) {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (finite.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 }
  const mid = finite.length >> 1
  const median = finite.length % 2 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2
  return { median, min: finite[0], max: finite[finite.length - 1], n: finite.length }
}

function fixed (value, digits) {
  if (!Number.isFinite(value)) return '–'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** "median (min–max)" with `digits` decimals; the spread is left out for a single value. */
export function formatSummary (s, digits = 0) {
  if (!s || s.n === 0) return '–'
  if (s.n === 1 || s.min === s.max) return fixed(s.median, digits)
  return `${fixed(s.median, digits)} (${fixed(s.min, digits)}–${fixed(s.max, digits)})`
}

export { fixed as formatNumber }

/**
 * Sign test: the chance that at least as many of `values` as here are above `than` if each were as
 * likely above as below (ties left out). A small figure (≤ 0.025) says the values lean above
 * `than` by more than chance; a larger one, that the rounds cannot tell them from `than`.
 */
export function chanceAbove (values, than) {
  const sides = values.filter((v) => Number.isFinite(v) && v !== than)
  const above = sides.filter((v) => v > than).length
  const n = sides.length
  let p = 0
  let ways = 1 // n choose k, from k = 0 up
  for (let k = 0; k <= n; k++) {
    if (k >= above) p += ways
    ways = (ways * (n - k)) / (k + 1)
  }
  return { above, n, p: n === 0 ? NaN : p / 2 ** n }
}
