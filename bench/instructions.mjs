// Instructions per handshake of one bench server, counted by callgrind (valgrind): user-space work
// of the server's main thread (JS, V8, GC, OpenSSL, libuv; not the kernel), on a machine too noisy
// for timings to tell a 5 % change apart. Most runs agree within a few per cent, but about one in
// three lands up to 10 % higher (the JIT settles differently): take the lowest of three. For A/B:
//   node bench/instructions.mjs <server id> [warm-up handshakes = 4000] [measured = 2000]
// Where they go, by function (JIT'd JS named through V8's perf map), optionally beside another
// server, sorted by the difference:
//   node bench/instructions.mjs <server id> --functions [--vs <server id>] [--top 40]
// Per message echoed on 50 established connections instead (warm-up and measured messages = 20000):
//   node bench/instructions.mjs <server id> --echo [warm] [measured]
// Per publish to 10,000 subscribers, `app.wsAuth.publish` beside the old hand-written hub on the
// same sockets (issue 17's publish row; no server id; the clients run in this process):
//   node bench/instructions.mjs --publish [subscribers = 10000] [publishes per dump = 3] [rounds = 3]
// Issue 19's two rows, per handshake: `plugin-traces-off`, `plugin-metrics` and `plugin-hs256` (the
// default, traces 'auto' without a tracer provider) in turn, `runs` times, then metrics on ÷ off and
// traces auto ÷ off, of the lowest counts and run by run:
//   node bench/instructions.mjs --observability [runs = 3] [warm = 4000] [measured = 2000]
// Why equal counts can take unequal time: simulated cache misses and mispredicted branches
// (callgrind's simple models of the L1 caches and the branch predictor; twice as slow):
//   node bench/instructions.mjs <server id> --simulate
// With `--frozen`, every server imports a copy of the current dist/ build taken at the start
// (bench/lib/build-stamp.mjs): others rebuilding dist/ meanwhile do not change what is counted.
// With BENCH_KEEP_CALLGRIND=1 the callgrind files are kept (their paths are printed) for
// `callgrind_annotate`. Ids as in bench/variants.mjs; `plugin-ticket` (issue 18) is given fresh
// one-time tickets before the warm-up and before counting, so that issuing them is not counted. The load generator runs in this process,
// outside valgrind. Needs valgrind; 20–40 s a server.
import { parseArgs } from 'node:util'
import { distBuild, freezeDist, frozenBuild } from './lib/build-stamp.mjs'
import { countInstructions } from './lib/callgrind.mjs'
import { countPublishInstructions } from './lib/callgrind-publish.mjs'
import { makeKeys } from './lib/tokens.mjs'
import { OBSERVABILITY_IDS, variants } from './variants.mjs'

const LIMIT_MS = 5 * 60_000

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: { frozen: { type: 'boolean', default: false }, publish: { type: 'boolean', default: false }, observability: { type: 'boolean', default: false }, echo: { type: 'boolean', default: false }, functions: { type: 'boolean', default: false }, simulate: { type: 'boolean', default: false }, vs: { type: 'string' }, top: { type: 'string', default: '40' } }
})
if (opts.frozen) freezeDist()
if (opts.publish) await publishRow(positionals.map(Number))
if (opts.observability) await observabilityRows(positionals.map(Number))
const unit = opts.echo ? 'message' : 'handshake'
const [id, warm = opts.echo ? '20000' : '4000', measured = opts.echo ? '20000' : '2000'] = positionals
const ids = [id, opts.vs].filter((v) => v !== undefined)
const chosen = ids.map((v) => variants.find((variant) => variant.id === v))
if (id === undefined || chosen.includes(undefined) || (opts.vs !== undefined && !opts.functions)) {
  console.error(`usage: node bench/instructions.mjs <id> [--echo] [warm] [n]
       node bench/instructions.mjs <id> [--echo] --functions [--vs <id>] [--top 40] [--simulate]
ids: ${variants.map((v) => v.id).join(' | ')}`)
  process.exit(2)
}
setTimeout(() => { console.error('instructions: time limit reached'); process.exit(1) }, LIMIT_MS * ids.length).unref()

const keys = makeKeys()
const keep = process.env.BENCH_KEEP_CALLGRIND === '1'
const results = []
for (const variant of chosen) {
  const build = frozenBuild() ?? distBuild()
  const result = await countInstructions(variant, keys, { warm: Number(warm), measured: Number(measured), echo: opts.echo, functions: opts.functions, simulate: opts.simulate, keep })
  for (const file of result.files) console.log(`kept ${file}`)
  console.log(`${variant.id}: ${whole(result.main)} instructions per ${unit} on the main thread (${whole(result.all)} with V8's helper threads); ${result.failed} failed; dist/ build ${build}`)
  if (result.events !== undefined) console.log(`  per ${unit}: ${simulated(result.events)}`)
  results.push(result)
}
if (opts.functions) printFunctions(results, Number(opts.top))

/** Issue 17's publish row in instructions: each round's two dumps, then the ratio of the lowest. */
async function publishRow ([subscribers = 10_000, publishes = 3, rounds = 3]) {
  setTimeout(() => { console.error('instructions: time limit reached'); process.exit(1) }, 2 * LIMIT_MS + subscribers * 10).unref()
  const r = await countPublishInstructions(makeKeys(), { subscribers, publishes, rounds })
  for (let i = 0; i < rounds; i++) {
    console.log(`round ${i + 1}: plugin ${whole(r.plugin[i].perPublish)}, hand-written hub ${whole(r.hand[i].perPublish)} instructions per publish ` +
      `(${whole(r.plugin[i].perSend)} / ${whole(r.hand[i].perSend)} per subscriber), ratio ${(r.plugin[i].perPublish / r.hand[i].perPublish).toFixed(3)}`)
  }
  const low = (side) => Math.min(...r[side].map((x) => x.perPublish))
  console.log(`publish to ${subscribers} subscribers, lowest of ${rounds}: plugin ${whole(low('plugin'))}, hand-written hub ${whole(low('hand'))} ` +
    `instructions per publish on the main thread; plugin ÷ hub ${(low('plugin') / low('hand')).toFixed(3)}`)
  process.exit(0)
}

/** Issue 19's rows in instructions: the three servers in turn, `runs` times; ratios ÷ traces off. */
async function observabilityRows ([runs = 3, warm = 4000, measured = 2000]) {
  const { off, metrics, auto } = OBSERVABILITY_IDS
  const ids = [off, metrics, auto]
  setTimeout(() => { console.error('instructions: time limit reached'); process.exit(1) }, LIMIT_MS * runs * ids.length).unref()
  const keys = makeKeys()
  const counts = Object.fromEntries(ids.map((v) => [v, []]))
  for (let r = 0; r < runs; r++) {
    for (const v of ids) {
      const build = frozenBuild() ?? distBuild()
      const result = await countInstructions(variants.find((variant) => variant.id === v), keys, { warm, measured })
      counts[v].push(result.main)
      console.log(`run ${r + 1}/${runs} ${v}: ${whole(result.main)} instructions per handshake on the main thread (${whole(result.all)} with V8's helper threads); ${result.failed} failed; dist/ build ${build}`)
    }
  }
  const row = (name, id) => {
    const low = Math.min(...counts[id]) / Math.min(...counts[off])
    const byRun = counts[id].map((n, i) => (n / counts[off][i]).toFixed(3)).join(', ')
    console.log(`${name}: lowest ${whole(Math.min(...counts[id]))} ÷ ${whole(Math.min(...counts[off]))} = ${low.toFixed(3)}; run by run ${byRun}`)
  }
  row('metrics on ÷ off', metrics)
  row('traces auto, no provider ÷ traces off', auto)
  process.exit(0)
}

/** The simulated events of a run, in words. */
function simulated ({ I1mr = 0, D1mr = 0, D1mw = 0, Bcm = 0, Bim = 0 }) {
  return `${whole(I1mr)} instruction-cache misses, ${whole(D1mr + D1mw)} data-cache misses, ` +
    `${whole(Bcm + Bim)} mispredicted branches (main thread, simulated)`
}

function whole (n) {
  return Math.round(n).toLocaleString('en-US')
}

/** The top functions by instructions per handshake, or by the difference to the `--vs` server. */
function printFunctions ([a, b], top) {
  const names = new Set([...a.functions.keys(), ...(b?.functions.keys() ?? [])])
  const rows = [...names].map((name) => {
    const here = a.functions.get(name) ?? 0
    const there = b?.functions.get(name) ?? 0
    return { name, here, there, diff: here - there }
  })
  rows.sort((x, y) => Math.abs(y.diff) - Math.abs(x.diff))
  const width = Math.max(10, ...ids.map((v) => v.length))
  console.log(b === undefined
    ? `\n${ids[0].padStart(width)}  function (main thread, instructions per ${unit})`
    : `\n${'difference'.padStart(width)} ${ids[0].padStart(width)} ${ids[1].padStart(width)}  function (main thread, instructions per ${unit})`)
  for (const row of rows.slice(0, top)) {
    const cells = b === undefined ? [row.here] : [row.diff, row.here, row.there]
    console.log(`${cells.map((n) => whole(n).padStart(width)).join(' ')}  ${row.name}`)
  }
}
