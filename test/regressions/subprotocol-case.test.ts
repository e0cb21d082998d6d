// Finding 10: a subprotocol entry spelled `Bearer.<token>` (another case than the prefix) was not
// taken as a token entry, and the server selected it, echoing the token in the 101's
// `Sec-WebSocket-Protocol` header. An entry that carries a token is never selected, in any case.
import t from 'tap'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { buildApp, connect, refusal } from '../helpers/index.ts'

for (const prefix of ['Bearer.', 'BEARER.', 'bEaReR.']) {
  t.test(`an entry "${prefix}<token>" is a token entry and is never selected`, async (t) => {
    const server = await buildApp(t, { auth: { sources: ['protocol'] } })
    const token = server.sign({ sub: 'u1' }, { expiresIn: '1h' })
    const client = connect(server.url('/ws'), ['bearer', prefix + token])
    const [response] = await once(client.ws, 'upgrade') as [IncomingMessage]
    t.equal(response.headers['sec-websocket-protocol'], 'bearer')
    t.notOk(JSON.stringify(response.headers).includes(token.slice(0, 20)), 'no part of the token in the 101')
    const first = await refusal(client)
    t.equal((first as { message: { type: string } }).message?.type, 'connection_established', 'authenticated by that entry')
    client.ws.close()
  })
}

t.test('with only a differently-cased token entry offered, nothing is selected', async (t) => {
  const server = await buildApp(t, {
    auth: { sources: ['protocol'] },
    websocketFirst: false
  })
  const token = server.sign({ sub: 'u1' }, { expiresIn: '1h' })
  const client = connect(server.url('/ws'), ['app.v1', 'Bearer.' + token])
  const [response] = await once(client.ws, 'upgrade') as [IncomingMessage]
  t.equal(response.headers['sec-websocket-protocol'], 'app.v1')
  client.ws.close()
})
