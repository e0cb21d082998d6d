// Summarizes V8 heap snapshots of bench servers holding idle connections: retained bytes per
// connection by object kind, and the difference to the baseline's snapshot.
import { existsSync, readFileSync } from 'node:fs'

const TOP = 15

/** Self size and count per "type name" (e.g. `object Session`, `closure gatedEmit`). */
export function loadSnapshot (file) {
  const snap = JSON.parse(readFileSync(file, 'utf8'))
  const fields = snap.snapshot.meta.node_fields
  const types = snap.snapshot.meta.node_types[0]
  const width = fields.length
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f))
  const kinds = new Map()
  let total = 0
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]]
    const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' ? '' : snap.strings[snap.nodes[i + nameAt]]
    const key = `${type} ${name.slice(0, 60)}`.trim()
    const size = snap.nodes[i + sizeAt]
    total += size
    const kind = kinds.get(key) ?? { bytes: 0, count: 0 }
    kind.bytes += size
    kind.count++
    kinds.set(key, kind)
  }
  return { total, kinds }
}

function perConnection (a, connections) {
  return new Map([...a.kinds].map(([k, v]) => [k, { bytes: v.bytes / connections, count: v.count / connections }]))
}

/** Bytes and objects per connection of `p` beyond the baseline `b`, largest first. */
export function heapReport (snapshots, baselineId) {
  const loaded = snapshots.filter((s) => existsSync(s.file) && s.connections > 0).map((s) => [s, loadSnapshot(s.file)])
  const base = loaded.find(([s]) => s.id === baselineId)
  const out = []
  for (const [meta, snap] of loaded) {
    if (!base || meta.id === baselineId) continue
    const mine = perConnection(snap, meta.connections)
    const theirs = perConnection(base[1], base[0].connections)
    const rows = [...mine].map(([k, v]) => [k, v.bytes - (theirs.get(k)?.bytes ?? 0), v.count - (theirs.get(k)?.count ?? 0)])
    rows.sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]))
    out.push(`heap of ${meta.id} − ${baselineId}, per idle connection: ${((snap.total / meta.connections - base[1].total / base[0].connections)).toFixed(0)} bytes`,
      '     bytes  objects  kind',
      ...rows.slice(0, TOP).map(([k, bytes, count]) => `  ${bytes.toFixed(0).padStart(8)}  ${count.toFixed(2).padStart(7)}  ${k}`), '')
  }
  return out.join('\n')
}
