import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import jwt, { type FastifyJWTOptions } from '@fastify/jwt'
import websocket from '@fastify/websocket'
import WebSocket, { type ClientOptions } from 'ws'
import wsAuth from '../../lib/index.ts'
import type { WsAuthPluginOptions } from '../../lib/types.ts'

export const SECRET = 'a-test-secret-that-is-long-enough-for-hs256'

interface Teardown { teardown (fn: () => unknown): void }

export interface BuildOptions {
  /** Options of fastify-ws-auth. */
  auth?: WsAuthPluginOptions
  /** Options of @fastify/jwt; `false` to leave it out. */
  jwt?: Partial<FastifyJWTOptions> | false
  /** Register @fastify/websocket before fastify-ws-auth (else the plugin registers it). */
  websocketFirst?: boolean
  /** Called after the plugins, before listen: declare routes here. */
  routes?: (app: FastifyInstance) => void | Promise<void>
  /** Called before fastify-ws-auth is registered (e.g. @fastify/cookie). */
  before?: (app: FastifyInstance) => void | Promise<void>
  fastify?: FastifyServerOptions
}

export interface TestApp {
  app: FastifyInstance
  /** `ws://127.0.0.1:<port><path>` */
  url (path: string): string
  /** `http://127.0.0.1:<port><path>` */
  httpUrl (path: string): string
  sign (payload: object, options?: Record<string, unknown>): string
}

/** A Fastify app with @fastify/jwt and fastify-ws-auth, listening on 127.0.0.1:0, closed at teardown. */
export async function buildApp (t: Teardown, opts: BuildOptions = {}): Promise<TestApp> {
  const app = Fastify(opts.fastify)
  t.teardown(() => app.close())
  if (opts.jwt !== false) await app.register(jwt, { secret: SECRET, ...opts.jwt } as FastifyJWTOptions)
  if (opts.websocketFirst === true) await app.register(websocket)
  if (opts.before !== undefined) await opts.before(app)
  await app.register(wsAuth, opts.auth ?? {})
  if (opts.routes !== undefined) await opts.routes(app)
  else {
    app.get('/ws', { websocket: true }, (socket) => {
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }))
    })
  }
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return {
    app,
    url: (path) => `ws://127.0.0.1:${port}${path}`,
    httpUrl: (path) => `http://127.0.0.1:${port}${path}`,
    sign: (payload, options) => (app as FastifyInstance & { jwt: { sign: (p: object, o?: object) => string } }).jwt.sign(payload, options)
  }
}

export interface Closed { code: number, reason: string }

/** A `ws` client that records everything from construction on, so no event is missed. */
export interface Client {
  ws: WebSocket
  /** Every message received, as text (JSON-parsed where it parses). */
  messages: unknown[]
  /** Resolves with code and reason at the close event (1006 when the connection failed). */
  closed: Promise<Closed>
  /** Resolves at open; rejects when the handshake fails. */
  opened: Promise<void>
  /** Resolves with the HTTP status of a refused upgrade, or `undefined` once the socket opened or closed. */
  refusedStatus: Promise<number | undefined>
  /** The protocol the server selected. */
  protocol (): string
  /** Waits for the n-th message (1-based) and returns it. */
  message (n: number): Promise<unknown>
  send (data: unknown): void
}

export function connect (url: string, protocols?: string | string[], options?: ClientOptions): Client {
  const ws = new WebSocket(url, protocols, options)
  const messages: unknown[] = []
  const waiters: Array<{ n: number, resolve: (m: unknown) => void }> = []
  let resolveStatus: (s: number | undefined) => void = () => {}
  const refusedStatus = new Promise<number | undefined>((resolve) => { resolveStatus = resolve })
  ws.on('unexpected-response', (_req, res) => {
    resolveStatus(res.statusCode)
    res.resume()
    ws.terminate()
  })
  ws.on('error', () => {})
  const closed = new Promise<Closed>((resolve) => {
    ws.on('close', (code, reason) => {
      resolveStatus(undefined)
      resolve({ code, reason: reason.toString() })
    })
  })
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => { resolveStatus(undefined); resolve() })
    ws.once('close', () => reject(new Error('closed before open')))
  })
  opened.catch(() => {})
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? data : data.toString()
    let value: unknown = text
    if (typeof text === 'string') {
      try { value = JSON.parse(text) } catch { value = text }
    }
    messages.push(value)
    for (const w of waiters.filter(w => w.n === messages.length)) w.resolve(value)
  })
  return {
    ws,
    messages,
    closed,
    opened,
    refusedStatus,
    protocol: () => ws.protocol,
    message: (n) => n <= messages.length
      ? Promise.resolve(messages[n - 1])
      : new Promise(resolve => waiters.push({ n, resolve })),
    send: (data) => ws.send(typeof data === 'string' || Buffer.isBuffer(data) ? data : JSON.stringify(data))
  }
}

/** A pino destination that keeps every line, for asserting on log output. */
export function logCapture (): { stream: Writable, lines: string[], records: () => Array<Record<string, unknown>> } {
  const lines: string[] = []
  const stream = new Writable({
    write (chunk, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean))
      cb()
    }
  })
  return { stream, lines, records: () => lines.map(l => JSON.parse(l) as Record<string, unknown>) }
}

/** Resolves once `emitter` emits `event`. */
export const event = once

/** What a route handler declared by `spyRoute` saw. */
export interface RouteSpy {
  /** How many times the route handler ran. */
  calls: number
  /** `socket.user` at each call. */
  users: unknown[]
  /** Whether `socket.user === request.user` held at each call. */
  sameUser: boolean[]
  /** `request.params` at each call. */
  params: unknown[]
}

/**
 * Declares an echo websocket route at `path` that counts its handler calls, so a test can assert
 * that a refused client never reached the handler. `wsAuth` is left out of the route options when
 * `undefined` (the secure default).
 */
export function spyRoute (app: FastifyInstance, path: string, wsAuth?: import('../../lib/types.ts').WsAuthRouteSetting): RouteSpy {
  const spy: RouteSpy = { calls: 0, users: [], sameUser: [], params: [] }
  app.get(path, { websocket: true, ...(wsAuth === undefined ? {} : { wsAuth }) }, (socket, request) => {
    spy.calls++
    spy.users.push(socket.user)
    spy.sameUser.push(socket.user !== undefined && socket.user === request.user)
    spy.params.push(request.params)
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }))
  })
  return spy
}

/** A promise with its resolve function, for holding a hook (e.g. a slow `verify`) until the test lets it go. */
export function deferred<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let settle!: (value: T) => void
  const promise = new Promise<T>((resolve) => { settle = resolve })
  return { promise, resolve: settle }
}

/**
 * Resolves once the server answered a ping sent now. The server reads frames in order, so every
 * message sent before has been received (not necessarily handled asynchronously) by then.
 */
export async function barrier (client: Client): Promise<void> {
  const pong = once(client.ws, 'pong')
  client.ws.ping()
  await pong
}

/**
 * Resolves once `condition()` holds, checking after each turn of the event loop; rejects after
 * `timeoutMs`. For server-side state that has no event of its own (counts returning to zero).
 */
export async function eventually (condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met within ' + timeoutMs + ' ms')
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

/**
 * The close event, or the n-th message (the first by default) if it arrives before it: a client
 * that should have been refused but was accepted fails an assertion at once instead of waiting
 * for a close that never comes.
 */
export function refusal (client: Client, n = 1): Promise<Closed | { message: unknown }> {
  return Promise.race([client.closed, client.message(n).then(message => ({ message }))])
}
