// Instructions per handshake (or, with `echo`, per message echoed on established connections) of
// one bench server under valgrind's callgrind: user-space work of its threads (JS, V8, GC,
// OpenSSL, libuv; not the kernel), counted after a warm-up so that the JIT has settled.
// With `functions`, the server also writes V8's perf map (`--perf-basic-prof`), through which the
// JIT'd code callgrind only knows by address is named by JS function. With `simulate`, callgrind
// also simulates the caches and branch predictor: instructions are not all equal, and a handshake
// that runs through more distinct code misses the instruction cache more.
// A ticket route (issue 18) is given fresh tickets before the warm-up and again before counting
// starts, so that issuing them is not counted (bench/lib/tickets.mjs).
import { spawn, execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { LeanConn, prepareLean } from './clients.mjs'
import { needsTickets, roundTarget } from './tickets.mjs'
import { jwtSecret, tokenPool } from './tokens.mjs'

const CONCURRENCY = 20
const ECHO_CONNS = 50
const ECHO_IN_FLIGHT = 4 // per connection, as in the bench's echo rounds
const SERVER = join(import.meta.dirname, '..', 'servers', 'server.mjs')
const ROOT = join(import.meta.dirname, '..', '..') + sep

/**
 * Counts one server's instructions over `measured` handshakes after `warm` of them (with `echo`,
 * messages echoed on ECHO_CONNS connections opened first).
 * Resolves with `{ main, all, failed, files, functions, events }`, all per handshake (per message
 * with `echo`): instructions of the event-loop thread and of all threads, failed handshakes, the
 * callgrind files kept (with `keep`), (with `functions`) a Map from function name to the main
 * thread's instructions, and (with `simulate`) the main thread's simulated events (`I1mr`: instruction-cache
 * misses, `D1mr`/`D1mw`: data-cache read/write misses, `Bcm`/`Bim`: mispredicted conditional and
 * indirect branches; see valgrind's callgrind manual).
 */
export async function countInstructions (variant, keys, { warm = 4000, measured = 2000, echo = false, functions = false, simulate = false, keep = false } = {}) {
  const prefix = join(tmpdir(), `fastify-ws-auth-callgrind.${process.pid}.${variant.id}`)
  const child = spawn('valgrind', [
    '--tool=callgrind', ...(simulate ? ['--cache-sim=yes', '--branch-sim=yes'] : []), '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${prefix}`,
    process.execPath, ...(functions ? ['--perf-basic-prof'] : []), SERVER
  ], {
    stdio: ['ignore', 'inherit', 'ignore', 'ipc'],
    env: { ...process.env, BENCH_SERVER: JSON.stringify({ ...variant, secret: variant.alg ? jwtSecret(variant.alg, keys) : null }) }
  })
  const { exited, request, ready } = serverChannel(child)
  const perfMap = join(tmpdir(), `perf-${child.pid}.map`)
  try {
    const port = await ready
    const tokens = variant.auth === 'none' || needsTickets(variant) ? [] : tokenPool(variant.alg, keys, 100)
    const base = { ...variant, path: '/ws', port, tokens }
    /** The lean client's requests for `n` connections: fresh tickets for a ticket route, issued now. */
    const prepare = async (n) => prepareLean((await roundTarget(variant, base, n, request)).target)
    const conns = echo ? await open(await prepare(ECHO_CONNS), ECHO_CONNS) : undefined
    const run = async (count) => conns === undefined ? handshakes(await prepare(count), count) : echoes(conns, count)
    let failed = await run(warm)
    const counted = conns === undefined ? await prepare(measured) : undefined
    execFileSync('callgrind_control', ['--instr=on', String(child.pid)], { stdio: 'ignore' })
    failed += await (counted === undefined ? echoes(conns, measured) : handshakes(counted, measured))
    execFileSync('callgrind_control', ['--dump', String(child.pid)], { stdio: 'ignore' })
    child.kill('SIGKILL')
    await exited

    const dir = tmpdir()
    const files = readdirSync(dir).map((f) => join(dir, f)).filter((f) => f.startsWith(prefix + '.'))
    let all = 0
    let main = {}
    const mainFile = files.find((f) => f.endsWith('-01')) // thread 1: the event loop
    for (const file of files) {
      const counts = eventCounts(readFileSync(file, 'utf8'))
      all += counts.Ir ?? 0
      if (file === mainFile) main = counts
    }
    const perUnit = Object.fromEntries(Object.entries(main).map(([name, n]) => [name, n / measured]))
    const byFunction = functions && mainFile !== undefined ? perFunction(mainFile, perfMap, measured) : undefined
    if (!keep) for (const file of files) rmSync(file)
    return {
      main: perUnit.Ir ?? 0,
      all: all / measured,
      failed,
      files: keep ? files : [],
      functions: byFunction,
      events: simulate ? perUnit : undefined
    }
  } finally {
    child.kill('SIGKILL')
    rmSync(perfMap, { force: true })
    rmSync(prefix, { force: true })
  }
}

/**
 * The IPC side of a bench server running under valgrind: `ready` resolves with its port (rejects
 * if it fails or exits first), `request` sends a command and resolves with the answer of that id.
 */
export function serverChannel (child) {
  const exited = new Promise((resolve) => child.on('exit', resolve))
  const waiting = new Map()
  let nextId = 1
  const request = (cmd, fields = {}) => new Promise((resolve) => {
    const id = nextId++
    waiting.set(id, (m) => {
      waiting.delete(id)
      resolve(m)
    })
    child.send({ id, cmd, ...fields })
  })
  const ready = new Promise((resolve, reject) => {
    child.on('message', (m) => {
      if (m.type === 'ready') resolve(m.port)
      if (m.type === 'error') reject(new Error(m.message))
      if (m.id !== undefined) waiting.get(m.id)?.(m)
    })
    exited.then((code) => reject(new Error(`valgrind exited with ${code}`)))
  })
  return { exited, request, ready }
}

/** A callgrind file's totals by event name (`Ir`, and with simulation `I1mr`, `Bcm`...). */
export function eventCounts (text) {
  const names = /^events: (.+)$/m.exec(text)?.[1].trim().split(/\s+/) ?? []
  const totals = /^(?:summary|totals): (.+)$/m.exec(text)?.[1].trim().split(/\s+/).map(Number) ?? []
  return Object.fromEntries(names.map((name, i) => [name, totals[i] ?? 0]))
}

/** `count` handshakes, CONCURRENCY in flight; resolves with the number that failed. */
function handshakes (prep, count) {
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

/** `count` connections, established; rejects if one fails. */
function open (prep, count) {
  return Promise.all(Array.from({ length: count }, (_, i) => new Promise((resolve, reject) => {
    const conn = new LeanConn(prep, i, (err) => err ? reject(err) : resolve(conn))
  })))
}

/** `count` messages echoed, ECHO_IN_FLIGHT in flight on each connection; resolves with 0 failed. */
function echoes (conns, count) {
  return new Promise((resolve) => {
    let sent = 0
    let received = 0
    const send = (conn) => {
      if (sent >= count) return
      sent++
      conn.sendEcho()
    }
    for (const conn of conns) {
      conn.onMessage = () => {
        if (++received === count) resolve(0)
        else send(conn)
      }
    }
    for (let i = 0; i < ECHO_IN_FLIGHT; i++) for (const conn of conns) send(conn)
  })
}

/**
 * A callgrind file's instructions by function, per handshake (or message). Native functions keep the name
 * callgrind gives them (shortened); code at an address without a symbol is looked up in V8's
 * perf map (start, size, name per line) and named `JS <function> <file>:<line>`.
 */
function perFunction (file, perfMap, measured) {
  const ranges = readPerfMap(perfMap)
  const starts = ranges.map((r) => r.start)
  const out = execFileSync('callgrind_annotate', ['--threshold=100', file], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
  const totals = new Map()
  for (const line of out.split('\n')) {
    const m = /^\s*([\d,]+)\s+\([^)]*\)\s+(.+)$/.exec(line)
    if (m === null || m[2].includes('PROGRAM TOTALS')) continue
    const ir = Number(m[1].replaceAll(',', ''))
    const name = functionName(m[2], ranges, starts)
    totals.set(name, (totals.get(name) ?? 0) + ir / measured)
  }
  return totals
}

function functionName (raw, ranges, starts) {
  const address = /^\?\?\?:0x([0-9a-f]+)/.exec(raw)
  if (address === null) {
    return raw.replace(/\s*\[[^\]]*\]$/, '').replace(/^\?\?\?:/, '').replace(/^.*\/malloc\.c:/, '').replace(/\(.*$/, '').slice(0, 100)
  }
  const at = Number.parseInt(address[1], 16)
  const i = lastAtOrBelow(starts, at)
  const range = i >= 0 ? ranges[i] : undefined
  if (range === undefined || at >= range.start + range.size) return '(JIT code without a name)'
  return range.name.replace(/^JS:[*~^+]?/, 'JS ').replace('file://', '').replaceAll(ROOT, '').replace(/:\d+$/, '')
}

/** V8's perf map as ranges sorted by start address; empty when the file is missing. */
function readPerfMap (file) {
  let text
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  const ranges = []
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.+)$/.exec(line)
    if (m !== null) ranges.push({ start: Number.parseInt(m[1], 16), size: Number.parseInt(m[2], 16), name: m[3] })
  }
  return ranges.sort((a, b) => a.start - b.start)
}

/** Index of the last element of sorted `values` that is ≤ `x`, or -1. */
function lastAtOrBelow (values, x) {
  let lo = 0
  let hi = values.length - 1
  let found = -1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (values[mid] <= x) {
      found = mid
      lo = mid + 1
    } else {
      hi = mid - 1
    }
  }
  return found
}
