import type { Redis } from 'ioredis'
import { within } from './store.ts'

/** ioredis types its event listeners with `any` arguments. */
export type Listener = (...args: any[]) => void

/** The two connections of an adapter, and whether the command one is ours to close. */
export interface Connections {
  command: Redis
  subscriber: Redis
  ownsCommand: boolean
}

/** Resolves at the next `event`; `cancel()` removes the listener. */
export function waitFor (emitter: Redis, event: string): { promise: Promise<void>, cancel: () => void } {
  let listener = () => {}
  const promise = new Promise<void>(resolve => { listener = () => resolve() })
  emitter.once(event, listener)
  return { promise, cancel: () => emitter.removeListener(event, listener) }
}

/** Closes a connection of ours: QUIT when it is up (bounded), else at once. */
export async function quit (client: Redis, ms: number): Promise<void> {
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
