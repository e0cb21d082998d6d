// Line charts as a plain SVG string (no dependency, no external service): panels side by side,
// each with its own y axis from 0, the same x values, one polyline and marker per series, and a legend.

const PANEL = { width: 420, height: 300, left: 56, right: 16, top: 44, bottom: 46 }
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf', '#7f7f7f']
const FONT = 'font-family="sans-serif" font-size="12"'

function escape (text) {
  return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** A round step for about five ticks from 0 to `max`. */
function tickStep (max) {
  const raw = max / 5
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  return [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)
}

/** A tick's label with as many decimals as the step needs (2.5 -> 1, 0.25 -> 2). */
function label (value, step) {
  let decimals = 0
  while (decimals < 6 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-9) decimals++
  return value.toFixed(decimals)
}

function panel (p, index, xs) {
  const ox = index * PANEL.width
  const w = PANEL.width - PANEL.left - PANEL.right
  const h = PANEL.height - PANEL.top - PANEL.bottom
  const values = p.series.flatMap((s) => s.points.map(([, y]) => y)).filter(Number.isFinite)
  const step = tickStep(Math.max(...values, 1e-6) * 1.1)
  const top = step * Math.ceil((Math.max(...values, 1e-6) * 1.1) / step)
  const x = (v) => ox + PANEL.left + (xs.length === 1 ? w / 2 : (xs.indexOf(v) / (xs.length - 1)) * w)
  const y = (v) => PANEL.top + h - (v / top) * h
  const out = [`<text x="${ox + PANEL.width / 2}" y="20" text-anchor="middle" ${FONT} font-weight="bold">${escape(p.title)}</text>`]
  for (let v = 0; v <= top + step / 2; v += step) {
    out.push(`<line x1="${ox + PANEL.left}" x2="${ox + PANEL.left + w}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`)
    out.push(`<text x="${ox + PANEL.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" ${FONT}>${label(v, step)}</text>`)
  }
  for (const v of xs) out.push(`<text x="${x(v).toFixed(1)}" y="${PANEL.top + h + 16}" text-anchor="middle" ${FONT}>${v}</text>`)
  out.push(`<text x="${ox + PANEL.left + w / 2}" y="${PANEL.height - 10}" text-anchor="middle" ${FONT}>${escape(p.xLabel)}</text>`)
  out.push(`<text transform="translate(${ox + 14} ${PANEL.top + h / 2}) rotate(-90)" text-anchor="middle" ${FONT}>${escape(p.yLabel)}</text>`)
  out.push(`<rect x="${ox + PANEL.left}" y="${PANEL.top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`)
  p.series.forEach((s, i) => {
    const color = COLORS[(s.color ?? i) % COLORS.length]
    const points = s.points.filter(([, v]) => Number.isFinite(v))
    const dash = s.dashed ? ' stroke-dasharray="5 4"' : ''
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(' ')}"/>`)
    for (const [a, b] of points) out.push(`<circle cx="${x(a).toFixed(1)}" cy="${y(b).toFixed(1)}" r="3" fill="${color}"><title>${escape(`${s.name}: ${b.toFixed(3)} at ${a}`)}</title></circle>`)
  })
  return out.join('\n')
}

function legend (panels, at, width) {
  const out = []
  panels.forEach((p, index) => {
    p.series.forEach((s, i) => {
      const lx = index * width + PANEL.left
      const ly = at + 16 * i
      const color = COLORS[(s.color ?? i) % COLORS.length]
      const dash = s.dashed ? ' stroke-dasharray="5 4"' : ''
      out.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${dash}/>`)
      out.push(`<text x="${lx + 28}" y="${ly}" ${FONT}>${escape(s.name)}</text>`)
    })
  })
  return out.join('\n')
}

/**
 * `panels`: [{ title, xLabel, yLabel, series: [{ name, points: [[x, y], ...], color?, dashed? }] }];
 * `xs`: the x values, in order (placed evenly); `caption`: one line under the legend.
 */
export function lineChart ({ panels, xs, caption = '' }) {
  const rows = Math.max(...panels.map((p) => p.series.length))
  const width = PANEL.width * panels.length
  const legendTop = PANEL.height + 10
  const height = legendTop + 16 * rows + (caption ? 24 : 8)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...panels.map((p, i) => panel(p, i, xs)),
    legend(panels, legendTop, PANEL.width),
    caption ? `<text x="${PANEL.left}" y="${height - 8}" ${FONT} fill="#555">${escape(caption)}</text>` : '',
    '</svg>',
    ''
  ].join('\n')
}
