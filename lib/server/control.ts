import { MessageType, parseJsonObject } from '../protocol/messages.ts'

/*
 * Which client frames are the plugin's own control messages (an `auth` refresh, a `ping` with
 * `appPing`): pure functions over the frame's bytes, run on every text frame of an open session,
 * so the common case (an app message) is decided without parsing it.
 */

const OPEN_BRACE = 0x7b
const QUOTE = 0x22
const BACKSLASH = 0x5c

/**
 * The control message a text frame carries, parsed, or `undefined` for an app message. A frame is
 * one by JSON's rules (escapes decoded), whatever its size; `ping` counts only with `appPing`.
 */
export function readControl (data: Buffer, appPing: boolean): Record<string, unknown> | undefined {
  if (firstNonSpace(data) !== OPEN_BRACE || !mentionsControl(data, appPing)) return undefined
  const message = parseJsonObject(data.toString('utf8'))
  if (message === undefined) return undefined
  if (message.type === MessageType.Auth || (appPing && message.type === MessageType.Ping)) return message
  return undefined
}

/**
 * How far the search for `"auth"` / `"ping"` moves on, by the last byte of the 6-byte window it
 * looks at (Horspool's rule): 6 past a byte neither word holds, less past one that could be part
 * of one. Most bytes of a message are the first kind: the search reads about one byte in five.
 */
const SKIP = new Uint8Array(256).fill(6)
for (const word of ['"auth"', '"ping"']) {
  for (let k = 0; k < 5; k++) SKIP[word.charCodeAt(k)] = Math.min(SKIP[word.charCodeAt(k)], 5 - k)
}

/**
 * Whether a frame holds the string `"auth"` (or, with `appPing`, `"ping"`), or an escape that could
 * spell one of their letters: only then can it be a control message, worth parsing. The search is
 * in JS: for the short frames of chat and dashboards a call into C++ (`Buffer#indexOf`) costs more
 * than the whole search; the one for a backslash is made only when the search found nothing.
 */
export function mentionsControl (data: Buffer, appPing: boolean): boolean {
  const length = data.length
  for (let end = 5; end < length; end += SKIP[data[end]!]!) {
    if (data[end] !== QUOTE || data[end - 5] !== QUOTE) continue
    const c = data[end - 4]
    if (c === 0x61 && data[end - 3] === 0x75 && data[end - 2] === 0x74 && data[end - 1] === 0x68) return true // auth
    if (appPing && c === 0x70 && data[end - 3] === 0x69 && data[end - 2] === 0x6e && data[end - 1] === 0x67) return true // ping
  }
  return hasLetterEscape(data)
}

/**
 * Whether a frame holds `\u006x` or `\u007x`: JSON may spell any letter of "auth" and "ping" so
 * (`{"type":"\u0061uth"}` is an auth message). Serializers never escape letters, so app frames
 * with such an escape are rare; a false alarm costs one parse.
 */
export function hasLetterEscape (data: Buffer): boolean {
  let at = data.indexOf(BACKSLASH)
  while (at !== -1 && at + 4 < data.length) {
    if (data[at + 1] === 0x75 && data[at + 2] === 0x30 && data[at + 3] === 0x30 && (data[at + 4] === 0x36 || data[at + 4] === 0x37)) return true
    // Past the escaped character: `\\` is one escape, and what follows it is plain text.
    at = data.indexOf(BACKSLASH, at + 2)
  }
  return false
}

/** The first byte that is not JSON white space, or `undefined`. */
export function firstNonSpace (data: Buffer): number | undefined {
  let i = 0
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x09)) i++
  return data[i]
}
