import type { FastifyRequest } from 'fastify'
import type { CloseCodeTable } from '../protocol/close-codes.ts'
import type { Outcome } from './authenticate.ts'
import { loadPromClient, Metrics, type GaugeSource } from './metrics.ts'
import type { Config } from './options.ts'
import { loadOtelApi, Traces, type Span } from './traces.ts'
import type { RefusalPhase, TokenSource, UserId } from '../types.ts'

/*
 * What metrics and traces see of sessions, in one place. The host has an observer only when the
 * `metrics` option is on or spans can be made; without one, a handshake pays one `null` check.
 */

/** The plugin's version, for the tracer (`fastify-ws-auth`, this version). */
const VERSION = '0.1.1'

type Failure = Extract<Outcome, { ok: false }>

/** What the observer reads of a session. */
export interface Observed {
  readonly request: FastifyRequest
  readonly policy: { readonly url: string }
  readonly userId: UserId | undefined
  /** Where its token came from. */
  readonly source: TokenSource | undefined
}

/** A handshake under watch. */
interface Watch {
  /** `performance.now()` at the upgrade request. */
  start: number
  span: Span | undefined
}

/** Loads the optional peers the options ask for; `null` when neither metrics nor spans are on. */
export async function buildObserver (config: Config, gauges: GaugeSource): Promise<Observer | null> {
  let metrics: Metrics | null = null
  let traces: Traces | null = null
  if (config.metrics !== null) {
    const prom = await loadPromClient()
    metrics = new Metrics(prom, config.metrics.registry ?? prom.register, config.metrics.prefix, gauges, config.adapter !== null)
  }
  if (config.traces.mode !== 'off') {
    const api = await loadOtelApi(config.traces.mode === 'on')
    if (api !== undefined) traces = new Traces(api, VERSION, config.traces.userId)
  }
  return metrics === null && traces === null ? null : new Observer(metrics, traces, config.table)
}

export class Observer {
  private readonly watches = new WeakMap<FastifyRequest, Watch>()
  private readonly refreshSpans = new WeakMap<Observed, Span>()

  constructor (readonly metrics: Metrics | null, readonly traces: Traces | null, private readonly table: CloseCodeTable) {}

  /** The route guard saw an upgrade request: its handshake starts now. */
  watch (request: FastifyRequest): void {
    const span = this.traces?.start('ws.auth.handshake', request)
    // Spans on but nothing recording, metrics off: nothing to watch.
    if (span === undefined && this.metrics === null) return
    this.watches.set(request, { start: performance.now(), span })
  }

  established (session: Observed): void {
    this.handshakeEnded(session.request, session.policy.url, 'established', undefined, session.userId, session.source)
  }

  /** A handshake refused (its token from `source`), or the refresh of an open `refreshing` session. */
  failed (request: FastifyRequest, route: string, outcome: Failure, source: TokenSource | undefined, refreshing: Observed | undefined): void {
    const code = this.table[outcome.failure].code
    if (refreshing !== undefined) this.refreshEnded(refreshing, outcome.failure, code)
    else this.handshakeEnded(request, route, outcome.failure, code, outcome.userId, source)
  }

  /** An in-band refresh's checks start. */
  refreshing (session: Observed): void {
    const span = this.traces?.start('ws.auth.refresh', session.request)
    if (span !== undefined) this.refreshSpans.set(session, span)
  }

  refreshed (session: Observed): void {
    this.refreshEnded(session, 'refreshed')
  }

  refused (route: string, phase: RefusalPhase, code: number): void {
    this.metrics?.refusedAfterDoor(route, phase, code)
  }

  /** The socket closed with `code`; a client that left before any answer ends its handshake's span. */
  gone (session: Observed, code: number): void {
    this.metrics?.closed(session.policy.url, code)
    // No close code on the span: `abandoned` is no refusal (the client's own code is in closes_total).
    this.handshakeEnded(session.request, session.policy.url, 'abandoned', undefined, undefined, session.source, false)
  }

  /** Counts (unless `counted` is false) and ends the watch of a handshake, once. */
  private handshakeEnded (request: FastifyRequest, route: string, outcome: string, code: number | undefined, userId: UserId | undefined, source: TokenSource | undefined, counted = true): void {
    const watch = this.watches.get(request)
    if (watch === undefined) return
    this.watches.delete(request)
    if (counted) this.metrics?.handshake(route, outcome, (performance.now() - watch.start) / 1000)
    if (watch.span !== undefined) this.traces!.end(watch.span, { route, outcome, code, source, userId })
  }

  private refreshEnded (session: Observed, outcome: string, code?: number): void {
    this.metrics?.refresh(outcome)
    const span = this.refreshSpans.get(session)
    if (span === undefined) return
    this.refreshSpans.delete(session)
    this.traces!.end(span, { route: session.policy.url, outcome, code, source: 'message', userId: session.userId })
  }
}
