// The cluster metrics (issue 19) with a real redis-server: cluster_up follows the store,
// cluster_request_seconds times the adapter's requests by op, and a fan-out an instance never
// answers is counted as a timeout.
import t from 'tap'
import { Registry } from 'prom-client'
import { connect } from '../helpers/index.ts'
import { redisProxy, startRedis } from './server.ts'
import { instance, outcome, prefix } from './helpers.ts'

async function value (registry: Registry, series: string): Promise<number | undefined> {
  for (const line of (await registry.metrics()).split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1))
  }
  return undefined
}

t.test('cluster_up is 1 while Redis answers, 0 while it does not', async t => {
  const redis = await startRedis(t)
  const registry = new Registry()
  const a = await instance(t, redis.url, prefix(), { auth: { metrics: { registry } } })
  t.equal(await value(registry, 'ws_auth_cluster_up'), 1)
  await redis.stop()
  await a.logs.waitFor('Redis unavailable; retrying')
  t.equal(await value(registry, 'ws_auth_cluster_up'), 0)
  await redis.restart()
  await a.logs.waitFor('Redis recovered')
  t.equal(await value(registry, 'ws_auth_cluster_up'), 1)
})

t.test('cluster_request_seconds by op; without an adapter there are no cluster metrics', async t => {
  const redis = await startRedis(t)
  const registry = new Registry()
  const a = await instance(t, redis.url, prefix(), { auth: { metrics: { registry }, maxConnectionsPerUser: 5, sources: ['query', 'ticket'] } })
  for (let i = 0; i < 3; i++) t.equal(await outcome(connect(a.url('/ws/a?token=' + a.sign({ sub: 'u' + i })))), 'established')
  await a.app.wsAuth.sendToUser('u1', 'hi')
  await a.app.wsAuth.issueTicket({ sub: 'u9' })
  t.equal(await value(registry, 'ws_auth_cluster_request_seconds_count{op="acquire"}'), 3, 'one slot per handshake of a limited user')
  t.equal(await value(registry, 'ws_auth_cluster_request_seconds_count{op="fanout"}'), 1, 'one fan-out')
  t.equal(await value(registry, 'ws_auth_cluster_request_seconds_count{op="ticket"}'), 1, 'one ticket stored')
  t.equal(await value(registry, 'ws_auth_cluster_fanout_timeouts_total'), 0)

  const alone = new Registry()
  const { buildApp } = await import('../helpers/index.ts')
  await buildApp(t, { auth: { metrics: { registry: alone } } })
  t.notMatch(await alone.metrics(), /ws_auth_cluster/, 'an instance without an adapter exposes none')
})

t.test('a fan-out that an instance never answers counts as a timeout', async t => {
  const redis = await startRedis(t)
  const proxy = await redisProxy(t, redis)
  const registry = new Registry()
  const namespace = prefix()
  const a = await instance(t, redis.url, namespace, { auth: { metrics: { registry } }, redis: { requestTimeout: 300 } })
  await instance(t, proxy.url, namespace)
  proxy.hold()
  t.equal(await a.app.wsAuth.sendToUser('nobody', 'x'), 0, 'the frozen instance\'s count is missing')
  t.equal(await value(registry, 'ws_auth_cluster_fanout_timeouts_total'), 1)
  proxy.release()
})
