import type { FastifyRequest } from 'fastify'
import { InvalidOptionError } from '../errors.ts'
import type { TokenSource, UserId } from '../types.ts'

/*
 * OpenTelemetry spans through `@opentelemetry/api`, an optional peer: `ws.auth.handshake` for
 * each handshake (a child of the request's span when there is one, e.g. from @fastify/otel) and
 * `ws.auth.refresh` for each in-band refresh. Without a registered tracer provider the API hands
 * out non-recording spans, which are dropped at once. No token, no ip; the user id only when the
 * app opts in (`traces: { userId: true }`).
 */

/** The part of an OpenTelemetry span the plugin uses. */
export interface Span {
  setAttribute (key: string, value: string | number): unknown
  setStatus (status: { code: number }): unknown
  end (): void
  isRecording (): boolean
}

/** The part of `@opentelemetry/api` the plugin uses (declared here: the package is an optional peer). */
interface Api {
  trace: { getTracer (name: string, version?: string): Tracer }
  context: { active (): unknown }
  SpanKind: { SERVER: number }
  SpanStatusCode: { ERROR: number }
}

interface Tracer {
  startSpan (name: string, options: { kind: number }, context: unknown): Span
}

/** What a span's end reports. */
export interface SpanEnd {
  route: string
  /** `established` / `refreshed`, or the failure class. */
  outcome: string
  /** The close code of a refusal. */
  code?: number
  source?: TokenSource
  userId?: UserId
}

const TRACER = 'fastify-ws-auth'

/**
 * Loads `@opentelemetry/api`: `undefined` (no traces) when it is not installed, unless the app
 * asked for traces in so many words, which is then a startup error naming the option.
 */
export async function loadOtelApi (required: boolean): Promise<Api | undefined> {
  try {
    const loaded = await import('@opentelemetry/api') as unknown as Api & { default?: Api }
    return loaded.trace === undefined ? loaded.default : loaded
  /* c8 ignore start: @opentelemetry/api is installed wherever the suite runs (a devDependency); the
     missing-peer answers are checked against the built package in test/package.test.ts */
  } catch (cause) {
    if (required) throw new InvalidOptionError('traces', 'needs @opentelemetry/api (npm i @opentelemetry/api): it could not be loaded', { cause })
    return undefined
  }
  /* c8 ignore stop */
}

/** One plugin instance's spans. */
export class Traces {
  private readonly tracer: Tracer

  constructor (private readonly api: Api, version: string, private readonly userId: boolean) {
    this.tracer = api.trace.getTracer(TRACER, version)
  }

  /** A recording span named `name`, child of the request's span (or of the active one); `undefined` when nothing records. */
  start (name: string, request: FastifyRequest): Span | undefined {
    const span = this.tracer.startSpan(name, { kind: this.api.SpanKind.SERVER }, this.parentOf(request))
    if (span.isRecording()) return span
    span.end()
    return undefined
  }

  end (span: Span, end: SpanEnd): void {
    span.setAttribute('ws.auth.route', end.route)
    span.setAttribute('ws.auth.outcome', end.outcome)
    if (end.code !== undefined) span.setAttribute('ws.auth.close_code', end.code)
    if (end.source !== undefined) span.setAttribute('ws.auth.source', end.source)
    if (this.userId && end.userId !== undefined) span.setAttribute('enduser.id', String(end.userId))
    if (end.outcome === 'internal_error') span.setStatus({ code: this.api.SpanStatusCode.ERROR })
    span.end()
  }

  /** @fastify/otel's request context when it instruments the request, else the active context. */
  private parentOf (request: FastifyRequest): unknown {
    const otel = (request as FastifyRequest & { opentelemetry?: () => { context?: unknown } }).opentelemetry
    return (typeof otel === 'function' ? otel.call(request).context : undefined) ?? this.api.context.active()
  }
}
