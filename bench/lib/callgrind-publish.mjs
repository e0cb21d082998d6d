// Instructions per publish of issue 17's publish row (bench/lib/publish.mjs) under valgrind's
// callgrind: the topics server (bench/servers/topics.mjs) holds `subscribers` sockets, each
// subscribed through the plugin and through the old hand-written hub; after a warm-up, each round
// zeroes the counters, publishes `publishes` times through one side, waits until the clients
// (in this process, outside valgrind) hold every frame, and dumps; the two sides alternate. The
// main thread's instructions of each dump, divided by the publishes, are that side's figure.
import { spawn, execFileSync } from 'node:child_process'
import { readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eventCounts, serverChannel } from './callgrind.mjs'
import { LeanConn, prepareLean } from './clients.mjs'
import { TOPICS_SERVER } from './publish.mjs'
import { jwtSecret, tokenPool } from './tokens.mjs'

const SERVER = join(import.meta.dirname, '..', 'servers', 'server.mjs')
const MATCH = Buffer.from('"type":"publication"')
const CONCURRENCY = 50

/**
 * Resolves with `{ plugin: [per round], hand: [per round] }`: main-thread instructions per
 * publish (and per subscriber reached, `perSend`) of each side in each round.
 */
export async function countPublishInstructions (keys, { subscribers = 10_000, publishes = 3, rounds = 3, warm = 5 } = {}) {
  const prefix = join(tmpdir(), `fastify-ws-auth-callgrind.${process.pid}.publish`)
  const child = spawn('valgrind', [
    '--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${prefix}`, process.execPath, SERVER
  ], {
    stdio: ['ignore', 'inherit', 'ignore', 'ipc'],
    env: { ...process.env, BENCH_SERVER: JSON.stringify({ ...TOPICS_SERVER, secret: jwtSecret('HS256', keys) }) }
  })
  const { exited, request, ready } = serverChannel(child)
  const conns = []
  try {
    const port = await ready
    const prep = prepareLean({ ...TOPICS_SERVER, path: '/ws', port, tokens: tokenPool('HS256', keys, 100) })
    conns.push(...await openAll(prep, subscribers))
    let counted = 0
    let wanted = Infinity
    let reached = null
    for (const conn of conns) {
      conn.onMessage = (payload) => {
        if (payload.indexOf(MATCH) !== -1 && ++counted >= wanted) reached()
      }
    }
    /** Publishes `count` times through `via`; resolves once the clients hold every frame. */
    const publish = async (via, count) => {
      counted = 0
      wanted = count * subscribers
      const all = new Promise((resolve) => { reached = resolve })
      await request('publish', { via, count })
      await all
    }
    for (let i = 0; i < warm; i++) for (const via of ['plugin', 'hand']) await publish(via, publishes)
    const control = (...args) => execFileSync('callgrind_control', [...args, String(child.pid)], { stdio: 'ignore' })
    control('--instr=on')
    const dumps = []
    for (let r = 0; r < rounds; r++) {
      for (const via of r % 2 === 0 ? ['plugin', 'hand'] : ['hand', 'plugin']) {
        control('--zero')
        await publish(via, publishes)
        control('--dump')
        dumps.push(via)
      }
    }
    child.kill('SIGKILL')
    await exited
    const result = { plugin: [], hand: [] }
    dumps.forEach((via, i) => {
      const ir = eventCounts(readFileSync(`${prefix}.${i + 1}-01`, 'utf8')).Ir ?? 0
      result[via].push({ perPublish: ir / publishes, perSend: ir / publishes / subscribers })
    })
    return result
  } finally {
    for (const conn of conns) conn.socket.destroy()
    child.kill('SIGKILL')
    const dir = tmpdir()
    for (const f of readdirSync(dir)) if (join(dir, f).startsWith(prefix)) rmSync(join(dir, f), { force: true })
  }
}

/** `count` established connections, CONCURRENCY at a time; rejects if one fails. */
function openAll (prep, count) {
  return new Promise((resolve, reject) => {
    const conns = []
    let started = 0
    const next = () => {
      if (started >= count) return
      const conn = new LeanConn(prep, started++, (err) => {
        if (err) return reject(err)
        conns.push(conn)
        if (conns.length === count) resolve(conns)
        else next()
      })
    }
    for (let i = 0; i < CONCURRENCY; i++) next()
  })
}
