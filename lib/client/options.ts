import { CloseCodesError, mergeCloseCodes } from '../protocol/close-codes.ts'
import { OptionChecker } from '../protocol/options.ts'
import type { CloseCodeTable } from '../protocol/close-codes.ts'
import type { Backoff } from './backoff.ts'
import { ClientError } from './errors.ts'
import type { ClientBaseOptions, ClientOptions, TicketProvider, TokenProvider, Transport, WebSocketConstructor } from './types.ts'

/** Client options with every default filled in, validated once. */
export interface Config {
  readonly url: string
  /** The token, or `null` for a ticket client. */
  readonly token: TokenProvider | null
  /** The ticket function, or `null` for a token client. */
  readonly ticket: TicketProvider | null
  readonly ticketParam: string
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

const KNOWN = new Set(['url', 'token', 'ticket', 'ticketParam', 'transport', 'WebSocket', 'protocols', 'reconnect', 'refresh',
  'refreshMargin', 'queue', 'closeCodes', 'established', 'queryParam', 'protocolPrefix'])
/** How a token travels and is refreshed: nothing a ticket client does, so giving one with `ticket` is a mistake. */
const TOKEN_ONLY = ['transport', 'queryParam', 'protocolPrefix', 'refresh', 'refreshMargin'] as const satisfies ReadonlyArray<keyof ClientBaseOptions>
const RECONNECT_KNOWN = new Set(['initialDelay', 'maxDelay', 'factor', 'jitter', 'maxAttempts', 'stableAfter'])
const TRANSPORTS: readonly Transport[] = ['protocol', 'message', 'query']
// RFC 6455 subprotocol names are RFC 7230 tokens.
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

function invalid (name: string, problem: string, ...value: [unknown?]): ClientError {
  const got = value.length > 0 && value[0] !== undefined ? `, got ${describe(value[0])}` : ''
  return new ClientError('FST_WS_AUTH_CLIENT_INVALID_OPTION', `option "${name}" ${problem}${got}`)
}

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (value === null || typeof value !== 'object') return String(value)
  return Array.isArray(value) ? 'an array' : 'an object'
}

const check = new OptionChecker(invalid)

function word (name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback
  if (typeof value !== 'string' || !TOKEN_CHARS.test(value)) throw invalid(name, 'must be a non-empty name of token characters', value)
  return value
}

/** Validates `options` (without changing them) and fills in the defaults. Throws on the first problem. */
export function normalize (options: ClientOptions): Config {
  if (options === null || typeof options !== 'object') throw invalid('options', 'must be an object', options)
  check.knownKeys(options, KNOWN, 'the client')
  const { token, ticket } = credential(options)
  const transport = check.oneOf('transport', options.transport, TRANSPORTS, 'protocol')
  const protocols = options.protocols ?? []
  if (!Array.isArray(protocols) || !protocols.every(p => typeof p === 'string' && TOKEN_CHARS.test(p))) {
    throw invalid('protocols', 'must be an array of subprotocol names', protocols)
  }
  let closeCodes
  try {
    closeCodes = mergeCloseCodes(options.closeCodes)
  } catch (err) {
    if (!(err instanceof CloseCodesError)) throw err
    throw invalid(err.option, err.problem)
  }
  return Object.freeze({
    url: url(options.url),
    token,
    ticket,
    ticketParam: check.string('ticketParam', options.ticketParam, 'ticket'),
    transport,
    WebSocket: webSocket(options.WebSocket),
    protocols: Object.freeze([...protocols]),
    reconnect: reconnect(options.reconnect),
    refresh: check.boolean('refresh', options.refresh, ticket === null),
    refreshMargin: check.number('refreshMargin', options.refreshMargin, 30_000, 0),
    queue: check.number('queue', options.queue, 100, 0, true),
    table: closeCodes,
    established: check.boolean('established', options.established, true),
    queryParam: queryParam(options.queryParam),
    protocolPrefix: word('protocolPrefix', options.protocolPrefix, 'bearer')
  })
}

/** The token or the ticket function: exactly one, and with a ticket no option of a token. */
function credential (options: ClientBaseOptions): Pick<Config, 'token' | 'ticket'> {
  const { token, ticket } = options
  if (ticket === undefined) {
    if (token === undefined) throw invalid('token', 'is required (or "ticket", a function returning a one-time ticket)')
    if (typeof token !== 'function' && typeof token !== 'string') throw invalid('token', 'must be a string or a function returning one', token)
    if (options.ticketParam !== undefined) throw invalid('ticketParam', 'applies to "ticket" only (the token travels by "transport")')
    return { token, ticket: null }
  }
  if (token !== undefined) throw invalid('ticket', 'cannot be given with "token": a client authenticates with one of them')
  // Never the value: a string here is likely a ticket, which must not reach an error message.
  if (typeof ticket !== 'function') {
    throw invalid('ticket', `must be a function returning a new ticket for each connection (a ticket opens one, once), got ${typeof ticket === 'string' ? 'a string' : describe(ticket)}`)
  }
  for (const name of TOKEN_ONLY) {
    if (options[name] !== undefined) throw invalid(name, 'applies to "token" only: a ticket travels in the URL (?<ticketParam>=) and is never refreshed')
  }
  return { token: null, ticket }
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
  return check.string('queryParam', value, 'token')
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
    if (!RECONNECT_KNOWN.has(key)) throw invalid(`reconnect.${key}`, `is not an option of reconnect (known: ${[...RECONNECT_KNOWN].join(', ')})`)
  }
  const o = value as Record<string, unknown>
  const initialDelay = check.number('reconnect.initialDelay', o.initialDelay, 500, 0)
  const maxDelay = check.number('reconnect.maxDelay', o.maxDelay, 30_000, 0)
  if (maxDelay < initialDelay) throw invalid('reconnect.maxDelay', `must be >= reconnect.initialDelay (${initialDelay})`, maxDelay)
  return Object.freeze({
    initialDelay,
    maxDelay,
    factor: check.number('reconnect.factor', o.factor, 2, 1),
    jitter: check.boolean('reconnect.jitter', o.jitter, true),
    maxAttempts: check.number('reconnect.maxAttempts', o.maxAttempts, Infinity, 0, true),
    stableAfter: check.number('reconnect.stableAfter', o.stableAfter, 5000, 0)
  })
}
