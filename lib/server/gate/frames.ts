/*
 * Which message types a text frame can carry, decided from its bytes: a route with `messages`
 * looks at every frame, and most are of a type no policy lists, so those must be let through
 * without parsing them. Pure functions, like ../control.ts.
 */

const BACKSLASH = 0x5c

/**
 * Finds any of a few JSON strings (`"order:void"`, `"subscribe"`...) in a frame, by Horspool's
 * rule over the shortest length `m` of them: a window of `m` bytes moves on by how far its last
 * byte is from the end of any of their first `m` bytes (`m` past a byte none of them holds), and
 * is compared in full only where that distance is 0. Most frames are read about one byte in `m`.
 * (../control.ts keeps its own search for `"auth"`/`"ping"`, written out by hand: it runs on every
 * frame of every route, and this class in its place cost 80 instructions more per message.)
 */
export class StringFinder {
  private readonly needles: readonly Buffer[]
  private readonly m: number
  private readonly skip: Uint8Array

  constructor (values: readonly string[]) {
    this.needles = values.map(value => Buffer.from(JSON.stringify(value)))
    this.m = Math.min(...this.needles.map(n => n.length))
    this.skip = new Uint8Array(256).fill(this.m)
    for (const needle of this.needles) {
      for (let k = 0; k < this.m; k++) this.skip[needle[k]!] = Math.min(this.skip[needle[k]!]!, this.m - 1 - k)
    }
  }

  /**
   * Whether the frame may be of one of the types: it holds one of the strings as JSON writes it,
   * or an escape that can spell any character (`\u...`, `\/`), in which case only parsing tells.
   */
  mayHold (data: Buffer): boolean {
    return this.holds(data) || hasSpellingEscape(data)
  }

  private holds (data: Buffer): boolean {
    const { m, skip } = this
    const length = data.length
    for (let end = m - 1; end < length;) {
      const shift = skip[data[end]!]!
      if (shift !== 0) {
        end += shift
        continue
      }
      if (this.startsAt(data, end - m + 1)) return true
      end++
    }
    return false
  }

  private startsAt (data: Buffer, start: number): boolean {
    for (const needle of this.needles) {
      if (start + needle.length > data.length) continue
      let k = 0
      while (k < needle.length && data[start + k] === needle[k]) k++
      if (k === needle.length) return true
    }
    return false
  }
}

/**
 * Whether a frame holds `\u` or `\/`: escapes that may spell a character of a type name which
 * JSON would otherwise write plainly (the other escapes, `\"`, `\\`, `\n`..., are how JSON.stringify
 * writes those characters, so the plain search finds them).
 */
export function hasSpellingEscape (data: Buffer): boolean {
  let at = data.indexOf(BACKSLASH)
  while (at !== -1 && at + 1 < data.length) {
    const next = data[at + 1]
    if (next === 0x75 || next === 0x2f) return true
    // Past the escaped character: `\\` is one escape, and what follows it is plain text.
    at = data.indexOf(BACKSLASH, at + 2)
  }
  return false
}
