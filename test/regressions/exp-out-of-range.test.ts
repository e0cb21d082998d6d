// Finding 9: a validly signed token whose `exp` lies past the range of a JavaScript Date
// (`exp: 1e13`) left the socket open and silent after the 101 (request sources) or closed it
// with 1011 (first message). Both paths now answer 4001 `Invalid token`.
import t from 'tap'
import { buildApp, connect, refusal, spyRoute } from '../helpers/index.ts'
import { hmacToken } from '../hardening/helpers.ts'

for (const exp of [1e13, -1e13, 8.64e12 + 1]) {
  t.test(`exp ${exp} in the query closes with 4001 Invalid token`, async (t) => {
    let spy!: ReturnType<typeof spyRoute>
    const server = await buildApp(t, { routes: (app) => { spy = spyRoute(app, '/ws') } })
    const client = connect(server.url('/ws?token=' + hmacToken({ alg: 'HS256', typ: 'JWT' }, { sub: 'u1', exp })))
    t.same(await refusal(client), { code: 4001, reason: 'Invalid token' })
    t.equal(spy.calls, 0)
    t.equal(server.app.wsAuth.stats().failures[4001], 1, 'counted')
  })

  t.test(`exp ${exp} in the first message closes with 4001 Invalid token`, async (t) => {
    const server = await buildApp(t)
    const client = connect(server.url('/ws'))
    await client.opened
    client.send({ type: 'auth', token: hmacToken({ alg: 'HS256', typ: 'JWT' }, { sub: 'u1', exp }) })
    t.same(await refusal(client), { code: 4001, reason: 'Invalid token' })
  })

  t.test(`exp ${exp} with a custom verify closes with 4001 Invalid token`, async (t) => {
    const server = await buildApp(t, { auth: { verify: () => ({ sub: 'u1', exp }) } })
    const client = connect(server.url('/ws?token=anything'))
    t.same(await refusal(client), { code: 4001, reason: 'Invalid token' })
  })
}

t.test('the largest exp a Date holds still opens a session', async (t) => {
  const server = await buildApp(t)
  const client = connect(server.url('/ws?token=' + hmacToken({ alg: 'HS256', typ: 'JWT' }, { sub: 'u1', exp: 8.64e12 })))
  const established = await client.message(1) as { type: string, expires_at: string }
  t.equal(established.type, 'connection_established')
  t.equal(established.expires_at, new Date(8.64e15).toISOString())
  client.ws.close()
})
