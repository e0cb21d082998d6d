import type { Cluster, Redis } from 'ioredis'

/** ioredis types its event listeners with `any` arguments. */
export type Listener = (...args: any[]) => void

/** An ioredis client: of one Redis (or a Sentinel group's primary), or of a Redis Cluster. */
export type Client = Redis | Cluster

/** The two clients of an adapter, whether the command one is ours to close, and the pub/sub they speak. */
export interface Connections {
  command: Client
  subscriber: Client
  ownsCommand: boolean
  /**
   * Redis Cluster: sharded Pub/Sub (SSUBSCRIBE, SPUBLISH, `smessage`), each channel served by the
   * shard of its slot, and resubscribed by ioredis when slots move; classic Pub/Sub otherwise.
   */
  sharded: boolean
}

/** Subscribes to the channels: in one command, or on a Cluster one per channel (each to its shard). */
export function subscribe (conns: Connections, channels: string[]): Promise<unknown> {
  if (!conns.sharded) return (conns.subscriber as Redis).subscribe(...channels)
  return Promise.all(channels.map(channel => conns.subscriber.ssubscribe(channel)))
}

/** Publishes a message; resolves with the number of subscribers reached (on a Cluster, of the channel's shard: all of them). */
export function publish (conns: Pick<Connections, 'command' | 'sharded'>, channel: string, message: string): Promise<number> {
  // ioredis types a Cluster's answers `unknown`; SPUBLISH answers an integer, as PUBLISH does.
  return conns.sharded ? conns.command.spublish(channel, message) as Promise<number> : conns.command.publish(channel, message)
}

/** Resolves at the next `event`; `cancel()` removes the listener. */
export function waitFor (emitter: Client, event: string): { promise: Promise<void>, cancel: () => void } {
  let listener = () => {}
  const promise = new Promise<void>(resolve => { listener = () => resolve() })
  emitter.once(event, listener)
  return { promise, cancel: () => emitter.removeListener(event, listener) }
}

/** Closes a connection of ours: QUIT when it is up (bounded), else at once. */
export async function quit (client: Client, ms: number): Promise<void> {
  if (client.status === 'ready') {
    try {
      await within(client.quit(), ms)
      return
    } catch {
      // Fall through: cut it.
    }
  }
  client.disconnect()
}

/** Rejects after `ms` (with code ETIMEDOUT) unless the promise settled first. */
export function within<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`Redis did not answer within ${ms} ms`), { code: 'ETIMEDOUT' })), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
