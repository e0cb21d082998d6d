/** Reconnection settings with every default filled in. */
export interface Backoff {
  readonly initialDelay: number
  readonly maxDelay: number
  readonly factor: number
  readonly jitter: boolean
  readonly maxAttempts: number
  readonly stableAfter: number
}

/**
 * The wait before backoff attempt `step` (0 for the first):
 * `min(maxDelay, initialDelay * factor ** step)`, or with full jitter a uniformly random whole
 * number of ms between 0 and that ceiling.
 */
export function backoffDelay (step: number, backoff: Pick<Backoff, 'initialDelay' | 'maxDelay' | 'factor' | 'jitter'>, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxDelay, backoff.initialDelay * backoff.factor ** step)
  return backoff.jitter ? Math.floor(random() * ceiling) : ceiling
}

/** The longest delay `setTimeout` honours; past it, timers fire at once. */
export const MAX_TIMEOUT = 2 ** 31 - 1

/** The timer functions `setLongTimeout` uses (injectable for tests). */
export interface Timers {
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: any) => void
}

const platform: Timers = { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (handle) => clearTimeout(handle) }

/**
 * Like `setTimeout`, for delays of any length (a token may live longer than 24.8 days).
 * Returns a function that cancels it.
 */
export function setLongTimeout (fn: () => void, ms: number, timers: Timers = platform): () => void {
  let handle: unknown
  const arm = (left: number): void => {
    handle = left > MAX_TIMEOUT
      ? timers.setTimeout(() => arm(left - MAX_TIMEOUT), MAX_TIMEOUT)
      : timers.setTimeout(fn, Math.max(0, left))
  }
  arm(ms)
  return () => timers.clearTimeout(handle)
}
