// Tools shared by the hardening tests: hand-made tokens, a seeded PRNG, bounded concurrency, raw
// WebSocket handshakes and frames over a net.Socket, and the log-leak detector. Clients that
// present a token through a source: `connectWith` of ../helpers/index.ts.
import { createHmac } from 'node:crypto'
import { connect as tcpConnect, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { closeCodes } from '../../lib/index.ts'
import { SECRET, type Closed } from '../helpers/index.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** base64url of a string, a Buffer, or the JSON of anything else. */
export function b64url (value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString('base64url')
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
}

/**
 * A token signed with HMAC by hand, so that header and payload can be anything (non-JSON, an array,
 * a `__proto__` key written as JSON text). Strings are taken as the exact JSON text of a segment.
 */
export function hmacToken (header: unknown, payload: unknown, key: string | Buffer = SECRET, hash = 'sha256'): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  return `${input}.${createHmac(hash, key).update(input).digest('base64url')}`
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000)

/** The base64url alphabet, in value order. */
export const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** mulberry32: a small, seeded, deterministic PRNG returning floats in [0, 1). */
export function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let r = Math.imul(a ^ (a >>> 15), 1 | a)
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296
  }
}

/** Runs `fn` over `items` with at most `limit` calls in flight; rejects with the first failure. */
export async function pool<T> (items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0
  async function worker (): Promise<void> {
    while (next < items.length) {
      const index = next++
      await fn(items[index], index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/** Every unhandled rejection while the test runs (a listener also keeps Node from crashing on one). */
export function trackRejections (t: Teardown): unknown[] {
  const seen: unknown[] = []
  const listener = (reason: unknown): void => { seen.push(reason) }
  process.on('unhandledRejection', listener)
  t.teardown(() => { process.off('unhandledRejection', listener) })
  return seen
}

/**
 * Lets every settled promise report: an unhandled rejection is reported after the microtask queue
 * drains, so two macrotask turns are enough for one caused by work that has already finished.
 */
export async function settle (): Promise<void> {
  await new Promise(resolve => setImmediate(resolve))
  await new Promise(resolve => setImmediate(resolve))
}

/** Whether (code, reason) is a row of the close-code table (ws's own 1002/1007/1009 included). */
export function isTableRow ({ code, reason }: Closed): boolean {
  return Object.values(closeCodes).some(row => row.code === code && row.reason === reason) ||
    // ws sends its own rows without a reason.
    Object.values(closeCodes).some(row => !row.emitted && row.code === code && reason === '')
}

/** The port an app listens on. */
export function portOf (app: FastifyInstance): number {
  return (app.server.address() as AddressInfo).port
}

/** The request line and headers of a WebSocket upgrade, as bytes. */
export function upgradeRequest (path: string, headers: Record<string, string> = {}): string {
  const lines = [
    `GET ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
  ]
  return lines.join('\r\n') + '\r\n\r\n'
}

/** A TCP connection to the app, opened. */
export async function tcp (port: number): Promise<Socket> {
  const socket = tcpConnect({ host: '127.0.0.1', port })
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return socket
}

/** What a raw connection received: the HTTP head, and the bytes after it. */
export interface RawUpgrade {
  socket: Socket
  status: number
  /** Bytes received after the HTTP head (WebSocket frames). */
  rest: Buffer
}

/** Reads from `socket` until the HTTP head is complete (or the socket ends). */
export function readHead (socket: Socket): Promise<{ status: number, rest: Buffer }> {
  return new Promise((resolve) => {
    let buffered = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) return
      done(Number(buffered.subarray(0, end).toString('latin1').split(' ')[1]), buffered.subarray(end + 4))
    }
    const onEnd = (): void => done(0, Buffer.alloc(0))
    const done = (status: number, rest: Buffer): void => {
      socket.off('data', onData)
      socket.off('close', onEnd)
      resolve({ status, rest })
    }
    socket.on('data', onData)
    socket.once('close', onEnd)
  })
}

/** A WebSocket handshake done by hand: write the upgrade, read the 101. */
export async function rawHandshake (port: number, path: string, headers?: Record<string, string>): Promise<RawUpgrade> {
  const socket = await tcp(port)
  const head = readHead(socket)
  socket.write(upgradeRequest(path, headers))
  const { status, rest } = await head
  return { socket, status, rest }
}

export interface FrameOptions {
  opcode: number
  payload?: Buffer
  fin?: boolean
  /** RSV1-3 bits, as the high nibble's lower three bits (0-7). */
  rsv?: number
  /** Clients must mask; `false` sends an unmasked frame. @default true */
  mask?: boolean
}

/** Encodes one WebSocket frame as a client would send it. */
export function frame ({ opcode, payload = Buffer.alloc(0), fin = true, rsv = 0, mask = true }: FrameOptions): Buffer {
  const length = payload.length
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8
  const head = Buffer.alloc(2 + extended + (mask ? 4 : 0))
  head[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f)
  head[1] = (mask ? 0x80 : 0) | (extended === 0 ? length : extended === 2 ? 126 : 127)
  if (extended === 2) head.writeUInt16BE(length, 2)
  if (extended === 8) head.writeBigUInt64BE(BigInt(length), 2)
  if (!mask) return Buffer.concat([head, payload])
  // A fixed mask key: these frames are for tests, not for confidentiality.
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78])
  key.copy(head, 2 + extended)
  const masked = Buffer.alloc(length)
  for (let i = 0; i < length; i++) masked[i] = payload[i] ^ key[i % 4]
  return Buffer.concat([head, masked])
}

/**
 * Reads server frames from a raw socket (after `rest`) until a close frame, and resolves with its
 * code and reason; 1006 when the socket ends without one. Answers the close and ends the socket.
 */
export function readClose (socket: Socket, rest: Buffer = Buffer.alloc(0)): Promise<Closed> {
  return new Promise((resolve) => {
    let buffered = rest
    let finished = false
    const finish = (closed: Closed): void => {
      if (finished) return
      finished = true
      socket.off('data', onData)
      resolve(closed)
      socket.end(frame({ opcode: 8, payload: Buffer.from([0x03, 0xe8]) }))
      socket.destroy()
    }
    const parse = (): void => {
      while (buffered.length >= 2) {
        const opcode = buffered[0] & 0x0f
        let length = buffered[1] & 0x7f
        let offset = 2
        if (length === 126) {
          if (buffered.length < 4) return
          length = buffered.readUInt16BE(2)
          offset = 4
        } else if (length === 127) {
          if (buffered.length < 10) return
          length = Number(buffered.readBigUInt64BE(2))
          offset = 10
        }
        if (buffered.length < offset + length) return
        const payload = buffered.subarray(offset, offset + length)
        buffered = buffered.subarray(offset + length)
        if (opcode === 8) {
          return finish(payload.length >= 2
            ? { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() }
            : { code: 1005, reason: '' })
        }
      }
    }
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      parse()
    }
    socket.on('data', onData)
    socket.once('close', () => finish({ code: 1006, reason: '' }))
    parse()
  })
}

/** Every character percent-encoded: what a client that over-encodes puts in the URL. */
export function percentEncoded (text: string): string {
  return [...text].map(ch => '%' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')).join('')
}

/**
 * The spellings of a token a log line must not carry: the token, its signature, their URL-encoded
 * forms (`%2E` for the dots, every character encoded), and the decimal bytes of the signature as
 * JSON writes a Buffer (`"data":[71,69,...]`, how pino would print a raw request packet).
 */
export function leakForms (token: string): string[] {
  const signature = token.split('.').at(-1) ?? token
  const forms = [
    token,
    encodeURIComponent(token),
    token.replaceAll('.', '%2E'),
    token.replaceAll('.', '%2e'),
    percentEncoded(token),
    percentEncoded(token).toLowerCase(),
    [...Buffer.from(signature.length >= 12 ? signature.slice(0, 24) : token)].join(',')
  ]
  if (signature.length >= 8) forms.push(signature, percentEncoded(signature))
  return [...new Set(forms)]
}

/** The log lines that carry any spelling of any of the tokens, with the form found. */
export function leaks (lines: readonly string[], tokens: Iterable<string>): Array<{ form: string, line: string }> {
  const found: Array<{ form: string, line: string }> = []
  for (const token of tokens) {
    for (const form of leakForms(token)) {
      for (const line of lines) if (line.includes(form)) found.push({ form, line: line.slice(0, 300) })
    }
  }
  return found
}
