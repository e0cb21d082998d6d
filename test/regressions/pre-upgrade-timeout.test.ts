// Finding 4: with the token in the request, an `authorize`, `loadUser` or `verify` that never
// settled kept the upgrade request open forever, uncounted. It is bounded by `authTimeout`:
// 4008 after the upgrade, or HTTP 408 with `reject: 'http'`; logged and counted.
import t from 'tap'
import { buildApp, connect, deferred, logCapture, refusal, spyRoute } from '../helpers/index.ts'
import { manualClock } from '../helpers/clock.ts'

// The bound runs on the manual clock: nothing but `tick` reaches it, so the tests show it is
// neither early nor late, and a hook that answers in time cannot lose a race with it.

const never = () => new Promise<never>(() => {})

/** A hook that never settles, and the event of its call: the attempt is then in progress. */
function hung () {
  const called = deferred()
  return { called: called.promise, hook: () => { called.resolve(); return never() } }
}

for (const hook of ['authorize', 'loadUser', 'verify'] as const) {
  t.test(`a ${hook} that never settles closes with 4008 at authTimeout`, async (t) => {
    const time = manualClock(t)
    const logs = logCapture()
    const { called, hook: hang } = hung()
    let spy!: ReturnType<typeof spyRoute>
    const server = await buildApp(t, {
      fastify: { logger: { level: 'warn', stream: logs.stream } },
      auth: {
        authTimeout: 300,
        ...(hook === 'loadUser' ? { loadUser: hang } : {}),
        ...(hook === 'verify' ? { verify: hang } : {})
      },
      routes: (app) => { spy = spyRoute(app, '/ws', hook === 'authorize' ? { authorize: hang } : undefined) }
    })
    const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' })))
    await called
    t.equal(server.app.wsAuth.stats().authenticating, 1, `counted as authenticating while ${hook} hangs`)
    await time.tick(299)
    t.equal(server.app.wsAuth.stats().authenticating, 1, 'still waiting at 299 ms')
    t.equal(client.closedWith, undefined)
    await time.tick(1)
    t.same(await refusal(client), { code: 4008, reason: 'Authentication timeout' })
    t.equal(spy.calls, 0)
    const stats = server.app.wsAuth.stats()
    t.equal(stats.authenticating, 0)
    t.equal(stats.failures[4008], 1)
    t.ok(logs.records().some(r => r.msg === 'websocket authentication failed' && r.failure === 'auth_timeout'), 'logged')
  })
}

t.test('with reject: \'http\' a hung authorize is answered 408', async (t) => {
  const time = manualClock(t)
  const { called, hook: hang } = hung()
  const server = await buildApp(t, {
    auth: { authTimeout: 300, reject: 'http' },
    routes: (app) => { spyRoute(app, '/ws', { authorize: hang }) }
  })
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' })))
  await called
  t.equal(server.app.wsAuth.stats().authenticating, 1, 'counted as authenticating while authorize hangs')
  await time.tick(300)
  t.equal(await client.refusedStatus, 408)
  t.equal(server.app.wsAuth.stats().failures[4008], 1)
  t.equal(server.app.wsAuth.stats().authenticating, 0)
})

t.test('a route\'s own authTimeout bounds it', async (t) => {
  const time = manualClock(t)
  const { called, hook: hang } = hung()
  const server = await buildApp(t, {
    auth: { authTimeout: 60_000 },
    routes: (app) => { spyRoute(app, '/ws', { authorize: hang, authTimeout: 200 }) }
  })
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' })))
  await called
  t.equal(server.app.wsAuth.stats().authenticating, 1, 'counted as authenticating while authorize hangs')
  await time.tick(200)
  t.same(await refusal(client), { code: 4008, reason: 'Authentication timeout' }, 'at the route\'s 200 ms, long before the plugin\'s 60 s')
})

t.test('an authorize that settles 1 ms before authTimeout is not cut short', async (t) => {
  const time = manualClock(t)
  const answer = deferred<boolean>()
  const called = deferred()
  const server = await buildApp(t, {
    auth: { authTimeout: 300 },
    routes: (app) => { spyRoute(app, '/ws', { authorize: () => { called.resolve(); return answer.promise } }) }
  })
  const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1' })))
  await called.promise
  t.equal(server.app.wsAuth.stats().authenticating, 1, 'counted as authenticating while authorize is out')
  await time.tick(299)
  answer.resolve(true)
  t.equal((await client.message(1) as { type: string }).type, 'connection_established')
  await time.tick(1000)
  client.send('still open')
  t.equal(await client.message(2), 'still open', 'no late timeout')
  client.ws.close()
})
