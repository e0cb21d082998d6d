// fastify.wsAuth without a cluster adapter: the { cluster: true } forms answer for this instance
// alone, and bad arguments throw FST_WS_AUTH_INVALID_ARGUMENT before anything is sent or closed.
import t from 'tap'
import { buildApp, connect } from './helpers/index.ts'

t.test('connections and stats with { cluster: true } and no adapter: this instance alone, under its instanceId', async t => {
  const { app, url, sign } = await buildApp(t)
  const u1 = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  const u2 = connect(url('/ws?token=' + sign({ sub: 'u2' })))
  await Promise.all([u1.message(1), u2.message(1)])

  const mine = await app.wsAuth.connections('u1', { cluster: true })
  t.equal(mine.length, 1)
  const { instanceId, ...rest } = mine[0]
  t.match(instanceId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a random UUID')
  // Another instance is another id: the id names this instance, it is not a constant.
  const other = await buildApp(t)
  const theirs = Object.keys((await other.app.wsAuth.stats({ cluster: true })).instances)
  t.equal(theirs.length, 1)
  t.not(theirs[0], instanceId, 'another app has another instanceId')
  t.same(rest, app.wsAuth.connections('u1')[0], 'the local entry, named by its instance')

  const everyone = await app.wsAuth.connections(undefined, { cluster: true })
  t.same(everyone.map(c => c.userId).sort(), ['u1', 'u2'])
  t.same(everyone.map(c => c.instanceId), [instanceId, instanceId], 'one instance, the same id at every call')

  const stats = await app.wsAuth.stats({ cluster: true })
  const own = app.wsAuth.stats()
  t.match(stats, own, 'the sum over one instance is its own stats')
  t.same(stats.instances, { [instanceId]: own })

  u1.ws.close()
  u2.ws.close()
})

t.test('disconnectUser with a reason that is not a string throws and closes nothing', async t => {
  const { app, url, sign } = await buildApp(t)
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  t.throws(() => app.wsAuth.disconnectUser('u1', { reason: 42 as unknown as string }),
    { code: 'FST_WS_AUTH_INVALID_ARGUMENT', message: /disconnectUser: reason must be a string of at most 123 bytes/ })
  t.throws(() => app.wsAuth.broadcast('x', null as never), { code: 'FST_WS_AUTH_INVALID_ARGUMENT', message: /broadcast: filter must be an object or a function/ })
  t.throws(() => app.wsAuth.revoke({ userId: 'u1', issuedBefore: new Date(NaN) }), { code: 'FST_WS_AUTH_INVALID_ARGUMENT', message: /revoke: issuedBefore must be a valid Date/ })
  c.send('still open')
  t.equal(await c.message(2), 'still open', 'the session is untouched')
  const closed = c.closed
  t.equal(app.wsAuth.disconnectUser('u1', { reason: 'bye' }), 1)
  t.same(await closed, { code: 4001, reason: 'bye' }, 'a reason alone keeps the Token revoked code')
})
