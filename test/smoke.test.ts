import t from 'tap'
import { buildApp, connect, connectWith } from './helpers/index.ts'

t.test('query token -> connection_established, echo', async t => {
  const { url, sign } = await buildApp(t)
  const c = connect(url('/ws?token=' + sign({ sub: 'u1', roles: ['admin'] })))
  const m = await c.message(1) as Record<string, unknown>
  t.equal(m.type, 'connection_established')
  c.send('hi')
  t.equal(await c.message(2), 'hi')
  c.ws.close()
  await c.closed
})

t.test('no token -> 4001', async t => {
  const { url } = await buildApp(t, { auth: { sources: ['query'] } })
  const c = connect(url('/ws'))
  t.same(await c.closed, { code: 4001, reason: 'No token provided' })
})

t.test('message auth', async t => {
  const { url, sign } = await buildApp(t)
  const c = connectWith(url('/ws'), 'message', sign({ sub: 'u1' }))
  c.ws.once('open', () => { for (let i = 0; i < 50; i++) c.send('m' + i) })
  const first = await c.message(1) as Record<string, unknown>
  t.equal(first.type, 'connection_established')
  await c.message(51)
  t.same(c.messages.slice(1), Array.from({ length: 50 }, (_, i) => 'm' + i))
  c.ws.close()
})

t.test('protocol', async t => {
  const { url, sign } = await buildApp(t)
  const c = connectWith(url('/ws'), 'protocol', sign({ sub: 'u1' }))
  await c.message(1)
  t.equal(c.protocol(), 'bearer')
  c.ws.close()
})
