import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort, REDIS_SERVER, spawnGuarded, startRedis, type RedisServer } from './server.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** How long a wait on the group lasts before it fails (the test kit's WAIT_MS). */
const WAIT_MS = Number(process.env.TEST_WAIT_MS ?? 20_000)

/** A primary, one replica and three Sentinels on loopback (quorum 2), stopped at teardown. */
export interface SentinelGroup {
  /** The master name the Sentinels monitor. */
  readonly name: string
  /** The Sentinels' addresses, as ioredis's `sentinels` option takes them. */
  readonly sentinels: Array<{ host: string, port: number }>
  readonly primary: RedisServer
  readonly replica: RedisServer
  /**
   * Resolves at the first `+switch-master` any Sentinel publishes (a replica promoted, and the
   * Sentinels answering with its address), with the new primary's port and the
   * `performance.now()` of the message; rejects after WAIT_MS.
   */
  promoted (): Promise<{ port: number, at: number }>
}

/**
 * How fast the Sentinels act: a primary unanswered for 1 s is down for each of them, two agreeing
 * make it objectively down, and one of them then promotes the replica. `failover-timeout` is the
 * smallest that keeps a retry from racing a failover still under way on a loaded machine.
 */
function sentinelConfig (port: number, dir: string, name: string, primaryPort: number): string {
  return [
    `port ${port}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 2`,
    `sentinel down-after-milliseconds ${name} 1000`,
    `sentinel failover-timeout ${name} 5000`,
    ''
  ].join('\n')
}

/**
 * Starts the group under the guard of server.ts (every process dies with the test, even a test
 * killed by its timeout), in a temporary directory removed at teardown, and resolves once every
 * Sentinel knows the replica and the two other Sentinels: a failover can then happen. Each
 * Sentinel rewrites its own config file there, as it does in production.
 */
export async function startSentinelGroup (t: Teardown, name = 'mymaster'): Promise<SentinelGroup> {
  const dir = await mkdtemp(join(tmpdir(), 'ws-auth-sentinel-'))
  const stops: Array<() => unknown> = []
  t.teardown(async () => {
    for (const stop of stops.reverse()) await stop()
    await rm(dir, { recursive: true, force: true })
  })
  const group = { teardown: (fn: () => unknown) => { stops.push(fn) } }
  // No 5 s wait for more replicas before a full sync (the default `repl-diskless-sync-delay`).
  const files = (role: string) => ['--dir', dir, '--dbfilename', `${role}.rdb`, '--repl-diskless-sync-delay', '0']
  const primary = await startRedis(group, REDIS_SERVER, files('primary'))
  const replica = await startRedis(group, REDIS_SERVER, [...files('replica'), '--replicaof', '127.0.0.1', String(primary.port)])
  // Synced before the Sentinels start: their first INFO of the primary then names the replica.
  await replica.output('MASTER <-> REPLICA sync: Finished with success')

  const ports = await Promise.all([freePort(), freePort(), freePort()])
  await Promise.all(ports.map(async (port, i) => {
    const conf = join(dir, `sentinel-${i}.conf`)
    await writeFile(conf, sentinelConfig(port, dir, name, primary.port))
    const sentinel = await spawnGuarded(REDIS_SERVER, [conf, '--sentinel'], port, 'Sentinel ID is')
    stops.push(sentinel.stop)
  }))

  const switches: Array<{ port: number, at: number }> = []
  const changed = new Set<() => void>()
  const clients = ports.map(port => {
    const events = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 })
    const commands = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 })
    for (const c of [events, commands]) c.on('error', () => {})
    events.on('message', (channel: string, message: string) => {
      // "<name> <old ip> <old port> <new ip> <new port>"
      const [master, , , , newPort] = message.split(' ')
      if (channel === '+switch-master' && master === name) switches.push({ port: Number(newPort), at: performance.now() })
      for (const c of [...changed]) c()
    })
    return { events, commands }
  })
  stops.push(() => { for (const c of clients) for (const r of [c.events, c.commands]) r.disconnect() })
  await Promise.all(clients.map(c => c.events.subscribe('+sentinel', '+slave', '+switch-master')))

  /** Resolves once `met()` holds: checked now and again after each Sentinel event; rejects after WAIT_MS. */
  const until = (what: string, met: () => Promise<boolean> | boolean) => new Promise<void>((resolve, reject) => {
    let checking = false
    let again = false
    const settle = (err?: unknown) => {
      changed.delete(check)
      clearTimeout(timer)
      if (err === undefined) resolve()
      else reject(err)
    }
    const check = (): void => {
      if (checking) {
        again = true
        return
      }
      checking = true
      again = false
      Promise.resolve(met()).then(ok => {
        checking = false
        if (ok) settle()
        else if (again) check()
      }, settle)
    }
    const timer = setTimeout(() => settle(new Error(`Sentinel group: ${what} not within ${WAIT_MS} ms`)), WAIT_MS)
    timer.unref()
    changed.add(check)
    check()
  })
  // Checked again at each `+sentinel` and `+slave` event (discovery goes by hello messages, every 2 s).
  await until('three Sentinels aware of each other and of the replica', async () => {
    const views = await Promise.all(clients.map(async c => fields(await c.commands.call('SENTINEL', 'MASTER', name))))
    return views.every(v => Number(v['num-other-sentinels']) === 2 && Number(v['num-slaves']) === 1)
  })

  return {
    name,
    sentinels: ports.map(port => ({ host: '127.0.0.1', port })),
    primary,
    replica,
    promoted: async () => {
      await until('+switch-master', () => switches.length > 0)
      return switches[0]
    }
  }
}

/** A flat `[field, value, ...]` reply as an object. */
function fields (reply: unknown): Record<string, string> {
  const list = reply as string[]
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < list.length; i += 2) out[list[i]] = list[i + 1]
  return out
}
