import type { FastifyRequest } from 'fastify'
import { mergeCloseCodes, type CloseCodeTable } from '../protocol/close-codes.ts'
import { InvalidOptionError, InvalidRouteOptionError } from '../errors.ts'
import type {
  ClusterAdapter, AuthorizeFn, DefaultWsAuthUser, RejectMode, TokenSource, WsAuthClaims, WsAuthPluginOptions,
  WsAuthRouteOptions, WsAuthUser
} from '../types.ts'

const SOURCES: readonly TokenSource[] = ['query', 'header', 'cookie', 'protocol', 'message']
const DEFAULT_SOURCES: readonly TokenSource[] = ['query', 'header', 'protocol', 'message']
/** Longest delay `setTimeout` honours; above it Node fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1
/** RFC 7230 `token` characters, which a subprotocol name must be made of. */
const TCHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** Keys Fastify itself reads from register options; they may reach the plugin. */
const REGISTER_KEYS = new Set(['prefix', 'logLevel', 'logSerializers'])

/** The plugin's options, checked and filled in once at registration. */
export interface Config {
  sources: readonly TokenSource[]
  queryParam: string
  cookieName: string
  protocolPrefix: string
  /** `protocolPrefix + '.'`: what the token entry of the subprotocol list starts with. */
  protocolTokenPrefix: string
  authTimeout: number
  maxAuthMessageBytes: number
  maxPendingMessages: number
  maxPendingBytes: number
  reject: RejectMode
  established: boolean
  verify: WsAuthPluginOptions['verify']
  loadUser: (claims: WsAuthClaims, request: FastifyRequest) => unknown
  rolePermissions: ReadonlyMap<string, readonly string[]> | null
  originAllowed: ((origin: string, request: FastifyRequest) => boolean | Promise<boolean>) | null
  publicUser: (user: WsAuthUser, granted: { permissions: string[] }) => unknown
  table: CloseCodeTable
  onAuthSuccess: WsAuthPluginOptions['onAuthSuccess']
  onAuthFailure: WsAuthPluginOptions['onAuthFailure']
  websocket: WsAuthPluginOptions['websocket']
  expiryWarning: number | null
  revalidateInterval: number | null
  maxConnectionsPerUser: number | null
  onLimit: 'reject' | 'evict-oldest'
  maxLifetime: number | null
  heartbeatInterval: number | null
  appPing: boolean
  maxTokenLifetime: number
  adapter: ClusterAdapter | null
}

/** One protected route's requirements, resolved against the plugin's options once, at declaration. */
export interface RoutePolicy {
  url: string
  reject: RejectMode
  /** The sources read from the upgrade request, in order (`message` left out). */
  requestSources: readonly TokenSource[]
  /** Whether a connection without a token waits for an auth message. */
  awaitsMessage: boolean
  authTimeout: number
  established: boolean
  roles: ReadonlySet<string> | null
  permissions: readonly string[] | null
  authorize: AuthorizeFn | null
  /** ms from establishment to a 4010 close, or `null`. */
  maxLifetime: number | null
}

export function buildConfig (opts: WsAuthPluginOptions): Config {
  if (opts === null || typeof opts !== 'object') throw new InvalidOptionError('options', 'must be an object')
  for (const key of Object.keys(opts)) {
    if (!KNOWN_OPTIONS.has(key) && !REGISTER_KEYS.has(key)) throw new InvalidOptionError(key, 'is not an option of fastify-ws-auth')
  }
  const fail = (name: string) => (problem: string) => new InvalidOptionError(name, problem)
  const protocolPrefix = string(opts.protocolPrefix, 'bearer', fail('protocolPrefix'))
  if (!TCHARS.test(protocolPrefix)) throw new InvalidOptionError('protocolPrefix', 'must be a valid subprotocol name (RFC 7230 token characters)')
  const config: Config = {
    sources: sources(opts.sources, DEFAULT_SOURCES, fail('sources')),
    queryParam: string(opts.queryParam, 'token', fail('queryParam')),
    cookieName: string(opts.cookieName, 'token', fail('cookieName')),
    protocolPrefix,
    protocolTokenPrefix: protocolPrefix + '.',
    authTimeout: duration(opts.authTimeout, 5000, fail('authTimeout')),
    maxAuthMessageBytes: count(opts.maxAuthMessageBytes, 16384, fail('maxAuthMessageBytes')),
    maxPendingMessages: count(opts.maxPendingMessages, 100, fail('maxPendingMessages')),
    maxPendingBytes: count(opts.maxPendingBytes, 1024 * 1024, fail('maxPendingBytes')),
    reject: rejectMode(opts.reject, 'close', fail('reject')),
    established: bool(opts.established, true, fail('established')),
    verify: fn(opts.verify, fail('verify')),
    loadUser: fn(opts.loadUser, fail('loadUser')) ?? defaultLoadUser,
    rolePermissions: rolePermissions(opts.rolePermissions),
    originAllowed: originPredicate(opts.allowedOrigins),
    publicUser: fn(opts.publicUser, fail('publicUser')) ?? defaultPublicUser,
    table: closeCodeTable(opts.closeCodes),
    onAuthSuccess: fn(opts.onAuthSuccess, fail('onAuthSuccess')),
    onAuthFailure: fn(opts.onAuthFailure, fail('onAuthFailure')),
    websocket: opts.websocket,
    expiryWarning: optional(opts.expiryWarning, v => duration(v, 0, fail('expiryWarning'))),
    revalidateInterval: optional(opts.revalidateInterval, v => duration(v, 0, fail('revalidateInterval'))),
    maxConnectionsPerUser: optional(opts.maxConnectionsPerUser, v => count(v, 0, fail('maxConnectionsPerUser'))),
    onLimit: oneOf(opts.onLimit, ['reject', 'evict-oldest'] as const, 'reject', fail('onLimit')),
    maxLifetime: optional(opts.maxLifetime, v => longDuration(v, fail('maxLifetime'))),
    heartbeatInterval: opts.heartbeatInterval === false ? null : duration(opts.heartbeatInterval, 30000, fail('heartbeatInterval')),
    appPing: bool(opts.appPing, false, fail('appPing')),
    maxTokenLifetime: opts.maxTokenLifetime === undefined ? 24 * 3600 * 1000 : longDuration(opts.maxTokenLifetime, fail('maxTokenLifetime')),
    adapter: adapter(opts.adapter)
  }
  if (opts.websocket !== undefined && (opts.websocket === null || typeof opts.websocket !== 'object')) {
    throw new InvalidOptionError('websocket', 'must be an object (the options of @fastify/websocket)')
  }
  if (config.reject === 'http' && config.sources.every(s => s === 'message')) {
    throw new InvalidOptionError('sources', 'needs a source other than "message" with reject: "http" (there is no first message before the upgrade)')
  }
  return config
}

const KNOWN_OPTIONS = new Set<string>([
  'sources', 'queryParam', 'cookieName', 'protocolPrefix', 'authTimeout', 'maxAuthMessageBytes',
  'maxPendingMessages', 'maxPendingBytes', 'reject', 'established', 'verify', 'loadUser',
  'rolePermissions', 'allowedOrigins', 'publicUser', 'closeCodes', 'onAuthSuccess', 'onAuthFailure',
  'websocket', 'expiryWarning', 'revalidateInterval', 'maxConnectionsPerUser', 'onLimit', 'maxLifetime',
  'heartbeatInterval', 'appPing', 'maxTokenLifetime', 'adapter'
] satisfies (keyof WsAuthPluginOptions)[])

const ROUTE_OPTIONS = new Set<string>([
  'roles', 'permissions', 'authorize', 'reject', 'sources', 'authTimeout', 'established', 'maxLifetime'
] satisfies (keyof WsAuthRouteOptions)[])

/**
 * Resolves a route's `wsAuth` setting. Returns `null` for `wsAuth: false` (opted out).
 * Throws naming the route and the field for anything invalid.
 */
export function buildRoutePolicy (config: Config, url: string, setting: unknown): RoutePolicy | null {
  if (setting === false) return null
  const fail = (name: string) => (problem: string) => new InvalidRouteOptionError(url, 'wsAuth.' + name, problem)
  let opts: WsAuthRouteOptions = {}
  if (setting !== undefined && setting !== true) {
    if (setting === null || typeof setting !== 'object' || Array.isArray(setting)) {
      throw new InvalidRouteOptionError(url, 'wsAuth', 'must be true, false or an object')
    }
    opts = setting as WsAuthRouteOptions
    for (const key of Object.keys(opts)) {
      if (!ROUTE_OPTIONS.has(key)) throw new InvalidRouteOptionError(url, 'wsAuth.' + key, 'is not a route option of fastify-ws-auth')
    }
  }
  const reject = rejectMode(opts.reject, config.reject, fail('reject'))
  const routeSources = sources(opts.sources, config.sources, fail('sources'))
  const requestSources = routeSources.filter(s => s !== 'message')
  if (reject === 'http' && requestSources.length === 0) {
    throw new InvalidRouteOptionError(url, 'wsAuth.sources', 'needs a source other than "message" with reject: "http"')
  }
  return {
    url,
    reject,
    requestSources,
    awaitsMessage: reject === 'close' && routeSources.includes('message'),
    authTimeout: duration(opts.authTimeout, config.authTimeout, fail('authTimeout')),
    established: bool(opts.established, config.established, fail('established')),
    roles: opts.roles === undefined ? null : new Set(stringList(opts.roles, fail('roles'))),
    permissions: opts.permissions === undefined ? null : stringList(opts.permissions, fail('permissions')),
    authorize: fn(opts.authorize, fail('authorize')) ?? null,
    maxLifetime: opts.maxLifetime === undefined ? config.maxLifetime : longDuration(opts.maxLifetime, fail('maxLifetime'))
  }
}

/** The user built from claims when the app gives no `loadUser`. */
export function defaultLoadUser (claims: WsAuthClaims): DefaultWsAuthUser {
  const c = claims as Record<string, unknown>
  return {
    id: (c.sub ?? c.id) as string | undefined,
    username: (c.username ?? c.preferred_username ?? c.email) as string | undefined,
    roles: Array.isArray(c.roles) ? strings(c.roles) : (typeof c.role === 'string' ? [c.role] : []),
    permissions: Array.isArray(c.permissions) ? strings(c.permissions) : []
  }
}

/** The array itself when it holds only strings (no copy per connection), else its strings. */
function strings (list: unknown[]): string[] {
  return list.every(v => typeof v === 'string') ? list as string[] : list.filter((v): v is string => typeof v === 'string')
}

/** `{ id, username, roles, permissions }`, with the permissions `rolePermissions` grants included. */
function defaultPublicUser (user: WsAuthUser, granted: { permissions: string[] }): unknown {
  const u = user as DefaultWsAuthUser
  return { id: u.id, username: u.username, roles: u.roles ?? [], permissions: granted.permissions }
}

type Fail = (problem: string) => Error

function string (value: unknown, fallback: string, fail: Fail): string {
  if (value === undefined) return fallback
  if (typeof value !== 'string' || value.length === 0) throw fail('must be a non-empty string')
  return value
}

function bool (value: unknown, fallback: boolean, fail: Fail): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw fail('must be a boolean')
  return value
}

function duration (value: unknown, fallback: number, fail: Fail): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw fail(`must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS}`)
  }
  return value
}

/** A duration that may exceed what one `setTimeout` can wait (sessions reach it in steps). */
function longDuration (value: unknown, fail: Fail): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw fail('must be a whole, positive number of milliseconds')
  return value
}

function optional<T> (value: unknown, check: (value: unknown) => T): T | null {
  return value === undefined ? null : check(value)
}

function oneOf<T extends string> (value: unknown, allowed: readonly T[], fallback: T, fail: Fail): T {
  if (value === undefined) return fallback
  if (!allowed.includes(value as T)) throw fail(`must be one of ${allowed.map(a => JSON.stringify(a)).join(', ')}`)
  return value as T
}

function count (value: unknown, fallback: number, fail: Fail): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw fail('must be a positive whole number')
  return value
}

function fn<T> (value: T | undefined, fail: Fail): T | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw fail('must be a function')
  return value
}

function rejectMode (value: unknown, fallback: RejectMode, fail: Fail): RejectMode {
  if (value === undefined) return fallback
  if (value !== 'close' && value !== 'http') throw fail('must be "close" or "http"')
  return value
}

function stringList (value: unknown, fail: Fail): string[] {
  if (!Array.isArray(value) || value.some(v => typeof v !== 'string' || v.length === 0)) {
    throw fail('must be an array of non-empty strings')
  }
  return [...value]
}

function sources (value: unknown, fallback: readonly TokenSource[], fail: Fail): readonly TokenSource[] {
  if (value === undefined) return fallback
  if (!Array.isArray(value) || value.length === 0) throw fail(`must be a non-empty array of ${SOURCES.join(', ')}`)
  for (const s of value) {
    if (!SOURCES.includes(s)) throw fail(`has an unknown source ${JSON.stringify(s)} (known: ${SOURCES.join(', ')})`)
  }
  if (new Set(value).size !== value.length) throw fail('lists a source twice')
  return Object.freeze([...value])
}

function rolePermissions (value: unknown): ReadonlyMap<string, readonly string[]> | null {
  if (value === undefined) return null
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError('rolePermissions', 'must be an object of role -> array of permissions')
  }
  const map = new Map<string, readonly string[]>()
  for (const [role, perms] of Object.entries(value)) {
    map.set(role, stringList(perms, problem => new InvalidOptionError(`rolePermissions.${role}`, problem)))
  }
  return map
}

function originPredicate (value: unknown): Config['originAllowed'] {
  if (value === undefined) return null
  if (typeof value === 'function') return value as Config['originAllowed']
  const list = new Set(stringList(value, problem => new InvalidOptionError('allowedOrigins', `${problem}, or a function`)))
  return (origin) => list.has(origin)
}

const ADAPTER_METHODS = ['start', 'close', 'acquire', 'release', 'publish', 'revoke', 'connections', 'stats'] as const

function adapter (value: unknown): ClusterAdapter | null {
  if (value === undefined) return null
  const missing = ADAPTER_METHODS.filter(m => typeof (value as Record<string, unknown> | null)?.[m] !== 'function')
  if (missing.length > 0) throw new InvalidOptionError('adapter', `must be a cluster adapter (e.g. redisAdapter()); missing: ${missing.join(', ')}`)
  return value as ClusterAdapter
}

function closeCodeTable (value: unknown): CloseCodeTable {
  if (value !== undefined && (value === null || typeof value !== 'object')) {
    throw new InvalidOptionError('closeCodes', 'must be an object of failure class -> { code, reason, status }')
  }
  try {
    return mergeCloseCodes(value as Parameters<typeof mergeCloseCodes>[0])
  } catch (err) {
    const message = (err as Error).message
    const name = message.slice(0, message.indexOf(':'))
    throw new InvalidOptionError(name, message.slice(message.indexOf(':') + 2), { cause: err })
  }
}
