// Issue 17's publish row: one plugin route (HS256 `?token=`, roles) whose every socket is
// subscribed to one topic twice, through the plugin's registry (`app.wsAuth.subscribe`) and
// through the restaurant example's old hand-written hub (bench/lib/hand-hub.mjs). The command
// `publish {via: 'plugin' | 'hand', count}` publishes `count` times through one of them, one
// publish per event-loop turn, and answers with the sockets each reached. Both send the same bytes:
// the plugin's `{"type":"publication","topic":...,"data":...}`. No heartbeat (the hub has none,
// and 10,000 pings would land in one side's window).
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import { setImmediate as turn } from 'node:timers/promises'
import { fastifyOptions, jwtOptions, LISTEN } from './common.mjs'
import { Hub } from '../lib/hand-hub.mjs'
import { pluginSpecifier } from '../lib/build-stamp.mjs'

export const TOPIC = 'queue:42'

/** What a restaurant queue update carries (the example's `queue_update`), about 200 bytes. */
export const DATA = {
  queue_id: '42',
  order: { id: 'ord-1007', restaurant_id: 'r1', station_id: 'grill', status: 'ready', items: [{ sku: 'burger', qty: 2 }, { sku: 'fries', qty: 1 }], placed_at: '2026-12-03T12:00:00.000Z' }
}

export async function start (config) {
  const { default: wsAuth } = await import(pluginSpecifier())
  const app = Fastify(fastifyOptions(config))
  await app.register(jwt, jwtOptions(config))
  await app.register(wsAuth, { sources: ['query'], heartbeatInterval: false })
  const hub = new Hub()
  app.get('/ws', { websocket: true, wsAuth: { roles: ['admin'] } }, (socket) => {
    app.wsAuth.subscribe(socket, TOPIC)
    hub.subscribe(socket, TOPIC)
  })
  await app.listen(LISTEN)
  const publishers = {
    plugin: () => app.wsAuth.publish(TOPIC, DATA),
    hand: () => hub.publish(TOPIC, { type: 'publication', topic: TOPIC, data: DATA })
  }
  return {
    server: app.server,
    close: () => app.close(),
    commands: {
      async publish ({ via, count = 1 }) {
        const publish = publishers[via]
        if (publish === undefined) return { error: `unknown publisher ${via}` }
        const reached = []
        for (let i = 0; i < count; i++) {
          reached.push(publish())
          await turn()
        }
        return { reached, subscribers: { plugin: app.wsAuth.subscribers(TOPIC).length, hand: hub.subscriptions } }
      }
    }
  }
}
