// The separate auth service the status feed asks: `POST /auth/validate {"token"}` answers
// 200 `{"valid":true,"user":{"id","username","roles","active"},"exp"}` for a genuine token (its
// account may have been deactivated since), or 401 `{"valid":false,"error"}` for a bad one. It
// issues the tokens too (HS256, with a secret it shares with the feed, which verifies them locally
// while this service is down).
import Fastify, { type FastifyInstance } from 'fastify'
import jwt from '@fastify/jwt'

export interface Account {
  id: string
  username: string
  roles: string[]
  /** Deactivated accounts are refused by the feed even while their tokens have not expired. */
  active: boolean
}

export const DEMO_ACCOUNTS: readonly Account[] = [
  { id: 'u-admin', username: 'ada', roles: ['admin'], active: true },
  { id: 'u-dev', username: 'dev', roles: ['developer'], active: true },
  { id: 'u-dba', username: 'dee', roles: ['dba'], active: true },
  { id: 'u-support', username: 'sam', roles: ['support'], active: true },
  { id: 'u-gone', username: 'gus', roles: ['developer'], active: false }
]

export interface AuthServiceOptions {
  secret: string
  accounts?: readonly Account[]
}

export interface AuthService {
  app: FastifyInstance
  /** Issues a token carrying what the feed needs to authorize while this service is down. */
  issueToken (accountId: string, expiresIn?: number | string): string
}

export async function buildAuthService (opts: AuthServiceOptions): Promise<AuthService> {
  const accounts = new Map((opts.accounts ?? DEMO_ACCOUNTS).map(a => [a.id, { ...a }]))
  const app = Fastify()
  await app.register(jwt, { secret: opts.secret, sign: { algorithm: 'HS256' }, verify: { algorithms: ['HS256'] } })

  app.post<{ Body: { token: string } }>('/auth/validate', {
    schema: { body: { type: 'object', required: ['token'], properties: { token: { type: 'string', maxLength: 8192 } } } }
  }, async (request, reply) => {
    let claims: { sub: string, exp?: number }
    try {
      claims = app.jwt.verify(request.body.token)
    } catch (err) {
      const expired = (err as { code?: string }).code === 'FAST_JWT_EXPIRED'
      return reply.code(401).send({ valid: false, error: expired ? 'token_expired' : 'invalid_token' })
    }
    const account = accounts.get(claims.sub)
    if (account === undefined) return reply.code(401).send({ valid: false, error: 'invalid_token' })
    const { id, username, roles, active } = account
    return { valid: true, user: { id, username, roles, active }, exp: claims.exp ?? null }
  })

  function issueToken (accountId: string, expiresIn: number | string = '1h'): string {
    const account = accounts.get(accountId)
    if (account === undefined) throw new Error(`unknown account ${accountId}`)
    return app.jwt.sign({ sub: account.id, username: account.username, roles: account.roles }, { expiresIn })
  }

  return { app, issueToken }
}
