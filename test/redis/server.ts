import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'

/** Debian's redis-server; CI installs it with `apt-get install redis-server` (see .ci/run). */
export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server'

interface Teardown { teardown (fn: () => unknown): void }

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
}

/**
 * Runs `"$@"` under a guard shell that ends it when the guard's stdin closes: when `stop()`
 * closes it, and also when this process dies without cleaning up (a test killed by its
 * timeout), since the pipe then closes too. The guard prints the command's pid first.
 */
const GUARD = '"$@" & pid=$!; echo "guarded-pid $pid"; read _; kill -CONT $pid 2>/dev/null; kill -TERM $pid 2>/dev/null; wait $pid'

/**
 * Starts a real redis-server on a free loopback port, without persistence, and stops it at
 * teardown (or when this process dies, whatever kills it). Throws, naming the apt package, when
 * the binary is missing: a test that needs Redis must fail, not pass silently.
 */
export async function startRedis (t: Teardown, binary = REDIS_SERVER): Promise<RedisServer> {
  if (!existsSync(binary)) {
    throw new Error(`redis-server not found at ${binary}: these tests need a real Redis. ` +
      'Install Debian\'s package with `apt-get install redis-server` (.ci/run does), or set REDIS_SERVER to its path.')
  }
  const port = await freePort()
  let guard: ChildProcess | undefined
  let pid = 0

  const start = async () => {
    const proc = guard = spawn('sh', ['-c', GUARD, 'guard', binary, '--port', String(port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', tmpdir()], { stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    let signalReady = () => {}
    const ready = new Promise<void>(resolve => { signalReady = resolve })
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000)
      const guarded = /guarded-pid (\d+)/.exec(output)
      if (guarded !== null) pid = Number(guarded[1])
      if (pid !== 0 && output.includes('Ready to accept connections')) signalReady()
    }
    proc.stdout!.on('data', collect)
    proc.stderr!.on('data', collect)
    const exited = once(proc, 'exit').then(([code]) => { throw new Error(`redis-server exited with ${String(code)} at start:\n${output}`) })
    exited.catch(() => {})
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`redis-server on port ${port} not ready within 10 s:\n${output}`)), 10_000)
    })
    try {
      await Promise.race([ready, exited, late])
    } finally {
      clearTimeout(timer)
    }
    if (!await ping(port)) throw new Error(`redis-server on port ${port} does not answer PING:\n${output}`)
  }
  const stop = async () => {
    const proc = guard
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = once(proc, 'exit')
    proc.stdin!.end()
    const timer = setTimeout(() => signal(pid, 'SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
  }

  await start()
  t.teardown(stop)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    restart: start,
    pause: () => signal(pid, 'SIGSTOP'),
    resume: () => signal(pid, 'SIGCONT')
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
 * A TCP proxy in front of Redis, to cut one instance off the way a killed process is: every
 * connection drops at once and new ones are refused, with no goodbye to Redis.
 */
export interface RedisProxy {
  /** `redis://127.0.0.1:<proxy port>` */
  readonly url: string
  /** Destroys every connection through the proxy and stops accepting new ones. */
  cut (): Promise<void>
  /** Accepts connections again, on the same port. */
  restore (): Promise<void>
}

export async function redisProxy (t: Teardown, target: RedisServer): Promise<RedisProxy> {
  const sockets = new Set<Socket>()
  const server: Server = createServer(client => {
    const upstream = tcpConnect(target.port, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {})
    }
    client.pipe(upstream).pipe(client)
    client.on('close', () => upstream.destroy())
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
  t.teardown(cut)
  return { url: `redis://127.0.0.1:${port}`, cut, restore }
}
