// The JWKS tests' identity provider and verification. The IdP is the OIDC example's
// (examples/oidc/idp.ts: discovery, a JWKS with an RS256 and an ES256 key, rotation), listening on
// 127.0.0.1:0, with what a real one does on a bad day: down (connection refused), answering 503
// with JSON or with a proxy's HTML page, an empty key set, or holding its answers. It counts the
// requests it receives. `jwksJwt` is the @fastify/jwt registration docs/jwt.md shows.
import type { FastifyRequest } from 'fastify'
import type { FastifyJWTOptions, TokenOrHeader } from '@fastify/jwt'
import type buildGetJwks from 'get-jwks'
import { buildIdp, type Idp, type IdpOptions } from '../../examples/oidc/idp.ts'
import { InvalidTokenError } from '../../lib/index.ts'
import { deferred } from './index.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** What the JWKS endpoint does instead of answering its keys. */
export type JwksFault = 'json-503' | 'html-503' | 'empty' | 'hang'

export interface TestIdp extends Idp {
  /** The JWKS endpoint's fault from now on (`undefined`: it answers its keys). */
  fault: JwksFault | undefined
  /** The discovery document answers 503 (JSON) from now on. */
  discoveryDown: boolean
  /** Requests received so far, by document (counted as they arrive). */
  readonly requests: { jwks: number, discovery: number }
  /** Resolves at the next JWKS request's arrival (an event to await, not a count to poll). */
  nextJwksRequest (): Promise<void>
  /** Holds the JWKS answers from now on until the returned function is called (also at teardown). */
  hold (): () => void
  /** Closes the server: connections are refused from now on. Also done at teardown. */
  stop (): Promise<void>
}

const HTML_PAGE = '<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>'

/** The example's IdP with faults and counters, listening on 127.0.0.1:0; stopped at teardown. */
export async function startIdp (t: Teardown, opts: IdpOptions = {}): Promise<TestIdp> {
  const idp = buildIdp(opts)
  const requests = { jwks: 0, discovery: 0 }
  const arrivals: Array<() => void> = []
  const holds = new Set<() => void>()
  const forever = deferred()
  let held: Promise<void> | undefined
  let stopped: Promise<void> | undefined

  idp.app.addHook('onRequest', async (request, reply) => {
    if (request.url === '/.well-known/openid-configuration') {
      requests.discovery++
      if (control.discoveryDown) return reply.code(503).send({ error: 'temporarily_unavailable' })
      return
    }
    if (request.url !== '/.well-known/jwks.json') return
    requests.jwks++
    for (const arrived of arrivals.splice(0)) arrived()
    if (held !== undefined) await held
    switch (control.fault) {
      case undefined: return
      case 'json-503': return reply.code(503).send({ error: 'temporarily_unavailable' })
      case 'html-503': return reply.code(503).type('text/html').send(HTML_PAGE)
      case 'empty': return reply.send({ keys: [] })
      // Answered only at teardown, so that the server can close.
      case 'hang': await forever.promise; return reply.code(503).send({ error: 'gone' })
    }
  })
  await idp.listen()
  // Declared once listening (`...idp` copies the issuer); the hook above runs only from then on.
  const control: TestIdp = {
    ...idp,
    fault: undefined,
    discoveryDown: false,
    requests,
    nextJwksRequest: () => new Promise<void>(resolve => arrivals.push(resolve)),
    hold () {
      const gate = deferred()
      held = gate.promise
      const release = (): void => { holds.delete(release); held = undefined; gate.resolve() }
      holds.add(release)
      return release
    },
    stop () {
      stopped ??= idp.app.close().then(() => {})
      return stopped
    }
  }
  t.teardown(async () => {
    forever.resolve()
    for (const release of [...holds]) release()
    await control.stop()
  })
  return control
}

type GetJwks = ReturnType<typeof buildGetJwks>

export interface JwksJwtOptions {
  getJwks: GetJwks
  /** The issuer trusted: where keys are fetched, and the `iss` required. */
  issuer: string
  /** @default 'fleet-console' (the IdP's default) */
  audience?: string
  /**
   * Fetch the keys of the token's `iss` (any of `issuersWhitelist`, given to get-jwks) instead of
   * the one issuer's: the multi-issuer recipe.
   */
  byIssuer?: boolean
  /** Called at each key lookup, before get-jwks is asked. */
  onLookup?: () => void
}

/** `@fastify/jwt` options verifying the IdP's tokens with keys from its JWKS, as docs/jwt.md shows. */
export function jwksJwt (opts: JwksJwtOptions): Partial<FastifyJWTOptions> {
  return {
    decode: { complete: true },
    secret: {
      public: async (_request: FastifyRequest, token: TokenOrHeader) => {
        opts.onLookup?.()
        const { header, payload } = token as { header: { kid?: string, alg?: string }, payload: { iss?: unknown } }
        if (opts.byIssuer !== true) return opts.getJwks.getPublicKey({ domain: opts.issuer, kid: header.kid, alg: header.alg })
        if (typeof payload.iss !== 'string') throw new InvalidTokenError()
        return opts.getJwks.getPublicKey({ domain: payload.iss, kid: header.kid, alg: header.alg })
      }
    },
    verify: { algorithms: ['RS256', 'ES256'], allowedIss: opts.issuer, allowedAud: opts.audience ?? 'fleet-console', requiredClaims: ['aud'] }
  }
}

/** get-jwks's cache key of a key of `issuer`. */
export function cacheKeyOf (getJwks: GetJwks, issuer: string, alg: string, kid: string): string {
  return getJwks.generateCacheKey(alg, kid, issuer.endsWith('/') ? issuer : issuer + '/')
}

/**
 * Whether get-jwks's cache and its stale cache hold a live entry for `key`. Both are lru-cache
 * instances, whose `has` (left out of get-jwks's types) reports an expired entry as absent without
 * removing it: looking does not change what the next lookup does.
 */
export function cacheState (getJwks: GetJwks, key: string): { cached: boolean, stale: boolean } {
  const has = (cache: unknown): boolean => (cache as { has (key: string): boolean }).has(key)
  return { cached: has(getJwks.cache), stale: has(getJwks.staleCache) }
}

/**
 * Drops a key from get-jwks's caches at once, as docs/jwt.md shows: the cache first (deleting from
 * it moves the entry into the stale cache), then the stale cache.
 */
export function forgetKey (getJwks: GetJwks, issuer: string, alg: string, kid: string): void {
  const key = cacheKeyOf(getJwks, issuer, alg, kid)
  getJwks.cache.delete(key)
  getJwks.staleCache.delete(key)
}

/** The time get-jwks's caches read, moved forward by the test instead of waited for. */
export interface CacheTime {
  /** The caches' now, in ms (`performance.now()`, plus every skip so far). */
  now (): number
  /** Moves the caches' time forward by `ms` at once; resolves once they read the new time. */
  skip (ms: number): Promise<void>
}

/**
 * get-jwks's cache and stale cache are lru-cache instances, which read `performance.now()` (their
 * default `perf`) at each lookup: this makes it run `skip`'s total ahead of the real one, until
 * teardown, so that a test moves past a ttl at once, and can use a ttl (a minute) that no pause of
 * a busy machine comes near. Time only moves forward: anything else in this process that reads
 * `performance.now()` sees the process stall for a while, nothing worse.
 */
export function cacheTime (t: Teardown): CacheTime {
  const real = performance.now
  let ahead = 0
  performance.now = () => real.call(performance) + ahead
  t.teardown(() => { performance.now = real })
  return {
    now: () => performance.now(),
    async skip (ms) {
      ahead += ms
      // lru-cache keeps the time it read for `ttlResolution` (1 ms), then drops it from a timer: a
      // timer set after it, for later, fires after it (Node runs timers by due time).
      await new Promise(resolve => setTimeout(resolve, 2))
    }
  }
}
