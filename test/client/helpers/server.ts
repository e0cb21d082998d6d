import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import jwt from '@fastify/jwt'
import wsAuth from '../../../lib/index.ts'
import type { WsAuthPluginOptions } from '../../../lib/types.ts'

export const SECRET = 'client-tests-secret-long-enough-for-hs256'

interface Teardown { teardown (fn: () => unknown): void }

export interface ServeOptions {
  /** Options of fastify-ws-auth. */
  auth?: WsAuthPluginOptions
  /** Declares the routes (default: `/ws`, an echo). */
  routes?: (app: FastifyInstance) => void | Promise<void>
  /** Runs before fastify-ws-auth is registered (hooks that answer before it, say). */
  before?: (app: FastifyInstance) => void | Promise<void>
}

export interface Served {
  app: FastifyInstance
  /** `ws://127.0.0.1:<port><path>` */
  url (path?: string): string
  /** `http://127.0.0.1:<port><path>` */
  httpUrl (path?: string): string
  sign (payload: object, options?: Record<string, unknown>): string
  /** Upgrade requests the server received (its connection attempts), with their arrival times. */
  attempts: number[]
  /** Resolves once the server has received `n` upgrade requests. */
  attempt (n: number): Promise<void>
}

/**
 * A real Fastify app with @fastify/jwt and fastify-ws-auth on 127.0.0.1:0, closed at teardown,
 * that counts the upgrade requests it receives (an `onRequest` hook runs before any auth).
 */
export async function serve (t: Teardown, opts: ServeOptions = {}): Promise<Served> {
  const app = Fastify()
  const attempts: number[] = []
  const waiters: Array<{ n: number, resolve: () => void }> = []
  app.addHook('onRequest', async (request) => {
    if (request.headers.upgrade?.toLowerCase() !== 'websocket') return
    attempts.push(Date.now())
    for (const w of waiters.filter(w => w.n <= attempts.length)) w.resolve()
  })
  await app.register(jwt, { secret: SECRET })
  if (opts.before !== undefined) await opts.before(app)
  await app.register(wsAuth, opts.auth ?? {})
  if (opts.routes !== undefined) await opts.routes(app)
  else app.get('/ws', { websocket: true }, (socket) => { socket.on('message', (data, binary) => socket.send(data, { binary })) })
  // Closed at teardown only once it listens: closing an app whose boot failed can hang, which
  // would turn a clear registration error into a test timeout.
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const { port } = app.server.address() as AddressInfo
  const signer = app as unknown as { jwt: { sign: (p: object, o?: object) => string } }
  return {
    app,
    url: (path = '/ws') => `ws://127.0.0.1:${port}${path}`,
    httpUrl: (path = '/') => `http://127.0.0.1:${port}${path}`,
    sign: (payload, options) => signer.jwt.sign(payload, { expiresIn: '1m', ...options }),
    attempts,
    attempt: (n) => n <= attempts.length ? Promise.resolve() : new Promise(resolve => waiters.push({ n, resolve }))
  }
}
