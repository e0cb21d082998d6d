import type { WebSocket } from 'ws'
import { closeCodes, type FailureClass } from '../protocol/close-codes.ts'
import { clock, type Cancel } from '../protocol/clock.ts'
import { MessageType, parseJsonObject } from '../protocol/messages.ts'
import { capFramePayload, catchOverCapClose, releaseOverCapClose, restoreFramePayload } from './internals.ts'

/*
 * The auth-message phase and the hold buffer: what a session holds only while it waits, for the
 * auth message or for the route handler to listen. Made when needed and dropped once the session
 * is open, so that the thousands of open sessions carry none of it.
 */

/** Client messages held, with whether each is binary, in arrival order. */
export type Held = Array<[unknown, unknown]>

export class Waiting {
  /** Cancels the auth-message timeout, while one runs. */
  private cancelTimer: Cancel | undefined = undefined
  /** Whether the first message (the auth message) has arrived. */
  authStarted = false
  /** ws's own frame limit, lowered until the session is authenticated. */
  private savedMaxPayload: number | undefined = undefined
  private held: Held | null = null
  private heldBytes = 0

  /** Whether the auth timeout runs (the session waits for its first message). */
  get timing (): boolean {
    return this.cancelTimer !== undefined
  }

  startTimer (ms: number, onTimeout: () => void): void {
    this.cancelTimer = clock.after(ms, onTimeout)
  }

  stopTimer (): void {
    if (this.cancelTimer === undefined) return
    this.cancelTimer()
    this.cancelTimer = undefined
  }

  /**
   * Until authenticated, no frame may be larger than `cap`: ws would otherwise buffer up to its
   * `maxPayload` (100 MiB by default) for an unauthenticated client. A larger frame makes ws close
   * with 1009; `onOverCap` is asked first and answers `true` when it closed the socket itself.
   * Where ws's limit is not found, the hold buffer's byte limit still applies after the fact.
   */
  capFrames (ws: WebSocket, cap: number, onOverCap: () => boolean): void {
    this.savedMaxPayload = capFramePayload(ws, cap)
    if (this.savedMaxPayload !== undefined) catchOverCapClose(ws, closeCodes.message_too_big.code, onOverCap)
  }

  /** Gives ws its own frame limit back. */
  restoreFrames (ws: WebSocket): void {
    if (this.savedMaxPayload === undefined) return
    restoreFramePayload(ws, this.savedMaxPayload)
    this.savedMaxPayload = undefined
    releaseOverCapClose(ws)
  }

  /** Holds a client message; `false` once the buffer is over either limit. */
  hold (data: unknown, isBinary: unknown, maxMessages: number, maxBytes: number): boolean {
    const held = this.held ??= []
    held.push([data, isBinary])
    this.heldBytes += byteLength(data)
    return held.length <= maxMessages && this.heldBytes <= maxBytes
  }

  /** How many messages are held. */
  get count (): number {
    return this.held?.length ?? 0
  }

  /** The held messages, taken out of the buffer. */
  take (): Held | null {
    const held = this.held
    this.held = null
    this.heldBytes = 0
    return held
  }
}

/**
 * The token of a first message, or the failure class it stands for: a binary frame is a policy
 * violation, a frame over `maxBytes` too big, anything but `{"type":"auth","token":"<non-empty>"}`
 * an invalid auth message.
 */
export function authMessageToken (data: unknown, isBinary: boolean, maxBytes: number): { token: string } | FailureClass {
  if (isBinary || !Buffer.isBuffer(data)) return 'policy_violation'
  if (data.length > maxBytes) return 'message_too_big'
  const message = parseJsonObject(data.toString('utf8'))
  const token = message?.type === MessageType.Auth && typeof message.token === 'string' && message.token.length > 0 ? message.token : undefined
  return token === undefined ? 'invalid_auth_message' : { token }
}

/** The size of a client message as ws delivers it, in bytes. */
export function byteLength (data: unknown): number {
  if (Buffer.isBuffer(data)) return data.length
  if (data instanceof ArrayBuffer) return data.byteLength
  if (Array.isArray(data)) return data.reduce((n: number, b: Buffer) => n + b.length, 0)
  // ws 8.18+ delivers a Blob to a handler that set binaryType = 'blob'.
  if (data instanceof Blob) return data.size
  /* c8 ignore next 2: ws delivers only the four kinds above; counted as empty should it change */
  return 0
}
