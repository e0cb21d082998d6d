import { ClientError } from './errors.ts'

/** A listener of one event. */
export type Listener<T> = (payload: T) => void

/**
 * A tiny typed emitter (no Node `events`, so it runs in browsers). A listener that throws does
 * not derail the client: the error is rethrown from a microtask, where the platform reports it.
 */
export class Emitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>()

  constructor (names: readonly (keyof Events)[]) {
    for (const name of names) this.#listeners.set(name, new Set())
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events> (event: K, listener: Listener<Events[K]>): () => void {
    this.#set(event).add(listener)
    return () => this.off(event, listener)
  }

  /** Removes a listener added with `on`. */
  off<K extends keyof Events> (event: K, listener: Listener<Events[K]>): void {
    this.#set(event).delete(listener)
  }

  /** Calls the listeners of `event` in the order they were added. */
  emit<K extends keyof Events> (event: K, payload: Events[K]): void {
    for (const listener of [...this.#set(event)] as Listener<Events[K]>[]) {
      try {
        listener(payload)
      } catch (err) {
        queueMicrotask(() => { throw err })
      }
    }
  }

  #set (event: keyof Events): Set<Listener<never>> {
    const set = this.#listeners.get(event)
    if (set === undefined) {
      throw new ClientError('FST_WS_AUTH_CLIENT_UNKNOWN_EVENT',
        `unknown event "${String(event)}" (known: ${[...this.#listeners.keys()].join(', ')})`)
    }
    return set
  }
}
