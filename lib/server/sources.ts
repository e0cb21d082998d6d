import type { FastifyRequest } from 'fastify'
import type { Config } from './options.ts'
import type { TokenSource } from '../types.ts'

/** A token as found, with where it came from. An empty `token` means "present but unusable". */
export interface FoundToken {
  token: string
  source: TokenSource
}

const BEARER = /^Bearer +(\S*) *$/i

/**
 * Reads the token from the first of `sources` (in order) that carries one. Returns `undefined` when
 * none does. A source that carries something malformed (an empty value, a repeated query
 * parameter, `Authorization: Bearer` with nothing after it) counts as present, with an empty token,
 * so the plugin refuses it rather than falling through to a later source.
 */
export function findToken (request: FastifyRequest, sources: readonly TokenSource[], config: Config): FoundToken | undefined {
  for (const source of sources) {
    const token = read(request, source, config)
    if (token !== undefined) return { token, source }
  }
  return undefined
}

function read (request: FastifyRequest, source: TokenSource, config: Config): string | undefined {
  switch (source) {
    case 'query': return fromQuery(request, config.queryParam)
    case 'header': return fromHeader(request.headers.authorization)
    case 'cookie': return fromCookie(request, config.cookieName)
    case 'protocol': return fromProtocols(request.headers['sec-websocket-protocol'], config.protocolTokenPrefix)
    case 'ticket': return fromQuery(request, config.ticketParam)
    default: return undefined
  }
}

function fromQuery (request: FastifyRequest, name: string): string | undefined {
  const query = request.query as Record<string, unknown> | undefined
  if (query === undefined || query === null) return undefined
  const value = query[name]
  if (value === undefined) return undefined
  return typeof value === 'string' ? value : ''
}

function fromHeader (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  if (header.length < 6 || header.slice(0, 6).toLowerCase() !== 'bearer') return undefined
  const match = BEARER.exec(header)
  return match === null ? '' : match[1]
}

function fromCookie (request: FastifyRequest, name: string): string | undefined {
  const cookies = (request as FastifyRequest & { cookies?: Record<string, string | undefined> }).cookies
  const value = cookies?.[name]
  return value === undefined ? undefined : value
}

/**
 * The token entry of `Sec-WebSocket-Protocol`: the first `<prefix>.<token>` offered, the prefix in
 * any case (`Bearer.<token>` too: like the `Authorization` scheme, and so that no spelling of a
 * token entry is ever taken for an app's own name and echoed back).
 */
function fromProtocols (header: string | undefined, tokenPrefix: string): string | undefined {
  // Every token entry has the prefix's '.': a list of plain names is passed over at once.
  if (header === undefined || !header.includes('.')) return undefined
  for (const entry of header.split(',')) {
    const name = entry.trim()
    if (isTokenEntry(name, tokenPrefix)) return name.slice(tokenPrefix.length)
  }
  return undefined
}

/** Whether a subprotocol name starts with `tokenPrefix`, compared without regard to ASCII case. */
function isTokenEntry (name: string, tokenPrefix: string): boolean {
  if (name.startsWith(tokenPrefix)) return true
  return name.length >= tokenPrefix.length && name.slice(0, tokenPrefix.length).toLowerCase() === tokenPrefix.toLowerCase()
}

/** The app's own `handleProtocols` (from the options of @fastify/websocket), if any. */
export type ProtocolHandler = (protocols: Set<string>, request: unknown) => string | false

/**
 * Chooses the subprotocol to answer with, never a token entry, so the token is not echoed in a
 * response header. Offers the app's own names (token entry and `<prefix>` left out) to the app's
 * `handleProtocols` when it has one, else picks the first of them; falls back to `<prefix>` itself.
 */
export function selectProtocol (offered: Set<string>, request: unknown, prefix: string, tokenPrefix: string, appHandler: ProtocolHandler | undefined): string | false {
  const own = new Set<string>()
  for (const name of offered) {
    if (name !== prefix && !isTokenEntry(name, tokenPrefix)) own.add(name)
  }
  const chosen = appHandler !== undefined ? appHandler(own, request) : (own.values().next().value ?? false)
  if (chosen !== false && chosen !== undefined) return chosen
  return offered.has(prefix) ? prefix : false
}
