// Admin dashboard: a login route issues short-lived JWTs; admins and viewers open
// `/admin/ws?token=...`, and admins get live server stats (on request and on a timer), with JSON
// ping/pong. A viewer's stats request is refused by a `messages` policy. GET /admin/test serves an
// HTML page to try it all by hand.
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import jwt from '@fastify/jwt'
import wsAuth from 'fastify-ws-auth'
import { testPage } from './page.ts'
import { memoryUsers, type UserStore } from './users.ts'

export const WS_PATH = '/admin/ws'
export const LOGIN_PATH = '/admin/login'

export interface BuildOptions {
  /** HS256 secret. @default a random secret */
  secret?: string
  /** Accounts that may log in. @default the demo accounts (admin, viewer) */
  users?: UserStore
  /** Lifetime of the tokens the login route issues, in seconds. @default 900 */
  tokenTtlSeconds?: number
  /** Period of the stats broadcast to connected admins, in ms; `false` turns it off. @default 5000 */
  statsIntervalMs?: number | false
  logger?: FastifyServerOptions['logger']
}

export async function build (opts: BuildOptions = {}): Promise<FastifyInstance> {
  const users = opts.users ?? memoryUsers()
  const ttl = opts.tokenTtlSeconds ?? 900
  const app = Fastify({ logger: opts.logger ?? false })

  await app.register(jwt, { secret: opts.secret ?? randomBytes(32).toString('base64url') })
  await app.register(wsAuth, {
    sources: ['query'],
    // `{"type":"ping"}` -> `{"type":"pong","timestamp"}`, answered by the plugin.
    appPing: true,
    // Short-lived tokens: warn a minute ahead so a client can send a fresh one in band.
    expiryWarning: 60_000,
    // Roles come from the user store, not the token: a demoted admin loses access on reconnect.
    loadUser: (claims) => users.findUser(String(claims.sub)) ?? null
  })

  app.post<{ Body: { username: string, password: string } }>(LOGIN_PATH, {
    schema: {
      body: {
        type: 'object',
        required: ['username', 'password'],
        properties: { username: { type: 'string', maxLength: 100 }, password: { type: 'string', maxLength: 200 } }
      }
    }
  }, async (request, reply) => {
    const user = users.checkPassword(request.body.username, request.body.password)
    if (user === undefined) return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'Invalid username or password' })
    const token = app.jwt.sign({ sub: user.id, username: user.username }, { expiresIn: ttl })
    return { token, token_type: 'Bearer', expires_in: ttl }
  })

  app.get('/admin/test', async (_request, reply) => {
    return reply.type('text/html; charset=utf-8').send(testPage({ wsPath: WS_PATH, loginPath: LOGIN_PATH, closeCodes: app.wsAuth.closeCodes }))
  })

  function statsUpdate () {
    const { active, authenticating, users: connectedUsers, attempts, established, failures, ended } = app.wsAuth.stats()
    return {
      type: 'stats_update',
      data: {
        connections: { active, authenticating, users: connectedUsers, attempts, established, failures, ended },
        uptime_seconds: Math.round(process.uptime()),
        memory_rss_bytes: process.memoryUsage().rss
      },
      timestamp: new Date().toISOString()
    }
  }

  app.get(WS_PATH, {
    websocket: true,
    wsAuth: {
      roles: ['admin', 'viewer'],
      // Stats are for admins; any other message is refused (`{"type":"refused",...}`) as well.
      messages: { get_stats: { roles: ['admin'] }, '*': false }
    }
  }, (socket) => {
    // Only `get_stats` from an admin gets here.
    socket.on('message', () => socket.send(JSON.stringify(statsUpdate())))
  })

  if (opts.statsIntervalMs !== false) {
    const period = opts.statsIntervalMs ?? 5000
    let timer: NodeJS.Timeout | undefined
    app.addHook('onReady', async () => {
      timer = setInterval(() => {
        if (app.wsAuth.stats().active > 0) app.wsAuth.broadcast(statsUpdate(), { route: WS_PATH, roles: ['admin'] })
      }, period).unref()
    })
    app.addHook('onClose', async () => clearInterval(timer))
  }

  return app
}
