import { MAX_DELAY, clock, type Cancel, type Clock } from '../protocol/clock.ts'

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

/**
 * Like `setTimeout`, for delays of any length (a token may live longer than 24.8 days), on the
 * library's clock. Returns a function that cancels it.
 */
export function setLongTimeout (fn: () => void, ms: number, time: Pick<Clock, 'after'> = clock): () => void {
  let cancel: Cancel
  const arm = (left: number): void => {
    cancel = left > MAX_DELAY
      ? time.after(MAX_DELAY, () => arm(left - MAX_DELAY))
      : time.after(Math.max(0, left), fn)
  }
  arm(ms)
  return () => cancel()
}
