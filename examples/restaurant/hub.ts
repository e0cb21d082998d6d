// Topic subscriptions of open sockets: which socket hears about which station, queue, restaurant
// or metric. App state, next to the plugin's registry (which knows users, not topics).
import type { WebSocket } from 'ws'

export class Hub {
  private readonly sockets = new Map<string, Set<WebSocket>>()
  private readonly topicsOf = new WeakMap<WebSocket, Set<string>>()

  subscribe (socket: WebSocket, topic: string): void {
    let topics = this.topicsOf.get(socket)
    if (topics === undefined) {
      topics = new Set()
      this.topicsOf.set(socket, topics)
      socket.once('close', () => this.drop(socket))
    }
    topics.add(topic)
    let sockets = this.sockets.get(topic)
    if (sockets === undefined) {
      sockets = new Set()
      this.sockets.set(topic, sockets)
    }
    sockets.add(socket)
  }

  unsubscribe (socket: WebSocket, topic: string): boolean {
    this.topicsOf.get(socket)?.delete(topic)
    const sockets = this.sockets.get(topic)
    if (sockets === undefined || !sockets.delete(socket)) return false
    if (sockets.size === 0) this.sockets.delete(topic)
    return true
  }

  /** Sends to every socket subscribed to `topic`; returns how many. */
  publish (topic: string, message: unknown): number {
    const sockets = this.sockets.get(topic)
    if (sockets === undefined) return 0
    const payload = JSON.stringify(message)
    let sent = 0
    for (const socket of sockets) {
      if (socket.readyState !== socket.OPEN) continue
      socket.send(payload)
      sent++
    }
    return sent
  }

  /** Subscriptions held now, all topics together (they go when their sockets close). */
  get subscriptions (): number {
    let n = 0
    for (const sockets of this.sockets.values()) n += sockets.size
    return n
  }

  private drop (socket: WebSocket): void {
    for (const topic of this.topicsOf.get(socket) ?? []) this.unsubscribe(socket, topic)
    this.topicsOf.delete(socket)
  }
}
