import WebSocket from 'ws'
import type { Test } from 'tap'
import type { ClientEvents, WebSocketConstructor, WsAuthClient } from '../../../lib/client/index.ts'
import { clock } from '../../../lib/protocol/clock.ts'
import type { ManualClock } from '../../helpers/clock.ts'
import { WAIT_MS } from '../../helpers/index.ts'
import type { Served } from './server.ts'

type Events = ClientEvents
type Name = keyof Events

/** One event a client emitted, with the time of the library's clock (the manual one in a test that installs it). */
export interface Recorded<K extends Name = Name> { name: K, payload: Events[K], at: number }

export interface Recorder {
  /** Every event, in order, from the moment `record` was called. */
  events: Recorded[]
  /** The payloads of one event, in order. */
  all<K extends Name> (name: K): Array<Events[K]>
  /**
   * Resolves with the `n`-th payload (1-based) of `name` that matches `filter`; rejects after
   * `WAIT_MS` with the events seen so far.
   */
  next<K extends Name> (name: K, n?: number, filter?: (payload: Events[K]) => boolean): Promise<Events[K]>
  /** Resolves at the final `close` (the one with `willRetry: false`). */
  final (): Promise<Events['close']>
}

const NAMES: Name[] = ['established', 'message', 'refreshed', 'close', 'error', 'refused', 'unsubscribed', 'publication']

function describe (events: Recorded[]): string {
  const shown = events.slice(-4).map(e => `${e.name} ${JSON.stringify(e.payload)?.slice(0, 120)}`)
  return `${events.length} event(s)${shown.length > 0 ? ', last: ' + shown.join('; ') : ''}`
}

/** Rejects with `what` and `detail()` when `promise` has not settled after `WAIT_MS`. */
function bounded<T> (promise: Promise<T>, what: string, detail: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${WAIT_MS} ms (${detail()})`)), WAIT_MS)
    timer.unref()
  })
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer))
}

/** Records every event of `client`; call it right after `createClient`, before any await. */
export function record (client: WsAuthClient): Recorder {
  const events: Recorded[] = []
  const waiters = new Set<() => void>()
  for (const name of NAMES) {
    client.on(name, (payload: unknown) => {
      events.push({ name, payload, at: clock.now() } as Recorded)
      for (const w of [...waiters]) w()
    })
  }
  const all = <K extends Name>(name: K): Array<Events[K]> => events.filter(e => e.name === name).map(e => e.payload as Events[K])
  const next = <K extends Name>(name: K, n = 1, filter: (payload: Events[K]) => boolean = () => true): Promise<Events[K]> => {
    let check = (): void => {}
    const found = new Promise<Events[K]>((resolve) => {
      check = () => {
        const hit = all(name).filter(filter)[n - 1]
        if (hit === undefined) return
        waiters.delete(check)
        resolve(hit)
      }
      waiters.add(check)
      check()
    })
    return bounded(found, `${name} #${n}`, () => describe(events)).finally(() => waiters.delete(check))
  }
  return { events, all, next, final: () => next('close', 1, c => !c.willRetry) }
}

/** The sockets a client opened, seen through the `ws` constructor handed to it. */
export interface Sockets {
  /** Pass as the client's `WebSocket` option: `ws`, counting each socket it makes. */
  WebSocket: WebSocketConstructor
  /** Every socket the client made, in order. The client makes one synchronously when it connects. */
  all: WebSocket[]
  /** Resolves with the `n`-th socket (1-based) once it is open; rejects after `WAIT_MS`. */
  opened (n: number): Promise<WebSocket>
  /** The URL and the subprotocols the `n`-th socket (1-based) was made with. */
  offered (n: number): { url: string, protocols: string[] }
  /** The frames the client sent on the `n`-th socket (1-based), as text. */
  sent (n: number): string[]
}

export function sockets (): Sockets {
  const all: WebSocket[] = []
  const frames: string[][] = []
  const offers: Array<{ url: string, protocols: string[] }> = []
  const opens: Array<Promise<void>> = []
  const made = new Set<() => void>()
  class Counted extends WebSocket {
    constructor (url: string | URL, protocols?: string | string[]) {
      super(url, protocols)
      all.push(this)
      offers.push({ url: String(url), protocols: protocols === undefined ? [] : [protocols].flat() })
      const mine: string[] = []
      frames.push(mine)
      const send = this.send.bind(this) as (...args: unknown[]) => void
      this.send = ((data: unknown, ...rest: unknown[]) => { mine.push(String(data)); send(data, ...rest) }) as WebSocket['send']
      opens.push(new Promise(resolve => this.once('open', () => resolve())))
      for (const m of [...made]) m()
    }
  }
  const opened = (n: number): Promise<WebSocket> => {
    const exists = new Promise<void>((resolve) => {
      const check = (): void => { if (all.length >= n) { made.delete(check); resolve() } }
      made.add(check)
      check()
    })
    return bounded(exists.then(() => opens[n - 1]).then(() => all[n - 1]), `socket #${n} open`,
      () => `${all.length} socket(s) made`)
  }
  return { WebSocket: Counted, all, opened, sent: (n) => frames[n - 1] ?? [], offered: (n) => offers[n - 1] }
}

/**
 * Proves that a client which reported its final close never connects again. Moves the manual
 * clock past `longest` (the longest backoff the client could wait): a reconnect timer, had one
 * been left, would fire and make its socket within the tick (the tick turns the event loop, so a
 * `token()` promise settles). Then checks that the client made no socket since, and that the
 * server received exactly `expected` upgrade requests, after waiting for every socket the client
 * did make to reach it: none can still be on its way.
 */
export async function assertNoRetry (
  t: Test,
  ctx: { client: WsAuthClient, time: ManualClock, served: Served, sockets: Sockets },
  expected: number,
  longest: number
): Promise<void> {
  const { client, time, served } = ctx
  t.equal(client.state, 'closed', 'the client reports it gave up')
  const made = ctx.sockets.all.length
  await time.tick(longest + 1)
  t.equal(ctx.sockets.all.length, made, `no socket made in the ${longest + 1} ms after the final close`)
  await served.attempt(ctx.sockets.all.length)
  t.equal(served.attempts.length, expected, `the server received ${expected} upgrade request(s)`)
  t.equal(ctx.sockets.all.length, expected, 'one per socket the client made')
}

/**
 * Follows the client to its final close, moving the manual clock by each delay it announces (0
 * included: even an immediate retry waits for its timer). Resolves with the final close; rejects
 * after `most` closes that all announced a retry.
 */
export async function untilFinal (events: Recorder, time: ManualClock, most = 20): Promise<Events['close']> {
  for (let n = 1; n <= most; n++) {
    const close = await events.next('close', n)
    if (!close.willRetry) return close
    await time.tick(close.delay)
  }
  throw new Error(`no final close after ${most} closes: a reconnect loop (${describe(events.events)})`)
}
