// Summarizes V8 CPU profiles of bench servers (taken over the measured handshake rounds only):
// self time per handshake by package and by function, and the difference to the baseline's
// profile, which is where a server's extra cost per handshake goes.
// Also runnable alone: node bench/lib/profile.mjs <file.cpuprofile> [units of work]
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const TOP = 20

function packageOf (url) {
  if (!url) return '(native, GC, V8)'
  if (url.startsWith('node:')) return url.includes('internal') ? 'node:internal' : url
  const nm = url.lastIndexOf('node_modules/')
  if (nm !== -1) {
    const rest = url.slice(nm + 13).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.includes('/dist/')) return 'fastify-ws-auth (dist)'
  if (url.includes('/bench/')) return 'bench'
  return url
}

function functionName ({ functionName: name, url, lineNumber }) {
  if (!url) return name
  const nm = url.lastIndexOf('node_modules/')
  const dist = url.indexOf('/dist/')
  const file = nm !== -1 ? url.slice(nm + 13) : dist !== -1 ? url.slice(dist + 1) : url
  return `${name || '(anonymous)'} ${file}:${lineNumber + 1}`
}

/** Self time (µs) by function and by package, idle excluded. */
export function loadProfile (file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  const self = new Map()
  for (let i = 0; i < profile.samples.length; i++) {
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  const byFunction = new Map()
  const byPackage = new Map()
  let busy = 0
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0
    if (us === 0 || node.callFrame.functionName === '(idle)') continue
    busy += us
    const fn = functionName(node.callFrame)
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us)
    const pkg = packageOf(node.callFrame.url)
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us)
  }
  return { busy, byFunction, byPackage }
}

function sorted (map, n, per) {
  return [...map.entries()].map(([k, us]) => [k, us / per]).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, n)
}

function lines (entries) {
  return entries.map(([k, v]) => `  ${v.toFixed(2).padStart(8)}  ${k}`)
}

function difference (a, b) {
  const out = new Map()
  for (const [k, v] of b) out.set(k, v)
  for (const [k, v] of a) out.set(k, (out.get(k) ?? 0) - v)
  return out
}

/** The profile of one server, per unit of work (handshake or message). */
function summary ({ id, phase, unit, count }, p) {
  return [
    `CPU profile of ${id}, ${phase} rounds, ${count} ${unit}s: ${(p.busy / count).toFixed(2)} µs/${unit} sampled (idle excluded)`,
    `  µs/${unit} by package:`, ...lines(sorted(p.byPackage, 12, count)),
    `  top ${TOP} functions, self µs/${unit}:`, ...lines(sorted(p.byFunction, TOP, count))
  ]
}

/** Per-unit difference of `p` to the baseline `b` (positive: `p` spends more). */
function diff (meta, p, base, b) {
  const scale = (map, n) => new Map([...map].map(([k, v]) => [k, v / n]))
  const fns = difference(scale(b.byFunction, base.count), scale(p.byFunction, meta.count))
  const pkgs = difference(scale(b.byPackage, base.count), scale(p.byPackage, meta.count))
  return [
    `${meta.id} − ${base.id}, ${meta.phase} rounds: ${(p.busy / meta.count - b.busy / base.count).toFixed(2)} µs/${meta.unit} more (sampled)`,
    '  by package:', ...lines(sorted(pkgs, 12, 1)),
    `  top ${TOP} functions by difference:`, ...lines(sorted(fns, TOP, 1))
  ]
}

/** Every profile's summary, then each one's difference to the baseline's profile of the same phase. */
export function profileReport (profiles, baselineId) {
  const loaded = profiles.filter((p) => existsSync(p.file) && p.count > 0).map((p) => [p, loadProfile(p.file)])
  const out = []
  for (const [meta, p] of loaded) out.push(...summary(meta, p), '')
  for (const [meta, p] of loaded) {
    const base = loaded.find(([m]) => m.id === baselineId && m.phase === meta.phase)
    if (base && meta.id !== baselineId) out.push(...diff(meta, p, base[0], base[1]), '')
  }
  return out.join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2]
  const count = Number(process.argv[3]) || 1
  console.log(summary({ id: file, phase: 'all', unit: 'unit', count }, loadProfile(file)).join('\n'))
}
