// Finding 5: `loadUser` answering false, 0, '' or NaN (`return user.active && user`) opened a
// session; only null and undefined closed with 4002. Every falsy answer means "no such user".
import t from 'tap'
import { buildApp, connect, refusal, spyRoute } from '../helpers/index.ts'

for (const [name, answer] of [['false', false], ['0', 0], ["''", ''], ['NaN', Number.NaN], ['0n', 0n]] as const) {
  t.test(`loadUser answering ${name} closes with 4002`, async (t) => {
    let spy!: ReturnType<typeof spyRoute>
    const server = await buildApp(t, {
      auth: { loadUser: (async () => answer) as never },
      routes: (app) => { spy = spyRoute(app, '/ws') }
    })
    const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' })))
    t.same(await refusal(client), { code: 4002, reason: 'User not found or inactive' })
    t.equal(spy.calls, 0, 'the handler never ran')
  })

  t.test(`loadUser answering ${name} synchronously, with reject: 'http', answers 401`, async (t) => {
    const server = await buildApp(t, { auth: { loadUser: (() => answer) as never, reject: 'http' } })
    const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' })))
    t.equal(await client.refusedStatus, 401)
  })
}
