// Revalidation (`revalidateInterval` + `loadUser`), as docs/live-sessions.md promises it: once per
// user per period, with the claims of the user's newest session; a user now missing closes with
// 4002, one who lost a role or a permission of the route with 4003; a `loadUser` that throws is
// logged and the sessions stay. Each period is one tick of the manual clock.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { WsAuthClaims } from '../lib/types.ts'
import { buildApp, connect, logCapture, type Client } from './helpers/index.ts'
import { manualClock } from './helpers/clock.ts'

const PERIOD = 60_000
interface User { id: string, roles: string[], permissions: string[] }

function routes (app: FastifyInstance) {
  const echo = (socket: import('ws').WebSocket) => { socket.on('message', (data) => socket.send(data.toString())) }
  app.get('/ws', { websocket: true }, echo)
  app.get('/ws/admin', { websocket: true, wsAuth: { roles: ['admin'] } }, echo)
  app.get('/ws/journal', { websocket: true, wsAuth: { permissions: ['journal.read'] } }, echo)
}

/** Sends `text` and resolves with its echo; rejects if the socket closes first. */
function echo (client: Client, text: string): Promise<unknown> {
  client.send(text)
  return client.messageWhere(m => m === text)
}

t.test('a user now missing closes with 4002; one who lost a role or a permission of the route with 4003', async t => {
  const time = manualClock(t)
  const users = new Map<string, User>([
    ['gone', { id: 'gone', roles: ['admin'], permissions: [] }],
    ['demoted', { id: 'demoted', roles: ['admin'], permissions: [] }],
    ['restricted', { id: 'restricted', roles: [], permissions: ['journal.read'] }],
    ['kept', { id: 'kept', roles: [], permissions: ['journal.read'] }]
  ])
  const { url, sign } = await buildApp(t, {
    auth: { heartbeatInterval: false, revalidateInterval: PERIOD, loadUser: (claims) => users.get(claims.sub as string) ?? null },
    routes
  })
  const open = async (path: string, sub: string) => {
    const c = connect(url(path + '?token=' + sign({ sub })))
    await c.message(1)
    return c
  }
  const gone = await open('/ws/admin', 'gone')
  const demoted = await open('/ws/admin', 'demoted')
  const restricted = await open('/ws/journal', 'restricted')
  const kept = await open('/ws/journal', 'kept')
  users.delete('gone')
  users.set('demoted', { id: 'demoted', roles: ['viewer'], permissions: [] })
  users.set('restricted', { id: 'restricted', roles: [], permissions: ['journal.write'] })
  await time.tick(PERIOD - 1)
  for (const c of [gone, demoted, restricted]) t.equal(await echo(c, 'before the period'), 'before the period', 'nothing is checked before the period ends')
  await time.tick(1)
  t.same(await gone.closed, { code: 4002, reason: 'User not found or inactive' })
  t.same(await demoted.closed, { code: 4003, reason: 'Forbidden' }, 'lost the route\'s role')
  t.same(await restricted.closed, { code: 4003, reason: 'Forbidden' }, 'lost the route\'s permission')
  t.equal(await echo(kept, 'kept'), 'kept', 'a user who still qualifies stays')
  kept.ws.close()
})

t.test('loadUser runs once per user per period, with the claims of the user\'s newest session', async t => {
  const time = manualClock(t)
  const calls: WsAuthClaims[] = []
  const { url, sign } = await buildApp(t, {
    auth: {
      heartbeatInterval: false,
      revalidateInterval: PERIOD,
      loadUser: (claims) => { calls.push(claims); return { id: claims.sub as string, roles: [], permissions: [] } }
    },
    routes
  })
  const clients: Client[] = []
  // One after another, so that which session is the newest is known.
  for (const [sub, n] of [['u1', 1], ['u1', 2], ['u2', 3], ['u1', 4]] as const) {
    const c = connect(url('/ws?token=' + sign({ sub, n })))
    await c.message(1)
    clients.push(c)
  }
  const seen = () => calls.splice(0).map(c => `${String(c.sub)}:${String(c.n)}`).sort()
  t.same(seen(), ['u1:1', 'u1:2', 'u1:4', 'u2:3'], 'once per handshake')
  await time.tick(PERIOD)
  t.same(seen(), ['u1:4', 'u2:3'], 'one call per user, with its newest session\'s claims')
  await time.tick(PERIOD - 1)
  t.same(seen(), [], 'none within the next period')
  await time.tick(1)
  t.same(seen(), ['u1:4', 'u2:3'], 'and again once per user at its end')
  for (const c of clients) t.equal(await echo(c, 'open'), 'open')
  for (const c of clients) c.ws.close()
})

t.test('a loadUser that throws is logged at error and the user\'s sessions stay open; other users are still checked', async t => {
  const time = manualClock(t)
  const logs = logCapture()
  let down = false
  const { url, sign } = await buildApp(t, {
    fastify: { logger: { level: 'error', stream: logs.stream } },
    auth: {
      heartbeatInterval: false,
      revalidateInterval: PERIOD,
      loadUser: (claims) => {
        if (!down) return { id: claims.sub as string, roles: [], permissions: [] }
        if (claims.sub === 'u1') throw new Error('user store down')
        return null
      }
    },
    routes
  })
  const clients = [connect(url('/ws?token=' + sign({ sub: 'u1' }))), connect(url('/ws?token=' + sign({ sub: 'u1' })))]
  const other = connect(url('/ws?token=' + sign({ sub: 'u2' })))
  await Promise.all([...clients, other].map(c => c.message(1)))
  down = true
  await time.tick(PERIOD)
  t.same(await other.closed, { code: 4002, reason: 'User not found or inactive' }, 'the same period still closed another user')
  const failed = logs.records().filter(r => r.msg === 'fastify-ws-auth: revalidation failed; sessions kept')
  t.equal(failed.length, 1, 'one line for the user')
  t.match(failed[0], { level: 50, userId: 'u1', err: { message: 'user store down' } })
  for (const c of clients) t.equal(await echo(c, 'still here'), 'still here', 'the session was kept')
  for (const c of clients) c.ws.close()
})
