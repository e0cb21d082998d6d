// Test-only helpers shared by the example tests: a server on 127.0.0.1:0 closed at teardown, and a
// `ws` client that records every message and its close from construction, so no event is missed.
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import WebSocket, { type ClientOptions } from 'ws'

interface Teardown { teardown (fn: () => unknown): void }

/** Where a listening example app answers. */
export interface Served {
  /** `ws://127.0.0.1:<port><path>` */
  ws (path: string): string
  /** `http://127.0.0.1:<port><path>` */
  http (path: string): string
}

/** Listens on 127.0.0.1 with a free port; the app is closed at teardown. */
export async function listen (t: Teardown, app: FastifyInstance): Promise<Served> {
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return {
    ws: (path) => `ws://127.0.0.1:${port}${path}`,
    http: (path) => `http://127.0.0.1:${port}${path}`
  }
}

/** A close as the client saw it. */
export interface Closed { code: number, reason: string }

/** A message: JSON-parsed when it parses, else the text. */
export type Message = Record<string, unknown> | string

export interface Client {
  ws: WebSocket
  /** Every message received so far, in order. */
  messages: Message[]
  /** Resolves at the close event (1006 when the connection dropped or never opened). */
  closed: Promise<Closed>
  /**
   * Resolves with the `nth` (default first) message, received or still to come, with `type` (or
   * matching a predicate); rejects if the socket closes first, naming the close.
   */
  waitFor (match: string | ((message: Message) => boolean), nth?: number): Promise<Record<string, unknown>>
  /** Sends objects as JSON, strings as they are. */
  send (data: unknown): void
  /**
   * Resolves once the server answered a ping sent now. The server writes frames in order, so any
   * message it sent before handling this ping has been received by then.
   */
  barrier (): Promise<void>
}

export function connect (url: string, protocols?: string | string[], options?: ClientOptions): Client {
  const ws = new WebSocket(url, protocols, options)
  const messages: Message[] = []
  const waiters = new Set<{ test: (m: Message) => boolean, left: number, resolve: (m: Message) => void, reject: (e: Error) => void }>()
  ws.on('error', () => {})
  ws.on('message', (data) => {
    const message = parse(data.toString())
    messages.push(message)
    for (const waiter of waiters) {
      if (!waiter.test(message) || --waiter.left > 0) continue
      waiters.delete(waiter)
      waiter.resolve(message)
    }
  })
  let isClosed = false
  const closed = new Promise<Closed>((resolve) => {
    ws.on('close', (code, reason) => {
      isClosed = true
      const info = { code, reason: reason.toString() }
      for (const waiter of waiters) waiter.reject(new Error(`closed ${code} ${info.reason} before the awaited message`))
      waiters.clear()
      resolve(info)
    })
  })
  return {
    ws,
    messages,
    closed,
    waitFor (match, nth = 1) {
      const test = typeof match === 'function' ? match : (m: Message) => typeof m === 'object' && m.type === match
      const found = messages.filter(test)
      if (found.length >= nth) return Promise.resolve(found[nth - 1] as Record<string, unknown>)
      if (isClosed) return Promise.reject(new Error('closed before the awaited message'))
      return new Promise((resolve, reject) => {
        waiters.add({ test, left: nth - found.length, resolve: resolve as (m: Message) => void, reject })
      })
    },
    send: (data) => ws.send(typeof data === 'string' ? data : JSON.stringify(data)),
    async barrier () {
      const pong = once(ws, 'pong')
      ws.ping()
      await pong
    }
  }
}

/** The messages of a type received so far. */
export function ofType (client: Client, type: string): Array<Record<string, unknown>> {
  return client.messages.filter((m): m is Record<string, unknown> => typeof m === 'object' && m.type === type)
}

function parse (text: string): Message {
  try {
    const value: unknown = JSON.parse(text)
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : text
  } catch {
    return text
  }
}
