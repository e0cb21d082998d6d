import t, { type Test } from 'tap'
import { manualClockOfBuilt as manualClock } from '../../test/helpers/index.ts'
import { barrier, connect, connectWith, listen, ofType, waitFor, type Client, type Message } from '../helpers.ts'
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
  const order = (station: string, queue: string, total = 20, restaurant = 'r-downtown') =>
    operations.placeOrder({ restaurant_id: restaurant, station_id: station, queue_id: queue, items: ['burger'], total })
  return { app, served, operations, open, openWithMessage, order }
}

const FORBIDDEN = { code: 4003, reason: 'Forbidden' }
const NOT_FOUND = { code: 4004, reason: 'Not found' }

/** The answer to a request: the first message carrying its `id`. */
async function answer (c: Client, request: Message): Promise<unknown> {
  c.send(request)
  return c.messageWhere(m => (m as Message).id === request.id)
}

/** The `data` of the publications of `topic` received so far. */
function published (c: Client, topic: string): unknown[] {
  return ofType(c, 'publication').filter(m => m.topic === topic).map(m => m.data)
}

/** Waits for the `nth` publication of `topic`; returns its `data`. */
async function publication (c: Client, topic: string, nth = 1): Promise<unknown> {
  await c.messageWhere(() => published(c, topic).length >= nth)
  return published(c, topic)[nth - 1]
}

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

t.test('dashboard: subscribe to metrics, ask for snapshots, then publications of those metrics only', async t => {
  const { open, order } = await start(t)
  const c = open('/analytics/realtime/dashboard', 'u-manager')
  await waitFor(c, 'connection_established')
  t.same(await answer(c, { type: 'subscribe', topic: 'metric:sales', id: 1 }), { type: 'subscribed', topic: 'metric:sales', id: 1 })
  t.same(await answer(c, { type: 'subscribe', topic: 'metric:orders', id: 2 }), { type: 'subscribed', topic: 'metric:orders', id: 2 })
  t.match(await answer(c, { type: 'snapshot', topic: 'metric:sales', id: 3 }), { type: 'snapshot', topic: 'metric:sales', data: { metric: 'sales', value: 0 }, id: 3 })

  order('grill', 'downtown-takeout', 42.5)
  t.match(await publication(c, 'metric:sales'), { metric: 'sales', value: 42.5, timestamp: String })
  t.match(await publication(c, 'metric:orders'), { metric: 'orders', value: 1 })
  await barrier(c)
  t.same(published(c, 'metric:avg_ticket'), [], 'no avg_ticket: not subscribed')

  t.same(await answer(c, { type: 'unsubscribe', topic: 'metric:sales', id: 4 }), { type: 'unsubscribed', topic: 'metric:sales', id: 4 })
  order('grill', 'downtown-takeout')
  t.match(await publication(c, 'metric:orders', 2), { metric: 'orders', value: 2 })
  await barrier(c)
  t.equal(published(c, 'metric:sales').length, 1, 'no sales after unsubscribing')

  t.same(await answer(c, { type: 'subscribe', topic: 'metric:revenue', id: 5 }),
    { type: 'refused', of: 'subscribe', topic: 'metric:revenue', ...NOT_FOUND, id: 5 }, 'an unknown metric')
  t.same(await answer(c, { type: 'subscribe', topic: 'queue:downtown-takeout', id: 6 }),
    { type: 'refused', of: 'subscribe', topic: 'queue:downtown-takeout', ...NOT_FOUND, id: 6 }, 'no queues on the dashboard')
  t.same(await answer(c, { type: 'snapshot', topic: 'metric:revenue', id: 7 }), { type: 'refused', of: 'snapshot', ...NOT_FOUND, id: 7 })
  t.same(await answer(c, { type: 'reset', id: 8 }), { type: 'refused', of: 'reset', ...FORBIDDEN, id: 8 }, 'nothing else may be sent')
  done(c)
})

t.test('metric streams need analytics.view_sales_reports; an unknown metric is 4004', async t => {
  const { open } = await start(t)
  const c = open('/analytics/realtime/metrics/avg_ticket', 'u-admin')
  t.same(await waitFor(c, 'subscribed'), { type: 'subscribed', topic: 'metric:avg_ticket' }, 'subscribed by the server: no id')
  t.match(await waitFor(c, 'snapshot'), { topic: 'metric:avg_ticket', data: { metric: 'avg_ticket', value: 0 } })
  t.same(await open('/analytics/realtime/metrics/avg_ticket', 'u-analyst').closed, FORBIDDEN, 'dashboard only')
  t.same(await open('/analytics/realtime/metrics/revenue', 'u-manager').closed, NOT_FOUND)
  done(c)
})

t.test('kitchen display: orders for its station, and the stations the expo follows', async t => {
  const { open, order } = await start(t)
  order('grill', 'downtown-dine_in')
  const grill = open('/api/v1/kds/ws/grill', 'u-chef')
  t.same(await waitFor(grill, 'subscribed'), { type: 'subscribed', topic: 'station:grill' })
  t.match(await waitFor(grill, 'snapshot'), { topic: 'station:grill', data: [{ id: 'o-1', station_id: 'grill' }] })
  order('fryer', 'downtown-dine_in')
  const third = order('grill', 'downtown-takeout')
  t.match(await publication(grill, 'station:grill'), { id: third.id, station_id: 'grill' })
  await barrier(grill)
  t.equal(ofType(grill, 'publication').length, 1, 'nothing from the fryer')

  const expo = open('/api/v1/kds/ws/expo', 'u-manager')
  await waitFor(expo, 'snapshot')
  t.same(await answer(expo, { type: 'subscribe', topic: 'station:fryer', id: 1 }), { type: 'subscribed', topic: 'station:fryer', id: 1 })
  t.match(await answer(expo, { type: 'snapshot', topic: 'station:fryer', id: 2 }), { topic: 'station:fryer', data: [{ id: 'o-2' }], id: 2 })
  const fourth = order('fryer', 'downtown-takeout')
  t.match(await publication(expo, 'station:fryer'), { id: fourth.id })
  t.same(await answer(expo, { type: 'subscribe', topic: 'station:pastry', id: 3 }), { type: 'refused', of: 'subscribe', topic: 'station:pastry', ...NOT_FOUND, id: 3 })

  t.same(await open('/api/v1/kds/ws/grill', 'u-cashier').closed, FORBIDDEN)
  t.same(await open('/api/v1/kds/ws/pastry', 'u-chef').closed, NOT_FOUND)
  done(grill, expo)
})

t.test('table management: the role, and access to that restaurant', async t => {
  const { open, operations } = await start(t)
  const server = open('/api/v1/tables/ws/tables/r-downtown', 'u-server')
  t.match(await waitFor(server, 'snapshot'), { topic: 'tables:r-downtown', data: [{ id: 'T1', status: 'free' }] })
  const admin = open('/api/v1/tables/ws/tables/r-harbor', 'u-admin')
  await waitFor(admin, 'snapshot')

  operations.setTable('r-downtown', 'T2', 'seated', 4)
  t.same(await publication(server, 'tables:r-downtown'), { id: 'T2', restaurant_id: 'r-downtown', seats: 4, status: 'seated' })
  await barrier(admin)
  t.same(ofType(admin, 'publication'), [], 'another restaurant\'s floor')

  t.same(await open('/api/v1/tables/ws/tables/r-downtown', 'u-host').closed, FORBIDDEN, 'a host of another restaurant')
  t.same(await open('/api/v1/tables/ws/tables/r-downtown', 'u-chef').closed, FORBIDDEN, 'not a floor role')
  t.same(await open('/api/v1/tables/ws/tables/r-nowhere', 'u-admin').closed, NOT_FOUND)
  done(server, admin)
})

t.test('order queue by URL: only staff of the queue\'s restaurant', async t => {
  const { open, order } = await start(t)
  const c = open('/api/v1/queues/ws/downtown-takeout', 'u-cashier')
  t.same(await waitFor(c, 'snapshot'), { type: 'snapshot', topic: 'queue:downtown-takeout', data: [] })
  const placed = order('grill', 'downtown-takeout')
  t.same(await publication(c, 'queue:downtown-takeout'), placed)
  t.same(await answer(c, { type: 'subscribe', topic: 'queue:downtown-delivery', id: 1 }),
    { type: 'refused', of: 'subscribe', ...FORBIDDEN, id: 1 }, 'a stream bound to its URL takes no other message')
  t.same(await open('/api/v1/queues/ws/harbor-takeout', 'u-cashier').closed, FORBIDDEN, 'another restaurant\'s queue')
  t.same(await open('/api/v1/queues/ws/downtown-takeout', 'u-chef').closed, FORBIDDEN, 'not a queue role')
  t.same(await open('/api/v1/queues/ws/walk_in', 'u-cashier').closed, NOT_FOUND)
  const admin = open('/api/v1/queues/ws/harbor-takeout', 'u-admin')
  t.same((await waitFor(admin, 'snapshot')).topic, 'queue:harbor-takeout', 'an admin works everywhere')
  done(c, admin)
})

t.test('bulk queues: first-message auth, subscribe right behind it, another restaurant\'s queue refused', async t => {
  const { openWithMessage, order } = await start(t)
  const c = openWithMessage('/api/v1/queues/ws/subscribe', 'u-server',
    { type: 'subscribe', topic: 'queue:downtown-takeout', id: 1 },
    { type: 'subscribe', topic: 'queue:downtown-delivery', id: 2 },
    { type: 'snapshot', topic: 'queue:downtown-delivery', id: 3 })
  t.match(await waitFor(c, 'connection_established'), { user: { id: 'u-server' } })
  t.same(await c.messageWhere(m => (m as Message).id === 3), { type: 'snapshot', topic: 'queue:downtown-delivery', data: [], id: 3 })
  t.same(c.messages.slice(1), [
    { type: 'subscribed', topic: 'queue:downtown-takeout', id: 1 },
    { type: 'subscribed', topic: 'queue:downtown-delivery', id: 2 },
    { type: 'snapshot', topic: 'queue:downtown-delivery', data: [], id: 3 }
  ], 'answered in order, once authenticated')

  t.same(await answer(c, { type: 'subscribe', topic: 'queue:harbor-takeout', id: 4 }),
    { type: 'refused', of: 'subscribe', topic: 'queue:harbor-takeout', ...FORBIDDEN, id: 4 }, 'the server works downtown')
  t.same(await answer(c, { type: 'snapshot', topic: 'queue:harbor-takeout', id: 5 }), { type: 'refused', of: 'snapshot', ...FORBIDDEN, id: 5 })
  t.same(await answer(c, { type: 'subscribe', topic: 'queue:walk_in', id: 6 }),
    { type: 'refused', of: 'subscribe', topic: 'queue:walk_in', ...NOT_FOUND, id: 6 })

  order('grill', 'downtown-dine_in')
  order('grill', 'harbor-takeout', 20, 'r-harbor')
  const takeout = order('grill', 'downtown-takeout')
  t.same(await publication(c, 'queue:downtown-takeout'), takeout)
  t.same(await answer(c, { type: 'unsubscribe', topic: 'queue:downtown-takeout', id: 7 }), { type: 'unsubscribed', topic: 'queue:downtown-takeout', id: 7 })
  order('grill', 'downtown-takeout')
  const delivery = order('grill', 'downtown-delivery')
  t.same(await publication(c, 'queue:downtown-delivery'), delivery)
  await barrier(c)
  t.equal(ofType(c, 'publication').length, 2, 'neither dine_in, nor harbor, nor takeout after unsubscribing')

  c.send({ type: 'ping' })
  t.match(await waitFor(c, 'pong'), { timestamp: String })
  t.same(await answer(c, { type: 'order', id: 8 }), { type: 'refused', of: 'order', ...FORBIDDEN, id: 8 })
  t.same(await answer(c, { type: 'subscribe', id: 9 }), { type: 'refused', of: 'subscribe', ...NOT_FOUND, id: 9 }, 'no topic')
  done(c)
})

t.test('an admin may follow any restaurant\'s queue', async t => {
  const { open, order } = await start(t)
  const c = open('/api/v1/queues/ws/subscribe', 'u-admin')
  await waitFor(c, 'connection_established')
  t.same(await answer(c, { type: 'subscribe', topic: 'queue:harbor-takeout', id: 1 }), { type: 'subscribed', topic: 'queue:harbor-takeout', id: 1 })
  const placed = order('grill', 'harbor-takeout', 20, 'r-harbor')
  t.same(await publication(c, 'queue:harbor-takeout'), placed)
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
  const c = open('/api/v1/queues/ws/subscribe')
  c.ws.once('open', () => c.send({ type: 'subscribe', topic: 'queue:downtown-takeout', id: 1 }))
  t.same(await c.closed, { code: 4001, reason: 'Invalid auth message' }, 'the first message must be the auth message')
  t.same(c.messages, [], 'nothing was sent before authentication')
})
