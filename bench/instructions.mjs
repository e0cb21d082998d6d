// Instructions per handshake of one bench server, counted by callgrind (valgrind): user-space work
// of the server's main thread (JS, V8, GC, OpenSSL, libuv; not the kernel), on a machine too noisy
// for timings to tell a 5 % change apart. Most runs agree within a few per cent, but about one in
// three lands up to 10 % higher (the JIT settles differently): take the lowest of three. For A/B:
//   node bench/instructions.mjs <server id> [warm-up handshakes = 4000] [measured = 2000]
// With BENCH_KEEP_CALLGRIND=1 the callgrind files are kept (their paths are printed) for
// `callgrind_annotate`: where the instructions go, by C++ function (JIT'd JS shows as addresses).
// Ids as in bench/variants.mjs. Instrumentation is switched on after the warm-up (JIT settled);
// the load generator runs in this process, outside valgrind. Needs valgrind; 20–40 s a server.
import { spawn, execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, unlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LeanConn, prepareLean } from './lib/clients.mjs'
import { jwtSecret, makeKeys, tokenPool } from './lib/tokens.mjs'
import { variants } from './variants.mjs'

const CONCURRENCY = 20
const LIMIT_MS = 5 * 60_000

const [id, warm = '4000', measured = '2000'] = process.argv.slice(2)
const variant = variants.find((v) => v.id === id)
if (variant === undefined) {
  console.error(`usage: node bench/instructions.mjs <${variants.map((v) => v.id).join(' | ')}> [warm] [n]`)
  process.exit(2)
}
setTimeout(() => { console.error('instructions: time limit reached'); process.exit(1) }, LIMIT_MS).unref()

const keys = makeKeys()
const prefix = `fastify-ws-auth-callgrind.${process.pid}`
const child = spawn('valgrind', [
  '--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${join(tmpdir(), prefix)}`,
  process.execPath, join(import.meta.dirname, 'servers', 'server.mjs')
], {
  stdio: ['ignore', 'inherit', 'ignore', 'ipc'],
  env: { ...process.env, BENCH_SERVER: JSON.stringify({ ...variant, secret: variant.alg ? jwtSecret(variant.alg, keys) : null }) }
})
child.on('exit', (code) => { if (code !== 0 && code !== null) console.error(`instructions: valgrind exited with ${code}`) })

const port = await new Promise((resolve, reject) => {
  child.on('message', (m) => {
    if (m.type === 'ready') resolve(m.port)
    if (m.type === 'error') reject(new Error(m.message))
  })
})
const tokens = variant.auth === 'none' ? [] : tokenPool(variant.alg, keys, 100)
const prep = prepareLean({ ...variant, path: '/ws', port, tokens })

/** `count` handshakes, CONCURRENCY in flight; resolves with the number that failed. */
function handshakes (count) {
  return new Promise((resolve) => {
    let started = 0
    let done = 0
    let failed = 0
    const next = () => {
      if (started >= count) return
      const conn = new LeanConn(prep, started++, (err) => {
        if (err) failed++
        conn.close()
        if (++done === count) resolve(failed)
        else next()
      })
    }
    for (let i = 0; i < CONCURRENCY; i++) next()
  })
}

let failed = await handshakes(Number(warm))
execFileSync('callgrind_control', ['--instr=on', String(child.pid)], { stdio: 'ignore' })
failed += await handshakes(Number(measured))
execFileSync('callgrind_control', ['--dump', String(child.pid)], { stdio: 'ignore' })
child.kill('SIGKILL')

let all = 0
let main = 0
for (const file of readdirSync(tmpdir()).filter((f) => f.startsWith(prefix))) {
  const total = Number(/^(?:summary|totals): (\d+)/m.exec(readFileSync(join(tmpdir(), file), 'utf8'))?.[1] ?? 0)
  all += total
  if (file.endsWith('-01')) main += total // thread 1: the event loop
  if (process.env.BENCH_KEEP_CALLGRIND === '1') console.log(`kept ${join(tmpdir(), file)}`)
  else unlinkSync(join(tmpdir(), file))
}
const per = (n) => Math.round(n / Number(measured)).toLocaleString('en-US')
console.log(`${id}: ${per(main)} instructions per handshake on the main thread (${per(all)} with V8's helper threads); ${failed} failed`)
