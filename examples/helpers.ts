// Test-only helpers of the example tests. The client is the suite's one test client
// (test/helpers/index.ts: it records every event from construction, and every wait on it rejects
// at the close or after a bound); what is here is example-specific: `listen` for an app the
// example builds itself (buildApp builds its own), and waits by message `type`.
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Client } from '../test/helpers/index.ts'

export { barrier, connect, connectWith, deferred, type Client, type Closed } from '../test/helpers/index.ts'

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

/** A JSON object message. */
export type Message = Record<string, unknown>

const isObject = (m: unknown): m is Message => typeof m === 'object' && m !== null && !Buffer.isBuffer(m) && !Array.isArray(m)

/** The messages of a type received so far. */
export function ofType (client: Client, type: string): Message[] {
  return client.messages.filter((m): m is Message => isObject(m) && m.type === type)
}

/**
 * The `nth` (default first) message of `type`, received or still to come; rejects, naming the
 * close, when the socket closes first (the kit's `messageWhere`).
 */
export async function waitFor (client: Client, type: string, nth = 1): Promise<Message> {
  await client.messageWhere(() => ofType(client, type).length >= nth)
  return ofType(client, type)[nth - 1]
}
