import t, { type Test } from 'tap'
import { manualClockOfBuilt as manualClock } from '../../test/helpers/index.ts'
import { barrier, connect, connectWith, listen, ofType, waitFor, type Client } from '../helpers.ts'
import { build } from './app.ts'
import { Operations } from './domain.ts'

async function start (t: Test) {
  const operations = new Operations()
  const app = await build({ operations })
  const served = await listen(t, app)
  const token = (sub: string) => app.jwt.sign({ sub })
  /** Connects with `?token=` for `sub` (or no token at all). */
  const open = (path: string, sub?: string) => sub === undefined ? connect(served.ws(path)) : connectWith(served.ws(path), 'query', token(sub))
  /** Connects without a token and authenticates with the first message, then sends `after` right behind it. */
  const openWithMessage = (path: string, sub: string, ...after: unknown[]) => {
    const c = connectWith(served.ws(path), 'message', token(sub))
    c.ws.once('open', () => { for (const message of after) c.send(message) })
    return c
  }
  const order = (station: string, queue: string, total = 20) =>
    operations.placeOrder({ restaurant_id: 'r-downtown', station_id: station, queue_id: queue, items: ['burger'], total })
  return { app, served, operations, open, openWithMessage, order }
}

const FORBIDDEN = { code: 4003, reason: 'Forbidden' }
const NOT_FOUND = { code: 4004, reason: 'Not found' }

/** Closes every client that is still open (so the test's app can close at once). */
function done (...clients: Client[]): void {
  for (const c of clients) c.ws.close()
}

t.test('analytics dashboard: the permission comes from rolePermissions', async t => {
  const { open } = await start(t)
  const analyst = open('/analytics/realtime/dashboard', 'u-analyst')
  t.same((await waitFor(analyst, 'connection_established')).user, {
    id: 'u-analyst', username: 'abe', roles: ['analytics_viewer'], permissions: ['analytics.view_dashboard'], restaurants: []
  })
  const manager = open('/analytics/realtime/dashboard', 'u-manager')
  const admin = open('/analytics/realtime/dashboard', 'u-admin')
  await Promise.all([waitFor(manager, 'connection_established'), waitFor(admin, 'connection_established')])
  t.same(await open('/analytics/realtime/dashboard', 'u-chef').closed, FORBIDDEN)
  done(analyst, manager, admin)
})

t.test('dashboard: subscribe to metrics, get snapshots, then updates for those metrics only', async t => {
  const { open, order } = await start(t)
  const c = open('/analytics/realtime/dashboard', 'u-manager')
  await waitFor(c, 'connection_established')
  c.send({ type: 'subscribe', data: { metrics: ['sales', 'orders'] } })
  t.same(await waitFor(c, 'subscribed'), { type: 'subscribed', data: { metrics: ['sales', 'orders'] } })
  t.match(await waitFor(c, 'metric_update'), { data: { metric: 'sales', value: 0 } })
  t.match(await waitFor(c, 'metric_update', 2), { data: { metric: 'orders', value: 0 } })

  order('grill', 'takeout', 42.5)
  t.match(await waitFor(c, 'metric_update', 3), { data: { metric: 'sales', value: 42.5, timestamp: String } })
  t.match(await waitFor(c, 'metric_update', 4), { data: { metric: 'orders', value: 1 } })
  await barrier(c)
  t.equal(ofType(c, 'metric_update').length, 4, 'no avg_ticket: not subscribed')

  c.send({ type: 'unsubscribe', data: { metrics: ['sales'] } })
  t.same(await waitFor(c, 'unsubscribed'), { type: 'unsubscribed', data: { metrics: ['orders'] } })
  order('grill', 'takeout')
  t.match(await waitFor(c, 'metric_update', 5), { data: { metric: 'orders', value: 2 } })
  c.send({ type: 'subscribe', data: { metrics: ['revenue'] } })
  t.same(await waitFor(c, 'error'), { type: 'error', data: { message: 'Unknown metrics: revenue' } })
  done(c)
})

t.test('metric streams need analytics.view_sales_reports; an unknown metric is 4004', async t => {
  const { open } = await start(t)
  const c = open('/analytics/realtime/metrics/avg_ticket', 'u-admin')
  t.match(await waitFor(c, 'metric_update'), { data: { metric: 'avg_ticket', value: 0 } })
  t.same(await open('/analytics/realtime/metrics/avg_ticket', 'u-analyst').closed, FORBIDDEN, 'dashboard only')
  t.same(await open('/analytics/realtime/metrics/revenue', 'u-manager').closed, NOT_FOUND)
  done(c)
})

t.test('kitchen display: orders for its station only', async t => {
  const { open, order } = await start(t)
  order('grill', 'dine_in')
  const grill = open('/api/v1/kds/ws/grill', 'u-chef')
  const snapshot = await waitFor(grill, 'kds_snapshot')
  t.match(snapshot, { data: { station_id: 'grill', orders: [{ id: 'o-1', station_id: 'grill' }] } })
  order('fryer', 'dine_in')
  const third = order('grill', 'takeout')
  t.match(await waitFor(grill, 'order_created'), { data: { id: third.id, station_id: 'grill' } })
  await barrier(grill)
  t.equal(ofType(grill, 'order_created').length, 1, 'nothing from the fryer')
  t.same(await open('/api/v1/kds/ws/grill', 'u-cashier').closed, FORBIDDEN)
  t.same(await open('/api/v1/kds/ws/pastry', 'u-chef').closed, NOT_FOUND)
  done(grill)
})

t.test('table management: the role, and access to that restaurant', async t => {
  const { open, operations } = await start(t)
  const server = open('/api/v1/tables/ws/tables/r-downtown', 'u-server')
  t.match(await waitFor(server, 'tables_snapshot'), { data: { restaurant_id: 'r-downtown', tables: [{ id: 'T1', status: 'free' }] } })
  const admin = open('/api/v1/tables/ws/tables/r-harbor', 'u-admin')
  await waitFor(admin, 'tables_snapshot')

  operations.setTable('r-downtown', 'T2', 'seated', 4)
  t.same((await waitFor(server, 'table_update')).data, { id: 'T2', restaurant_id: 'r-downtown', seats: 4, status: 'seated' })
  await barrier(admin)
  t.same(ofType(admin, 'table_update'), [], 'another restaurant\'s floor')

  t.same(await open('/api/v1/tables/ws/tables/r-downtown', 'u-host').closed, FORBIDDEN, 'a host of another restaurant')
  t.same(await open('/api/v1/tables/ws/tables/r-downtown', 'u-chef').closed, FORBIDDEN, 'not a floor role')
  t.same(await open('/api/v1/tables/ws/tables/r-nowhere', 'u-admin').closed, NOT_FOUND)
  done(server, admin)
})

t.test('order queue: one queue by URL', async t => {
  const { open, order } = await start(t)
  const c = open('/api/v1/queues/ws/takeout', 'u-cashier')
  t.same((await waitFor(c, 'queue_snapshot')).data, { queue_id: 'takeout', orders: [] })
  const placed = order('grill', 'takeout')
  t.same((await waitFor(c, 'queue_update')).data, { queue_id: 'takeout', order: placed })
  c.send({ type: 'subscribe', data: { queue_ids: ['delivery'] } })
  t.same((await waitFor(c, 'error')).data, { message: 'This stream follows what its URL names: there is nothing to subscribe' })
  t.same(await open('/api/v1/queues/ws/takeout', 'u-chef').closed, FORBIDDEN)
  t.same(await open('/api/v1/queues/ws/walk_in', 'u-cashier').closed, NOT_FOUND)
  done(c)
})

t.test('bulk queues: first-message auth, then subscribe right behind it', async t => {
  const { openWithMessage, order } = await start(t)
  const c = openWithMessage('/api/v1/queues/ws/subscribe', 'u-server', { type: 'subscribe', data: { queue_ids: ['takeout', 'delivery'] } })
  t.match(await waitFor(c, 'connection_established'), { user: { id: 'u-server' } })
  t.same((await waitFor(c, 'subscribed')).data, { queue_ids: ['takeout', 'delivery'] })
  t.same((await waitFor(c, 'queue_snapshot', 2)).data, { queue_id: 'delivery', orders: [] })

  order('grill', 'dine_in')
  const takeout = order('grill', 'takeout')
  t.same((await waitFor(c, 'queue_update')).data, { queue_id: 'takeout', order: takeout })
  c.send({ type: 'unsubscribe', data: { queue_ids: ['takeout'] } })
  t.same((await waitFor(c, 'unsubscribed')).data, { queue_ids: ['delivery'] })
  order('grill', 'takeout')
  const delivery = order('grill', 'delivery')
  t.same((await waitFor(c, 'queue_update', 2)).data, { queue_id: 'delivery', order: delivery })
  await barrier(c)
  t.equal(ofType(c, 'queue_update').length, 2, 'neither dine_in nor takeout after unsubscribing')

  c.send({ type: 'ping' })
  t.match(await waitFor(c, 'pong'), { timestamp: String })
  c.send({ type: 'order' })
  t.same((await waitFor(c, 'error')).data, { message: 'Unknown message type: order' })
  c.send({ type: 'subscribe', data: { queue_ids: 'takeout' } })
  t.same((await waitFor(c, 'error', 2)).data, { message: 'data.queue_ids must be an array of 1 to 50 strings' })
  done(c)
})

t.test('authentication failures', async t => {
  // The auth timeout (5 s) waits for the test's clock: the clients that send an auth message are
  // never late, and the silent one times out when the test moves time.
  const time = manualClock(t)
  const { served, open, openWithMessage } = await start(t)
  const silent = open('/api/v1/queues/ws/subscribe')
  await silent.opened
  await barrier(silent)
  await time.tick(5000)
  t.same(await silent.closed, { code: 4008, reason: 'Authentication timeout' }, 'no token, no auth message')
  t.same(await connect(served.ws('/api/v1/kds/ws/grill?token=garbage')).closed, { code: 4001, reason: 'Invalid token' })
  t.same(await open('/api/v1/kds/ws/grill', 'u-former').closed, { code: 4002, reason: 'User not found or inactive' })
  t.same(await openWithMessage('/api/v1/kds/ws/grill', 'u-nobody').closed, { code: 4002, reason: 'User not found or inactive' })
  const c = open('/api/v1/kds/ws/grill')
  c.ws.once('open', () => c.send({ type: 'subscribe', data: {} }))
  t.same(await c.closed, { code: 4001, reason: 'Invalid auth message' }, 'the first message must be the auth message')
  t.same(c.messages, [], 'nothing was sent before authentication')
})
