// The demo playground: a local server with a throwaway secret, in-memory users, a token mint, a
// ticket route (one-time tickets for a token's bearer), four kinds of protected routes (one with
// authorized topics), a publish button's route, for the page in demo/public to drive, and the
// plugin's Prometheus metrics at /metrics. Demo only: the mint hands out tokens, and the publish
// route publishes, for anyone who asks.
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import jwt from '@fastify/jwt'
import { Registry } from 'prom-client'
import wsAuth, { type TokenSource, type TopicRule, type WsAuthClaims } from 'fastify-ws-auth'

export interface DemoOptions {
  /** HS256 secret. @default a random one per process */
  secret?: string
  /** Fastify's logger. @default false */
  logger?: FastifyServerOptions['logger']
  /** Lifetime of a "short-lived" token, in ms (rounded up to whole seconds, as `exp` is). @default 10000 */
  shortLivedMs?: number
  /** The plugin's `expiryWarning`, in ms. @default 5000 */
  expiryWarning?: number
  /** Period of the stream route's ticks, in ms. @default 1000 */
  tickMs?: number
}

interface DemoUser { id: string, role: string, active: boolean }

/** The in-memory user store. Roles travel in the token; the store says who exists and is active. */
const USERS: readonly DemoUser[] = [
  { id: 'alice', role: 'admin', active: true },
  { id: 'bob', role: 'manager', active: true },
  { id: 'carol', role: 'viewer', active: true },
  { id: 'dave', role: 'viewer', active: false }
]

/** The demo app's own grants (what a real app keeps next to its users). */
const ROLE_PERMISSIONS: Readonly<Record<string, readonly string[]>> = {
  admin: ['projects.read', 'admin.console'],
  manager: ['projects.read'],
  viewer: ['projects.read']
}

/** How long a ticket of the demo's ticket route can be redeemed, in ms. */
const TICKET_TTL = 30_000

/** A role no route accepts, for the "wrong role" token. */
const WRONG_ROLE = 'guest'

/** Projects for the `authorize` route: admins see all, others only those they are members of. */
const PROJECTS: Readonly<Record<string, { name: string, members: readonly string[] }>> = {
  apollo: { name: 'Apollo', members: ['alice', 'bob', 'carol'] },
  hermes: { name: 'Hermes', members: ['bob'] }
}

/** The news route's topics: who may subscribe to each. A topic matching neither is refused 4004. */
const NEWS_TOPICS: Readonly<Record<string, TopicRule | true>> = {
  'news:general': true,
  'news:admin': { roles: ['admin'] }
}
const NEWS_LABELS: Readonly<Record<string, string>> = {
  'news:general': 'anyone on the route',
  'news:admin': 'role admin only'
}

/** The routes the page offers: `pattern` as declared, which a ticket is bound to. */
const ROUTES: ReadonlyArray<{ path: string, pattern: string, label: string }> = [
  { path: '/ws/stream', pattern: '/ws/stream', label: 'Stream: any valid token, a tick every second' },
  { path: '/ws/admin', pattern: '/ws/admin', label: 'Admin console: roles admin' },
  { path: '/ws/projects/apollo', pattern: '/ws/projects/:id', label: 'Project apollo: permission projects.read + authorize (members alice, bob, carol)' },
  { path: '/ws/projects/hermes', pattern: '/ws/projects/:id', label: 'Project hermes: authorize (members bob; admins see all)' },
  { path: '/ws/projects/unknown', pattern: '/ws/projects/:id', label: "Project unknown: authorize returns 'not_found'" },
  { path: '/ws/news', pattern: '/ws/news', label: 'News: any valid token; topics news:general (anyone) and news:admin (role admin), see Topics' }
]

/** Every route reads tickets too; `ticket` reads `?ticket=`, never `?token=`. */
const SOURCES: readonly TokenSource[] = ['query', 'protocol', 'message', 'ticket']

const KINDS = ['valid', 'short', 'expired', 'tampered', 'wrong_role'] as const
type Kind = typeof KINDS[number]

const PUBLIC = join(__dirname, 'public')
const STATIC: Readonly<Record<string, [file: string, type: string]>> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8']
}

/** Builds the demo app (not listening): the page, the mint, the close-code table and the protected routes. */
export async function build (opts: DemoOptions = {}): Promise<FastifyInstance> {
  const secret = opts.secret ?? randomBytes(32).toString('base64url')
  const shortLivedMs = opts.shortLivedMs ?? 10_000
  const expiryWarning = opts.expiryWarning ?? 5000
  const tickMs = opts.tickMs ?? 1000

  // Keep the plugin's own lines (one per attempt), not one per page asset.
  const app = Fastify({ logger: opts.logger ?? false, logController: new LogController({ disableRequestLogging: true }) })
  // A registry of this app's own (not prom-client's global one): the plugin's ws_auth_* metrics
  // and nothing else (no collectDefaultMetrics), and two demo apps in one process count apart.
  const registry = new Registry()
  await app.register(jwt, { secret })
  await app.register(wsAuth, {
    sources: SOURCES,
    expiryWarning,
    appPing: true,
    metrics: { registry },
    loadUser (claims) {
      const user = USERS.find(u => u.id === claims.sub)
      if (user === undefined || !user.active) return null
      const roles = Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : []
      return { id: user.id, username: user.id, roles, permissions: roles.flatMap(r => ROLE_PERMISSIONS[r] ?? []) }
    }
  })

  for (const [url, [file, type]] of Object.entries(STATIC)) {
    app.get(url, async (_request, reply) => reply.type(type).header('cache-control', 'no-store').send(await readFile(join(PUBLIC, file))))
  }

  app.get('/demo/info', async () => ({
    users: USERS.map(u => ({ id: u.id, role: u.role, active: u.active })),
    kinds: KINDS.map(kind => ({ kind, ...describeKind(kind, shortLivedMs) })),
    sources: [
      { source: 'query', label: 'query ?token=' },
      { source: 'protocol', label: "subprotocol ['bearer.<jwt>', 'bearer']" },
      { source: 'message', label: 'first message {"type":"auth","token"}' },
      { source: 'ticket', label: 'one-time ticket ?ticket= (POST /demo/ticket with the token first)' },
      { source: 'ticket_reuse', label: 'the last ticket again (already used: refused)' },
      { source: 'none', label: 'none (no token at all)' }
    ],
    routes: ROUTES,
    topicsRoute: '/ws/news',
    topics: Object.keys(NEWS_TOPICS).map(topic => ({ topic, label: NEWS_LABELS[topic] })),
    options: { sources: SOURCES, expiryWarning, appPing: true }
  }))

  // The plugin's own table: the page reads every close code's meaning from here, not from a copy.
  app.get('/demo/close-codes', async () => app.wsAuth.closeCodes)

  app.get('/demo/stats', async () => app.wsAuth.stats())

  // What Prometheus scrapes (docs/observability.md; test/prometheus.test.ts runs a real one on it).
  app.get('/metrics', async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()))

  app.post<{ Body: { user: string, kind: Kind } }>('/demo/token', {
    schema: {
      body: {
        type: 'object',
        required: ['user', 'kind'],
        additionalProperties: false,
        properties: { user: { enum: USERS.map(u => u.id) }, kind: { enum: [...KINDS] } }
      }
    }
  }, async (request) => {
    const { user: id, kind } = request.body
    const user = USERS.find(u => u.id === id)!
    const now = Date.now()
    const iat = Math.floor(now / 1000)
    const claims: Record<string, unknown> = { sub: user.id, username: user.id, roles: [kind === 'wrong_role' ? WRONG_ROLE : user.role], iat }
    if (kind === 'short') claims.exp = Math.ceil((now + shortLivedMs) / 1000)
    else if (kind === 'expired') Object.assign(claims, { iat: iat - 600, exp: iat - 60 })
    else claims.exp = iat + 15 * 60
    let token = app.jwt.sign(claims)
    if (kind === 'tampered') token = tamper(token)
    return { token, kind, user: user.id, claims: decodePayload(token) }
  })

  // A one-time ticket for the bearer of a valid token, bound to a route pattern: what an app's own
  // ticket route does (its session cookie or token authenticates the request). The ticket opens one
  // socket, once, within 30 s; the claims it carries are the token's, `exp` included.
  app.post<{ Body: { route: string } }>('/demo/ticket', {
    schema: {
      body: {
        type: 'object',
        required: ['route'],
        additionalProperties: false,
        properties: { route: { enum: [...new Set(ROUTES.map(r => r.pattern))] } }
      }
    }
  }, async (request) => {
    await request.jwtVerify()
    const ticket = await app.wsAuth.issueTicket(request.user as WsAuthClaims, { route: request.body.route, ttl: TICKET_TTL })
    return { ticket, route: request.body.route, ttl: TICKET_TTL }
  })

  app.post<{ Body: { user: string } }>('/demo/kick', {
    schema: { body: { type: 'object', required: ['user'], properties: { user: { type: 'string' } } } }
  }, async (request) => ({ closed: await app.wsAuth.disconnectUser(request.body.user) }))

  // The Publish buttons: a publication when asked for (no timer), so a test decides when one flows.
  const published = new Map<string, number>()
  app.post<{ Body: { topic: string } }>('/demo/publish', {
    schema: {
      body: {
        type: 'object',
        required: ['topic'],
        additionalProperties: false,
        properties: { topic: { enum: Object.keys(NEWS_TOPICS) } }
      }
    }
  }, async (request) => {
    const { topic } = request.body
    const n = (published.get(topic) ?? 0) + 1
    published.set(topic, n)
    const reached = await app.wsAuth.publish(topic, { n, headline: `${topic} bulletin #${n}`, at: new Date().toISOString() })
    return { topic, n, reached }
  })

  app.get('/ws/stream', { websocket: true }, (socket) => {
    let n = 0
    const timer = setInterval(() => socket.send(JSON.stringify({ type: 'tick', n: ++n, at: new Date().toISOString() })), tickMs)
    socket.on('close', () => clearInterval(timer))
    socket.on('message', (data) => socket.send(JSON.stringify({ type: 'echo', data: data.toString() })))
  })

  app.get('/ws/admin', { websocket: true, wsAuth: { roles: ['admin'] } }, (socket) => {
    socket.send(JSON.stringify({ type: 'admin_console', stats: app.wsAuth.stats() }))
    socket.on('message', (data) => socket.send(JSON.stringify({ type: 'echo', data: data.toString() })))
  })

  app.get<{ Params: { id: string } }>('/ws/projects/:id', {
    websocket: true,
    wsAuth: {
      permissions: ['projects.read'],
      authorize (request, user) {
        const project = PROJECTS[(request.params as { id: string }).id]
        if (project === undefined) return 'not_found'
        return (user.roles ?? []).includes('admin') || project.members.includes(String(user.id))
      }
    }
  }, (socket, request) => {
    const id = request.params.id
    socket.send(JSON.stringify({ type: 'project', id, ...PROJECTS[id] }))
    socket.on('message', (data) => socket.send(JSON.stringify({ type: 'echo', data: data.toString() })))
  })

  // subscribe / unsubscribe are answered by the plugin and never reach this handler.
  app.get('/ws/news', { websocket: true, wsAuth: { topics: NEWS_TOPICS } }, (socket) => {
    socket.on('message', (data) => socket.send(JSON.stringify({ type: 'echo', data: data.toString() })))
  })

  return app
}

function describeKind (kind: Kind, shortLivedMs: number): { label: string, description: string } {
  switch (kind) {
    case 'valid': return { label: 'valid (15 min)', description: 'Signed with the server secret, expires in 15 minutes.' }
    case 'short': return { label: `short-lived (${Math.ceil(shortLivedMs / 1000)} s)`, description: 'Watch token_expiring, then the close when exp passes (or refresh in band before).' }
    case 'expired': return { label: 'expired', description: 'exp was a minute ago: refused at the handshake.' }
    case 'tampered': return { label: 'tampered signature', description: 'Payload edited after signing (role admin, exp +1 h): the signature no longer matches.' }
    case 'wrong_role': return { label: `wrong role (${WRONG_ROLE})`, description: `Valid signature, but the role is "${WRONG_ROLE}", which no protected route accepts.` }
  }
}

/** Edits the payload of a signed token without signing it again. */
function tamper (token: string): string {
  const [header, payload, signature] = token.split('.')
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>
  const edited = { ...claims, roles: ['admin'], exp: Number(claims.exp) + 3600 }
  return [header, Buffer.from(JSON.stringify(edited)).toString('base64url'), signature].join('.')
}

function decodePayload (token: string): unknown {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
}
