import { isUtf8 } from 'node:buffer'

/**
 * Checks a JWT's shape before it is verified, so that only one spelling of a token verifies:
 * `fast-jwt` decodes with Node's lenient base64, where `sig=`, `sig!`, `+/` or a space inside all
 * decode to the same bytes. Deny-lists, revocation by token and log scrubbing rely on the token
 * string, so anything but canonical base64url in every segment is refused. Also refused: `crit`
 * headers (RFC 7515 §4.1.11: we understand no extension) and `alg: none` in any spelling.
 */

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const VALUE = new Int8Array(128).fill(-1)
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i

/** Why a token is refused before verification, or `undefined` when its shape is sound. */
export function tokenShapeProblem (token: string): string | undefined {
  const shape = checkShape(token)
  return typeof shape === 'string' ? shape : undefined
}

/**
 * The shape check of `tokenShapeProblem`, answering with the decoded payload when the shape is
 * sound, so that a caller reading the payload does not decode it a second time.
 */
export function checkShape (token: string): string | Buffer {
  const first = token.indexOf('.')
  const second = first === -1 ? -1 : token.indexOf('.', first + 1)
  if (second === -1 || token.indexOf('.', second + 1) !== -1) return 'not three segments'
  if (!canonical(token, 0, first) || !canonical(token, first + 1, second) || !canonical(token, second + 1, token.length)) {
    return 'not canonical base64url'
  }
  // Lenient decoding would turn invalid UTF-8 into U+FFFD: two payloads, one signature check.
  const payload = Buffer.from(token.slice(first + 1, second), 'base64url')
  if (!isUtf8(payload)) return 'payload is not UTF-8'
  return headerProblem(token.slice(0, first)) ?? payload
}

/** Tokens of one issuer share their header segment: its verdict is kept for the next ones. */
const knownHeaders = new Map<string, string | undefined>()
const KNOWN_HEADERS_MAX = 64

function headerProblem (segment: string): string | undefined {
  if (knownHeaders.has(segment)) return knownHeaders.get(segment)
  const problem = judgeHeader(segment)
  if (knownHeaders.size >= KNOWN_HEADERS_MAX) knownHeaders.delete(knownHeaders.keys().next().value as string)
  knownHeaders.set(segment, problem)
  return problem
}

function judgeHeader (segment: string): string | undefined {
  const bytes = Buffer.from(segment, 'base64url')
  if (!isUtf8(bytes)) return 'header is not UTF-8'
  let header: unknown
  try {
    header = JSON.parse(bytes.toString('utf8'))
  } catch {
    return 'header is not JSON'
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) return 'header is not an object'
  const { alg, crit } = header as { alg?: unknown, crit?: unknown }
  if (crit !== undefined) return 'crit header'
  if (typeof alg !== 'string' || alg.toLowerCase() === 'none') return 'no usable alg'
  return undefined
}

/** Whether token[start, end) is non-empty, unpadded base64url whose unused trailing bits are zero. */
function canonical (token: string, start: number, end: number): boolean {
  const length = end - start
  if (length === 0 || length % 4 === 1) return false
  for (let i = start; i < end; i++) {
    const c = token.charCodeAt(i)
    if (c > 127 || VALUE[c] === -1) return false
  }
  const last = VALUE[token.charCodeAt(end - 1)]
  if (length % 4 === 2) return (last & 0x0f) === 0
  if (length % 4 === 3) return (last & 0x03) === 0
  return true
}

/** Registered claims (RFC 7519 §4.1) and the types they must have when present. */
const CLAIM_TYPES: ReadonlyArray<[string, (value: unknown) => boolean]> = [
  ['exp', isNumericDate], ['nbf', isNumericDate], ['iat', isNumericDate],
  // RFC 7519 makes sub a string; numeric user ids are common enough in the wild to accept.
  ['sub', value => isString(value) || (typeof value === 'number' && Number.isFinite(value))], ['iss', isString], ['jti', isString],
  ['aud', value => isString(value) || (Array.isArray(value) && value.every(isString))]
]

/** Why verified claims are refused (a registered claim of the wrong type), or `undefined`. */
export function claimsProblem (claims: unknown): string | undefined {
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) return 'claims are not an object'
  for (const [name, valid] of CLAIM_TYPES) {
    const value = (claims as Record<string, unknown>)[name]
    if (value !== undefined && !valid(value)) return `${name} has the wrong type`
  }
  return undefined
}

/** A number of seconds that a JavaScript Date can hold (±8.64e12). */
export function isNumericDate (value: unknown): boolean {
  return typeof value === 'number' && Math.abs(value) <= 8.64e12
}

function isString (value: unknown): boolean {
  return typeof value === 'string'
}
