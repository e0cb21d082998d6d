// Topics across instances with a real redis-server: publish reaches the subscribers of every
// instance with one PUBLISH per call, unsubscribe({ userId }) ends a user's subscriptions
// everywhere, and subscribers(topic, { cluster: true }) is the presence of every instance.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { barrier, connect, type Client } from '../helpers/index.ts'
import { redisProxy, startRedis, type RedisServer } from './server.ts'
import { cluster, instance, prefix } from './helpers.ts'

let redis: RedisServer
t.before(async () => { redis = await startRedis(t) })

function routes (app: FastifyInstance): void {
  app.get('/ws/:rid', { websocket: true, wsAuth: { topics: { 'queue:{id}': { roles: ['staff'] } } } }, (socket) => { socket.on('message', () => {}) })
}

async function subscribed (client: Client, topic: string): Promise<void> {
  await client.message(1)
  client.send({ type: 'subscribe', topic, id: topic })
  await client.messageWhere(m => (m as { type?: string, id?: string }).type === 'subscribed' && (m as { id?: string }).id === topic)
}

t.test('publish reaches every instance\'s subscribers, once each, and counts them cluster-wide', async t => {
  const [a, b, c] = await cluster(t, redis.url, 3, { routes })
  const onA = connect(a.url('/ws/r1?token=' + a.sign({ sub: 'u1', roles: ['staff'] })))
  const onB = connect(b.url('/ws/r1?token=' + b.sign({ sub: 'u2', roles: ['staff'] })))
  const elsewhere = connect(b.url('/ws/r1?token=' + b.sign({ sub: 'u3', roles: ['staff'] })))
  await Promise.all([subscribed(onA, 'queue:1'), subscribed(onB, 'queue:1'), subscribed(elsewhere, 'queue:2')])
  t.equal(await c.app.wsAuth.publish('queue:1', { order: 7 }), 2, 'from an instance with no subscriber')
  t.same(await onA.message(3), { type: 'publication', topic: 'queue:1', data: { order: 7 } })
  t.same(await onB.message(3), { type: 'publication', topic: 'queue:1', data: { order: 7 } })
  await barrier(elsewhere)
  t.equal(elsewhere.messages.filter(m => (m as { type?: string }).type === 'publication').length, 0, 'another topic: nothing')
  const presence = await c.app.wsAuth.subscribers('queue:1', { cluster: true })
  t.same(presence.map(s => s.userId).sort(), ['u1', 'u2'])
  t.same(new Set(presence.map(s => s.instanceId)).size, 2, 'each entry names its instance')
  t.same((await a.app.wsAuth.stats({ cluster: true })).subscriptions, 3, 'stats sums subscriptions')
  for (const client of [onA, onB, elsewhere]) client.ws.close()
})

t.test('unsubscribe({ userId }) ends the user\'s subscriptions on every instance with 4003', async t => {
  const [a, b] = await cluster(t, redis.url, 2, { routes })
  const first = connect(a.url('/ws/r1?token=' + a.sign({ sub: 'u1', roles: ['staff'] })))
  const second = connect(b.url('/ws/r1?token=' + b.sign({ sub: 'u1', roles: ['staff'] })))
  const other = connect(b.url('/ws/r1?token=' + b.sign({ sub: 'u2', roles: ['staff'] })))
  await Promise.all([subscribed(first, 'queue:1'), subscribed(second, 'queue:1'), subscribed(other, 'queue:1')])
  t.equal(await a.app.wsAuth.unsubscribe({ userId: 'u1' }, 'queue:1'), 2)
  for (const client of [first, second]) {
    t.same(await client.message(3), { type: 'unsubscribed', topic: 'queue:1', code: 4003, reason: 'Forbidden' })
  }
  t.equal(await b.app.wsAuth.publish('queue:1', 'still here'), 1, 'only u2 holds it now')
  t.same(await other.message(3), { type: 'publication', topic: 'queue:1', data: 'still here' })
  for (const client of [first, second, other]) client.ws.close()
})

t.test('one PUBLISH per publish call, however many subscribers', async t => {
  const namespace = prefix()
  const proxy = await redisProxy(t, redis)
  const a = await instance(t, redis.url, namespace, { routes, redis: { url: proxy.url } })
  const b = await instance(t, redis.url, namespace, { routes })
  const clients = Array.from({ length: 20 }, (_, i) => connect(b.url('/ws/r1?token=' + b.sign({ sub: 'u' + i, roles: ['staff'] }))))
  await Promise.all(clients.map(c => subscribed(c, 'queue:9')))
  const before = proxy.count('$7\r\npublish\r\n')
  t.equal(await a.app.wsAuth.publish('queue:9', { n: 1 }), 20)
  t.equal(proxy.count('$7\r\npublish\r\n') - before, 1, 'one PUBLISH on the commands channel')
  await Promise.all(clients.map(c => c.message(3)))
  for (const c of clients) c.ws.close()
})
