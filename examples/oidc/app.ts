// Fleet console: people sign in at the company's identity provider (idp.ts here; Keycloak, Auth0
// or Cognito in production) and open WebSockets with its access tokens. The app holds no secret:
// @fastify/jwt checks each token's signature with the IdP's public key, which get-jwks fetches
// from the IdP's JWKS (found through OpenID discovery) and caches, then its issuer, audience and
// expiry; `formatUser` maps Keycloak's `realm_access.roles` to the `roles` that fastify-ws-auth
// checks. Viewers watch `/ws/positions`; operators also dispatch vehicles on `/ws/dispatch`.
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import jwt, { type TokenOrHeader } from '@fastify/jwt'
import buildGetJwks from 'get-jwks'
import wsAuth from 'fastify-ws-auth'

export const POSITIONS_PATH = '/ws/positions'
export const DISPATCH_PATH = '/ws/dispatch'

export interface BuildOptions {
  /** The IdP's issuer URL: the `iss` every token must carry, and where its keys are fetched. */
  issuer: string
  /** The `aud` every token must carry (Keycloak: the client id). @default 'fleet-console' */
  audience?: string
  /** get-jwks cache: `ttl` in ms (@default 60000), `max` keys (@default 100). */
  jwks?: { ttl?: number, max?: number }
  logger?: FastifyServerOptions['logger']
}

/** The user the plugin builds (its default `loadUser`) from what `formatUser` returns. */
export type FleetUser = { id: string, username: string, roles: string[], permissions: string[] }

/** The claims of a Keycloak access token that this app reads. */
type KeycloakClaims = { sub?: string, preferred_username?: string, realm_access?: { roles?: unknown } }

/** A token as `@fastify/jwt` decodes it with `decode: { complete: true }`. */
type DecodedToken = { header: { kid?: string, alg?: string } }

const VEHICLES = [
  { id: 'van-1', lat: 52.37, lon: 4.89 },
  { id: 'van-2', lat: 52.09, lon: 5.12 },
  { id: 'truck-7', lat: 51.92, lon: 4.48 }
]

export async function build (opts: BuildOptions): Promise<FastifyInstance> {
  const audience = opts.audience ?? 'fleet-console'
  // One instance for the app: its cache is what spares the IdP a request per handshake.
  const getJwks = buildGetJwks({ providerDiscovery: true, ...opts.jwks })
  const app = Fastify({ logger: opts.logger ?? false })

  await app.register(jwt, {
    // The secret function gets the whole decoded token: its header names the key.
    decode: { complete: true },
    secret: {
      // Keys come from the configured issuer only, never from a URL the token names (`iss` is
      // checked after the signature, by `allowedIss`). No `private`: this app verifies only.
      public: async (_request: FastifyRequest, token: TokenOrHeader) => {
        const { header } = token as DecodedToken
        return getJwks.getPublicKey({ domain: opts.issuer, kid: header.kid, alg: header.alg })
      }
    },
    verify: { algorithms: ['RS256', 'ES256'], allowedIss: opts.issuer, allowedAud: audience, requiredClaims: ['aud', 'exp'] },
    // What `loadUser` receives: the plugin's default one reads `sub`, `username` and `roles`.
    formatUser: (payload) => {
      const claims = payload as KeycloakClaims
      const roles = claims.realm_access?.roles
      return { sub: claims.sub, username: claims.preferred_username, roles: Array.isArray(roles) ? roles : [] }
    }
  })
  await app.register(wsAuth, { sources: ['query', 'header'] })

  app.get(POSITIONS_PATH, { websocket: true, wsAuth: { roles: ['viewer', 'operator'] } }, (socket) => {
    const user = socket.user as FleetUser
    socket.on('message', () => {}) // a one-way feed
    socket.send(JSON.stringify({ type: 'welcome', user: { id: user.id, username: user.username, roles: user.roles } }))
    socket.send(JSON.stringify({ type: 'positions', vehicles: VEHICLES }))
  })

  app.get(DISPATCH_PATH, { websocket: true, wsAuth: { roles: ['operator'] } }, (socket) => {
    const user = socket.user as FleetUser
    socket.on('message', (data) => {
      let order: { vehicle?: unknown, to?: unknown }
      try { order = JSON.parse(data.toString()) } catch { order = {} }
      if (typeof order.vehicle !== 'string' || typeof order.to !== 'string') {
        socket.send(JSON.stringify({ type: 'error', message: 'expected {"vehicle","to"}' }))
        return
      }
      const dispatched = { type: 'dispatched', vehicle: order.vehicle, to: order.to, by: user.username }
      app.wsAuth.broadcast(dispatched, { route: POSITIONS_PATH })
      socket.send(JSON.stringify(dispatched))
    })
  })

  return app
}
