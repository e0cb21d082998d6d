// A small OpenID Connect identity provider: the stand-in for Keycloak (or Auth0, Cognito...) that
// the fleet console trusts. It serves discovery (`/.well-known/openid-configuration`), its public
// keys (`/.well-known/jwks.json`: one RS256 and one ES256 key to begin with) and a token endpoint
// for a few in-memory users, whose access tokens carry Keycloak's `realm_access.roles`. Keys can be
// added and removed while it runs, the way an IdP rotates them.
import { createHash, generateKeyPairSync, timingSafeEqual, type KeyObject } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { createSigner } from 'fast-jwt'

/** The signing algorithms this IdP has keys for. */
export type KeyAlg = 'RS256' | 'ES256'

export interface IdpUser {
  /** The `sub` of the user's tokens (Keycloak: a UUID). */
  sub: string
  username: string
  password: string
  /** Realm roles: `realm_access.roles` in the token. */
  roles: string[]
}

/**
 * An operator, a viewer, and a user with Keycloak's default realm roles only (signs in, opens
 * nothing).
 */
export const DEMO_USERS: readonly IdpUser[] = [
  { sub: '7c1e4f0a-0001-4a8e-9b1d-ada000000001', username: 'ada', password: 'ada-password', roles: ['operator', 'viewer', 'offline_access'] },
  { sub: '7c1e4f0a-0002-4a8e-9b1d-bob000000002', username: 'bob', password: 'bob-password', roles: ['viewer', 'offline_access'] },
  { sub: '7c1e4f0a-0003-4a8e-9b1d-cy0000000003', username: 'cy', password: 'cy-password', roles: ['offline_access', 'uma_authorization'] }
]

export interface IdpOptions {
  users?: readonly IdpUser[]
  /** The `aud` of the tokens the token endpoint issues. @default 'fleet-console' */
  audience?: string
  /** Lifetime of issued tokens, in seconds. @default 300 */
  tokenTtlSeconds?: number
  logger?: FastifyServerOptions['logger']
}

/** What `issue` may change in a token, for tokens the endpoint would not issue (tests, demos). */
export interface IssueOptions {
  /** Sign with the newest key of this algorithm. @default 'RS256' */
  alg?: KeyAlg
  /** Sign with this key (also one removed since: a token issued before a rotation). */
  kid?: string
  /** `null` leaves `aud` out. @default the IdP's audience */
  aud?: string | null
  /** @default the IdP's issuer */
  iss?: string
  /** @default the IdP's token lifetime */
  expiresInSeconds?: number
}

export interface Idp {
  /** The IdP's Fastify app (not listening until `listen`). */
  app: FastifyInstance
  /** `http://127.0.0.1:<port>` once listening: the tokens' `iss`, and where its documents are. */
  readonly issuer: string
  /** Listens on `host` (default 127.0.0.1) and `port` (default 0: a free one); resolves with the issuer. */
  listen (port?: number, host?: string): Promise<string>
  /** Publishes a new key, which signs this algorithm's tokens from now on; returns its `kid`. */
  addKey (alg: KeyAlg): string
  /** Stops publishing a key (and signing with it); tokens it signed fail once relying parties refetch. */
  removeKey (kid: string): void
  /** The `kid` of every published key, oldest first. */
  kids (): string[]
  /** An access token for `username`, as the token endpoint issues it unless `opts` say otherwise. */
  issue (username: string, opts?: IssueOptions): string
}

interface SigningKey {
  kid: string
  alg: KeyAlg
  jwk: Record<string, unknown>
  sign: (payload: Record<string, unknown>) => string
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest()

export function buildIdp (opts: IdpOptions = {}): Idp {
  const users = new Map((opts.users ?? DEMO_USERS).map(u => [u.username, u]))
  const audience = opts.audience ?? 'fleet-console'
  const ttl = opts.tokenTtlSeconds ?? 300
  /** Every key ever made, published or not (by kid); `published` in the order they were added. */
  const keys = new Map<string, SigningKey>()
  let published: SigningKey[] = []
  let serial = 0
  let issuer = ''

  function addKey (alg: KeyAlg): string {
    const pair = alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const kid = `${alg.toLowerCase()}-${++serial}`
    const key: SigningKey = {
      kid,
      alg,
      jwk: { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
      sign: createSigner({ key: pem(pair.privateKey), algorithm: alg, kid })
    }
    keys.set(kid, key)
    published.push(key)
    return kid
  }

  function issue (username: string, o: IssueOptions = {}): string {
    const user = users.get(username)
    if (user === undefined) throw new Error(`unknown user ${username}`)
    const key = o.kid !== undefined ? keys.get(o.kid) : published.filter(k => k.alg === (o.alg ?? 'RS256')).at(-1)
    if (key === undefined) throw new Error(`no key ${o.kid ?? o.alg ?? 'RS256'}`)
    const now = Math.floor(Date.now() / 1000)
    const aud = o.aud === undefined ? audience : o.aud
    return key.sign({
      iss: o.iss ?? issuer,
      ...(aud === null ? {} : { aud }),
      sub: user.sub,
      exp: now + (o.expiresInSeconds ?? ttl),
      typ: 'Bearer',
      preferred_username: user.username,
      realm_access: { roles: [...user.roles] }
    })
  }

  addKey('RS256')
  addKey('ES256')

  // Relying parties keep connections to an IdP open (keep-alive): closing it ends them at once
  // rather than waiting up to keepAliveTimeout (72 s) for one caught mid-answer at close.
  const app = Fastify({ logger: opts.logger ?? false, forceCloseConnections: true })

  app.get('/.well-known/openid-configuration', async () => ({
    issuer,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    token_endpoint: `${issuer}/token`,
    id_token_signing_alg_values_supported: ['RS256', 'ES256']
  }))

  app.get('/.well-known/jwks.json', async () => ({ keys: published.map(k => k.jwk) }))

  // Keycloak's password grant, simplified: JSON in, the access token out.
  app.post<{ Body: { username: string, password: string, alg?: KeyAlg } }>('/token', {
    schema: {
      body: {
        type: 'object',
        required: ['username', 'password'],
        properties: {
          username: { type: 'string', maxLength: 100 },
          password: { type: 'string', maxLength: 200 },
          alg: { enum: ['RS256', 'ES256'] }
        }
      }
    }
  }, async (request, reply) => {
    const { username, password, alg } = request.body
    const user = users.get(username)
    // Compared as digests: same work for a wrong name and a wrong password.
    if (!timingSafeEqual(digest(user?.password ?? '\0no user'), digest(password)) || user === undefined) {
      return reply.code(401).send({ error: 'invalid_grant', error_description: 'Invalid user credentials' })
    }
    return { access_token: issue(username, { alg }), token_type: 'Bearer', expires_in: ttl }
  })

  return {
    app,
    get issuer () { return issuer },
    async listen (port = 0, host = '127.0.0.1') {
      await app.listen({ host, port })
      issuer = `http://${host}:${(app.server.address() as AddressInfo).port}`
      return issuer
    },
    addKey,
    removeKey (kid) {
      if (!published.some(k => k.kid === kid)) throw new Error(`no published key ${kid}`)
      published = published.filter(k => k.kid !== kid)
    },
    kids: () => published.map(k => k.kid),
    issue
  }
}

function pem (key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString()
}
