// The client protocol every restaurant stream speaks after `connection_established`:
//   {"type":"subscribe","data":{"<key>":["id", ...]}}   -> {"type":"subscribed","data":{"<key>":[all subscribed]}}, then a snapshot per id
//   {"type":"unsubscribe","data":{"<key>":["id", ...]}} -> {"type":"unsubscribed","data":{"<key>":[still subscribed]}}
//   anything else                                       -> {"type":"error","data":{"message"}}
// (`{"type":"ping"}` is answered by the plugin: `appPing`.) A stream bound to one resource by its
// URL (a station, a restaurant, a queue, a metric) is subscribed at connect and sends its snapshot.
import type { WebSocket } from 'ws'
import type { Hub } from './hub.ts'

/** Something a client can follow: metrics, queues, a station... */
export interface Subscribable {
  /** The key of `data` listing ids, e.g. `metrics` or `queue_ids`. */
  key: string
  exists (id: string): boolean
  topic (id: string): string
  /** The current state of one id, sent at subscription. */
  snapshot (id: string): unknown
}

/** Either the client chooses what to follow, or the URL did. */
export type StreamSpec = { subscribable: Subscribable } | { fixed: Subscribable, id: string }

/** At most this many ids in one subscribe message. */
const MAX_IDS = 50

export function serveStream (socket: WebSocket, hub: Hub, spec: StreamSpec): void {
  const reply = (message: unknown) => socket.send(JSON.stringify(message))
  const fail = (message: string) => reply({ type: 'error', data: { message } })
  const subscribed = new Set<string>()

  if ('fixed' in spec) {
    hub.subscribe(socket, spec.fixed.topic(spec.id))
    reply(spec.fixed.snapshot(spec.id))
  }

  socket.on('message', (raw) => {
    const message = parse(raw.toString())
    if (message === undefined) return fail('Messages are {"type":"...","data":{...}}')
    if (message.type !== 'subscribe' && message.type !== 'unsubscribe') return fail(`Unknown message type: ${message.type}`)
    if (!('subscribable' in spec)) return fail(`This stream follows what its URL names: there is nothing to ${message.type}`)
    const { key, exists, topic, snapshot } = spec.subscribable
    const ids = message.data[key]
    if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_IDS || !ids.every(id => typeof id === 'string')) {
      return fail(`data.${key} must be an array of 1 to ${MAX_IDS} strings`)
    }
    const unknown = ids.filter(id => !exists(id))
    if (unknown.length > 0) return fail(`Unknown ${key}: ${unknown.join(', ')}`)
    if (message.type === 'unsubscribe') {
      for (const id of ids) if (subscribed.delete(id)) hub.unsubscribe(socket, topic(id))
      return reply({ type: 'unsubscribed', data: { [key]: [...subscribed] } })
    }
    const added = ids.filter(id => !subscribed.has(id))
    for (const id of added) {
      subscribed.add(id)
      hub.subscribe(socket, topic(id))
    }
    reply({ type: 'subscribed', data: { [key]: [...subscribed] } })
    for (const id of added) reply(snapshot(id))
  })
}

function parse (text: string): { type: string, data: Record<string, unknown> } | undefined {
  try {
    const message = JSON.parse(text) as { type?: unknown, data?: unknown } | null
    if (typeof message?.type !== 'string') return undefined
    const data = message.data ?? {}
    if (data === null || typeof data !== 'object' || Array.isArray(data)) return undefined
    return { type: message.type, data: data as Record<string, unknown> }
  } catch {
    return undefined
  }
}
