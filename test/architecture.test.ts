// The layers of lib/ (docs/architecture.md): no import cycle, value or type, and each folder
// imports only the layers below it. Read from the sources' import statements, so a new arrow
// that breaks the design fails `npm test` before anyone builds on it.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import t from 'tap'

const LIB = join(__dirname, '..', 'lib')

/** What each layer may import, besides its own folder: by the path's first segment under lib/. */
const ALLOWED: Record<string, readonly string[]> = {
  protocol: [],
  'types.ts': ['protocol'],
  'errors.ts': [],
  cluster: ['protocol', 'types.ts', 'errors.ts'],
  server: ['protocol', 'types.ts', 'errors.ts', 'cluster'],
  client: ['protocol'],
  'index.ts': ['protocol', 'types.ts', 'errors.ts', 'server']
}

/** Every .ts file under lib/, relative to it, with the lib/ files it imports (types included). */
function importGraph (): Map<string, string[]> {
  const files = readdirSync(LIB, { recursive: true }).map(String).filter(f => f.endsWith('.ts')).sort()
  const graph = new Map<string, string[]>()
  for (const file of files) graph.set(file, importsOf(file))
  return graph
}

export function importsOf (file: string): string[] {
  const source = readFileSync(join(LIB, file), 'utf8')
  const specifiers = [
    ...source.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]/gm),
    ...source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)
  ].map(m => m[1])
  return specifiers.filter(s => s.startsWith('.')).map(s => normalize(join(dirname(file), s)))
}

function layerOf (file: string): string {
  return file.split('/')[0]
}

/** The cycles of a graph (each as the path that closes it), by depth-first search. */
function cycles (graph: Map<string, string[]>): string[][] {
  const found: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const path: string[] = []
  const visit = (node: string): void => {
    state.set(node, 'open')
    path.push(node)
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') found.push([...path.slice(path.indexOf(next)), next])
      else if (state.get(next) === undefined) visit(next)
    }
    path.pop()
    state.set(node, 'done')
  }
  for (const node of graph.keys()) if (state.get(node) === undefined) visit(node)
  return found
}

t.test('no import cycle in lib/, not even of types', async t => {
  const graph = importGraph()
  t.ok(graph.size > 20, 'the graph was read')
  t.same(cycles(graph).map(c => c.join(' -> ')), [])
})

t.test('the cycle finder finds a cycle', async t => {
  const graph = new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']], ['d.ts', ['a.ts']]])
  t.same(cycles(graph), [['a.ts', 'b.ts', 'c.ts', 'a.ts']])
})

t.test('each layer imports only the layers below it', async t => {
  const graph = importGraph()
  const wrong: string[] = []
  for (const [file, imports] of graph) {
    const layer = layerOf(file)
    const allowed = ALLOWED[layer]
    if (allowed === undefined) {
      wrong.push(`${file}: not in a known layer (${Object.keys(ALLOWED).join(', ')})`)
      continue
    }
    for (const target of imports) {
      if (target.startsWith('..')) wrong.push(`${file} imports ${target}, outside lib/`)
      else if (layerOf(target) !== layer && !allowed.includes(layerOf(target))) wrong.push(`${file} imports ${relative('.', target)}`)
    }
  }
  t.same(wrong, [])
})

t.test('only internals.ts touches the private fields of ws and the symbols of other packages', async t => {
  const offenders: string[] = []
  for (const file of importGraph().keys()) {
    if (file === 'server/internals.ts') continue
    const source = readFileSync(join(LIB, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '')
    if (/\._(?:receiver|socket|maxPayload|isServer)\b|\b_receiver\b|\b_socket\b/.test(source)) offenders.push(`${file}: a ws private field`)
    if (/\.emit\s*=|\.handleUpgrade\s*=|handleProtocols\s*=/.test(source)) offenders.push(`${file}: replaces a ws method`)
    if (/pino\.serializers|ws-head|additionalHeaders/.test(source)) offenders.push(`${file}: a private symbol or field`)
    if (/raw\.headers\.authorization\s*=|request\.jwtVerify\(/.test(source)) offenders.push(`${file}: lends a header to @fastify/jwt`)
  }
  t.same(offenders, [])
})
