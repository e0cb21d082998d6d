// The load generator, in its own process (pinned by the harness to the other core). It takes
// commands over IPC, one at a time, each bounded in count and in time:
//   handshakes {target, client, n, concurrency, timeoutMs} -> {ok, errors, firstError, wallMs, p50, p99}
//   open       {target, client, n, concurrency, timeoutMs} -> {ok, errors, firstError, wallMs}  (held)
//   echo       {durationMs, depth}                        -> {messages, counted, wallMs, unanswered}
//   arm        {match}                                    -> {armed}  (count frames on held connections holding `match`)
//   received   {n, timeoutMs}                             -> {count, timedOut, lastUs}  (once n counted since `arm`;
//                                                            lastUs: process.hrtime of the last one, µs)
//   release    {timeoutMs}                                -> {open}
//   exit
import { LeanConn, prepareLean, SioConn, WsConn } from './lib/clients.mjs'
import { percentile } from './lib/stats.mjs'

const MAX_LIFETIME_MS = Number(process.env.BENCH_MAX_LIFETIME_MS) || 30 * 60_000
process.on('disconnect', () => process.exit(0))
setTimeout(() => process.exit(2), MAX_LIFETIME_MS).unref()

let live = 0 // connections whose socket has not closed yet
let liveChanged = null
let held = []

function factory (target, client) {
  if (client === 'ws') return (i, onReady) => new WsConn(target, i, onReady)
  if (client === 'sio') return (i, onReady) => new SioConn(target, i, onReady)
  const prep = prepareLean(target)
  return (i, onReady) => new LeanConn(prep, i, onReady)
}

/**
 * Runs `n` handshakes with `concurrency` in flight. `keep` decides what happens to a connection
 * once its handshake is done: held open, or closed at once.
 */
function handshakes ({ target, client, n, concurrency, timeoutMs }, keep) {
  const create = factory(target, client)
  const latencies = new Float64Array(n)
  let started = 0
  let done = 0
  let ok = 0
  let errors = 0
  let firstError = null
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(`timed out after ${done}/${n}`), timeoutMs)
    function finish (why = null) {
      clearTimeout(timer)
      const wallMs = performance.now() - t0
      const cpu = process.cpuUsage(cpu0)
      const sorted = latencies.subarray(0, ok).sort()
      resolve({
        ok, errors, firstError: firstError ?? why, timedOut: why !== null, wallMs, clientCpuUs: cpu.user + cpu.system, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99)
      })
    }
    function next () {
      if (started >= n) return
      const i = started++
      live++
      const conn = create(i, (err, ms) => {
        if (err) {
          errors++
          firstError ??= err.message
        } else {
          latencies[ok++] = ms
          keep(conn)
        }
        if (++done === n) return finish()
        next()
      })
      conn.onClose = () => {
        live--
        liveChanged?.()
      }
    }
    for (let k = 0; k < Math.min(concurrency, n); k++) next()
  })
}

/** Resolves with `live` once at most `count` connections are still open, or after `timeoutMs`. */
function waitLive (count, timeoutMs) {
  if (live <= count) return live
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      liveChanged = null
      resolve(live)
    }
    const timer = setTimeout(done, timeoutMs)
    liveChanged = () => { if (live <= count) done() }
  })
}

/**
 * Echo on the held connections for `durationMs`, `depth` messages in flight per connection: with
 * one, client and server fall into lockstep (each idle while the other works) and the figure
 * measures that, not the server.
 */
function echo ({ durationMs, depth = 4 }) {
  const conns = held
  let messages = 0
  let counted = 0
  let stopping = false
  let waiting = conns.length * depth
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  return new Promise((resolve) => {
    let wallMs = durationMs
    let clientCpuUs = 0
    const finish = () => {
      clearTimeout(safety)
      resolve({ messages, counted, wallMs, clientCpuUs, unanswered: waiting })
    }
    const safety = setTimeout(finish, durationMs + 3000)
    setTimeout(() => {
      stopping = true
      counted = messages
      wallMs = performance.now() - t0
      const cpu = process.cpuUsage(cpu0)
      clientCpuUs = cpu.user + cpu.system
    }, durationMs)
    for (const conn of conns) {
      conn.onMessage = () => {
        messages++
        if (!stopping) return conn.sendEcho()
        if (--waiting === 0) finish()
      }
      for (let i = 0; i < depth; i++) conn.sendEcho()
    }
    if (conns.length === 0) finish()
  })
}

/** Frames counted on the held connections since `arm` (the publish row), and who waits for them. */
let tally = { count: 0, match: null, wanted: Infinity, reached: null, last: 0n }

function arm ({ match }) {
  tally = { count: 0, match: Buffer.from(match), wanted: Infinity, reached: null, last: 0n }
  const onMessage = (payload) => {
    if (payload.indexOf(tally.match) === -1) return
    // The machine's monotonic clock (CLOCK_MONOTONIC), which the server processes read too.
    tally.last = process.hrtime.bigint()
    if (++tally.count >= tally.wanted) tally.reached?.()
  }
  for (const conn of held) conn.onMessage = onMessage
  return { armed: held.length }
}

function received ({ n, timeoutMs }) {
  const lastUs = () => Number(tally.last / 1000n)
  if (tally.count >= n) return { count: tally.count, timedOut: false, lastUs: lastUs() }
  return new Promise((resolve) => {
    const done = (timedOut) => {
      clearTimeout(timer)
      tally.reached = null
      tally.wanted = Infinity
      resolve({ count: tally.count, timedOut, lastUs: lastUs() })
    }
    const timer = setTimeout(() => done(true), timeoutMs)
    tally.wanted = n
    tally.reached = () => done(false)
  })
}

const commands = {
  async handshakes (msg) {
    const result = await handshakes(msg, (conn) => conn.close())
    await waitLive(held.length, 3000)
    return result
  },
  async open (msg) {
    return handshakes(msg, (conn) => held.push(conn))
  },
  echo,
  arm,
  received,
  async release ({ timeoutMs = 5000 }) {
    for (const conn of held) conn.close()
    held = []
    return { open: await waitLive(0, timeoutMs) }
  },
  exit () {
    process.exit(0)
  }
}

process.on('message', async (msg) => {
  const command = commands[msg.cmd]
  const reply = command ? await command(msg) : { error: `unknown command ${msg.cmd}` }
  process.send({ id: msg.id, ...reply })
})
process.send({ type: 'ready' })
