import type { FastifyRequest } from 'fastify'
import { pinoSerializers } from './internals.ts'

/** What stands in a log line where a token was. */
export const REDACTED = '[REDACTED]'

/**
 * Replaces the value of every query parameter whose decoded name is one of `params` (the token's
 * and the ticket's) with `[REDACTED]`. Names are decoded first because Fastify's query parser
 * decodes them too (`%74oken=` is `token=`).
 */
export function redactUrl (url: string, params: Iterable<string>): string {
  const q = url.indexOf('?')
  if (q === -1) return url
  const parts = url.slice(q + 1).split('&')
  let changed = false
  for (let i = 0; i < parts.length; i++) {
    const eq = parts[i].indexOf('=')
    const name = eq === -1 ? parts[i] : parts[i].slice(0, eq)
    if (includes(params, safeDecode(name))) {
      parts[i] = name + '=' + REDACTED
      changed = true
    }
  }
  return changed ? url.slice(0, q + 1) + parts.join('&') : url
}

function includes (params: Iterable<string>, name: string): boolean {
  for (const param of params) if (param === name) return true
  return false
}

function safeDecode (text: string): string {
  if (!text.includes('%') && !text.includes('+')) return text
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '))
  } catch {
    return text
  }
}

/**
 * A `req` log serializer with the shape of Fastify's default one and the token and ticket query
 * parameters redacted. Set as a route-level `logSerializers.req` on protected routes, so that Fastify's own
 * `incoming request` line (written before any hook runs) carries no token.
 */
export function buildReqSerializer (params: readonly string[]) {
  return function serializeRequest (req: FastifyRequest) {
    return {
      method: req.method,
      url: redactUrl(req.url, params),
      version: req.headers?.['accept-version'],
      host: req.host,
      remoteAddress: req.ip,
      remotePort: req.socket?.remotePort
    }
  }
}

const kRedacted = Symbol.for('fastify-ws-auth.redacted-params')

/**
 * Makes the app's pino logger write every request's URL with the token and ticket parameters redacted, by
 * wrapping its `req` serializer (Fastify's default one, or the app's own). Fastify writes
 * `incoming request` before any hook and for every request, 404s included, so only the logger can
 * clean that line. Returns `false` when the logger is not pino (a custom `loggerInstance`).
 */
export function redactRequestLogs (log: object, params: readonly string[]): boolean {
  const serializers = pinoSerializers(log) as Record<string, unknown> & { [kRedacted]?: Set<string> } | undefined
  if (serializers === undefined) return false
  const known = serializers[kRedacted]
  if (known !== undefined) {
    for (const param of params) known.add(param)
    return true
  }
  const redacted = new Set(params)
  const previous = typeof serializers.req === 'function' ? serializers.req as (req: unknown) => unknown : undefined
  serializers.req = function redactedRequest (req: FastifyRequest): unknown {
    const out = previous === undefined ? { method: req.method, url: req.url } : previous(req)
    const url = (out as { url?: unknown } | null)?.url
    if (typeof url !== 'string') return out
    const clean = redactUrl(url, redacted)
    return clean === url ? out : { ...(out as object), url: clean }
  }
  serializers[kRedacted] = redacted
  return true
}

/**
 * `@fastify/otel` writes the request's URL, query included, as `url.path` of its request span
 * before any route hook runs: a token or a ticket in the query would reach the trace. The route
 * guard writes it again, redacted, while that span is still open.
 */
export function redactRequestSpan (request: FastifyRequest, params: readonly string[]): void {
  const otel = (request as FastifyRequest & { opentelemetry?: () => { span?: { setAttribute (key: string, value: string): unknown } | null } }).opentelemetry
  if (typeof otel !== 'function') return
  const span = otel.call(request).span
  if (span != null) span.setAttribute('url.path', redactUrl(request.url, params))
}

/**
 * Removes a token and each of its dot-separated segments (the signature above all) from a text,
 * for error messages and stacks written by user code that may have quoted the token.
 */
export function scrub (text: string, token: string | undefined): string {
  if (token === undefined || token.length === 0) return text
  let out = text.split(token).join(REDACTED)
  for (const segment of token.split('.')) {
    if (segment.length >= 8) out = out.split(segment).join(REDACTED)
  }
  return out
}

/** A copy of an error fit for a log line: message and stack scrubbed of the token, cause kept the same way. */
export function scrubError (err: unknown, token: string | undefined): unknown {
  if (!(err instanceof Error)) {
    return typeof err === 'string' ? scrub(err, token) : err
  }
  const copy = new Error(scrub(err.message, token)) as Error & { code?: unknown }
  copy.name = err.name
  copy.stack = err.stack === undefined ? undefined : scrub(err.stack, token)
  if ((err as { code?: unknown }).code !== undefined) copy.code = (err as { code?: unknown }).code
  if (err.cause !== undefined) copy.cause = scrubError(err.cause, token)
  return copy
}
