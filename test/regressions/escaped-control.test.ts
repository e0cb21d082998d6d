// Finding 8: a refresh written with JSON escapes (`{"type":"\u0061uth",...}`) was handed to the
// handler. By JSON's rules it is an auth message; the same holds for `ping` with `appPing`.
import t from 'tap'
import { buildApp, connect, refusal } from '../helpers/index.ts'

const escape = (word: string, at: number): string =>
  word.slice(0, at) + '\\u' + word.charCodeAt(at).toString(16).padStart(4, '0') + word.slice(at + 1)

for (let at = 0; at < 4; at++) {
  t.test(`"auth" with its letter ${at} escaped is a refresh`, async (t) => {
    const received: string[] = []
    const server = await buildApp(t, {
      routes: (app) => {
        app.get('/ws', { websocket: true }, (socket) => {
          socket.on('message', (data) => { received.push(data.toString()) })
        })
      }
    })
    const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' }, { expiresIn: '1h' })))
    t.equal((await client.message(1) as { type: string }).type, 'connection_established')
    const token = server.sign({ sub: 'u1' }, { expiresIn: '2h' })
    client.send(`{"type":"${escape('auth', at)}","token":"${token}"}`)
    t.equal((await Promise.race([client.message(2), client.closed]) as { type?: string }).type, 'token_refreshed')
    t.same(received, [])
    client.ws.close()
  })
}

t.test('an escaped refresh with a foreign token is refused like any refresh', async (t) => {
  const server = await buildApp(t)
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' }, { expiresIn: '1h' })))
  t.equal((await client.message(1) as { type: string }).type, 'connection_established')
  client.send('{"type":"\\u0061\\u0075\\u0074\\u0068","token":"not-a-token"}')
  t.same(await refusal(client, 2), { code: 4001, reason: 'Invalid token' })
})

t.test('"ping" with an escaped letter is answered with pong under appPing', async (t) => {
  const server = await buildApp(t, { auth: { appPing: true } })
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' }, { expiresIn: '1h' })))
  t.equal((await client.message(1) as { type: string }).type, 'connection_established')
  client.send('{"type":"p\\u0069ng"}')
  t.equal((await client.message(2) as { type: string }).type, 'pong')
  client.ws.close()
})

t.test('escapes that spell other words still reach the handler, in order', async (t) => {
  const server = await buildApp(t, { auth: { appPing: true } })
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' }, { expiresIn: '1h' })))
  t.equal((await client.message(1) as { type: string }).type, 'connection_established')
  const sent = ['{"type":"\\u0061uthx"}', '{"type":"chat","text":"\\u0061uth"}', '{"type":"\\u0050ING"}', '"\\u0061uth"']
  for (const message of sent) client.send(message)
  const echoed = await Promise.all(sent.map((_, i) => client.message(i + 2)))
  t.same(echoed, sent.map(m => JSON.parse(m)))
  client.ws.close()
})
