// The restaurant example's hand-written topic hub, as it was before issue 17 replaced it with the
// plugin's `topics` (examples/restaurant/hub.ts at commit 97b3e47: `git show 97b3e47:examples/restaurant/hub.ts`),
// translated to plain JavaScript (types removed, nothing else changed). The publish row of the
// bench compares `app.wsAuth.publish` with its `publish`, on the same sockets.

export class Hub {
  sockets = new Map()
  topicsOf = new WeakMap()

  subscribe (socket, topic) {
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

  unsubscribe (socket, topic) {
    this.topicsOf.get(socket)?.delete(topic)
    const sockets = this.sockets.get(topic)
    if (sockets === undefined || !sockets.delete(socket)) return false
    if (sockets.size === 0) this.sockets.delete(topic)
    return true
  }

  /** Sends to every socket subscribed to `topic`; returns how many. */
  publish (topic, message) {
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
  get subscriptions () {
    let n = 0
    for (const sockets of this.sockets.values()) n += sockets.size
    return n
  }

  drop (socket) {
    for (const topic of this.topicsOf.get(socket) ?? []) this.unsubscribe(socket, topic)
    this.topicsOf.delete(socket)
  }
}
