/*
 * The one clock every timer of the library reads: the server's auth timeout, pre-upgrade check
 * bound, deadline wheel (expiry, lifetime), heartbeat and revalidation intervals, revocation
 * times, and the client's backoff, stable-connection and refresh timers. Tests drive time by
 * replacing it (test/helpers/clock.ts), the way fake timers do, without touching the globals
 * that `ws`, Fastify and tap run on. Not part of the package's API.
 */

/** Stops a timer; calling it again, or after the timer fired, does nothing. */
export type Cancel = () => void

export interface Clock {
  /** Milliseconds since the epoch. */
  now: () => number
  /** Calls `fn` once, `ms` from now. With `unref`, the timer does not keep a Node process alive. */
  after: (ms: number, fn: () => void, unref?: boolean) => Cancel
  /** Calls `fn` every `ms`; never keeps a Node process alive. */
  every: (ms: number, fn: () => void) => Cancel
}

/** The longest delay `setTimeout` honours (2^31-1 ms); longer ones fire at once, so callers step. */
export const MAX_DELAY = 2 ** 31 - 1

type Handle = ReturnType<typeof setTimeout> & { unref?: () => void }

const system: Clock = {
  now: () => Date.now(),
  after (ms, fn, unref = false) {
    const handle: Handle = setTimeout(fn, ms)
    if (unref) handle.unref?.()
    return () => clearTimeout(handle)
  },
  every (ms, fn) {
    const handle: Handle = setInterval(fn, ms)
    handle.unref?.()
    return () => clearInterval(handle)
  }
}

/** The clock in use. Read it through its methods at each use, so that a replacement takes effect. */
export const clock: Clock = { ...system }

/** Makes the library read `replacement` until the returned function puts the system clock back. */
export function useClock (replacement: Clock): () => void {
  Object.assign(clock, replacement)
  return () => { Object.assign(clock, system) }
}
