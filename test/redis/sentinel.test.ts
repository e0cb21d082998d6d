import t from 'tap'
import { Redis } from 'ioredis'
import { bounded, connect } from '../helpers/index.ts'
import { inspector, instance, outcome, prefix, stillOpen } from './helpers.ts'
import { startSentinelGroup } from './sentinel.ts'

const UNAVAILABLE = 'Redis unavailable; retrying'
const RECOVERED = 'Redis recovered'

t.test('Sentinel failover: the primary SIGKILLed under a burst of sendToUser; both instances follow the promotion', async t => {
  const group = await startSentinelGroup(t)
  const namespace = prefix()
  const ns = `${namespace}:ws-auth:`
  // The bound asserted on the gap is failover + instanceTtl / 3 (2 s here); the adapter needs one
  // reconnection attempt (they are at most 1 s apart) and one resync after the promotion.
  const instanceTtl = 6000
  const auth = { maxConnectionsPerUser: 2 }
  // A on a client of the app's, configured for Sentinel as ioredis documents it; B on the adapter's own option.
  const client = new Redis({ sentinels: group.sentinels, name: group.name })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const a = await instance(t, group.primary.url, namespace, { auth, redis: { client, instanceTtl } })
  const b = await instance(t, group.primary.url, namespace, { auth, redis: { sentinels: group.sentinels, name: group.name, instanceTtl } })

  const onA = connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))
  t.equal(await outcome(onA), 'established')
  const onB = connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))
  t.equal(await outcome(onB), 'established')
  t.equal(await outcome(connect(a.url('/ws/a?token=' + a.sign({ sub: 'u1' })))), '4029 Too many connections', 'the limit, cluster-wide')
  t.equal(await a.app.wsAuth.revoke({ jti: 'revoked-before' }), 0)
  t.equal(b.app.wsAuth.stats().revocations, 1, 'the revocation reached B')
  t.equal(await a.app.wsAuth.sendToUser('u1', 'before'), 2)

  // What a failover loses is what the replica had not received yet. Replication on loopback is
  // too fast to lose anything by chance, so the test takes the last writes out of the replica
  // itself (made writable for it), once it has them all: the revocation and B's slot, the newest.
  const primaryView = inspector(t, group.primary.url)
  t.equal(await primaryView.call('WAIT', 1, 5000), 1, 'the replica has every write')
  primaryView.disconnect()
  const replicaView = inspector(t, group.replica.url)
  await replicaView.config('SET', 'replica-read-only', 'no')
  const [revoked] = await replicaView.zrange(`${ns}revoked`, 0, -1)
  const [newest] = await replicaView.zrange(`${ns}conns:"u1"`, -1, -1)
  const [instanceB, clientB] = newest.split('|')
  t.same(await replicaView.multi().zrem(`${ns}revoked`, revoked).zrem(`${ns}conns:"u1"`, newest).hdel(`${ns}slots:${instanceB}`, clientB).exec(),
    [[null, 1], [null, 1], [null, 1]], 'the replica misses the revocation and one of the two slots')

  // The burst: calls in flight when the primary dies, then one every 20 ms until B's socket gets one.
  const calls = Array.from({ length: 100 }, (_, i) => a.app.wsAuth.sendToUser('u1', { burst: i }))
  const killedAt = performance.now()
  group.primary.kill()
  let probe = 0
  const probing = setInterval(() => { calls.push(a.app.wsAuth.sendToUser('u1', { probe: probe++ })) }, 20)
  t.teardown(() => clearInterval(probing))
  const promoted = await group.promoted()
  await onB.messageWhere(m => typeof m === 'object' && m !== null && 'probe' in m)
  const deliveredAt = performance.now()
  clearInterval(probing)
  const failover = Math.round(promoted.at - killedAt)
  const gap = Math.round(deliveredAt - killedAt)
  t.comment(`failover: +switch-master ${failover} ms after the SIGKILL; fan-out degraded for ${gap} ms (first delivery A -> B), ${gap - failover} ms after the promotion`)
  t.equal(promoted.port, group.replica.port, 'the replica is the primary now')
  t.ok(gap <= failover + instanceTtl / 3, `fan-out back within the failover time plus instanceTtl / 3 (${gap} <= ${failover} + ${instanceTtl / 3})`)

  const counts = await bounded(Promise.all(calls), 'the burst of sendToUser')
  t.ok(counts.every(n => n === 1 || n === 2), `all ${counts.length} calls resolved with a count: ${counts.filter(n => n === 2).length} reached B, the others this instance only`)
  await Promise.all([a.logs.waitFor(RECOVERED), b.logs.waitFor(RECOVERED)])
  for (const [name, app] of [['A', a], ['B', b]] as const) {
    t.equal(app.logged(UNAVAILABLE).length, 1, `${name}: one outage logged`)
    t.equal(app.logged(RECOVERED).length, 1, `${name}: one recovery logged`)
  }

  t.equal(await a.app.wsAuth.sendToUser('u1', 'after'), 2, 'sendToUser from A reaches B again')
  t.equal(await onB.messageWhere(m => m === 'after'), 'after')
  t.ok(await stillOpen(onA) && await stillOpen(onB), 'the sockets lived through the failover')
  const promotedView = inspector(t, `redis://127.0.0.1:${promoted.port}`)
  t.equal(await promotedView.zcard(`${ns}conns:"u1"`), 2, 'both slots registered again on the new primary')
  t.equal(await outcome(connect(b.url('/ws/a?token=' + b.sign({ sub: 'u1' })))), '4029 Too many connections',
    'the limit is exact again: refused on B, which holds one of the two')
  t.not(await promotedView.zscore(`${ns}revoked`, revoked), null, 'the revocation stored back on the new primary')
  for (const app of [a, b]) {
    t.equal(await outcome(connect(app.url('/ws/a?token=' + app.sign({ sub: 'u9', jti: 'revoked-before' })))), '4001 Token revoked')
  }
  const later = await instance(t, group.primary.url, namespace, { redis: { sentinels: group.sentinels, name: group.name } })
  t.equal(await outcome(connect(later.url('/ws/a?token=' + later.sign({ sub: 'u9', jti: 'revoked-before' })))), '4001 Token revoked',
    'an instance started after the failover refuses the revoked token: loaded from the new primary')
  for (const c of [onA, onB]) c.ws.close()
})
