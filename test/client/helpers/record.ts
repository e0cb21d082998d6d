import type { ClientEvents, WsAuthClient } from '../../../lib/client/index.ts'

type Events = ClientEvents
type Name = keyof Events

/** One event a client emitted, with when. */
export interface Recorded<K extends Name = Name> { name: K, payload: Events[K], at: number }

export interface Recorder {
  /** Every event, in order, from the moment `record` was called. */
  events: Recorded[]
  /** The payloads of one event, in order. */
  all<K extends Name> (name: K): Array<Events[K]>
  /** Resolves with the `n`-th payload (1-based) of `name` that matches `filter`. */
  next<K extends Name> (name: K, n?: number, filter?: (payload: Events[K]) => boolean): Promise<Events[K]>
  /** Resolves at the final `close` (the one with `willRetry: false`). */
  final (): Promise<Events['close']>
}

const NAMES: Name[] = ['established', 'message', 'refreshed', 'close', 'error']

/** Records every event of `client`; call it right after `createClient`, before any await. */
export function record (client: WsAuthClient): Recorder {
  const events: Recorded[] = []
  const waiters: Array<() => void> = []
  for (const name of NAMES) {
    client.on(name, (payload: unknown) => {
      events.push({ name, payload, at: Date.now() } as Recorded)
      for (const w of [...waiters]) w()
    })
  }
  const all = <K extends Name>(name: K): Array<Events[K]> => events.filter(e => e.name === name).map(e => e.payload as Events[K])
  const next = <K extends Name>(name: K, n = 1, filter: (payload: Events[K]) => boolean = () => true): Promise<Events[K]> => {
    const found = (): Events[K] | undefined => all(name).filter(filter)[n - 1]
    return new Promise((resolve) => {
      const check = (): void => {
        const hit = found()
        if (hit === undefined) return
        waiters.splice(waiters.indexOf(check), 1)
        resolve(hit)
      }
      waiters.push(check)
      check()
    })
  }
  return { events, all, next, final: () => next('close', 1, c => !c.willRetry) }
}

/**
 * Waits `ms` where no event can say "nothing more happened": used only after a final close, to
 * prove that no further connection attempt arrives at the server.
 */
export function quiet (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}
