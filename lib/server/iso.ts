/**
 * `Date#toISOString` for the times sent on every handshake. V8 formats a date through printf
 * (some 7,000 instructions a call, two calls per `connection_established`); a clock formats each
 * second once and appends the milliseconds. Invalid times throw the same RangeError as the
 * built-in. One clock per stream of times (now, token expiries), so that they do not evict each
 * other's second.
 */
/** The largest time a Date holds (ECMA-262 TimeClip), in ms either side of the epoch. */
const MAX_TIME = 8.64e15

export class IsoClock {
  private second = NaN
  /** `YYYY-MM-DDTHH:mm:ss.` of `second`. */
  private prefix = ''

  format (ms: number): string {
    // Date keeps whole milliseconds, truncated towards zero.
    const time = Math.trunc(ms)
    if (!(Math.abs(time) <= MAX_TIME)) return new Date(time).toISOString()
    const second = Math.floor(time / 1000)
    if (second !== this.second) {
      this.prefix = new Date(second * 1000).toISOString().slice(0, -4)
      this.second = second
    }
    const millis = time - second * 1000
    return this.prefix + (millis < 10 ? '00' : millis < 100 ? '0' : '') + millis + 'Z'
  }
}
