// The redis-server processes of the Redis benches (bench/redis.mjs, bench/cluster.mjs): one Redis,
// or a Redis Cluster of primaries, each on a free loopback port and each under a guard shell that
// ends it when the harness stops it or dies without cleaning up. Debian's /usr/bin/redis-server
// and redis-cli, or REDIS_SERVER / REDIS_CLI.
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { canPin, processCpuUs } from './proc.mjs'

const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server'
const REDIS_CLI = process.env.REDIS_CLI ?? '/usr/bin/redis-cli'
const run = promisify(execFile)

/**
 * Runs `"$@"` under a guard shell that ends it when the guard's stdin closes: at `stop()`, and
 * also when this process dies without cleaning up. The guard prints the command's pid first.
 */
const GUARD = '"$@" & pid=$!; echo "guarded-pid $pid"; read _; kill -TERM $pid 2>/dev/null; wait $pid'

/** A free TCP port on 127.0.0.1 (free when asked: the caller binds it at once). */
export async function freePort () {
  const probe = createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address()
  probe.close()
  await once(probe, 'close')
  return port
}

function redisArgs (port, dir) {
  return [REDIS_SERVER, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]
}

/** Starts one guarded redis-server with `args` (pinned to `cpu` when given); resolves once it accepts connections. */
async function guarded (args, cpu, what) {
  if (!existsSync(REDIS_SERVER)) throw new Error(`redis-server not found at ${REDIS_SERVER}: apt-get install redis-server (or set REDIS_SERVER)`)
  const command = canPin && cpu !== undefined ? ['taskset', '-c', String(cpu), ...args] : args
  const guard = spawn('sh', ['-c', GUARD, 'guard', ...command], { stdio: ['pipe', 'pipe', 'inherit'] })
  let pid = 0
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not ready within 10 s`)), 10_000)
    let out = ''
    guard.stdout.on('data', (chunk) => {
      out += chunk
      pid ||= Number(/guarded-pid (\d+)/.exec(out)?.[1] ?? 0)
      if (pid !== 0 && out.includes('Ready to accept connections')) {
        clearTimeout(timer)
        guard.stdout.resume()
        resolve()
      }
    })
    guard.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited with ${code}`)) })
  })
  return {
    /** utime + stime of the redis-server, in µs. */
    cpuUs: () => processCpuUs(pid),
    async stop () {
      if (guard.exitCode !== null || guard.signalCode !== null) return
      const exited = once(guard, 'exit')
      guard.stdin.end()
      await exited
    }
  }
}

/** One redis-server on a free loopback port: `{ port, url, cpuUs(), stop() }`. */
export async function startRedis ({ cpu } = {}) {
  const port = await freePort()
  const server = await guarded(redisArgs(port, tmpdir()), cpu, 'redis-server')
  return { port, url: `redis://127.0.0.1:${port}`, cpuUs: () => server.cpuUs(), stop: () => server.stop() }
}

/**
 * A Redis Cluster of `primaries` redis-servers (no replicas) on free loopback ports, each with an
 * explicit cluster bus port and its nodes file in a temporary directory; the slots are spread by
 * `redis-cli --cluster create` and the cluster is ready once every node says `cluster_state:ok`.
 * Resolves with `{ nodes: [{ host, port }], cpuUs() (all nodes), stop() }`.
 */
export async function startRedisCluster ({ primaries = 3, cpu } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-cluster-'))
  const servers = []
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const nodes = []
    for (let i = 0; i < primaries; i++) {
      const port = await freePort()
      const bus = await freePort()
      const args = [...redisArgs(port, dir), '--cluster-enabled', 'yes', '--cluster-port', String(bus),
        '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '5000']
      servers.push(await guarded(args, cpu, `redis-server (cluster node ${port})`))
      nodes.push({ host: '127.0.0.1', port })
    }
    await run(REDIS_CLI, ['--cluster', 'create', ...nodes.map((n) => `${n.host}:${n.port}`), '--cluster-yes'], { timeout: 20_000 })
    await clusterOk(nodes)
    return { nodes, cpuUs: () => servers.reduce((sum, s) => sum + s.cpuUs(), 0), stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/** Waits (up to 20 s) until every node reports `cluster_state:ok` and knows every other. */
async function clusterOk (nodes) {
  const deadline = Date.now() + 20_000
  for (;;) {
    const infos = await Promise.all(nodes.map((n) => run(REDIS_CLI, ['-h', n.host, '-p', String(n.port), 'CLUSTER', 'INFO'], { timeout: 5000 }).then((r) => r.stdout)))
    if (infos.every((info) => info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${nodes.length}`))) return
    if (Date.now() > deadline) throw new Error('Redis Cluster not ok within 20 s')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** `redis-server --version`'s version number. */
export async function redisVersion () {
  const { stdout } = await run(REDIS_SERVER, ['--version'])
  return /v=(\S+)/.exec(stdout)?.[1] ?? stdout.trim()
}
