// Finding 6: a refused in-band refresh carrying another user's valid token set `request.user` to
// that other user while it was being checked, and left it so: the handler saw another identity.
import t from 'tap'
import { buildApp, connect, deferred } from '../helpers/index.ts'

t.test('request.user never switches while a refresh for another user is checked', async (t) => {
  const held = deferred()
  const entered = deferred()
  const server = await buildApp(t, {
    auth: {
      loadUser: async (claims) => {
        if (claims.sub === 'u2') {
          entered.resolve()
          await held.promise
        }
        return { id: claims.sub as string, roles: [] }
      }
    },
    routes: (app) => {
      app.get('/ws', { websocket: true }, (socket, request) => {
        socket.on('message', () => socket.send(JSON.stringify({ seen: request.user })))
      })
    }
  })
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' }, { expiresIn: '1h' })))
  t.equal((await client.message(1) as { type: string }).type, 'connection_established')
  client.send({ type: 'auth', token: server.sign({ sub: 'u2' }, { expiresIn: '1h' }) })
  await entered.promise
  client.send('who am I')
  t.same(await client.message(2), { seen: { id: 'u1', roles: [] } }, 'the handler sees the session\'s own user while the refresh is checked')
  held.resolve()
  t.same(await client.closed, { code: 4001, reason: 'Invalid token' })
})

t.test('a refused refresh leaves request.user as it was (synchronous checks)', async (t) => {
  const server = await buildApp(t, {
    auth: { loadUser: (claims) => ({ id: claims.sub as string, roles: claims.sub === 'u1' ? ['admin'] : [] }) },
    routes: (app) => {
      app.get('/ws', { websocket: true, wsAuth: { roles: ['admin'] } }, (socket, request) => {
        socket.on('close', () => { users.push(request.user) })
      })
    }
  })
  const users: unknown[] = []
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' }, { expiresIn: '1h' })))
  t.equal((await client.message(1) as { type: string }).type, 'connection_established')
  client.send({ type: 'auth', token: server.sign({ sub: 'u2' }, { expiresIn: '1h' }) })
  t.same(await client.closed, { code: 4003, reason: 'Forbidden' })
  await new Promise(resolve => setImmediate(resolve))
  t.same(users, [{ id: 'u1', roles: ['admin'] }])
})
