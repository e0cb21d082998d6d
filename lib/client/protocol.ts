import type { CloseCodeEntry, CloseCodeTable, FailureClass } from '../protocol/close-codes.ts'
import { authMessage, parseJsonObject, SERVER_MESSAGE_TYPES } from '../protocol/messages.ts'
import type { Transport } from './types.ts'

/** What a client needs to open a connection that carries `token` one way. */
export interface Handshake {
  /** The URL to open (with the token in it for `query`). */
  url: string
  /** The subprotocols to offer. */
  protocols: string[]
  /** The first message to send after `open` (`message` transport), else `null`. */
  authMessage: string | null
}

/** The inputs of `handshake()`. */
export interface HandshakeOptions {
  url: string
  token: string
  transport: Transport
  protocols?: readonly string[]
  /** @default 'token' */
  queryParam?: string
  /** @default 'bearer' */
  protocolPrefix?: string
}

/**
 * How to carry `token` with each transport: `protocol` offers `<prefix>.<token>` first, then
 * `<prefix>`, then the app's protocols (the server selects `<prefix>` or an app protocol, never
 * the token entry); `message` sends the auth message first; `query` sets `?<queryParam>=<token>`.
 */
export function handshake (options: HandshakeOptions): Handshake {
  const { token, transport } = options
  const prefix = options.protocolPrefix ?? 'bearer'
  const appProtocols = [...(options.protocols ?? [])]
  if (transport === 'protocol') {
    return { url: options.url, protocols: [`${prefix}.${token}`, prefix, ...appProtocols], authMessage: null }
  }
  if (transport === 'message') {
    return { url: options.url, protocols: appProtocols, authMessage: authMessage(token) }
  }
  const url = new URL(options.url)
  url.searchParams.set(options.queryParam ?? 'token', token)
  return { url: url.href, protocols: appProtocols, authMessage: null }
}

/** The inputs of `ticketHandshake()`. */
export interface TicketHandshakeOptions {
  url: string
  /** A one-time ticket from the server's `issueTicket()`. */
  ticket: string
  protocols?: readonly string[]
  /** @default 'ticket' */
  ticketParam?: string
}

/**
 * How to carry a one-time ticket: `?<ticketParam>=<ticket>` in the URL (replacing one already
 * there), the app's protocols as they are, no auth message.
 */
export function ticketHandshake (options: TicketHandshakeOptions): Handshake {
  const url = new URL(options.url)
  url.searchParams.set(options.ticketParam ?? 'ticket', options.ticket)
  return { url: url.href, protocols: [...(options.protocols ?? [])], authMessage: null }
}

export { authMessage }

/** The types of the server's control messages; they never reach the app's `message` listeners. */
export const CONTROL_TYPES: Set<string> = new Set(SERVER_MESSAGE_TYPES)

/** A server control message. */
export interface ControlMessage {
  type: string
  expires_at?: string | null
  [key: string]: unknown
}

/** Returns the control message a frame carries, or `undefined` for an app message. */
export function parseControl (data: unknown): ControlMessage | undefined {
  // Cheap checks first: most app frames are not JSON objects naming a type.
  if (typeof data !== 'string' || data.length === 0 || !data.includes('"type"')) return undefined
  const start = data.trimStart()
  if (start[0] !== '{') return undefined
  const parsed = parseJsonObject(start)
  const type = parsed?.type
  return typeof type === 'string' && CONTROL_TYPES.has(type) ? parsed as ControlMessage : undefined
}

/** A table row with the name of its failure class. */
export type Row = CloseCodeEntry & { failure: FailureClass }

function rows (table: CloseCodeTable): Row[] {
  return (Object.entries(table) as [FailureClass, CloseCodeEntry][]).map(([failure, entry]) => ({ ...entry, failure }))
}

/**
 * The table row of a close: the row with this code and this reason, else the first row with this
 * code (4001 `Token expired` is `token_expired`; 4001 with a custom reason is `no_token`), else
 * `undefined` for a code the table does not know.
 */
export function rowForClose (code: number, reason: string, table: CloseCodeTable): Row | undefined {
  const candidates = rows(table).filter(row => row.code === code)
  return candidates.find(row => row.reason === reason) ?? candidates[0]
}

/**
 * The table row of an HTTP refusal (`reject: 'http'`): the class named by the body's `failure`
 * when it has that status, else the first row with that status.
 */
export function rowForStatus (status: number, failure: unknown, table: CloseCodeTable): Row | undefined {
  const withStatus = rows(table).filter(row => row.status === status)
  return withStatus.find(row => row.failure === failure) ?? withStatus[0]
}

/** An HTTP answer to the upgrade instead of `101 Switching Protocols`. */
export interface HttpRejection {
  status: number
  /** The `failure` field of the JSON body, when there is one. */
  failure?: string
}

interface NodeResponse {
  statusCode?: number
  setEncoding?: (encoding: string) => void
  on: (event: string, listener: (chunk?: unknown) => void) => void
}
interface NodeSocket {
  on: (event: string, listener: (req: unknown, res: NodeResponse) => void) => void
  terminate?: () => void
}

const MAX_BODY = 4096

/**
 * With `ws` (Node), reads an HTTP refusal of the upgrade: status and JSON body, then ends the
 * socket, which closes with 1006. Does nothing for a browser WebSocket, which never exposes it.
 */
export function watchHttpRejection (socket: object, onRejection: (rejection: HttpRejection) => void): void {
  const node = socket as Partial<NodeSocket>
  if (typeof node.on !== 'function') return
  node.on.call(socket, 'unexpected-response', (_req, res) => {
    let body = ''
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      onRejection({ status: res.statusCode ?? 0, failure: failureOf(body) })
      if (typeof node.terminate === 'function') node.terminate.call(socket)
    }
    res.setEncoding?.('utf8')
    res.on('data', (chunk) => { if (body.length < MAX_BODY) body += String(chunk) })
    res.on('end', finish)
    res.on('error', finish)
    res.on('close', finish)
  })
}

function failureOf (body: string): string | undefined {
  try {
    const failure = (JSON.parse(body) as { failure?: unknown }).failure
    return typeof failure === 'string' ? failure : undefined
  } catch {
    return undefined
  }
}
