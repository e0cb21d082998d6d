import { setImmediate as turn } from 'node:timers/promises'
import { useClock, type Cancel, type Clock } from '../../lib/protocol/clock.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** The library's clock, driven by the test: time stands still until `tick` moves it. */
export interface ManualClock {
  /** Milliseconds since the epoch, as the library reads them. */
  now (): number
  /**
   * Moves time forward by `ms`, firing each timer that falls due in order, with a turn of the
   * event loop after each so that what it set going (a close frame, a message) can happen.
   */
  tick (ms: number): Promise<void>
  /** How many of the library's timers are armed. */
  pending (): number
}

interface Timer { at: number, seq: number, fn: () => void, every: number }

/** More timers than this firing in one tick means a timer re-arms itself in the past. */
const MAX_FIRED = 100_000

/**
 * Replaces the clock every timer of the library reads (lib/protocol/clock.ts) with one the test
 * moves, from `start` (the real time by default), until the test ends. Sockets, Fastify and tap
 * keep real time: only the library's deadlines wait for `tick`, so an expiry test takes
 * milliseconds and cannot race a busy machine. Install it before building the app.
 *
 * A tick longer than `heartbeatInterval` outruns the pongs, which travel in real time: the
 * server then terminates the sockets (1006). Tests that tick by minutes set
 * `heartbeatInterval: false`.
 */
export function manualClock (t: Teardown, start = Date.now()): ManualClock {
  let now = start
  let seq = 0
  const timers = new Set<Timer>()
  const arm = (ms: number, fn: () => void, every: number): Cancel => {
    const timer: Timer = { at: now + Math.max(0, ms), seq: seq++, fn, every }
    timers.add(timer)
    return () => { timers.delete(timer) }
  }
  const replacement: Clock = {
    now: () => now,
    after: (ms, fn) => arm(ms, fn, 0),
    every: (ms, fn) => arm(ms, fn, Math.max(1, ms))
  }
  t.teardown(useClock(replacement))
  const next = (until: number): Timer | undefined => {
    let first: Timer | undefined
    for (const timer of timers) {
      if (timer.at > until) continue
      if (first === undefined || timer.at < first.at || (timer.at === first.at && timer.seq < first.seq)) first = timer
    }
    return first
  }
  return {
    now: () => now,
    async tick (ms) {
      const until = now + ms
      let fired = 0
      for (let timer = next(until); timer !== undefined; timer = next(until)) {
        // A timer that re-arms itself in the past would hold the tick forever: fail instead.
        if (++fired > MAX_FIRED) throw new Error(`tick(${ms}): more than ${MAX_FIRED} timers fired; one re-arms itself at a past time`)
        now = timer.at
        if (timer.every > 0) timer.at += timer.every
        else timers.delete(timer)
        timer.fn()
        await turn()
      }
      now = until
      await turn()
    },
    pending: () => timers.size
  }
}
