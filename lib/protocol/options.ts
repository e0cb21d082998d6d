/**
 * The option checks that the server plugin, the Redis adapter and the client share: each fails
 * loudly (never a silent default for a bad value) with an error that names the option. Each
 * caller hands its own error factory (`FST_WS_AUTH_INVALID_OPTION` on the server,
 * `FST_WS_AUTH_CLIENT_INVALID_OPTION` in the client), so this module imports nothing.
 */

/** Makes the error for option `name`: what is wrong with it, and (for messages that show it) the value. */
export type OptionError = (name: string, problem: string, value?: unknown) => Error

/** Longest delay `setTimeout` honours; above it Node fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

export class OptionChecker {
  constructor (private readonly fail: OptionError) {}

  /** The error for a problem the caller found itself. */
  problem (name: string, problem: string, ...value: [unknown?]): Error {
    return this.fail(name, problem, ...value)
  }

  /** Throws for the first key of `options` that is not in `known`. */
  knownKeys (options: object, known: ReadonlySet<string>, owner: string, alsoAllowed?: ReadonlySet<string>): void {
    for (const key of Object.keys(options)) {
      if (!known.has(key) && alsoAllowed?.has(key) !== true) throw this.fail(key, `is not an option of ${owner} (known: ${[...known].join(', ')})`)
    }
  }

  /** A non-empty string. */
  string (name: string, value: unknown, fallback: string): string {
    if (value === undefined) return fallback
    if (typeof value !== 'string' || value.length === 0) throw this.fail(name, 'must be a non-empty string', value)
    return value
  }

  boolean (name: string, value: unknown, fallback: boolean): boolean {
    if (value === undefined) return fallback
    if (typeof value !== 'boolean') throw this.fail(name, 'must be a boolean', value)
    return value
  }

  /** A whole number of milliseconds from `min` to `max` (by default what one `setTimeout` can wait). */
  milliseconds (name: string, value: unknown, fallback: number, min = 1, max = MAX_TIMER_MS): number {
    if (value === undefined) return fallback
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw this.fail(name, `must be a whole number of milliseconds from ${min} to ${max}`, value)
    }
    return value
  }

  /** A positive whole number (a count of messages or bytes). */
  count (name: string, value: unknown, fallback: number): number {
    if (value === undefined) return fallback
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw this.fail(name, 'must be a positive whole number', value)
    return value
  }

  /** A whole, positive number of milliseconds of any length (reached in steps of `setTimeout`). */
  longMilliseconds (name: string, value: unknown, fallback: number): number {
    if (value === undefined) return fallback
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw this.fail(name, 'must be a whole, positive number of milliseconds', value)
    return value
  }

  /** A number of at least `min`; with `integer`, a whole one (or `Infinity`). */
  number (name: string, value: unknown, fallback: number, min: number, integer = false): number {
    if (value === undefined) return fallback
    const ok = typeof value === 'number' && !Number.isNaN(value) && value >= min &&
      (!integer || Number.isInteger(value) || value === Infinity)
    if (!ok) throw this.fail(name, `must be ${integer ? 'a whole number' : 'a number'} >= ${min}`, value)
    return value
  }

  /** One of `allowed`. */
  oneOf<T extends string> (name: string, value: unknown, allowed: readonly T[], fallback: T): T {
    if (value === undefined) return fallback
    if (!allowed.includes(value as T)) throw this.fail(name, `must be ${choices(allowed)}`, value)
    return value as T
  }

  func<T> (name: string, value: T | undefined): T | undefined {
    if (value === undefined) return undefined
    if (typeof value !== 'function') throw this.fail(name, 'must be a function', value)
    return value
  }

  /** An array of non-empty strings, copied. */
  stringList (name: string, value: unknown, what = 'an array of non-empty strings'): string[] {
    if (!Array.isArray(value) || value.some(v => typeof v !== 'string' || v.length === 0)) throw this.fail(name, `must be ${what}`, value)
    return [...value]
  }
}

/** `"a" or "b"`, or `one of "a", "b", "c"`. */
function choices (allowed: readonly string[]): string {
  const quoted = allowed.map(a => JSON.stringify(a))
  return quoted.length === 2 ? `${quoted[0]} or ${quoted[1]}` : `one of ${quoted.join(', ')}`
}
