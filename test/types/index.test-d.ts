// Type tests against the BUILT declarations, imported by package name as users import them
// (`npm run build` first). Run: tsc -p test/types/tsconfig.json
// Each `@ts-expect-error` line must be an error: tsc fails when one is not.
import Fastify from 'fastify'
import type { FastifyRequest } from 'fastify'
import jwt from '@fastify/jwt'
import { Registry } from 'prom-client'
import wsAuth, { closeCodes, fastifyWsAuth, KeySourceUnavailableError } from 'fastify-ws-auth'
import type { AuthAttempt, ClusterSubscriberInfo, FailureClass, IssueTicketOptions, WsAuthMetricsOptions, RefusalPhase, SubscriberInfo, Topic, WsAuthMessage, WsAuthPluginOptions, WsAuthRouteOptions, WsAuthUser } from 'fastify-ws-auth'
import type { WebSocket } from 'ws'
import { createClient, WsAuthError } from 'fastify-ws-auth/client'
import type { ClientEvents, ClientOptions, PublicationInfo, RefusedInfo, Subscription, TicketContext, TicketProvider, UnsubscribedInfo } from 'fastify-ws-auth/client'
import { redisAdapter } from 'fastify-ws-auth/redis'
import type { RedisAdapterOptions, RedisAddress } from 'fastify-ws-auth/redis'
import { Cluster, Redis } from 'ioredis'

/** `true` when A and B are the same type (not merely assignable). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectTrue<T extends true> (_: T): void {}
/** Marks values that exist only for their types as used. */
function use (..._: unknown[]): void {}

interface AppUser {
  id: string
  displayName: string
  roles: string[]
  permissions: string[]
}

// The app types its user the way it would for @fastify/jwt alone.
declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: { sub: string, roles?: string[] }
    user: AppUser
  }
}

expectTrue<Equal<WsAuthUser, AppUser>>(true)
expectTrue<Equal<typeof wsAuth, typeof fastifyWsAuth>>(true)
expectTrue<Equal<typeof closeCodes.forbidden.code, 4003>>(true)
expectTrue<Equal<typeof closeCodes.auth_timeout.code, 4008>>(true)
const failure: FailureClass = 'not_found'
// @ts-expect-error: not a failure class
const noFailure: FailureClass = 'nope'

async function plugin (): Promise<void> {
  const app = Fastify()
  await app.register(jwt, { secret: 'secret' })

  await app.register(wsAuth, {
    sources: ['query', 'header', 'cookie', 'protocol', 'message'],
    authTimeout: 5000,
    reject: 'close',
    rolePermissions: { admin: ['journal.read'] },
    allowedOrigins: (origin, request) => origin === 'https://app.example' && request.ip !== '',
    loadUser: async (claims, request) => {
      expectTrue<Equal<typeof claims.sub, string>>(true)
      expectTrue<Equal<typeof request, FastifyRequest>>(true)
      return { id: claims.sub, displayName: claims.sub, roles: claims.roles ?? [], permissions: [] }
    },
    verify: async (token) => token === 'x' ? null : { sub: token },
    publicUser: (user) => ({ id: user.id, name: user.displayName }),
    closeCodes: { forbidden: { code: 1008, reason: 'Policy violation' } },
    onAuthSuccess: (attempt) => {
      expectTrue<Equal<typeof attempt, AuthAttempt>>(true)
      expectTrue<Equal<typeof attempt.route, string>>(true)
    },
    onAuthFailure: async (attempt) => {
      expectTrue<Equal<typeof attempt.failure, FailureClass | undefined>>(true)
    }
  })
  await app.register(fastifyWsAuth, { sources: ['header'], reject: 'http' })

  // @ts-expect-error: unknown source
  await app.register(wsAuth, { sources: ['body'] })
  // @ts-expect-error: a typo'd option name
  await app.register(wsAuth, { source: ['query'] })
  // @ts-expect-error: authTimeout is a number of ms
  await app.register(wsAuth, { authTimeout: '5000' })
  // @ts-expect-error: unknown reject mode
  await app.register(wsAuth, { reject: 'never' })
  // @ts-expect-error: loadUser must return the declared user (displayName missing)
  await app.register(wsAuth, { loadUser: async (claims) => ({ id: claims.sub, roles: [], permissions: [] }) })
  // @ts-expect-error: closeCodes keys are failure classes
  await app.register(wsAuth, { closeCodes: { forbiden: { code: 4403 } } })
  // @ts-expect-error: allowedOrigins is a list or a predicate
  await app.register(wsAuth, { allowedOrigins: 'https://app.example' })
}

function routes (): void {
  const app = Fastify()

  app.get('/ws/entries/:id', {
    websocket: true,
    wsAuth: {
      roles: ['admin', 'manager'],
      permissions: ['journal.read'],
      authorize: async (request, user) => {
        expectTrue<Equal<typeof user, AppUser>>(true)
        return (request.params as { id: string }).id === user.id ? true : 'not_found'
      },
      reject: 'http',
      sources: ['header'],
      authTimeout: 1000,
      established: false
    }
  }, (socket, request) => {
    expectTrue<Equal<typeof socket.user, AppUser | undefined>>(true)
    expectTrue<Equal<typeof request.user, AppUser>>(true)
  })
  app.get('/ws/on', { websocket: true, wsAuth: true }, () => {})
  app.get('/ws/off', { websocket: true, wsAuth: false }, () => {})

  // @ts-expect-error: wsAuth is a boolean or an object
  app.get('/ws/a', { websocket: true, wsAuth: 'admin' }, () => {})
  // @ts-expect-error: roles is a list
  app.get('/ws/b', { websocket: true, wsAuth: { roles: 'admin' } }, () => {})
  // @ts-expect-error: unknown reject mode
  app.get('/ws/c', { websocket: true, wsAuth: { reject: 'never' } }, () => {})
  // @ts-expect-error: unknown source
  app.get('/ws/d', { websocket: true, wsAuth: { sources: ['body'] } }, () => {})
  // @ts-expect-error: authorize answers true, false or 'not_found'
  app.get('/ws/e', { websocket: true, wsAuth: { authorize: () => 'maybe' } }, () => {})
  // @ts-expect-error: a typo'd route option
  app.get('/ws/f', { websocket: true, wsAuth: { rols: ['admin'] } }, () => {})

  app.route({
    method: 'GET',
    url: '/ws/route',
    websocket: true,
    wsAuth: { permissions: ['journal.read'] },
    handler: async () => 'http',
    wsHandler: (socket, request) => {
      expectTrue<Equal<typeof socket.user, AppUser | undefined>>(true)
      expectTrue<Equal<typeof request.user, AppUser>>(true)
    }
  })
  app.route({
    method: 'GET',
    url: '/ws/route-bad',
    websocket: true,
    // @ts-expect-error: permissions is a list
    wsAuth: { permissions: 'journal.read' },
    handler: async () => 'http'
  })

  // The option types are exported for apps that build them apart.
  const routeOptions: WsAuthRouteOptions = { roles: ['admin'] }
  const pluginOptions: WsAuthPluginOptions = { sources: ['message'], authTimeout: 100 }
  app.get('/ws/g', { websocket: true, wsAuth: routeOptions }, () => {})
  app.register(wsAuth, pluginOptions)
}

function afterTheDoor (): void {
  const app = Fastify()
  app.get('/ws/restaurants/:rid', {
    websocket: true,
    wsAuth: {
      roles: ['staff'],
      messages: {
        'order:void': { roles: ['manager'] },
        'stats:get': { permissions: ['analytics.view'] },
        'table:assign': {
          authorize: async (request, user, message) => {
            expectTrue<Equal<typeof user, AppUser>>(true)
            expectTrue<Equal<typeof message, WsAuthMessage>>(true)
            expectTrue<Equal<typeof request, FastifyRequest>>(true)
            return message?.table === 1 ? true : 'not_found'
          }
        },
        'debug:dump': false,
        '*': true
      },
      topics: {
        'queue:{queueId}': {
          roles: ['staff'],
          authorize: (_request, _user, topic) => {
            expectTrue<Equal<typeof topic, Topic>>(true)
            expectTrue<Equal<typeof topic.params, Record<string, string>>>(true)
            return topic.params.queueId !== ''
          }
        },
        'everyone:{x}': true
      },
      maxTopics: 10,
      onRefused: 'close'
    }
  }, (socket) => {
    expectTrue<Equal<ReturnType<typeof app.wsAuth.subscribe>, boolean>>(true)
    app.wsAuth.subscribe(socket, 'order:7')
    const dropped = app.wsAuth.unsubscribe(socket, 'order:7')
    expectTrue<Equal<typeof dropped, boolean>>(true)
    const ended = app.wsAuth.unsubscribe({ userId: 'u1' }, 'order:7')
    expectTrue<Equal<typeof ended, number | Promise<number>>>(true)
    const reached = app.wsAuth.publish('order:7', { status: 'ready' })
    expectTrue<Equal<typeof reached, number | Promise<number>>>(true)
    const here = app.wsAuth.subscribers('order:7')
    expectTrue<Equal<typeof here, SubscriberInfo[]>>(true)
    const everywhere = app.wsAuth.subscribers('order:7', { cluster: true })
    expectTrue<Equal<typeof everywhere, Promise<ClusterSubscriberInfo[]>>>(true)
    const stats = app.wsAuth.stats()
    expectTrue<Equal<typeof stats.subscriptions, number>>(true)
    expectTrue<Equal<typeof stats.refused, Record<number, number>>>(true)
    use(dropped, ended, reached, here, everywhere, stats)
  })
  const attempt = {} as AuthAttempt
  expectTrue<Equal<typeof attempt.phase, RefusalPhase | undefined>>(true)
  use(attempt)
  // @ts-expect-error: a message policy is a boolean or an object
  app.get('/ws/h', { websocket: true, wsAuth: { messages: { a: 'yes' } } }, () => {})
  // @ts-expect-error: a message authorize answers true, false or 'not_found'
  app.get('/ws/i', { websocket: true, wsAuth: { messages: { a: { authorize: () => 'maybe' } } } }, () => {})
  // @ts-expect-error: a topic policy is true or an object (false is pointless)
  app.get('/ws/j', { websocket: true, wsAuth: { topics: { 'a:{b}': false } } }, () => {})
  // @ts-expect-error: onRefused is 'reply' or 'close'
  app.get('/ws/k', { websocket: true, wsAuth: { messages: {}, onRefused: 'drop' } }, () => {})
  // @ts-expect-error: subscribe takes a socket
  app.wsAuth.subscribe({}, 'a')
  // @ts-expect-error: unsubscribe takes a socket or { userId }
  app.wsAuth.unsubscribe({ user: 'u1' }, 'a')
  app.wsAuth.subscribe({} as WebSocket, 'a')
}

// Tickets and key sources (issue 18), server side.
async function serverTickets (): Promise<void> {
  const app = Fastify()
  await app.register(wsAuth, { sources: ['ticket', 'header'], ticketParam: 'one_time' })
  app.get('/ws/t', { websocket: true, wsAuth: { sources: ['ticket'] } }, () => {})
  app.post('/ticket', async (request) => {
    const ticket = await app.wsAuth.issueTicket(request.user, { ttl: 10_000, route: '/ws/t' })
    expectTrue<Equal<typeof ticket, string>>(true)
    use(ticket)
    return { ticket: await app.wsAuth.issueTicket({ sub: 'u1', exp: 1 }) }
  })
  const opts: IssueTicketOptions = { ttl: 1 }
  const failure: FailureClass = 'invalid_ticket'
  expectTrue<Equal<typeof closeCodes.invalid_ticket.code, 4001>>(true)
  const keysDown = new KeySourceUnavailableError({ cause: new Error('JWKS down') })
  expectTrue<Equal<typeof keysDown.code, 'FST_WS_AUTH_KEY_SOURCE_UNAVAILABLE'>>(true)
  use(opts, failure, keysDown)
  // @ts-expect-error: ttl is a number of ms
  await app.wsAuth.issueTicket({ sub: 'u1' }, { ttl: '30s' })
  // @ts-expect-error: claims are an object
  await app.wsAuth.issueTicket('u1')
  // @ts-expect-error: an unknown source
  await app.register(wsAuth, { sources: ['tickets'] })
}

// Metrics and traces (issue 19).
async function observability (): Promise<void> {
  const app = Fastify()
  await app.register(wsAuth, { metrics: true, traces: false })
  const registry = new Registry()
  const metrics: WsAuthMetricsOptions = { registry, prefix: 'realtime_' }
  await app.register(wsAuth, { metrics, traces: { userId: true } })
  // @ts-expect-error: the prefix is a string
  await app.register(wsAuth, { metrics: { prefix: 1 } })
  // @ts-expect-error: a registry is a prom-client Registry
  await app.register(wsAuth, { metrics: { registry: {} } })
  // @ts-expect-error: traces takes userId only
  await app.register(wsAuth, { traces: { user: true } })
}

// The client's topics (issue 17).
async function clientTopics (): Promise<void> {
  const client = createClient({ url: 'ws://127.0.0.1/ws', token: 't' })
  const sub = client.subscribe('queue:42', (data) => { expectTrue<Equal<typeof data, unknown>>(true) })
  expectTrue<Equal<typeof sub, Subscription>>(true)
  expectTrue<Equal<typeof sub.ready, Promise<void>>>(true)
  expectTrue<Equal<ReturnType<typeof sub.unsubscribe>, void>>(true)
  client.subscribe<{ order: number }>('queue:42', (order) => { expectTrue<Equal<typeof order.order, number>>(true) })
  await sub.ready.catch((err: unknown) => { if (err instanceof WsAuthError) use(err.code, err.kind, err.failure) })
  client.on('refused', (info) => {
    expectTrue<Equal<typeof info, RefusedInfo>>(true)
    expectTrue<Equal<typeof info.of, string | null>>(true)
    expectTrue<Equal<typeof info.code, number>>(true)
    expectTrue<Equal<typeof info.id, string | number | undefined>>(true)
    expectTrue<Equal<typeof info.topic, string | undefined>>(true)
  })
  client.on('unsubscribed', (info) => {
    expectTrue<Equal<typeof info, UnsubscribedInfo>>(true)
    expectTrue<Equal<typeof info.code, number | null>>(true)
    expectTrue<Equal<typeof info.topic, string>>(true)
  })
  client.on('publication', (info) => {
    expectTrue<Equal<typeof info, PublicationInfo>>(true)
    expectTrue<Equal<typeof info.data, unknown>>(true)
  })
  expectTrue<Equal<ClientEvents['refused'], RefusedInfo>>(true)
  // @ts-expect-error: a topic is a string
  client.subscribe(42, () => {})
  // @ts-expect-error: the callback is required
  client.subscribe('queue:42')
  // @ts-expect-error: a subscription has no resubscribe
  sub.resubscribe()
  // @ts-expect-error: not an event of the client
  client.on('subscribed', () => {})
}

// The client's one-time tickets (issue 18).
function clientTickets (): void {
  createClient({ url: '/ws', ticket: async () => 'a-ticket' })
  createClient({ url: '/ws', ticket: () => 'a-ticket', ticketParam: 'one_time' })
  createClient({ url: '/ws', ticket: async () => null }) // no ticket: the client stops
  createClient({
    url: '/ws',
    ticket: async ({ reason, attempt }) => {
      expectTrue<Equal<typeof reason, 'connect' | 'reconnect' | 'reauthenticate'>>(true)
      expectTrue<Equal<typeof attempt, number>>(true)
      return 'a-ticket'
    }
  })
  expectTrue<Equal<Parameters<TicketProvider>[0], TicketContext>>(true)
  // A spread of partial options still builds a client, as tests and wrappers do.
  const partial: Partial<ClientOptions> = {}
  createClient({ url: '/ws', ticket: async () => 'a-ticket', ...partial })
  // @ts-expect-error: a token or a ticket is required
  createClient({ url: '/ws' })
  // @ts-expect-error: a ticket is a function: a ticket string opens one connection only
  createClient({ url: '/ws', ticket: 'a-ticket' })
  // @ts-expect-error: ticket() returns a string
  createClient({ url: '/ws', ticket: async () => ({ ticket: 'a-ticket' }) })
  // @ts-expect-error: ticketParam is a string
  createClient({ url: '/ws', ticket: async () => 'a-ticket', ticketParam: 1 })
  createClient({
    url: '/ws',
    ticket: ({ reason }) => {
      // @ts-expect-error: a ticket session is never refreshed
      if (reason === 'refresh') return null
      return 'a-ticket'
    }
  })
}

function redisSentinel (): void {
  const sentinels = [{ host: '10.0.0.1', port: 26379 }, { host: '10.0.0.2', port: 26379 }]
  redisAdapter({ sentinels, name: 'mymaster', prefix: 'app' })
  redisAdapter({ client: new Redis({ sentinels, name: 'mymaster' }), prefix: 'app' })
  const options: RedisAdapterOptions = { sentinels, name: 'mymaster', requestTimeout: 500, onRedisError: 'fail-closed' }
  redisAdapter(options)
  expectTrue<Equal<RedisAdapterOptions['sentinels'], ReadonlyArray<{ host: string, port: number }> | undefined>>(true)
  expectTrue<Equal<RedisAdapterOptions['name'], string | undefined>>(true)
  // A frozen list of addresses is fine (the adapter copies it).
  redisAdapter({ sentinels: Object.freeze([{ host: '10.0.0.1', port: 26379 }]), name: 'mymaster' })
  // @ts-expect-error: a port is a number
  redisAdapter({ sentinels: [{ host: '10.0.0.1', port: '26379' }], name: 'mymaster' })
  // @ts-expect-error: a Sentinel address has a host
  redisAdapter({ sentinels: [{ port: 26379 }], name: 'mymaster' })
  // @ts-expect-error: other ioredis fields go in a client's options
  redisAdapter({ sentinels: [{ host: '10.0.0.1', port: 26379, family: 6 }], name: 'mymaster' })
  // @ts-expect-error: sentinels is a list of addresses, not a string
  redisAdapter({ sentinels: '10.0.0.1:26379', name: 'mymaster' })
  // @ts-expect-error: the master name is a string
  redisAdapter({ sentinels, name: 1 })
}

function redisCluster (): void {
  const nodes: RedisAddress[] = [{ host: '10.0.0.1', port: 6379 }, { host: '10.0.0.2', port: 6379 }]
  redisAdapter({ cluster: { nodes }, prefix: 'app' })
  redisAdapter({ client: new Cluster(nodes, { redisOptions: { password: 'secret' } }), prefix: 'app' })
  const options: RedisAdapterOptions = { cluster: { nodes: Object.freeze(nodes) }, instanceTtl: 9000 }
  redisAdapter(options)
  expectTrue<Equal<RedisAdapterOptions['client'], Redis | Cluster | undefined>>(true)
  expectTrue<Equal<RedisAdapterOptions['cluster'], { nodes: ReadonlyArray<RedisAddress> } | undefined>>(true)
  // @ts-expect-error: the nodes are addresses, not URLs
  redisAdapter({ cluster: { nodes: ['redis://10.0.0.1:6379'] } })
  // @ts-expect-error: a node's port is a number
  redisAdapter({ cluster: { nodes: [{ host: '10.0.0.1', port: '6379' }] } })
  // @ts-expect-error: other ioredis Cluster options go in a client's options
  redisAdapter({ cluster: { nodes, scaleReads: 'slave' } })
  // @ts-expect-error: cluster is an object with nodes
  redisAdapter({ cluster: nodes })
}

export { redisCluster, redisSentinel, plugin, routes, afterTheDoor, serverTickets, observability, clientTopics, clientTickets, failure, noFailure }
