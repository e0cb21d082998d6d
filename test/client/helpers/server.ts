import type { FastifyInstance } from 'fastify'
import { clock } from '../../../lib/protocol/clock.ts'
import type { WsAuthPluginOptions } from '../../../lib/types.ts'
import { WAIT_MS, buildApp, type TestApp } from '../../helpers/index.ts'

interface Teardown { teardown (fn: () => unknown): void }

export interface ServeOptions {
  /** Options of fastify-ws-auth. */
  auth?: WsAuthPluginOptions
  /** Declares the routes (default: `/ws`, an echo). */
  routes?: (app: FastifyInstance) => void | Promise<void>
  /** Runs before fastify-ws-auth is registered (hooks that answer before it, say). */
  before?: (app: FastifyInstance) => void | Promise<void>
}

export interface Served extends TestApp {
  /** `ws://127.0.0.1:<port><path>`, `/ws` by default. */
  url (path?: string): string
  /** `http://127.0.0.1:<port><path>`, `/` by default. */
  httpUrl (path?: string): string
  /** Signs a token that lives a minute unless `options` say otherwise. */
  sign (payload: object, options?: Record<string, unknown>): string
  /**
   * Upgrade requests the server received (the client's connection attempts), each with the time
   * of the library's clock when it arrived: with a manual clock, the gaps are the delays exactly.
   */
  attempts: number[]
  /** Resolves once the server has received `n` upgrade requests; rejects after `WAIT_MS`. */
  attempt (n: number): Promise<void>
}

/**
 * The kit's `buildApp` (a real Fastify app with @fastify/jwt and fastify-ws-auth on 127.0.0.1:0,
 * closed at teardown) that also counts the upgrade requests it receives, from an `onRequest` hook
 * that runs before any auth.
 */
export async function serve (t: Teardown, opts: ServeOptions = {}): Promise<Served> {
  const attempts: number[] = []
  const waiters = new Set<{ n: number, resolve: () => void }>()
  const app = await buildApp(t, {
    auth: opts.auth,
    routes: opts.routes,
    async before (app) {
      app.addHook('onRequest', async (request) => {
        if (request.headers.upgrade?.toLowerCase() !== 'websocket') return
        attempts.push(clock.now())
        for (const w of [...waiters]) if (w.n <= attempts.length) w.resolve()
      })
      if (opts.before !== undefined) await opts.before(app)
    }
  })
  const attempt = (n: number): Promise<void> => n <= attempts.length
    ? Promise.resolve()
    : new Promise((resolve, reject) => {
      const waiter = {
        n,
        resolve: () => { clearTimeout(timer); waiters.delete(waiter); resolve() }
      }
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(new Error(`the server received ${attempts.length} upgrade request(s), not ${n}, within ${WAIT_MS} ms`))
      }, WAIT_MS)
      timer.unref()
      waiters.add(waiter)
    })
  return {
    ...app,
    url: (path = '/ws') => app.url(path),
    httpUrl: (path = '/') => app.httpUrl(path),
    sign: (payload, options) => app.sign(payload, { expiresIn: '1m', ...options }),
    attempts,
    attempt
  }
}
