import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp, connect, deferred, eventually, logCapture } from './helpers/index.ts'

type Msg = Record<string, unknown>
const nowSec = () => Math.floor(Date.now() / 1000)

/** A route that echoes and records what its handler saw, and can say "still here" after a delay. */
function echoRoutes (seen: unknown[], routeOptions: Record<string, unknown> = {}) {
  return (app: FastifyInstance) => {
    app.get('/ws', { websocket: true, ...routeOptions }, (socket) => {
      socket.on('message', (data) => {
        const text = data.toString()
        seen.push(text)
        if (text.startsWith('later:')) {
          setTimeout(() => socket.send('still here'), Number(text.slice(6)))
          return
        }
        socket.send(text)
      })
    })
  }
}

t.test('a live socket closes with 4001 "Token expired" when exp passes', async t => {
  const { url, sign } = await buildApp(t)
  const exp = nowSec() + 1
  const c = connect(url('/ws?token=' + sign({ sub: 'u1', exp })))
  const established = await c.message(1) as Msg
  t.equal(established.expires_at, new Date(exp * 1000).toISOString())
  const closed = await c.closed
  t.equal(closed.code, 4001)
  t.match(closed.reason, /expired/)
  t.ok(Date.now() <= exp * 1000 + 1000, 'closed within a second of exp')
})

t.test('expiryWarning sends token_expiring before exp', async t => {
  const { url, sign } = await buildApp(t, { auth: { expiryWarning: 1500 } })
  const exp = nowSec() + 2
  const c = connect(url('/ws?token=' + sign({ sub: 'u1', exp })))
  const warning = await c.message(2) as Msg
  t.same(warning, { type: 'token_expiring', expires_at: new Date(exp * 1000).toISOString() })
  t.ok(Date.now() < exp * 1000, 'warned before exp')
  c.ws.close()
})

t.test('in-band refresh', async t => {
  t.test('same user: token_refreshed, the expiry timer moves, the handler never sees it', async t => {
    const seen: unknown[] = []
    const { url, sign } = await buildApp(t, { routes: echoRoutes(seen) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1', exp: nowSec() + 1 })))
    await c.message(1)
    const exp = nowSec() + 60
    c.send({ type: 'auth', token: sign({ sub: 'u1', exp }) })
    t.same(await c.message(2), { type: 'token_refreshed', expires_at: new Date(exp * 1000).toISOString() })
    c.send('later:2100')
    t.equal(await c.message(3), 'still here', 'open past the first token\'s exp')
    t.same(seen, ['later:2100'], 'the refresh message never reached the handler')
    c.ws.close()
  })

  t.test('a refresh is found wherever "type" sits', async t => {
    const seen: unknown[] = []
    const { url, sign } = await buildApp(t, { routes: echoRoutes(seen) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    const token = sign({ sub: 'u1', exp: nowSec() + 60 })
    for (let k = 0; k < 12; k++) c.ws.send(`{"x":"${'h'.repeat(k)}","token":"${token}", "type" :"auth"}`)
    c.ws.send('after')
    await c.message(14) // each answered: token_refreshed (after verification, so in any order) or an echo
    t.equal(c.messages.filter(m => (m as Msg)?.type === 'token_refreshed').length, 12)
    t.same(seen, ['after'])
    c.ws.close()
  })

  t.test('a token of another user closes with 4001', async t => {
    const { url, sign } = await buildApp(t)
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    c.send({ type: 'auth', token: sign({ sub: 'u2' }) })
    t.same(await c.closed, { code: 4001, reason: 'Invalid token' })
  })

  t.test('an invalid token closes with 4001', async t => {
    const { url, sign } = await buildApp(t)
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    c.send({ type: 'auth', token: 'not.a.jwt' })
    t.same(await c.closed, { code: 4001, reason: 'Invalid token' })
  })

  t.test('a user who lost the route\'s role closes with 4003', async t => {
    const { url, sign } = await buildApp(t, { routes: echoRoutes([], { wsAuth: { roles: ['admin'] } }) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1', roles: ['admin'] })))
    await c.message(1)
    c.send({ type: 'auth', token: sign({ sub: 'u1', roles: ['viewer'] }) })
    t.same(await c.closed, { code: 4003, reason: 'Forbidden' })
  })

  t.test('authorize runs again', async t => {
    let allowed = true
    const { url, sign } = await buildApp(t, { routes: echoRoutes([], { wsAuth: { authorize: () => allowed } }) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    allowed = false
    c.send({ type: 'auth', token: sign({ sub: 'u1' }) })
    t.same(await c.closed, { code: 4003, reason: 'Forbidden' })
  })
})

t.test('revalidateInterval: a user now missing closes with 4002, one who lost a role with 4003', async t => {
  const users = new Map<string, { id: string, roles: string[], permissions: string[] }>([
    ['u1', { id: 'u1', roles: ['admin'], permissions: [] }],
    ['u2', { id: 'u2', roles: ['admin'], permissions: [] }]
  ])
  let calls = 0
  const { url, sign } = await buildApp(t, {
    auth: { revalidateInterval: 50, loadUser: (claims) => { calls++; return users.get(claims.sub as string) ?? null } },
    routes: echoRoutes([], { wsAuth: { roles: ['admin'] } })
  })
  const a = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  const b = connect(url('/ws?token=' + sign({ sub: 'u2' })))
  await Promise.all([a.message(1), b.message(1)])
  users.delete('u1')
  users.set('u2', { id: 'u2', roles: ['viewer'], permissions: [] })
  t.same(await a.closed, { code: 4002, reason: 'User not found or inactive' })
  t.same(await b.closed, { code: 4003, reason: 'Forbidden' })
  t.ok(calls >= 4)
})

t.test('maxLifetime', async t => {
  t.test('ends the session with 4010', async t => {
    const { url, sign } = await buildApp(t, { auth: { maxLifetime: 200 } })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    t.same(await c.closed, { code: 4010, reason: 'Session lifetime exceeded' })
  })

  t.test('route level overrides the plugin', async t => {
    const { url, sign } = await buildApp(t, { auth: { maxLifetime: 60_000 }, routes: echoRoutes([], { wsAuth: { maxLifetime: 100 } }) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    t.equal((await c.closed).code, 4010)
  })

  t.test('deadlines past 2^31-1 ms do not fire at once', async t => {
    const { url, sign } = await buildApp(t, { auth: { maxLifetime: 2 ** 31 + 5000 }, routes: echoRoutes([]) })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1', exp: nowSec() + 40 * 24 * 3600 })))
    await c.message(1)
    c.send('later:150')
    t.equal(await c.message(2), 'still here')
    t.equal(c.ws.readyState, c.ws.OPEN)
    c.ws.close()
  })
})

t.test('heartbeat terminates a client that stops answering pings', async t => {
  const { app, url, sign } = await buildApp(t, { auth: { heartbeatInterval: 50 } })
  const answering = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  const silent = connect(url('/ws?token=' + sign({ sub: 'u2' })), undefined, { autoPong: false })
  await Promise.all([answering.message(1), silent.message(1)])
  t.equal((await silent.closed).code, 1006, 'terminated without a close frame')
  t.equal(answering.ws.readyState, answering.ws.OPEN, 'the answering client stays')
  await eventually(() => app.wsAuth.stats().active === 1)
  t.same(app.wsAuth.connections().map(c => c.userId), ['u1'])
  answering.ws.close()
})

t.test('appPing answers {"type":"ping"} with pong, and the handler never sees it', async t => {
  const seen: unknown[] = []
  const { url, sign } = await buildApp(t, { auth: { appPing: true }, routes: echoRoutes(seen) })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  c.send({ type: 'ping' })
  const pong = await c.message(2) as Msg
  t.equal(pong.type, 'pong')
  t.ok(!Number.isNaN(Date.parse(pong.timestamp as string)))
  c.send('after')
  t.equal(await c.message(3), 'after')
  t.same(seen, ['after'])
  c.ws.close()
})

t.test('appPing: a ping is found wherever "type" sits; near misses reach the handler', async t => {
  const seen: string[] = []
  const { url, sign } = await buildApp(t, { auth: { appPing: true }, routes: echoRoutes(seen) })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  // Twelve offsets: the search skips ahead several bytes at a time, so every alignment is tried.
  const pings = Array.from({ length: 12 }, (_, k) => `{"x":"${'a'.repeat(k)}", "type" : "ping"}`)
  pings.push(' \n{"type":"ping","id":7}')
  const apps = ['{"type":"pings"}', '{"type":"PING"}', '{"type":"pin"}', '{"note":"ping"}', '["ping"]',
    '{"type":"message","body":"pinging \\"ping\\""}', 'ping', '"ping"']
  for (const text of [...pings, ...apps]) c.ws.send(text)
  c.ws.send('after')
  // Every message is answered (a pong or its echo), in order: 'after' comes last.
  t.equal(await c.message(1 + pings.length + apps.length + 1), 'after')
  const pongs = c.messages.slice(1).filter(m => (m as Msg)?.type === 'pong')
  t.equal(pongs.length, pings.length, 'one pong per ping')
  t.same(seen, [...apps, 'after'], 'the handler saw every other message, in order')
  c.ws.close()
})

t.test('without appPing, {"type":"ping"} is an app message', async t => {
  const seen: unknown[] = []
  const { url, sign } = await buildApp(t, { routes: echoRoutes(seen) })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  c.send({ type: 'ping' })
  t.same(await c.message(2), { type: 'ping' })
  c.ws.close()
})

t.test('fastify.close() closes every authenticated socket with 1001, whatever the registration order', async t => {
  for (const websocketFirst of [false, true]) {
    const { app, url, sign } = await buildApp(t, { websocketFirst })
    const authenticated = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    const waiting = connect(url('/ws'))
    await Promise.all([authenticated.message(1), waiting.opened])
    await app.close()
    t.same(await authenticated.closed, { code: 1001, reason: 'Server shutting down' }, `websocketFirst: ${websocketFirst}`)
    t.same(await waiting.closed, { code: 1001, reason: 'Server shutting down' })
  }
})

t.test('revalidateInterval: a user store that fails is logged at error and the sessions stay open', async t => {
  const logs = logCapture()
  const failed = deferred()
  let down = false
  const { url, sign } = await buildApp(t, {
    fastify: { logger: { level: 'error', stream: logs.stream } },
    auth: {
      revalidateInterval: 20,
      loadUser: (claims) => {
        if (!down) return { id: claims.sub as string, roles: [], permissions: [] }
        failed.resolve()
        throw new Error('user store down')
      }
    },
    routes: echoRoutes([])
  })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  down = true
  await failed.promise
  await eventually(() => logs.records().some(r => r.msg === 'fastify-ws-auth: revalidation failed; sessions kept'))
  t.match(logs.records().find(r => r.msg === 'fastify-ws-auth: revalidation failed; sessions kept'), { level: 50, userId: 'u1', err: { message: 'user store down' } })
  c.send('still here')
  t.equal(await c.message(2), 'still here', 'the session was kept')
  c.ws.close()
})
