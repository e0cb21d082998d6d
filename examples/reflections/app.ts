// Journal reflections: `/ws/reflections/:entry_id` streams a reflection on one journal entry to
// its owner as a sequence of text messages, then closes with 1000. Everything that can go wrong
// before the first word is the plugin's close-code table:
//   4001 bad or missing token · 4002 user missing or inactive · 4003 someone else's entry
//   4004 no such entry · 1011 an internal error (the store failed)
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import jwt from '@fastify/jwt'
import wsAuth from 'fastify-ws-auth'
import { templateReflector, type Reflector } from './reflect.ts'
import { memoryStore, type JournalEntry, type JournalStore } from './store.ts'

export interface BuildOptions {
  /** HS256 secret of the journal's tokens. @default a random secret (tokens from `app.jwt.sign` only) */
  secret?: string
  /** Where users and entries live. @default the in-memory demo data */
  store?: JournalStore
  /** What writes the reflection. @default the template reflector, a word every 40 ms */
  reflect?: Reflector
  logger?: FastifyServerOptions['logger']
}

export async function build (opts: BuildOptions = {}): Promise<FastifyInstance> {
  const store = opts.store ?? memoryStore()
  const reflect = opts.reflect ?? templateReflector()
  const app = Fastify({ logger: opts.logger ?? false })

  await app.register(jwt, { secret: opts.secret ?? randomBytes(32).toString('base64url') })
  await app.register(wsAuth, {
    // Browsers: the `bearer.<token>` subprotocol keeps the token out of URLs and access logs.
    sources: ['query', 'protocol'],
    // A store that throws becomes 1011 `Internal error`; the details go to the server log only.
    async loadUser (claims) {
      const user = await store.findUser(String(claims.sub))
      return user?.active === true ? user : null
    }
  })

  // The entry `authorize` loaded, handed to the route handler without a second look-up.
  const entries = new WeakMap<FastifyRequest, JournalEntry>()

  app.get('/ws/reflections/:entry_id', {
    websocket: true,
    wsAuth: {
      // The client reads a plain text stream: no JSON `connection_established` in front of it.
      established: false,
      async authorize (request, user) {
        const { entry_id: entryId } = request.params as { entry_id: string }
        const entry = await store.findEntry(entryId)
        if (entry === undefined) return 'not_found'
        if (entry.userId !== user.id) return false
        entries.set(request, entry)
        return true
      }
    }
  }, async (socket, request) => {
    const entry = entries.get(request) as JournalEntry
    const { normal_closure: done, internal_error: failed } = app.wsAuth.closeCodes
    try {
      for await (const chunk of reflect(entry)) {
        // The client left: stop generating (ends the iterator).
        if (socket.readyState !== socket.OPEN) return
        socket.send(chunk)
      }
      socket.close(done.code, 'Reflection complete')
    } catch (err) {
      request.log.error({ err, entryId: entry.id }, 'reflection failed')
      if (socket.readyState === socket.OPEN) socket.close(failed.code, failed.reason)
    }
  })

  return app
}
