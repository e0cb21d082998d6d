import { mergeCloseCodes } from '../protocol/close-codes.ts'
import type { CloseCodeTable } from '../protocol/close-codes.ts'
import type { Backoff } from './backoff.ts'
import { ClientError } from './errors.ts'
import type { ClientOptions, TokenProvider, Transport, WebSocketConstructor } from './types.ts'

/** Client options with every default filled in, validated once. */
export interface Config {
  readonly url: string
  readonly token: TokenProvider
  readonly transport: Transport
  readonly WebSocket: WebSocketConstructor
  readonly protocols: readonly string[]
  readonly reconnect: Backoff
  readonly refresh: boolean
  readonly refreshMargin: number
  readonly queue: number
  readonly table: CloseCodeTable
  readonly established: boolean
  readonly queryParam: string
  readonly protocolPrefix: string
}

const KNOWN = new Set(['url', 'token', 'transport', 'WebSocket', 'protocols', 'reconnect', 'refresh',
  'refreshMargin', 'queue', 'closeCodes', 'established', 'queryParam', 'protocolPrefix'])
const RECONNECT_KNOWN = new Set(['initialDelay', 'maxDelay', 'factor', 'jitter', 'maxAttempts', 'stableAfter'])
const TRANSPORTS: readonly Transport[] = ['protocol', 'message', 'query']
// RFC 6455 subprotocol names are RFC 7230 tokens.
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

function invalid (name: string, problem: string, ...value: [unknown?]): ClientError {
  const got = value.length > 0 ? `, got ${describe(value[0])}` : ''
  return new ClientError('FST_WS_AUTH_CLIENT_INVALID_OPTION', `option "${name}" ${problem}${got}`)
}

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (value === null || typeof value !== 'object') return String(value)
  return Array.isArray(value) ? 'an array' : 'an object'
}

function number (name: string, value: unknown, fallback: number, min: number, integer = false): number {
  if (value === undefined) return fallback
  const ok = typeof value === 'number' && !Number.isNaN(value) && value >= min &&
    (!integer || Number.isInteger(value) || value === Infinity)
  if (!ok) throw invalid(name, `must be ${integer ? 'an integer' : 'a number'} >= ${min}`, value)
  return value
}

function boolean (name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw invalid(name, 'must be a boolean', value)
  return value
}

function word (name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback
  if (typeof value !== 'string' || !TOKEN_CHARS.test(value)) throw invalid(name, 'must be a non-empty name of token characters', value)
  return value
}

/** Validates `options` (without changing them) and fills in the defaults. Throws on the first problem. */
export function normalize (options: ClientOptions): Config {
  if (options === null || typeof options !== 'object') throw invalid('options', 'must be an object', options)
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw invalid(key, `is not a client option (known: ${[...KNOWN].join(', ')})`)
  }
  const transport = options.transport ?? 'protocol'
  if (!TRANSPORTS.includes(transport)) throw invalid('transport', `must be one of ${TRANSPORTS.join(', ')}`, transport)
  const token = options.token
  if (typeof token !== 'function' && typeof token !== 'string') throw invalid('token', 'must be a string or a function returning one', token)
  const protocols = options.protocols ?? []
  if (!Array.isArray(protocols) || !protocols.every(p => typeof p === 'string' && TOKEN_CHARS.test(p))) {
    throw invalid('protocols', 'must be an array of subprotocol names', protocols)
  }
  let closeCodes
  try {
    closeCodes = mergeCloseCodes(options.closeCodes)
  } catch (err) {
    throw invalid('closeCodes', `is invalid: ${(err as Error).message}`)
  }
  return Object.freeze({
    url: url(options.url),
    token,
    transport,
    WebSocket: webSocket(options.WebSocket),
    protocols: Object.freeze([...protocols]),
    reconnect: reconnect(options.reconnect),
    refresh: boolean('refresh', options.refresh, true),
    refreshMargin: number('refreshMargin', options.refreshMargin, 30_000, 0),
    queue: number('queue', options.queue, 100, 0, true),
    table: closeCodes,
    established: boolean('established', options.established, true),
    queryParam: queryParam(options.queryParam),
    protocolPrefix: word('protocolPrefix', options.protocolPrefix, 'bearer')
  })
}

function url (value: unknown): string {
  if (typeof value !== 'string' && !(value instanceof URL)) throw invalid('url', 'must be a string or a URL', value)
  let parsed: URL
  try {
    // In a browser a relative URL is resolved against the page, as `new WebSocket()` does.
    parsed = new URL(String(value), (globalThis as { location?: { href: string } }).location?.href)
  } catch {
    throw invalid('url', 'must be an absolute URL (or relative to the page in a browser)', String(value))
  }
  const schemes: Record<string, string> = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }
  const scheme = schemes[parsed.protocol]
  if (scheme === undefined) throw invalid('url', 'must use ws:, wss:, http: or https:', String(value))
  if (parsed.hash !== '') throw invalid('url', 'must not have a #fragment', String(value))
  parsed.protocol = scheme
  return parsed.href
}

function queryParam (value: unknown): string {
  if (value === undefined) return 'token'
  if (typeof value !== 'string' || value === '') throw invalid('queryParam', 'must be a non-empty string', value)
  return value
}

function webSocket (value: unknown): WebSocketConstructor {
  const ctor = value ?? (globalThis as { WebSocket?: unknown }).WebSocket
  if (ctor === undefined) {
    throw new ClientError('FST_WS_AUTH_CLIENT_NO_WEBSOCKET',
      'no WebSocket implementation: this runtime has no global WebSocket; pass one, e.g. createClient({ WebSocket: require(\'ws\'), ... })')
  }
  if (typeof ctor !== 'function') throw invalid('WebSocket', 'must be a WebSocket constructor', ctor)
  return ctor as WebSocketConstructor
}

function reconnect (value: unknown): Backoff {
  if (value === false) return reconnect({ maxAttempts: 0 })
  if (value === undefined) return reconnect({})
  if (value === null || typeof value !== 'object') throw invalid('reconnect', 'must be an object or false', value)
  for (const key of Object.keys(value)) {
    if (!RECONNECT_KNOWN.has(key)) throw invalid(`reconnect.${key}`, `is not a reconnect option (known: ${[...RECONNECT_KNOWN].join(', ')})`)
  }
  const o = value as Record<string, unknown>
  const initialDelay = number('reconnect.initialDelay', o.initialDelay, 500, 0)
  const maxDelay = number('reconnect.maxDelay', o.maxDelay, 30_000, 0)
  if (maxDelay < initialDelay) throw invalid('reconnect.maxDelay', `must be >= reconnect.initialDelay (${initialDelay})`, maxDelay)
  return Object.freeze({
    initialDelay,
    maxDelay,
    factor: number('reconnect.factor', o.factor, 2, 1),
    jitter: boolean('reconnect.jitter', o.jitter, true),
    maxAttempts: number('reconnect.maxAttempts', o.maxAttempts, Infinity, 0, true),
    stableAfter: number('reconnect.stableAfter', o.stableAfter, 5000, 0)
  })
}
