// Finding 7: a refresh larger than `maxAuthMessageBytes` was handed to the route handler, token
// included. It is a refresh by its type, whatever its size: it closes with 1009.
import t from 'tap'
import { buildApp, connect, spyRoute } from '../helpers/index.ts'

t.test('a refresh over maxAuthMessageBytes closes with 1009 and never reaches the handler', async (t) => {
  const received: string[] = []
  const server = await buildApp(t, {
    auth: { maxAuthMessageBytes: 1024 },
    routes: (app) => {
      app.get('/ws', { websocket: true }, (socket) => {
        socket.on('message', (data) => { received.push(data.toString()) })
      })
    }
  })
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' }, { expiresIn: '1h' })))
  t.equal((await client.message(1) as { type: string }).type, 'connection_established')
  const token = server.sign({ sub: 'u1', padding: 'x'.repeat(2000) }, { expiresIn: '1h' })
  client.send({ type: 'auth', token })
  t.same(await client.closed, { code: 1009, reason: 'Message too big' })
  t.same(received, [], 'the handler saw nothing')
})

t.test('a large app message that merely mentions "auth" still reaches the handler', async (t) => {
  let spy!: ReturnType<typeof spyRoute>
  const server = await buildApp(t, { auth: { maxAuthMessageBytes: 1024 }, routes: (app) => { spy = spyRoute(app, '/ws') } })
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' }, { expiresIn: '1h' })))
  t.equal((await client.message(1) as { type: string }).type, 'connection_established')
  const message = JSON.stringify({ type: 'chat', text: '"auth"'.repeat(400) })
  client.send(message)
  t.same(await Promise.race([client.closed, client.message(2)]), JSON.parse(message), 'echoed, not closed')
  t.equal(spy.calls, 1)
  client.ws.close()
})
