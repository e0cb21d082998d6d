// Restaurant operations: the real-time streams of a restaurant group, each guarded by
// fastify-ws-auth with the roles and permissions the group's staff have.
//
//   /analytics/realtime/dashboard            permission analytics.view_dashboard (admin, manager, analytics_viewer)
//   /analytics/realtime/metrics/:metric_name permission analytics.view_sales_reports (admin, manager)
//   /api/v1/kds/ws/:station_id               admin, manager, kitchen_staff, chef, cook
//   /api/v1/tables/ws/tables/:restaurant_id  admin, manager, host, server, staff + works at that restaurant
//   /api/v1/queues/ws/:queue_id              admin, manager, staff, server, kitchen_staff, cashier
//   /api/v1/queues/ws/subscribe              the same roles, queues chosen by `subscribe`
//
// Tokens come in the query (`?token=`) or, without one, in the first message. After
// `connection_established`, clients speak `{"type":"subscribe","data":{...}}` (see README.md).
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import jwt from '@fastify/jwt'
import wsAuth, { type AuthorizeFn, type WsAuthUser } from 'fastify-ws-auth'
import {
  DEMO_STAFF, isMetric, isQueue, isStation, Operations, ROLE_PERMISSIONS,
  type MetricName, type MetricValue, type Order, type StaffUser, type Table
} from './domain.ts'
import { Hub } from './hub.ts'
import { serveStream, type Subscribable } from './protocol.ts'

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

/** `authorize` that answers 4004 for a resource that does not exist (by route param). */
function exists (param: string, test: (id: string) => boolean): AuthorizeFn {
  return (request) => test(paramOf(request, param)) ? true : 'not_found'
}

function paramOf (request: FastifyRequest, name: string): string {
  return (request.params as Record<string, string>)[name]
}

export async function build (opts: BuildOptions = {}): Promise<FastifyInstance> {
  const staff = new Map((opts.staff ?? DEMO_STAFF).map(u => [u.id, u]))
  const ops = opts.operations ?? new Operations()
  const hub = new Hub()
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

  // Domain events -> topics.
  const onOrder = (order: Order) => {
    hub.publish(`kds:${order.station_id}`, { type: 'order_created', data: order })
    hub.publish(`queue:${order.queue_id}`, { type: 'queue_update', data: { queue_id: order.queue_id, order } })
  }
  const onTable = (table: Table) => hub.publish(`tables:${table.restaurant_id}`, { type: 'table_update', data: table })
  const onMetric = (value: MetricValue) => hub.publish(`metrics:${value.metric}`, { type: 'metric_update', data: value })
  ops.on('order', onOrder).on('table', onTable).on('metric', onMetric)
  app.addHook('onClose', async () => {
    ops.off('order', onOrder).off('table', onTable).off('metric', onMetric)
  })

  const metrics: Subscribable = {
    key: 'metrics',
    exists: isMetric,
    topic: (name) => `metrics:${name}`,
    snapshot: (name) => ({ type: 'metric_update', data: ops.metric(name as MetricName) })
  }
  const queues: Subscribable = {
    key: 'queue_ids',
    exists: isQueue,
    topic: (id) => `queue:${id}`,
    snapshot: (id) => ({ type: 'queue_snapshot', data: { queue_id: id, orders: ops.ordersIn(id) } })
  }

  app.get('/analytics/realtime/dashboard', {
    websocket: true,
    wsAuth: { permissions: ['analytics.view_dashboard'] }
  }, (socket) => serveStream(socket, hub, { subscribable: metrics }))

  app.get('/analytics/realtime/metrics/:metric_name', {
    websocket: true,
    wsAuth: { permissions: ['analytics.view_sales_reports'], authorize: exists('metric_name', isMetric) }
  }, (socket, request) => serveStream(socket, hub, { fixed: metrics, id: paramOf(request, 'metric_name') }))

  app.get('/api/v1/kds/ws/:station_id', {
    websocket: true,
    wsAuth: { roles: KITCHEN, authorize: exists('station_id', isStation) }
  }, (socket, request) => {
    const station = paramOf(request, 'station_id')
    serveStream(socket, hub, {
      fixed: { key: 'station_id', exists: isStation, topic: (id) => `kds:${id}`, snapshot: (id) => ({ type: 'kds_snapshot', data: { station_id: id, orders: ops.ordersAt(id) } }) },
      id: station
    })
  })

  app.get('/api/v1/tables/ws/tables/:restaurant_id', {
    websocket: true,
    wsAuth: {
      roles: FLOOR,
      // Resource ownership: staff see only the floor of a restaurant they work at.
      authorize (request, user) {
        const restaurant = paramOf(request, 'restaurant_id')
        if (!ops.hasRestaurant(restaurant)) return 'not_found'
        const { restaurants } = user as StaffUser
        return restaurants.includes('*') || restaurants.includes(restaurant)
      }
    }
  }, (socket, request) => {
    serveStream(socket, hub, {
      fixed: { key: 'restaurant_id', exists: (id) => ops.hasRestaurant(id), topic: (id) => `tables:${id}`, snapshot: (id) => ({ type: 'tables_snapshot', data: { restaurant_id: id, tables: ops.tablesOf(id) } }) },
      id: paramOf(request, 'restaurant_id')
    })
  })

  // Declared before /:queue_id; find-my-way prefers the static segment either way.
  app.get('/api/v1/queues/ws/subscribe', {
    websocket: true,
    wsAuth: { roles: QUEUES }
  }, (socket) => serveStream(socket, hub, { subscribable: queues }))

  app.get('/api/v1/queues/ws/:queue_id', {
    websocket: true,
    wsAuth: { roles: QUEUES, authorize: exists('queue_id', isQueue) }
  }, (socket, request) => serveStream(socket, hub, { fixed: queues, id: paramOf(request, 'queue_id') }))

  return app
}
