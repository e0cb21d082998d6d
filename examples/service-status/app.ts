// Service status feed: `/ws/mcp-status` streams the health of the MCP servers to admins,
// developers and DBAs. Tokens are checked by a separate auth service (verify.ts), with local HS256
// verification while it is down. This system's convention is one close code for every refusal,
// 1008 (policy violation), with a reason that says which: the `closeCodes` option remaps the
// plugin's table.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import jwt from '@fastify/jwt'
import wsAuth, { defaultLoadUser, type WsAuthClaims } from 'fastify-ws-auth'
import { StatusBoard } from './status.ts'
import { remoteVerifier } from './verify.ts'

export const STATUS_PATH = '/ws/mcp-status'

/** Every refusal this app can produce, as 1008 with a reason a person understands. */
export const CLOSE_CODES = {
  no_token: { code: 1008, reason: 'Authentication required' },
  invalid_token: { code: 1008, reason: 'Invalid token' },
  token_expired: { code: 1008, reason: 'Token expired' },
  token_revoked: { code: 1008, reason: 'Token revoked' },
  user_not_found: { code: 1008, reason: 'User not found or inactive' },
  forbidden: { code: 1008, reason: 'Insufficient permissions' },
  internal_error: { code: 1008, reason: 'Authentication failed' }
} as const

export interface BuildOptions {
  /** Base URL of the auth service (`POST /auth/validate`). */
  authServiceUrl: string
  /** HS256 secret shared with the auth service, for local verification. */
  secret: string
  /** How long to wait for the auth service before verifying locally, in ms. @default 2000 */
  authServiceTimeoutMs?: number
  /** The status board the feed reports. @default a board of the demo servers */
  board?: StatusBoard
  logger?: FastifyServerOptions['logger']
}

export async function build (opts: BuildOptions): Promise<FastifyInstance> {
  const board = opts.board ?? new StatusBoard()
  const app = Fastify({ logger: opts.logger ?? false })

  await app.register(jwt, { secret: opts.secret, verify: { algorithms: ['HS256'] } })
  await app.register(wsAuth, {
    sources: ['query', 'header'],
    verify: remoteVerifier({
      authServiceUrl: opts.authServiceUrl,
      timeoutMs: opts.authServiceTimeoutMs ?? 2000,
      verifyLocally: (token) => app.jwt.verify<WsAuthClaims>(token)
    }),
    // The auth service says whether the account is still active; a locally verified token
    // carries no such flag (degraded mode: accepted until it expires).
    loadUser: (claims) => claims.active === false ? null : defaultLoadUser(claims),
    closeCodes: CLOSE_CODES
  })

  app.get(STATUS_PATH, { websocket: true, wsAuth: { roles: ['admin', 'developer', 'dba'] } }, (socket) => {
    // A one-way feed: client messages are ignored. (Until a route listens, the plugin holds them,
    // and closes the socket once its hold buffer is full.)
    socket.on('message', () => {})
    socket.send(JSON.stringify({ type: 'initial_status', data: { servers: board.snapshot() }, timestamp: new Date().toISOString() }))
  })

  // One listener for all sockets: each change goes to every open session of the feed.
  const onChange = (change: unknown) => app.wsAuth.broadcast({ type: 'status_change', data: change }, { route: STATUS_PATH })
  board.on('change', onChange)
  app.addHook('onClose', async () => { board.off('change', onChange) })

  return app
}
