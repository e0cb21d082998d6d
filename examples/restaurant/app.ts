// Restaurant operations: the real-time streams of a restaurant group, each guarded by
// fastify-ws-auth with the roles and permissions the group's staff have.
//
//   /analytics/realtime/dashboard            permission analytics.view_dashboard (admin, manager, analytics_viewer); topics metric:{id}
//   /analytics/realtime/metrics/:metric_name permission analytics.view_sales_reports (admin, manager)
//   /api/v1/kds/ws/:station_id               admin, manager, kitchen_staff, chef, cook; topics station:{id}
//   /api/v1/tables/ws/tables/:restaurant_id  admin, manager, host, server, staff + works at that restaurant
//   /api/v1/queues/ws/:queue_id              admin, manager, staff, server, kitchen_staff, cashier + works at the queue's restaurant
//   /api/v1/queues/ws/subscribe              the same roles; topics queue:{id}, the queue's restaurant again
//
// Tokens come in the query (`?token=`) or, without one, in the first message. Every stream is a
// topic: a route bound to one by its URL subscribes its socket server-side; on the others the
// client subscribes with the plugin's `subscribe` (see README.md). Events are `publication`s.
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import jwt from '@fastify/jwt'
import wsAuth, { type AuthorizeResult, type WsAuthRouteOptions, type WsAuthUser } from 'fastify-ws-auth'
import type { WebSocket } from 'ws'
import {
  DEMO_STAFF, isMetric, isStation, Operations, restaurantOfQueue, ROLE_PERMISSIONS, worksAt,
  type MetricName, type MetricValue, type Order, type StaffUser, type Table
} from './domain.ts'

const KITCHEN = ['admin', 'manager', 'kitchen_staff', 'chef', 'cook']
const FLOOR = ['admin', 'manager', 'host', 'server', 'staff']
const QUEUES = ['admin', 'manager', 'staff', 'server', 'kitchen_staff', 'cashier']

export interface BuildOptions {
  /** HS256 secret. @default a random secret */
  secret?: string
  staff?: readonly StaffUser[]
  operations?: Operations
  /** How long a client without `?token=` has to send its auth message, in ms. @default 5000 */
  authTimeoutMs?: number
  logger?: FastifyServerOptions['logger']
}

/** The kinds of topic: `metric:sales`, `station:grill`, `tables:r-downtown`, `queue:downtown-takeout`. */
type Kind = 'metric' | 'station' | 'tables' | 'queue'

/** One kind of topic: who may follow one, and what it holds now. */
interface Feed {
  /** `true`, `false` (4003) or `'not_found'` (4004). */
  access (user: StaffUser, id: string): AuthorizeResult
  /** Sent as the topic's `snapshot` when a client starts following it. */
  now (id: string): unknown
}

function paramOf (request: FastifyRequest, name: string): string {
  return (request.params as Record<string, string>)[name]
}

export async function build (opts: BuildOptions = {}): Promise<FastifyInstance> {
  const staff = new Map((opts.staff ?? DEMO_STAFF).map(u => [u.id, u]))
  const ops = opts.operations ?? new Operations()
  const app = Fastify({ logger: opts.logger ?? false })

  await app.register(jwt, { secret: opts.secret ?? randomBytes(32).toString('base64url') })
  await app.register(wsAuth, {
    sources: ['query', 'message'],
    authTimeout: opts.authTimeoutMs ?? 5000,
    rolePermissions: ROLE_PERMISSIONS,
    appPing: true,
    loadUser (claims) {
      const user = staff.get(String(claims.sub))
      return user?.active === true ? user : null
    },
    // What the client sees of itself, for its UI: effective permissions (as the default publicUser
    // shows them; its role expansion is not exported, so it is redone here) and restaurants.
    publicUser (user: WsAuthUser) {
      const u = user as StaffUser
      const permissions = [...new Set([...u.permissions, ...u.roles.flatMap(r => ROLE_PERMISSIONS[r] ?? [])])]
      return { id: u.id, username: u.username, roles: u.roles, permissions, restaurants: u.restaurants }
    }
  })

  // One check per kind of topic, used alike by a route's `authorize` (the topic its URL names), a
  // pattern's `authorize` (the topics a client subscribes to) and a snapshot request's policy.
  const feeds: Record<Kind, Feed> = {
    metric: { access: (_user, name) => isMetric(name) || 'not_found', now: (name) => ops.metric(name as MetricName) },
    station: { access: (_user, id) => isStation(id) || 'not_found', now: (id) => ops.ordersAt(id) },
    tables: { access: (user, id) => ops.hasRestaurant(id) ? worksAt(user, id) : 'not_found', now: (id) => ops.tablesOf(id) },
    // Staff see the queues of a restaurant they work at.
    queue: {
      access (user, id) {
        const restaurant = restaurantOfQueue(id)
        return restaurant === undefined ? 'not_found' : worksAt(user, restaurant)
      },
      now: (id) => ops.ordersIn(id)
    }
  }

  // Domain events -> topics.
  const onOrder = (order: Order) => {
    app.wsAuth.publish(`station:${order.station_id}`, order)
    app.wsAuth.publish(`queue:${order.queue_id}`, order)
  }
  const onTable = (table: Table) => app.wsAuth.publish(`tables:${table.restaurant_id}`, table)
  const onMetric = (value: MetricValue) => app.wsAuth.publish(`metric:${value.metric}`, value)
  ops.on('order', onOrder).on('table', onTable).on('metric', onMetric)
  app.addHook('onClose', async () => {
    ops.off('order', onOrder).off('table', onTable).off('metric', onMetric)
  })

  /** `{"type":"snapshot","topic","data"}`, with the request's `id` when there was one. */
  function sendSnapshot (socket: WebSocket, kind: Kind, id: string, requestId?: unknown): void {
    const snapshot = { type: 'snapshot', topic: `${kind}:${id}`, data: feeds[kind].now(id), ...(requestId === undefined ? {} : { id: requestId }) }
    socket.send(JSON.stringify(snapshot))
  }

  /** A stream bound to the topic its URL names: checked at the door; the client sends nothing (but `ping`). */
  const bound = (kind: Kind, param: string): WsAuthRouteOptions => ({
    authorize: (request, user) => feeds[kind].access(user as StaffUser, paramOf(request, param)),
    messages: { '*': false }
  })

  /**
   * Topics `<kind>:{id}` the client subscribes to, and `{"type":"snapshot","topic","id"}` requests
   * for what one holds now, under the same check; any other message is refused.
   */
  const chosen = (kind: Kind): WsAuthRouteOptions => ({
    topics: { [`${kind}:{id}`]: { authorize: (_request, user, topic) => feeds[kind].access(user as StaffUser, topic.params.id) } },
    messages: {
      snapshot: {
        authorize (_request, user, message) {
          const topic = message?.topic
          if (typeof topic !== 'string' || !topic.startsWith(`${kind}:`)) return 'not_found'
          return feeds[kind].access(user as StaffUser, topic.slice(kind.length + 1))
        }
      },
      '*': false
    }
  })

  /** Handler: subscribes the socket to the topic its URL names, and sends its snapshot. */
  const follow = (kind: Kind, param: string) => (socket: WebSocket, request: FastifyRequest) => {
    const id = paramOf(request, param)
    app.wsAuth.subscribe(socket, `${kind}:${id}`)
    sendSnapshot(socket, kind, id)
  }

  /** Handler: answers snapshot requests (the only messages the route's policy lets through). */
  const answerSnapshots = (kind: Kind) => (socket: WebSocket) => {
    socket.on('message', (raw) => {
      const { topic, id } = JSON.parse(raw.toString()) as { topic: string, id?: unknown }
      sendSnapshot(socket, kind, topic.slice(kind.length + 1), id)
    })
  }

  app.get('/analytics/realtime/dashboard', {
    websocket: true,
    wsAuth: { permissions: ['analytics.view_dashboard'], ...chosen('metric') }
  }, answerSnapshots('metric'))

  app.get('/analytics/realtime/metrics/:metric_name', {
    websocket: true,
    wsAuth: { permissions: ['analytics.view_sales_reports'], ...bound('metric', 'metric_name') }
  }, follow('metric', 'metric_name'))

  // A kitchen display follows its station; the expo may follow more.
  app.get('/api/v1/kds/ws/:station_id', {
    websocket: true,
    wsAuth: { roles: KITCHEN, ...bound('station', 'station_id'), ...chosen('station') }
  }, (socket, request) => {
    follow('station', 'station_id')(socket, request)
    answerSnapshots('station')(socket)
  })

  app.get('/api/v1/tables/ws/tables/:restaurant_id', {
    websocket: true,
    wsAuth: { roles: FLOOR, ...bound('tables', 'restaurant_id') }
  }, follow('tables', 'restaurant_id'))

  // Declared before /:queue_id; find-my-way prefers the static segment either way.
  app.get('/api/v1/queues/ws/subscribe', {
    websocket: true,
    wsAuth: { roles: QUEUES, ...chosen('queue') }
  }, answerSnapshots('queue'))

  app.get('/api/v1/queues/ws/:queue_id', {
    websocket: true,
    wsAuth: { roles: QUEUES, ...bound('queue', 'queue_id') }
  }, follow('queue', 'queue_id'))

  return app
}
