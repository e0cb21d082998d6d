// A real Prometheus for the tests: Debian's /usr/bin/prometheus (apt-get install prometheus;
// .ci/run installs it), on a free loopback port, with its config and its TSDB in a temporary
// directory, stopped and removed at teardown, and also when the test process dies (a guard shell).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../redis/server.ts'
import { WAIT_MS } from './index.ts'

/** Debian's prometheus (2.42 tested); `PROMETHEUS` overrides the path. */
export const PROMETHEUS = process.env.PROMETHEUS ?? '/usr/bin/prometheus'

interface Teardown { teardown (fn: () => unknown): void }

/** Why the Prometheus tests cannot run here, or `undefined` when the binary is there. */
export function prometheusMissing (binary = PROMETHEUS): string | undefined {
  try {
    accessSync(binary, constants.X_OK)
    return undefined
  } catch {
    return `no prometheus at ${binary}: install the Debian package "prometheus" (apt-get install prometheus; .ci/run does it in CI), or set PROMETHEUS to its path`
  }
}

export interface ScrapeTarget {
  /** The `job` label of the target's series. */
  job: string
  /** `host:port` */
  address: string
  /** @default '/metrics' */
  path?: string
}

export interface PrometheusOptions {
  /** Scraped every second. */
  targets: ScrapeTarget[]
  /** The text of a rule file (alerting or recording rules), evaluated every second. */
  rules?: string
}

/** One sample of an instant vector: its labels and its value. */
export interface Sample {
  labels: Record<string, string>
  value: number
}

/** A loaded rule, as `/api/v1/rules` shows it. */
export interface Rule {
  name: string
  type: 'alerting' | 'recording'
  /** `ok`, `err` (with `lastError`), or `unknown` before its first evaluation. */
  health: string
  lastError?: string
}

export interface Prometheus {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** The `data` of a GET `/api/v1/<path>`; rejects with Prometheus's error when it answers one. */
  api (path: string): Promise<unknown>
  /** An instant query's samples; rejects when the query is wrong (with Prometheus's error). */
  query (promql: string): Promise<Sample[]>
  /**
   * Resolves with the samples of `promql` once `test` holds of them. Prometheus tells no one when
   * a scrape has landed, so this asks its API every 250 ms; rejects after `expire` ms (WAIT_MS)
   * with the last answer.
   */
  until (promql: string, test: (samples: Sample[]) => boolean, expire?: number): Promise<Sample[]>
  /** Resolves once every scrape target is up; rejects after `expire` ms with each target's last error. */
  targetsUp (expire?: number): Promise<void>
  /** Every rule loaded, once each has been evaluated at least once (its health known); rejects after `expire` ms. */
  rules (expire?: number): Promise<Rule[]>
  /** Stops Prometheus (SIGTERM, then SIGKILL after 10 s) and waits for its exit. */
  stop (): Promise<void>
}

/**
 * Runs `"$@"` under a guard shell that ends it when the guard's stdin closes: when `stop()`
 * closes it, and also when this process dies without cleaning up (a test killed by its timeout),
 * since the pipe closes then too. The guard prints the command's pid first, removes the
 * directory `$1` once the command has ended, and exits with the command's status when the command
 * ends by itself (a port taken, a config refused), so that a failed start is seen at once.
 * (test/redis/server.ts guards redis-server the same way.)
 */
const GUARD = 'dir=$1; shift; exec 3<&0; "$@" 3<&- & pid=$!; echo "guarded-pid $pid"; ' +
  '{ read _ <&3; kill -TERM $pid 2>/dev/null; } & watcher=$!; ' +
  'wait $pid; code=$?; kill $watcher 2>/dev/null; rm -rf -- "$dir"; exit $code'

/** How long a stopping Prometheus gets to flush its TSDB before it is killed. */
const STOP_GRACE_MS = 10_000

/** How often `until` and the start ask Prometheus again. */
const POLL_MS = 250

/**
 * Starts a real Prometheus that scrapes `targets` every second, waits until its `/-/ready`
 * answers, and stops it (and removes its directory) at teardown, whether the test passed or not.
 */
export async function startPrometheus (t: Teardown, opts: PrometheusOptions, binary = PROMETHEUS): Promise<Prometheus> {
  const missing = prometheusMissing(binary)
  if (missing !== undefined) throw new Error(missing)
  const config: Record<string, unknown> = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    scrape_configs: opts.targets.map(target => ({
      job_name: target.job,
      metrics_path: target.path ?? '/metrics',
      static_configs: [{ targets: [target.address] }]
    }))
  }
  /** A fresh directory with the config (and the rules) for one start; the guard removes it. */
  const prepare = (): string => {
    const made = mkdtempSync(join(tmpdir(), 'ws-auth-prometheus-'))
    if (opts.rules !== undefined) writeFileSync(join(made, 'rules.yml'), opts.rules)
    const rules = opts.rules === undefined ? {} : { rule_files: [join(made, 'rules.yml')] }
    // YAML is a superset of JSON: no YAML writer needed.
    writeFileSync(join(made, 'prometheus.yml'), JSON.stringify({ ...config, ...rules }, null, 2))
    return made
  }

  let guard: ChildProcess | undefined
  let dir: string | undefined
  let pid = 0
  let output = ''
  const stop = async (): Promise<void> => {
    const proc = guard
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = once(proc, 'exit')
    proc.stdin!.end()
    const timer = setTimeout(() => { kill(pid); kill(proc.pid) }, STOP_GRACE_MS)
    await exited
    clearTimeout(timer)
  }
  t.teardown(async () => {
    await stop()
    // The guard removed it, unless it was killed first.
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  // freePort's port may be taken by someone else before Prometheus binds it: then try another.
  for (let attempt = 1; ; attempt++) {
    const url = `http://127.0.0.1:${await freePort()}`
    output = ''
    pid = 0
    dir = prepare()
    const proc = guard = spawn('sh', ['-c', GUARD, 'guard', dir, binary,
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${url.slice('http://'.length)}`], { stdio: ['pipe', 'pipe', 'pipe'] })
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-8000)
      const guarded = /guarded-pid (\d+)/.exec(output)
      if (pid === 0 && guarded !== null) pid = Number(guarded[1])
    }
    proc.stdout!.on('data', collect)
    proc.stderr!.on('data', collect)
    const exited = once(proc, 'exit').then(([code]) => code as number | null)
    const ready = poll(`prometheus at ${url}: /-/ready`, WAIT_MS, async () => {
      const res = await get(url + '/-/ready')
      await res.arrayBuffer()
      return res.status === 200 ? true : undefined
    })
    const outcome = await Promise.race([ready.then(() => 'ready' as const, (error: Error) => error), exited])
    ready.cancel()
    if (outcome === 'ready') return client(url, stop)
    if (outcome instanceof Error) throw new Error(`${outcome.message}; its output:\n${output}`)
    if (attempt < 3 && output.includes('address already in use')) continue
    throw new Error(`prometheus exited with ${String(outcome)} at start:\n${output}`)
  }
}

function client (url: string, stop: () => Promise<void>): Prometheus {
  const api = async (path: string): Promise<unknown> => {
    const res = await get(`${url}/api/v1/${path}`)
    const body = await res.json() as { status: string, data?: unknown, errorType?: string, error?: string }
    if (body.status !== 'success') throw new Error(`prometheus: ${path}: ${body.errorType ?? res.status}: ${body.error ?? ''}`)
    return body.data
  }
  const query = async (promql: string): Promise<Sample[]> => {
    const data = await api(`query?query=${encodeURIComponent(promql)}`) as { resultType: string, result: Array<{ metric: Record<string, string>, value: [number, string] }> }
    if (data.resultType !== 'vector') throw new Error(`prometheus: ${promql}: a ${data.resultType}, not an instant vector`)
    return data.result.map(r => ({ labels: r.metric, value: Number(r.value[1]) }))
  }
  return {
    url,
    api,
    query,
    async until (promql, test, expire = WAIT_MS) {
      let last: Sample[] | undefined
      return poll(`${promql}: not as expected`, expire, async () => {
        last = await query(promql)
        return test(last) ? last : undefined
      }, () => JSON.stringify(last))
    },
    async targetsUp (expire = WAIT_MS) {
      type Target = { scrapeUrl: string, health: string, lastError: string }
      let targets: Target[] = []
      await poll('scrape targets: not all up', expire, async () => {
        targets = (await api('targets') as { activeTargets: Target[] }).activeTargets
        return targets.length > 0 && targets.every(x => x.health === 'up') ? true : undefined
      }, () => JSON.stringify(targets.map(x => `${x.scrapeUrl}: ${x.health} ${x.lastError}`)))
    },
    async rules (expire = WAIT_MS) {
      let rules: Rule[] = []
      return poll('rules: not all evaluated', expire, async () => {
        rules = (await api('rules') as { groups: Array<{ rules: Rule[] }> }).groups.flatMap(g => g.rules)
        return rules.length > 0 && rules.every(r => r.health !== 'unknown') ? rules.map(({ name, type, health, lastError }) => ({ name, type, health, ...(lastError ? { lastError } : {}) })) : undefined
      }, () => JSON.stringify(rules.map(r => `${r.name}: ${r.health}`)))
    },
    stop
  }
}

/** A promise of polling that `cancel()` ends early (it then never settles). */
type Polling<T> = Promise<T> & { cancel (): void }

/**
 * Resolves with `check()`'s first answer other than `undefined`, asking every POLL_MS; rejects
 * after `expire` ms with `what`, `last()` (what was seen last) and the last error. A request that
 * fails (Prometheus not listening yet) counts as `undefined`.
 */
function poll<T> (what: string, expire: number, check: () => Promise<T | undefined>, last?: () => string): Polling<T> {
  let cancelled = false
  let lastError: string | undefined
  const deadline = Date.now() + expire
  const run = async (): Promise<T> => {
    for (;;) {
      try {
        const value = await check()
        if (value !== undefined) return value
      } catch (error) {
        lastError = (error as Error).message
      }
      if (cancelled) return new Promise<T>(() => {})
      if (Date.now() > deadline) {
        const seen = [last === undefined ? undefined : `last: ${last()}`, lastError === undefined ? undefined : `last error: ${lastError}`]
        throw new Error(`${what}, after ${expire} ms (${seen.filter(Boolean).join('; ') || 'no answer'})`)
      }
      await new Promise(resolve => setTimeout(resolve, POLL_MS))
    }
  }
  return Object.assign(run(), { cancel: () => { cancelled = true } })
}

/** A GET with a bound of its own, so that a Prometheus that hangs fails the wait instead of stalling it. */
function get (url: string): Promise<Response> {
  return fetch(url, { signal: AbortSignal.timeout(5000) })
}

/** Signals a process this module started (by its pid); one already gone is ignored. */
function kill (pid: number | undefined): void {
  if (pid === undefined || pid === 0) return
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // Already exited.
  }
}

/** `{ [label value]: sample value }` of `samples`, by `label`: e.g. `sum by (outcome) (...)` as an object. */
export function byLabel (samples: Sample[], label: string): Record<string, number> {
  return Object.fromEntries(samples.map(s => [s.labels[label], s.value]))
}

/** The code of every fenced block of `lang` (` ```promql `, ` ```yaml `) in a Markdown text, in order. */
export function fencedBlocks (markdown: string, lang: string): string[] {
  return [...markdown.matchAll(new RegExp('^```' + lang + '[ \\t]*\\n([\\s\\S]*?)^```[ \\t]*$', 'gm'))].map(m => m[1])
}
