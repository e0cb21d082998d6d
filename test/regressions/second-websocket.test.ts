// Finding 2: routes under a second @fastify/websocket (a sibling scope of the plugin's, or a child
// scope that registered it before the plugin was registered at the root) accepted clients with no
// token. Every WebSocket upgrade of the app now fails closed: HTTP 500 and a warning naming the route.
import t from 'tap'
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import websocket from '@fastify/websocket'
import type { AddressInfo } from 'node:net'
import wsAuth from '../../lib/index.ts'
import { SECRET, connect, logCapture, refusal } from '../helpers/index.ts'

async function listen (app: ReturnType<typeof Fastify>): Promise<(path: string) => string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return (path) => `ws://127.0.0.1:${port}${path}`
}

/** An app with a logger whose warnings the test reads, and @fastify/jwt; closed at teardown. */
async function loggedApp (t: { teardown (fn: () => unknown): void }) {
  const logs = logCapture()
  const app = Fastify({ logger: { level: 'warn', stream: logs.stream } })
  t.teardown(() => app.close())
  await app.register(jwt, { secret: SECRET })
  const sign = (payload: object) => (app as unknown as { jwt: { sign: (p: object) => string } }).jwt.sign(payload)
  return { app, logs, sign }
}

function unguardedWarnings (records: Array<Record<string, unknown>>, route: string): number {
  return records.filter(r => r.msg === 'fastify-ws-auth: refused an unguarded WebSocket upgrade' &&
    (r.err as { message?: string } | undefined)?.message?.includes(route) === true).length
}

t.test('a sibling scope with its own @fastify/websocket: its routes are refused, the plugin\'s still work', async (t) => {
  const { app, logs, sign } = await loggedApp(t)
  let handled = 0
  await app.register(async (scope) => {
    await scope.register(wsAuth)
    scope.get('/guarded', { websocket: true }, (socket) => { socket.send('hello') })
  })
  await app.register(async (sibling) => {
    await sibling.register(websocket)
    sibling.get('/sibling', { websocket: true }, (socket) => { handled++; socket.send('open door') })
  })
  const url = await listen(app)
  const anonymous = connect(url('/sibling'))
  t.equal(await anonymous.refusedStatus, 500)
  t.equal(handled, 0, 'the handler never ran')
  t.equal(unguardedWarnings(logs.records(), '/sibling'), 1, 'one warning naming the route')

  const token = sign({ sub: 'u1' })
  const guarded = connect(url('/guarded?token=' + token))
  t.equal((await guarded.message(1) as { type: string }).type, 'connection_established')
  guarded.ws.close()
})

t.test('a child scope that registered @fastify/websocket before the plugin was registered at the root', async (t) => {
  const { app, logs, sign } = await loggedApp(t)
  let handled = 0
  await app.register(async (child) => {
    await child.register(websocket)
    child.get('/early', { websocket: true }, (socket) => { handled++; socket.send('open door') })
  })
  await app.register(wsAuth)
  app.get('/late', { websocket: true }, (socket) => { socket.send('hello') })
  const url = await listen(app)
  const anonymous = connect(url('/early'))
  t.equal(await anonymous.refusedStatus, 500)
  t.equal(handled, 0, 'the handler never ran')
  t.ok(unguardedWarnings(logs.records(), '/early') >= 1, 'a warning naming the route')

  const token = sign({ sub: 'u1' })
  const stranger = connect(url('/early?token=' + token))
  t.equal(await stranger.refusedStatus, 500, 'refused with a token too: the plugin never saw the route')
  const late = connect(url('/late?token=' + token))
  t.equal((await refusal(late) as { message?: { type: string } }).message?.type, 'connection_established', 'the plugin\'s own routes still work')
  t.equal(await late.message(2), 'hello')
  late.ws.close()
})
