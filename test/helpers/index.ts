import { once } from 'node:events'
import { dirname, join } from 'node:path'
import type { AddressInfo, Socket } from 'node:net'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import jwt, { type FastifyJWTOptions } from '@fastify/jwt'
import websocket from '@fastify/websocket'
import WebSocket, { type ClientOptions } from 'ws'
import wsAuth from '../../lib/index.ts'
import type { TokenSource, WsAuthPluginOptions } from '../../lib/types.ts'
import { clock as libClock } from '../../lib/protocol/clock.ts'
import { manualClock, type ManualClock } from './clock.ts'

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

/**
 * How long a test waits for something a client expects (a message, the close, the open) before
 * the wait fails with what the client saw instead. Generous, so that a busy machine does not
 * fail a good run; bounded, so that a broken one fails in seconds with a message rather than at
 * tap's timeout. `TEST_WAIT_MS` overrides it.
 */
export const WAIT_MS = Number(process.env.TEST_WAIT_MS ?? 20_000)

/**
 * The suite's one `ws` client. It records every event from construction on, so no event is
 * missed, and every wait on it is bounded: it rejects with what happened instead (the close code
 * and reason, the messages so far) when the socket closes first or `expire` ms pass.
 */
export interface Client {
  ws: WebSocket
  /** Every message received, as text (JSON-parsed where it parses); binary messages as Buffers. */
  messages: unknown[]
  /** The close code and reason, once the socket has closed (1006 when the connection failed). */
  readonly closedWith: Closed | undefined
  /** Resolves with code and reason at the close event; rejects after `WAIT_MS` (use `waitForClose` for another bound). */
  readonly closed: Promise<Closed>
  /** Resolves at open; rejects when the socket closes first (a refused handshake) or after `WAIT_MS`. */
  readonly opened: Promise<void>
  /** Resolves with the HTTP status of a refused upgrade, or `undefined` once the socket opened or closed. */
  refusedStatus: Promise<number | undefined>
  /** The protocol the server selected. */
  protocol (): string
  /** The n-th message (1-based); rejects when the socket closes before it arrives, or after `expire` ms. */
  message (n: number, expire?: number): Promise<unknown>
  /** The first message, received or to come, for which `test` holds; rejects like `message`. */
  messageWhere (test: (message: unknown) => boolean, expire?: number): Promise<unknown>
  /** The close code and reason; rejects after `expire` ms. */
  waitForClose (expire?: number): Promise<Closed>
  send (data: unknown): void
}

function describe (messages: unknown[]): string {
  const shown = messages.slice(-3).map(m => Buffer.isBuffer(m) ? `<${m.length} bytes>` : JSON.stringify(m))
  return `${messages.length} message(s)${shown.length > 0 ? ', last: ' + shown.join(' ') : ''}`
}

export function connect (url: string, protocols?: string | string[], options?: ClientOptions): Client {
  const ws = new WebSocket(url, protocols, options)
  const messages: unknown[] = []
  let closedWith: Closed | undefined
  let isOpen = false
  /** Waits that end at a message or at the close: each gets a look at every event. */
  const watchers = new Set<{ onMessage: () => void, onClose: () => void }>()
  let resolveStatus: (s: number | undefined) => void = () => {}
  const refusedStatus = new Promise<number | undefined>((resolve) => { resolveStatus = resolve })
  ws.on('unexpected-response', (_req, res) => {
    resolveStatus(res.statusCode)
    res.resume()
    ws.terminate()
  })
  ws.on('error', () => {})
  ws.on('open', () => {
    isOpen = true
    resolveStatus(undefined)
    for (const w of [...watchers]) w.onMessage()
  })
  ws.on('close', (code, reason) => {
    closedWith = { code, reason: reason.toString() }
    resolveStatus(undefined)
    for (const w of [...watchers]) w.onClose()
  })
  ws.on('message', (data, isBinary) => {
    let value: unknown = data
    if (!isBinary) {
      const text = data.toString()
      try { value = JSON.parse(text) } catch { value = text }
    }
    messages.push(value)
    for (const w of [...watchers]) w.onMessage()
  })

  /**
   * Settles with `done()` once it returns something other than `undefined` (checked now and at
   * every event), rejects with `closedError()` at the close and after `expire` ms.
   */
  function wait<T> (what: string, expire: number, done: () => T | undefined, atClose: (closed: Closed) => T | Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const settle = (value: T | Error): void => {
        clearTimeout(timer)
        watchers.delete(watcher)
        if (value instanceof Error) reject(value)
        else resolve(value)
      }
      const watcher = {
        onMessage: () => { const v = done(); if (v !== undefined) settle(v) },
        onClose: () => { const v = done(); settle(v !== undefined ? v : atClose(closedWith as Closed)) }
      }
      const timer = setTimeout(() => settle(new Error(`${what}: nothing after ${expire} ms (socket ${closedWith === undefined ? (isOpen ? 'open' : 'connecting') : 'closed'}; ${describe(messages)})`)), expire)
      timer.unref()
      watchers.add(watcher)
      if (closedWith !== undefined) watcher.onClose()
      else watcher.onMessage()
    })
  }
  const closedBefore = (what: string) => (c: Closed): Error =>
    new Error(`${what}: the socket closed first with ${c.code} ${JSON.stringify(c.reason)} (${describe(messages)})`)

  const client: Client = {
    ws,
    messages,
    get closedWith () { return closedWith },
    get closed () { return client.waitForClose() },
    get opened () {
      const opened = wait<true>('open', WAIT_MS, () => isOpen ? true : undefined, closedBefore('open')).then(() => {})
      return opened
    },
    refusedStatus,
    protocol: () => ws.protocol,
    message: (n, expire = WAIT_MS) =>
      wait(`message ${n}`, expire, () => n <= messages.length ? { m: messages[n - 1] } : undefined, closedBefore(`message ${n}`)).then(x => x.m),
    messageWhere: (test, expire = WAIT_MS) =>
      wait('a matching message', expire, () => { const i = messages.findIndex(test); return i === -1 ? undefined : { m: messages[i] } }, closedBefore('a matching message')).then(x => x.m),
    waitForClose: (expire = WAIT_MS) => wait('close', expire, () => closedWith, c => c),
    send: (data) => ws.send(typeof data === 'string' || Buffer.isBuffer(data) ? data : JSON.stringify(data))
  }
  return client
}

/**
 * A client that presents `token` through `source`, as a real one does: `?token=` (appended to any
 * query; a ticket as `?ticket=`), `Authorization: Bearer`, the `token` cookie, the `bearer.<token>` subprotocol next to
 * plain `bearer`, or the first message once the socket is open. `options` go to `ws` (merged
 * headers).
 */
export function connectWith (url: string, source: TokenSource, token: string, options: ClientOptions = {}): Client {
  const headers = (extra: Record<string, string>): ClientOptions => ({ ...options, headers: { ...options.headers as Record<string, string>, ...extra } })
  switch (source) {
    case 'query': return connect(`${url}${url.includes('?') ? '&' : '?'}token=${token}`, undefined, options)
    case 'ticket': return connect(`${url}${url.includes('?') ? '&' : '?'}ticket=${token}`, undefined, options)
    case 'header': return connect(url, undefined, headers({ authorization: `Bearer ${token}` }))
    case 'cookie': return connect(url, undefined, headers({ cookie: `token=${token}` }))
    case 'protocol': return connect(url, [`bearer.${token}`, 'bearer'], options)
    case 'message': {
      const c = connect(url, undefined, options)
      c.ws.once('open', () => c.send({ type: 'auth', token }))
      return c
    }
  }
}

/** Sends `data` and resolves with the next message the client gets (rejects like `message`). */
export async function answer (client: Client, data: unknown): Promise<unknown> {
  const n = client.messages.length + 1
  client.send(data)
  return client.message(n)
}

/** What `logCapture` keeps: every line written to `stream`. */
export interface LogCapture {
  stream: Writable
  lines: string[]
  records: () => Array<Record<string, unknown>>
  /**
   * The first record, written or to come, whose `msg` includes `test` (or for which `test`
   * holds): an event to await instead of polling the log. Rejects after `expire` ms.
   */
  waitFor: (test: string | ((record: Record<string, unknown>) => boolean), expire?: number) => Promise<Record<string, unknown>>
}

/** A pino destination that keeps every line, for asserting on log output and awaiting log lines. */
export function logCapture (): LogCapture {
  const lines: string[] = []
  const waiters = new Set<(record: Record<string, unknown>) => boolean>()
  const stream = new Writable({
    write (chunk, _enc, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        lines.push(line)
        const record = JSON.parse(line) as Record<string, unknown>
        for (const waiter of [...waiters]) waiter(record)
      }
      cb()
    }
  })
  const records = (): Array<Record<string, unknown>> => lines.map(l => JSON.parse(l) as Record<string, unknown>)
  const waitFor: LogCapture['waitFor'] = (test, expire = WAIT_MS) => {
    const matches = typeof test === 'string' ? (r: Record<string, unknown>) => String(r.msg).includes(test) : test
    const found = records().find(matches)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const waiter = (record: Record<string, unknown>): boolean => {
        if (!matches(record)) return false
        waiters.delete(waiter)
        clearTimeout(timer)
        resolve(record)
        return true
      }
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(new Error(`no log line matching ${String(test)} within ${expire} ms (${lines.length} lines)`))
      }, expire)
      timer.unref()
      waiters.add(waiter)
    })
  }
  return { stream, lines, records, waitFor }
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
  const expire = WAIT_MS
  if (client.closedWith !== undefined) throw new Error(`barrier: the socket is closed (${client.closedWith.code} ${JSON.stringify(client.closedWith.reason)})`)
  await new Promise<void>((resolve, reject) => {
    const done = (error?: Error): void => {
      clearTimeout(timer)
      client.ws.off('pong', onPong)
      client.ws.off('close', onClose)
      if (error === undefined) resolve()
      else reject(error)
    }
    const onPong = (): void => done()
    const onClose = (code: number, reason: Buffer): void => done(new Error(`barrier: the socket closed first with ${code} ${JSON.stringify(reason.toString())}`))
    const timer = setTimeout(() => done(new Error(`barrier: no pong within ${expire} ms`)), expire)
    timer.unref()
    client.ws.on('pong', onPong)
    client.ws.on('close', onClose)
    client.ws.ping()
  })
}

/**
 * Resolves once `condition()` holds (it may ask a server: an async condition is awaited), looking
 * again every `everyMs`; rejects after WAIT_MS, naming `what`. Only for state that has no event of
 * its own (the test says which, and why); where an event exists (a hook called, a message, a
 * socket's 'close', a log line), await it instead.
 */
export async function eventually (condition: () => boolean | Promise<boolean>, what = 'condition', everyMs = 5): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not met within ${WAIT_MS} ms`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}

/** The server's ends of an app's connections, as `serverSockets` records them. */
export interface ServerSockets {
  /**
   * Resolves once the server's end of the established session whose upgrade URL includes `mark`
   * has emitted 'close' (the plugin lets a session go before that event's listeners run); rejects
   * after `expire` ms, or at once when no such session was handed to a route.
   */
  closed (mark: string, expire?: number): Promise<void>
  /**
   * Resolves once every server-side socket open now has closed: each TCP connection, then each
   * WebSocket still in `app.websocketServer.clients` (its 'close' may follow the TCP one). With
   * `accepted`, first waits until the server has accepted that many connections since
   * `serverSockets` was called (a client may give up on one before the server accepts it).
   * Rejects after `expire` ms, naming what is still missing.
   */
  allClosed (expire?: number, accepted?: number): Promise<void>
}

/** `promise`, or a rejection naming `what` once `expire` ms (WAIT_MS by default) have passed. */
export function bounded<T> (promise: T | Promise<T>, what: string | (() => string), expire = WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(typeof what === 'string' ? `${what}: not settled within ${expire} ms` : what())), expire)
    timer.unref()
  })
  return Promise.race([Promise.resolve(promise), expired]).finally(() => clearTimeout(timer))
}

/**
 * Whether the client is still open once the server answered a ping sent now: a close the server
 * sent before reading the ping has arrived by then, so `true` cannot be a close still on its way.
 */
export async function stillOpen (client: Client): Promise<boolean> {
  return Promise.race([barrier(client).then(() => client.closedWith === undefined), client.waitForClose().then(() => false)])
}

/**
 * Records the server's end of every connection from now on (call it right after `buildApp`): the
 * events to await instead of polling the registry for a session to be gone.
 */
export function serverSockets (app: FastifyInstance): ServerSockets {
  const tcp: Array<Promise<void>> = []
  let open = 0
  const arrivals = new Set<() => void>()
  const sessions: Array<{ url: string, closed: Promise<void> }> = []
  app.server.on('connection', (socket: Socket) => {
    open++
    // Not `once`: it rejects at an 'error' (a parse error of a half-sent request), and a close follows.
    tcp.push(new Promise(resolve => socket.once('close', () => { open--; resolve() })))
    for (const arrived of [...arrivals]) arrived()
  })
  app.websocketServer.on('connection', (ws: WebSocket, req: { url?: string }) => {
    sessions.push({ url: req.url ?? '', closed: closeOf(ws) })
  })
  return {
    closed (mark, expire = WAIT_MS) {
      const found = sessions.filter(s => s.url.includes(mark))
      if (found.length !== 1) return Promise.reject(new Error(`serverSockets: ${found.length} sessions with ${mark} in their URL, expected 1`))
      return bounded(found[0].closed, () => `the server's end of ${mark}: no close after ${expire} ms`, expire)
    },
    async allClosed (expire = WAIT_MS, accepted = 0) {
      const deadline = Date.now() + expire
      const left = (): number => Math.max(0, deadline - Date.now())
      const enough = new Promise<void>(resolve => {
        const arrived = (): void => { if (tcp.length >= accepted) { arrivals.delete(arrived); resolve() } }
        arrivals.add(arrived)
        arrived()
      })
      await bounded(enough, () => `${tcp.length} of ${accepted} connections accepted after ${expire} ms`, left())
      await bounded(Promise.all(tcp), () => `${open} TCP connection(s) still open after ${expire} ms`, left())
      const clients = app.websocketServer.clients
      await bounded(Promise.all([...clients].map(closeOf)), () => `${clients.size} server-side WebSocket(s) still open after ${expire} ms`, left())
    }
  }
}

/** The 'close' of a server-side socket; already there when it has closed. */
function closeOf (ws: WebSocket): Promise<void> {
  // ws sets CLOSED just before it emits 'close', synchronously: CLOSED means the event is past.
  return ws.readyState === WebSocket.CLOSED ? Promise.resolve() : new Promise(resolve => ws.once('close', () => resolve()))
}

/**
 * The close event, or the n-th message (the first by default) if it arrives before it: a client
 * that should have been refused but was accepted fails an assertion at once instead of waiting
 * for a close that never comes.
 */
export function refusal (client: Client, n = 1): Promise<Closed | { message: unknown }> {
  return client.message(n).then(message => ({ message }), async (err: Error) => {
    if (client.closedWith !== undefined) return client.closedWith
    throw err
  })
}

/**
 * Declares a plain HTTP GET route at `path` (answering `ok`) that counts its handler calls, so a
 * test can assert that a WebSocket upgrade sent to it never ran it.
 */
export function spyHttpRoute (app: FastifyInstance, path: string): { calls: number } {
  const spy = { calls: 0 }
  app.get(path, async () => { spy.calls++; return 'ok' })
  return spy
}

/**
 * The manual clock (test/helpers/clock.ts) for an app that imports the package as built: the
 * examples and the demo import `fastify-ws-auth`, which resolves to dist/, whose clock is a module
 * of its own. Both clocks then read the same manual time. Install it before building the app.
 */
export function manualClockOfBuilt (t: Teardown): ManualClock {
  const time = manualClock(t)
  const built = join(dirname(require.resolve('fastify-ws-auth')), 'protocol', 'clock.js')
  const { useClock } = require(built) as typeof import('../../lib/protocol/clock.ts')
  t.teardown(useClock({ ...libClock }))
  return time
}
