import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'

/** Debian's redis-server; CI installs it with `apt-get install redis-server` (see .ci/run). */
export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server'

interface Teardown { teardown (fn: () => unknown): void }

/** How long a wait on a server's output or on the proxy lasts before it fails (the test kit's WAIT_MS). */
const WAIT_MS = Number(process.env.TEST_WAIT_MS ?? 20_000)

export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** Stops the server (SIGTERM) and waits for its exit; its data is gone (no persistence). */
  stop (): Promise<void>
  /** Starts it again on the same port and waits until it answers PING. */
  restart (): Promise<void>
  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered. */
  pause (): void
  /** Lets a frozen server go on (SIGCONT). */
  resume (): void
  /** Kills the server (SIGKILL) the way a crash does: no goodbye to clients or replicas. */
  kill (): void
  /** Resolves once the server's output (since its last start) contains `text`; rejects after WAIT_MS. */
  output (text: string): Promise<void>
}

/**
 * Runs `"$@"` under a guard shell that ends it when the guard's stdin closes: when `stop()`
 * closes it, and also when this process dies without cleaning up (a test killed by its
 * timeout), since the pipe then closes too. The guard prints the command's pid first.
 */
const GUARD = '"$@" & pid=$!; echo "guarded-pid $pid"; read _; kill -CONT $pid 2>/dev/null; kill -TERM $pid 2>/dev/null; wait $pid'

/** A redis-server process (plain or Sentinel) run under GUARD. */
export interface Guarded {
  readonly pid: number
  /** Ends it through the guard (SIGTERM; SIGKILL after 3 s) and waits for the guard's exit. */
  stop (): Promise<void>
  /** Resolves once its output contains `text`; rejects after WAIT_MS. */
  output (text: string): Promise<void>
}

/**
 * Starts `binary args` under GUARD and resolves once its output shows `readyText` and it answers
 * PING on `port`; rejects with its output when it exits first or is not ready within 10 s.
 */
export async function spawnGuarded (binary: string, args: string[], port: number, readyText: string): Promise<Guarded> {
  if (!existsSync(binary)) {
    throw new Error(`redis-server not found at ${binary}: these tests need a real Redis. ` +
      'Install Debian\'s package with `apt-get install redis-server` (.ci/run does), or set REDIS_SERVER to its path.')
  }
  const proc = spawn('sh', ['-c', GUARD, 'guard', binary, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  // Kept whole (a server logs a few kB in a test), so that a wait never misses a line.
  let output = ''
  let pid = 0
  const watchers = new Set<() => void>()
  const collect = (chunk: Buffer) => {
    output += chunk.toString()
    const guarded = /guarded-pid (\d+)/.exec(output)
    if (pid === 0 && guarded !== null) pid = Number(guarded[1])
    for (const w of [...watchers]) w()
  }
  proc.stdout!.on('data', collect)
  proc.stderr!.on('data', collect)
  const outputOf = (text: string, expire = WAIT_MS) => new Promise<void>((resolve, reject) => {
    const watcher = () => {
      if (pid === 0 || !output.includes(text)) return
      watchers.delete(watcher)
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      watchers.delete(watcher)
      reject(new Error(`${binary} on port ${port}: ${JSON.stringify(text)} not in its output within ${expire} ms:\n${output.slice(-4000)}`))
    }, expire)
    timer.unref()
    watchers.add(watcher)
    watcher()
  })
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    const gone = once(proc, 'exit')
    proc.stdin!.end()
    const timer = setTimeout(() => signal(pid, 'SIGKILL'), 3000)
    await gone
    clearTimeout(timer)
  }
  const exited = once(proc, 'exit').then(([code]) => { throw new Error(`${binary} exited with ${String(code)} at start:\n${output.slice(-4000)}`) })
  exited.catch(() => {})
  try {
    await Promise.race([outputOf(readyText, 10_000), exited])
    if (!await ping(port)) throw new Error(`${binary} on port ${port} does not answer PING:\n${output.slice(-4000)}`)
  } catch (err) {
    await stop()
    throw err
  }
  return { pid, stop, output: (text) => outputOf(text) }
}

/**
 * Starts a real redis-server on a free loopback port, without persistence, with keyspace
 * notifications on (tests await a key's change instead of polling it), and stops it at
 * teardown (or when this process dies, whatever kills it). Throws, naming the apt package, when
 * the binary is missing: a test that needs Redis must fail, not pass silently. `args` come after
 * the defaults (a later `--dir` wins; `--replicaof 127.0.0.1 <port>` makes a replica).
 */
export async function startRedis (t: Teardown, binary = REDIS_SERVER, args: string[] = []): Promise<RedisServer> {
  const port = await freePort()
  let server: Guarded | undefined
  const start = async () => {
    server = await spawnGuarded(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', tmpdir(), '--notify-keyspace-events', 'KA', ...args], port, 'Ready to accept connections')
  }
  const stop = async () => { await server?.stop() }
  await start()
  t.teardown(stop)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    restart: start,
    pause: () => signal(server!.pid, 'SIGSTOP'),
    resume: () => signal(server!.pid, 'SIGCONT'),
    kill: () => signal(server!.pid, 'SIGKILL'),
    output: (text) => server!.output(text)
  }
}

/** Signals the redis-server this module started (by its pid); one already gone is ignored. */
function signal (pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch {
    // Already exited.
  }
}

/** A loopback port nobody listens on right now. */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** Whether the server on this port answers PING (within a second). */
function ping (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const socket = tcpConnect(port, '127.0.0.1', () => socket.write('PING\r\n'))
    socket.setTimeout(1000, () => socket.destroy())
    socket.once('data', (data) => {
      socket.destroy()
      resolve(data.toString().startsWith('+PONG'))
    })
    socket.once('error', () => resolve(false))
    socket.once('close', () => resolve(false))
  })
}

/**
 * A TCP proxy in front of Redis, to fault one instance's connections alone: `cut()` drops them the
 * way a killed process does (no goodbye to Redis), `hold()` swallows what they send the way a
 * frozen network does (connections stay open, nothing is answered). It also keeps what the
 * clients sent, so that a test can count the commands an instance made and await one.
 */
export interface RedisProxy {
  /** `redis://127.0.0.1:<proxy port>` */
  readonly url: string
  /** Destroys every connection through the proxy and stops accepting new ones. */
  cut (): Promise<void>
  /** Accepts connections again, on the same port. */
  restore (): Promise<void>
  /**
   * From now on, nothing passes either way: what the clients send and what Redis answers is kept
   * back, in order (to Redis the clients look frozen, and Redis to them). With `from`, only from
   * the moment the clients send that text (the chunk that completes it included): a command
   * caught on its way, the ones before it answered.
   */
  hold (from?: string): void
  /** Passes on what was kept back, both ways, and everything after. */
  release (): void
  /** Everything the clients sent through the proxy so far, held or passed on, as latin1 text. */
  sent (): string
  /** How many times `text` occurs in `sent()`. */
  count (text: string): number
  /** Resolves once `text` occurs `times` times in what the clients sent; rejects after WAIT_MS. */
  waitForSent (text: string, times?: number): Promise<void>
  /** Client connections open through the proxy now. */
  readonly connections: number
  /** Resolves once exactly `n` client connections are open; rejects after WAIT_MS. */
  waitForConnections (n: number): Promise<void>
}

export async function redisProxy (t: Teardown, target: Pick<RedisServer, 'port'>): Promise<RedisProxy> {
  const sockets = new Set<Socket>()
  const clients = new Set<Socket>()
  let log = ''
  let holding = false
  /** Text whose arrival starts holding, and where in `log` to look for it. */
  let holdFrom: { text: string, at: number } | undefined
  const kept: Array<[Socket, Buffer]> = []
  /** Checks run after every byte sent and every connection closed; each removes itself when met. */
  const watchers = new Set<() => void>()
  const changed = () => { for (const w of [...watchers]) w() }
  const server: Server = createServer(client => {
    const upstream = tcpConnect(target.port, '127.0.0.1')
    clients.add(client)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {})
    }
    client.on('data', (chunk: Buffer) => {
      log += chunk.toString('latin1')
      if (holdFrom !== undefined && log.includes(holdFrom.text, holdFrom.at)) {
        holding = true
        holdFrom = undefined
      }
      if (holding) kept.push([upstream, chunk])
      else upstream.write(chunk)
      changed()
    })
    upstream.on('data', (chunk: Buffer) => {
      if (holding) kept.push([client, chunk])
      else client.write(chunk)
    })
    client.on('close', () => {
      clients.delete(client)
      upstream.destroy()
      changed()
    })
    upstream.on('close', () => client.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  const cut = async () => {
    if (!server.listening) return
    const closed = once(server, 'close')
    server.close()
    for (const s of sockets) s.destroy()
    await closed
  }
  const restore = async () => {
    if (server.listening) return
    server.listen(port, '127.0.0.1')
    await once(server, 'listening')
  }
  const count = (text: string) => log.split(text).length - 1
  const until = (what: string, met: () => boolean) => new Promise<void>((resolve, reject) => {
    const watcher = () => {
      if (!met()) return
      watchers.delete(watcher)
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      watchers.delete(watcher)
      reject(new Error(`proxy: ${what} not seen within ${WAIT_MS} ms (${clients.size} connection(s), ${log.length} bytes sent)`))
    }, WAIT_MS)
    timer.unref()
    watchers.add(watcher)
    watcher()
  })
  t.teardown(cut)
  return {
    url: `redis://127.0.0.1:${port}`,
    cut,
    restore,
    hold: (from) => {
      if (from === undefined) holding = true
      else holdFrom = { text: from, at: log.length }
    },
    release: () => {
      holding = false
      holdFrom = undefined
      for (const [socket, chunk] of kept.splice(0)) if (!socket.destroyed) socket.write(chunk)
    },
    sent: () => log,
    count,
    waitForSent: (text, times = 1) => until(`${JSON.stringify(text.slice(0, 40))} x${times}`, () => count(text) >= times),
    get connections () { return clients.size },
    waitForConnections: (n) => until(`${n} connection(s)`, () => clients.size === n)
  }
}
