// One bench server in its own process. The harness talks to it over the IPC channel; the server
// answers with its own CPU time, memory and connection count, so the figures are server-side.
//   env BENCH_SERVER = {"kind":"fastify-ws",...}  (see bench/variants.mjs)
// Messages in: {id, cmd: 'mark' | 'stats' | 'mem' | 'profile' | 'snapshot' | 'exit'}, or a command of the
// server's own (`running.commands`, e.g. topics.mjs's `publish`); out: {id, ...} and once
// {type: 'ready'} (or {type: 'error'} when the server cannot start).
import { createHook } from 'node:async_hooks'
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { writeHeapSnapshot } from 'node:v8'
import { setTimeout as sleep } from 'node:timers/promises'

const config = JSON.parse(process.env.BENCH_SERVER)
const MAX_LIFETIME_MS = Number(process.env.BENCH_MAX_LIFETIME_MS) || 30 * 60_000
let open = 0
let drained = null
let mark = { cpu: process.cpuUsage(), at: performance.now() }
let profiler = null

// Bounded: stop when the harness goes away, and in any case after the longest possible run.
process.on('disconnect', () => process.exit(0))
setTimeout(() => process.exit(2), MAX_LIFETIME_MS).unref()

// Live timers, unref'd ones included (getActiveResourcesInfo() leaves those out). Only in the
// memory rounds: async hooks slow every promise down.
const timers = new Set()
if (process.env.BENCH_TRACK_TIMERS === '1') {
  createHook({
    init (id, type) { if (type === 'Timeout') timers.add(id) },
    destroy (id) { timers.delete(id) }
  }).enable()
}

/** Resolves once every connection has closed, or after `timeoutMs`. */
function drain (timeoutMs) {
  if (open === 0) return
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      drained = null
      resolve()
    }
    const timer = setTimeout(done, timeoutMs)
    drained = () => { if (open === 0) done() }
  })
}

/**
 * Collects garbage as V8 does when memory runs short ("last resort": repeated full collections,
 * compaction, the young generation shrunk and freed pages returned), so that RSS counts what the
 * connections hold, not how far the heap grew while they were opened.
 */
async function collect () {
  for (let i = 0; i < 2; i++) {
    global.gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' })
    await sleep(50)
  }
}

const commands = {
  mark () {
    mark = { cpu: process.cpuUsage(), at: performance.now() }
    return { open }
  },
  async stats ({ drainMs = 0 }) {
    await drain(drainMs)
    const cpu = process.cpuUsage(mark.cpu)
    return { cpuUs: cpu.user + cpu.system, elapsedMs: performance.now() - mark.at, open }
  },
  async mem () {
    await collect()
    const m = process.memoryUsage()
    return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, open, timers: timers.size }
  },
  /** Writes a heap snapshot (after GC) to `file`. */
  async snapshot ({ file }) {
    await collect()
    return { file: writeHeapSnapshot(file) }
  },
  /** Samples this process's CPU between `start` and `stop` (written to `file`): the measured rounds only. */
  async profile ({ action, file }) {
    if (action === 'start') {
      profiler = new Session()
      profiler.connect()
      await profiler.post('Profiler.enable')
      await profiler.post('Profiler.setSamplingInterval', { interval: 100 })
      await profiler.post('Profiler.start')
      return {}
    }
    const { profile } = await profiler.post('Profiler.stop')
    profiler.disconnect()
    profiler = null
    writeFileSync(file, JSON.stringify(profile))
    return { file }
  },
  async exit ({ closeMs = 2000 }, running) {
    await Promise.race([running.close(), sleep(closeMs)])
    process.exit(0)
  }
}

async function main () {
  let running
  try {
    const { start } = await import(`./${config.kind}.mjs`)
    running = await start(config)
  } catch (err) {
    process.send({ type: 'error', message: `${config.kind}: ${err.message}` }, () => process.exit(1))
    return
  }
  running.server.on('connection', (socket) => {
    open++
    socket.once('close', () => {
      open--
      drained?.()
    })
  })
  process.on('message', async (msg) => {
    const command = commands[msg.cmd] ?? running.commands?.[msg.cmd]
    const reply = command ? await command(msg, running) : { error: `unknown command ${msg.cmd}` }
    process.send({ id: msg.id, ...reply })
  })
  process.send({ type: 'ready', port: running.server.address().port })
}

main()
