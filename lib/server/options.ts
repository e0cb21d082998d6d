import type { FastifyRequest } from 'fastify'
import { CloseCodesError, mergeCloseCodes, type CloseCodeTable } from '../protocol/close-codes.ts'
import { OptionChecker } from '../protocol/options.ts'
import { InvalidOptionError, InvalidRouteOptionError } from '../errors.ts'
import { GatePolicy } from './gate/policy.ts'
import type {
  ClusterAdapter, AuthorizeFn, DefaultWsAuthUser, MetricsRegistry, RejectMode, TokenSource, WsAuthClaims, WsAuthPluginOptions,
  WsAuthRouteOptions, WsAuthUser
} from '../types.ts'

const SOURCES: readonly TokenSource[] = ['query', 'header', 'cookie', 'protocol', 'message', 'ticket']
const DEFAULT_SOURCES: readonly TokenSource[] = ['query', 'header', 'protocol', 'message']
/** RFC 7230 `token` characters, which a subprotocol name must be made of. */
const TCHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** Keys Fastify itself reads from register options; they may reach the plugin. */
const REGISTER_KEYS = new Set(['prefix', 'logLevel', 'logSerializers'])

/** The plugin's options, checked and filled in once at registration. */
export interface Config {
  sources: readonly TokenSource[]
  queryParam: string
  ticketParam: string
  /** `[queryParam, ticketParam]`: the query parameters redacted from logs and request spans. */
  secretParams: readonly string[]
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
  /** `null`: no metrics. */
  metrics: { registry: MetricsRegistry | null, prefix: string } | null
  /** `'auto'`: spans when `@opentelemetry/api` is installed. */
  traces: { mode: 'off' | 'auto' | 'on', userId: boolean }
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
  /** Message policies and topics, or `null` when the route has neither (its messages then pay nothing new). */
  gate: GatePolicy | null
}

export function buildConfig (opts: WsAuthPluginOptions): Config {
  if (opts === null || typeof opts !== 'object') throw new InvalidOptionError('options', 'must be an object')
  const c = new OptionChecker((name, problem) => new InvalidOptionError(name, problem))
  c.knownKeys(opts, KNOWN_OPTIONS, 'fastify-ws-auth', REGISTER_KEYS)
  const protocolPrefix = c.string('protocolPrefix', opts.protocolPrefix, 'bearer')
  if (!TCHARS.test(protocolPrefix)) throw new InvalidOptionError('protocolPrefix', 'must be a valid subprotocol name (RFC 7230 token characters)')
  const config: Config = {
    sources: sources(c, 'sources', opts.sources, DEFAULT_SOURCES),
    queryParam: c.string('queryParam', opts.queryParam, 'token'),
    ticketParam: c.string('ticketParam', opts.ticketParam, 'ticket'),
    secretParams: [],
    cookieName: c.string('cookieName', opts.cookieName, 'token'),
    protocolPrefix,
    protocolTokenPrefix: protocolPrefix + '.',
    authTimeout: c.milliseconds('authTimeout', opts.authTimeout, 5000),
    maxAuthMessageBytes: c.count('maxAuthMessageBytes', opts.maxAuthMessageBytes, 16384),
    maxPendingMessages: c.count('maxPendingMessages', opts.maxPendingMessages, 100),
    maxPendingBytes: c.count('maxPendingBytes', opts.maxPendingBytes, 1024 * 1024),
    reject: c.oneOf('reject', opts.reject, REJECT_MODES, 'close'),
    established: c.boolean('established', opts.established, true),
    verify: c.func('verify', opts.verify),
    loadUser: c.func('loadUser', opts.loadUser) ?? defaultLoadUser,
    rolePermissions: rolePermissions(opts.rolePermissions),
    originAllowed: originPredicate(opts.allowedOrigins),
    publicUser: c.func('publicUser', opts.publicUser) ?? defaultPublicUser,
    table: closeCodeTable(opts.closeCodes),
    onAuthSuccess: c.func('onAuthSuccess', opts.onAuthSuccess),
    onAuthFailure: c.func('onAuthFailure', opts.onAuthFailure),
    websocket: opts.websocket,
    expiryWarning: optional(opts.expiryWarning, v => c.milliseconds('expiryWarning', v, 0)),
    revalidateInterval: optional(opts.revalidateInterval, v => c.milliseconds('revalidateInterval', v, 0)),
    maxConnectionsPerUser: optional(opts.maxConnectionsPerUser, v => c.count('maxConnectionsPerUser', v, 0)),
    onLimit: c.oneOf('onLimit', opts.onLimit, ['reject', 'evict-oldest'] as const, 'reject'),
    maxLifetime: optional(opts.maxLifetime, v => c.longMilliseconds('maxLifetime', v, 0)),
    heartbeatInterval: opts.heartbeatInterval === false ? null : c.milliseconds('heartbeatInterval', opts.heartbeatInterval, 30000),
    appPing: c.boolean('appPing', opts.appPing, false),
    maxTokenLifetime: c.longMilliseconds('maxTokenLifetime', opts.maxTokenLifetime, 24 * 3600 * 1000),
    adapter: adapter(opts.adapter),
    metrics: metricsOption(c, opts.metrics),
    traces: tracesOption(c, opts.traces)
  }
  if (opts.websocket !== undefined && (opts.websocket === null || typeof opts.websocket !== 'object')) {
    throw new InvalidOptionError('websocket', 'must be an object (the options of @fastify/websocket)')
  }
  config.secretParams = Object.freeze([config.queryParam, config.ticketParam])
  if (config.ticketParam === config.queryParam) {
    throw new InvalidOptionError('ticketParam', `must differ from queryParam (both are "${config.queryParam}")`)
  }
  if (config.reject === 'http' && config.sources.every(s => s === 'message')) {
    throw new InvalidOptionError('sources', 'needs a source other than "message" with reject: "http" (there is no first message before the upgrade)')
  }
  return config
}

const REJECT_MODES: readonly RejectMode[] = ['close', 'http']
/** Checks of plugin options outside `buildConfig` (nested ones). */
const serverOptions = new OptionChecker((name, problem) => new InvalidOptionError(name, problem))

const KNOWN_OPTIONS = new Set<string>([
  'sources', 'queryParam', 'ticketParam', 'cookieName', 'protocolPrefix', 'authTimeout', 'maxAuthMessageBytes',
  'maxPendingMessages', 'maxPendingBytes', 'reject', 'established', 'verify', 'loadUser',
  'rolePermissions', 'allowedOrigins', 'publicUser', 'closeCodes', 'onAuthSuccess', 'onAuthFailure',
  'websocket', 'expiryWarning', 'revalidateInterval', 'maxConnectionsPerUser', 'onLimit', 'maxLifetime',
  'heartbeatInterval', 'appPing', 'maxTokenLifetime', 'adapter', 'metrics', 'traces'
] satisfies (keyof WsAuthPluginOptions)[])

const ROUTE_OPTIONS = new Set<string>([
  'roles', 'permissions', 'authorize', 'reject', 'sources', 'authTimeout', 'established', 'maxLifetime',
  'messages', 'topics', 'maxTopics', 'onRefused'
] satisfies (keyof WsAuthRouteOptions)[])

/** The route options that make a gate (the others it checks need one of these). */
const AFTER_THE_DOOR = ['messages', 'topics', 'maxTopics', 'onRefused'] as const

/**
 * Resolves a route's `wsAuth` setting. Returns `null` for `wsAuth: false` (opted out).
 * Throws naming the route and the field for anything invalid.
 */
export function buildRoutePolicy (config: Config, url: string, setting: unknown): RoutePolicy | null {
  if (setting === false) return null
  const c = new OptionChecker((name, problem) => new InvalidRouteOptionError(url, 'wsAuth.' + name, problem))
  let opts: WsAuthRouteOptions = {}
  if (setting !== undefined && setting !== true) {
    if (setting === null || typeof setting !== 'object' || Array.isArray(setting)) {
      throw new InvalidRouteOptionError(url, 'wsAuth', 'must be true, false or an object')
    }
    opts = setting as WsAuthRouteOptions
    c.knownKeys(opts, ROUTE_OPTIONS, 'a route of fastify-ws-auth')
  }
  const reject = c.oneOf('reject', opts.reject, REJECT_MODES, config.reject)
  const routeSources = sources(c, 'sources', opts.sources, config.sources)
  const requestSources = routeSources.filter(s => s !== 'message')
  if (reject === 'http' && requestSources.length === 0) {
    throw new InvalidRouteOptionError(url, 'wsAuth.sources', 'needs a source other than "message" with reject: "http"')
  }
  return {
    url,
    reject,
    requestSources,
    awaitsMessage: reject === 'close' && routeSources.includes('message'),
    authTimeout: c.milliseconds('authTimeout', opts.authTimeout, config.authTimeout),
    established: c.boolean('established', opts.established, config.established),
    roles: opts.roles === undefined ? null : new Set(c.stringList('roles', opts.roles)),
    permissions: opts.permissions === undefined ? null : c.stringList('permissions', opts.permissions),
    authorize: c.func('authorize', opts.authorize) ?? null,
    maxLifetime: opts.maxLifetime === undefined ? config.maxLifetime : c.longMilliseconds('maxLifetime', opts.maxLifetime, 0),
    gate: AFTER_THE_DOOR.some(key => opts[key] !== undefined) ? new GatePolicy(c, opts, config.appPing) : null
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

function optional<T> (value: unknown, check: (value: unknown) => T): T | null {
  return value === undefined ? null : check(value)
}

function sources (c: OptionChecker, name: string, value: unknown, fallback: readonly TokenSource[]): readonly TokenSource[] {
  if (value === undefined) return fallback
  const list = c.stringList(name, value, `a non-empty array of ${SOURCES.join(', ')}`)
  if (list.length === 0) throw c.problem(name, `must be a non-empty array of ${SOURCES.join(', ')}`)
  for (const s of list) {
    if (!SOURCES.includes(s as TokenSource)) throw c.problem(name, `has an unknown source ${JSON.stringify(s)} (known: ${SOURCES.join(', ')})`)
  }
  if (new Set(list).size !== list.length) throw c.problem(name, 'lists a source twice')
  return Object.freeze(list as TokenSource[])
}

function rolePermissions (value: unknown): ReadonlyMap<string, readonly string[]> | null {
  if (value === undefined) return null
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError('rolePermissions', 'must be an object of role -> array of permissions')
  }
  const map = new Map<string, readonly string[]>()
  for (const [role, perms] of Object.entries(value)) {
    map.set(role, serverOptions.stringList(`rolePermissions.${role}`, perms))
  }
  return map
}

function originPredicate (value: unknown): Config['originAllowed'] {
  if (value === undefined) return null
  if (typeof value === 'function') return value as Config['originAllowed']
  const list = new Set(serverOptions.stringList('allowedOrigins', value, 'an array of non-empty strings, or a function'))
  return (origin) => list.has(origin)
}

const ADAPTER_METHODS = ['start', 'close', 'acquire', 'release', 'publish', 'revoke', 'connections', 'stats'] as const

function adapter (value: unknown): ClusterAdapter | null {
  if (value === undefined) return null
  const missing = ADAPTER_METHODS.filter(m => typeof (value as Record<string, unknown> | null)?.[m] !== 'function')
  if (missing.length > 0) throw new InvalidOptionError('adapter', `must be a cluster adapter (e.g. redisAdapter()); missing: ${missing.join(', ')}`)
  return value as ClusterAdapter
}

/** Prometheus metric names: a prefix of letters, digits and `_`, not starting with a digit. */
const METRIC_PREFIX = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

function metricsOption (c: OptionChecker, value: unknown): Config['metrics'] {
  if (value === undefined || value === false) return null
  if (value === true) return { registry: null, prefix: 'ws_auth_' }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw c.problem('metrics', 'must be true, false or { registry?, prefix? }')
  c.knownKeys(value, new Set(['registry', 'prefix']), 'metrics')
  const { registry, prefix } = value as { registry?: unknown, prefix?: unknown }
  if (registry !== undefined && typeof (registry as MetricsRegistry | null)?.getSingleMetric !== 'function') {
    throw c.problem('metrics.registry', 'must be a prom-client Registry')
  }
  const name = c.string('metrics.prefix', prefix, 'ws_auth_')
  if (!METRIC_PREFIX.test(name)) throw c.problem('metrics.prefix', 'must start a Prometheus metric name (letters, digits, _ and :, not a digit first)')
  return { registry: (registry as MetricsRegistry | undefined) ?? null, prefix: name }
}

function tracesOption (c: OptionChecker, value: unknown): Config['traces'] {
  if (value === undefined) return { mode: 'auto', userId: false }
  if (typeof value === 'boolean') return { mode: value ? 'on' : 'off', userId: false }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw c.problem('traces', 'must be true, false or { userId? }')
  c.knownKeys(value, new Set(['userId']), 'traces')
  return { mode: 'on', userId: c.boolean('traces.userId', (value as { userId?: unknown }).userId, false) }
}

function closeCodeTable (value: unknown): CloseCodeTable {
  if (value !== undefined && (value === null || typeof value !== 'object')) {
    throw new InvalidOptionError('closeCodes', 'must be an object of failure class -> { code, reason, status }')
  }
  try {
    return mergeCloseCodes(value as Parameters<typeof mergeCloseCodes>[0])
  } catch (err) {
    if (!(err instanceof CloseCodesError)) throw err
    throw new InvalidOptionError(err.option, err.problem, { cause: err })
  }
}
