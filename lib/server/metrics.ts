import { InvalidOptionError } from '../errors.ts'
import type { MetricsRegistry } from '../types.ts'

/*
 * Prometheus metrics through prom-client, an optional peer loaded at registration only when the
 * `metrics` option asks for it. Counters and the histogram are updated where things happen, with
 * label objects made once per route; gauges are read from the registry when Prometheus scrapes.
 * Several plugin instances on one registry (sibling scopes, apps in one process) share the
 * metrics: counters add up, gauges sum every instance's figures.
 */

/** Seconds: 0.1 ms to 5 s, for a handshake (a cached-key HS256 one is ~0.1 ms; a JWKS fetch or a slow `loadUser`, seconds). */
const HANDSHAKE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
/** Seconds, for one Redis round trip or fan-out of the adapter. */
const CLUSTER_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** Marks the metrics this plugin made, with the instances whose figures their gauges sum. */
const kSources = Symbol.for('fastify-ws-auth.metric-sources')

type Labels = Record<string, string | number>

interface CounterLike { inc (labels?: Labels | number, value?: number): void }
interface HistogramLike { observe (labels: Labels | number, value?: number): void }
interface GaugeLike { set (labels: Labels | number, value?: number): void, reset (): void }
interface MetricConfig { name: string, help: string, labelNames?: readonly string[], buckets?: readonly number[], registers: MetricsRegistry[], collect?: (this: GaugeLike) => void }
/** The part of prom-client the plugin uses. */
export interface PromClient {
  register: MetricsRegistry
  Counter: new (config: MetricConfig) => CounterLike
  Gauge: new (config: MetricConfig) => GaugeLike
  Histogram: new (config: MetricConfig) => HistogramLike
}

/** What the gauges read from one plugin instance at scrape time. */
export interface GaugeSource {
  /** Open (authenticated) sessions, by route pattern. */
  sessionsByRoute (): Map<string, number>
  authenticating (): number
  revocations (): number
  subscriptions (): number
  /** `1`/`0` with a cluster adapter that can tell, else `undefined` (no sample). */
  clusterUp (): number | undefined
}

type Shared<T> = T & { [kSources]?: Set<GaugeSource> }

/** Loads prom-client; a missing package is a startup error naming the option. */
export async function loadPromClient (): Promise<PromClient> {
  try {
    const loaded = await import('prom-client') as unknown as PromClient & { default?: PromClient }
    return loaded.default ?? loaded
  /* c8 ignore start: prom-client is installed wherever the suite runs (a devDependency); the
     missing-peer answer is checked against the built package in test/package.test.ts */
  } catch (cause) {
    throw new InvalidOptionError('metrics', 'needs prom-client (npm i prom-client): it could not be loaded', { cause })
  }
  /* c8 ignore stop */
}

/** One plugin instance's metrics. */
export class Metrics {
  private readonly handshakes: CounterLike
  private readonly handshakeSeconds: HistogramLike
  private readonly closes: CounterLike
  private readonly refreshes: CounterLike
  private readonly limitRefusals: CounterLike
  private readonly refused: CounterLike
  private readonly clusterSeconds: HistogramLike | undefined
  private readonly fanoutTimeouts: CounterLike | undefined
  private readonly gauges: Array<Shared<GaugeLike>>
  /** `{ route }` label objects, made once per route. */
  private readonly routeLabels = new Map<string, Labels>()
  private readonly outcomeLabels = new Map<string, Labels>()

  /** `clustered`: the plugin has a cluster adapter (the `cluster_*` metrics exist only then). */
  constructor (prom: PromClient, readonly registry: MetricsRegistry, readonly prefix: string, private readonly source: GaugeSource, clustered: boolean) {
    const make = <T>(kind: 'Counter' | 'Gauge' | 'Histogram', name: string, help: string, labelNames: readonly string[], extra: Partial<MetricConfig> = {}): Shared<T> =>
      this.metric<T>(prom, kind, { name: prefix + name, help, labelNames, registers: [registry], ...extra })
    this.handshakes = make('Counter', 'handshakes_total', 'WebSocket handshakes of protected routes, by route pattern and outcome (established, or the failure class)', ['route', 'outcome'])
    this.handshakeSeconds = make('Histogram', 'handshake_duration_seconds', 'From the upgrade request to connection_established or the refusal, by route pattern', ['route'], { buckets: HANDSHAKE_BUCKETS })
    this.closes = make('Counter', 'closes_total', 'Closes of protected sockets, by route pattern and close code', ['route', 'code'])
    this.refreshes = make('Counter', 'refreshes_total', 'In-band token refreshes, by outcome (refreshed, or the failure class)', ['outcome'])
    this.limitRefusals = make('Counter', 'limit_refusals_total', 'Handshakes refused over maxConnectionsPerUser', [])
    this.refused = make('Counter', 'refused_total', 'Messages and subscriptions refused after the door, by route pattern, phase and code', ['route', 'phase', 'code'])
    this.gauges = [
      make('Gauge', 'sessions', 'Open, authenticated sessions, by route pattern', ['route'], { collect () { sumByRoute(this, s => s.sessionsByRoute()) } }),
      make('Gauge', 'authenticating', 'Handshakes under way (checks running, or waiting for the auth message)', [], { collect () { sum(this, s => s.authenticating()) } }),
      make('Gauge', 'revocations', 'Revocations held (tokens and users refused until their expiry)', [], { collect () { sum(this, s => s.revocations()) } }),
      make('Gauge', 'subscriptions', 'Topic subscriptions held by open sockets', [], { collect () { sum(this, s => s.subscriptions()) } })
    ]
    if (clustered) {
      this.clusterSeconds = make('Histogram', 'cluster_request_seconds', 'Requests of the cluster adapter to its store, by op (acquire: a connection slot; fanout: a registry call answered by every instance; ticket)', ['op'], { buckets: CLUSTER_BUCKETS })
      this.fanoutTimeouts = make('Counter', 'cluster_fanout_timeouts_total', 'Fan-outs that ended at requestTimeout without the answer of every instance', [])
      this.gauges.push(make('Gauge', 'cluster_up', '1 while the cluster adapter reaches its store, 0 while it does not', [], { collect () { sum(this, s => s.clusterUp()) } }))
    }
    for (const gauge of this.gauges) gauge[kSources]!.add(source)
  }

  /** A handshake ended: established, or refused with `outcome` (a failure class). */
  handshake (route: string, outcome: string, seconds: number | undefined): void {
    this.handshakes.inc(this.labelsOf(route, outcome))
    if (seconds !== undefined) this.handshakeSeconds.observe(this.routeOf(route), seconds)
    if (outcome === 'too_many_connections') this.limitRefusals.inc()
  }

  closed (route: string, code: number): void {
    this.closes.inc({ route, code })
  }

  refresh (outcome: string): void {
    this.refreshes.inc({ outcome })
  }

  refusedAfterDoor (route: string, phase: string, code: number): void {
    this.refused.inc({ route, phase, code })
  }

  clusterRequest (op: string, seconds: number): void {
    this.clusterSeconds?.observe({ op }, seconds)
  }

  fanoutTimedOut (): void {
    this.fanoutTimeouts?.inc()
  }

  /** This instance's figures leave the gauges (the app closed); counters keep what they counted. */
  close (): void {
    for (const gauge of this.gauges) gauge[kSources]!.delete(this.source)
  }

  private routeOf (route: string): Labels {
    let labels = this.routeLabels.get(route)
    if (labels === undefined) this.routeLabels.set(route, labels = { route })
    return labels
  }

  private labelsOf (route: string, outcome: string): Labels {
    const key = outcome + ' ' + route
    let labels = this.outcomeLabels.get(key)
    if (labels === undefined) this.outcomeLabels.set(key, labels = { route, outcome })
    return labels
  }

  /** A metric of this plugin already on the registry (another instance made it), or a new one. */
  private metric<T> (prom: PromClient, kind: 'Counter' | 'Gauge' | 'Histogram', config: MetricConfig): Shared<T> {
    const existing = this.registry.getSingleMetric(config.name) as Shared<T> | undefined
    if (existing !== undefined) {
      if (existing[kSources] === undefined) {
        throw new InvalidOptionError('metrics.prefix', `makes the metric name ${config.name}, which another metric of this registry has: choose another prefix`)
      }
      return existing
    }
    const made = new prom[kind](config) as unknown as Shared<T>
    made[kSources] = new Set()
    return made
  }
}

function sum (gauge: Shared<GaugeLike>, read: (source: GaugeSource) => number | undefined): void {
  let total: number | undefined
  for (const source of gauge[kSources]!) {
    const value = read(source)
    if (value !== undefined) total = (total ?? 0) + value
  }
  gauge.reset()
  if (total !== undefined) gauge.set(total)
}

function sumByRoute (gauge: Shared<GaugeLike>, read: (source: GaugeSource) => Map<string, number>): void {
  const totals = new Map<string, number>()
  for (const source of gauge[kSources]!) {
    for (const [route, n] of read(source)) totals.set(route, (totals.get(route) ?? 0) + n)
  }
  gauge.reset()
  for (const [route, n] of totals) gauge.set({ route }, n)
}
