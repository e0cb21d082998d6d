// A real Prometheus (Debian's, see test/helpers/prometheus.ts) scrapes the demo's /metrics every
// second while clients are established and refused: the counts reach Prometheus through its own
// parser, with the labels it stores, as operators will query them; and the chapter's PromQL
// queries and alerting rules (docs/observability.md) load and evaluate there. Skipped, saying
// why, only when there is no prometheus binary.
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import t, { type Test } from 'tap'
import { build } from '../demo/app.ts'
import { connect, refusal, type Client } from './helpers/index.ts'
import { byLabel, fencedBlocks, prometheusMissing, startPrometheus, type Sample } from './helpers/prometheus.ts'

const CHAPTER = readFileSync(join(__dirname, '..', 'docs', 'observability.md'), 'utf8')

/** The demo's route patterns: the only values a `route` label may have. */
const PATTERNS = ['/ws/stream', '/ws/admin', '/ws/projects/:id', '/ws/news']

/** What a `ws_auth_*` series may be labelled with: never a user, a token, an ip or a client id. */
const LABELS = ['__name__', 'job', 'instance', 'route', 'outcome', 'code', 'phase', 'le', 'op']

/** What the test drives: three handshakes established, two invalid tokens, one forbidden. */
const DRIVEN = { established: 3, invalid_token: 2, forbidden: 1 }

interface Demo {
  /** `127.0.0.1:<port>`, for Prometheus to scrape. */
  address: string
  /** A socket on `path` with a token the demo minted for `user` and `kind`, in `?token=`. */
  open (path: string, user: string, kind: string): Promise<Client>
}

/** The demo app on 127.0.0.1:0, as the demo's own tests start it. */
async function startDemo (t: Test): Promise<Demo> {
  const app = await build()
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return {
    address: `127.0.0.1:${port}`,
    async open (path, user, kind) {
      const minted = await app.inject({ method: 'POST', url: '/demo/token', payload: { user, kind } })
      return connect(`ws://127.0.0.1:${port}${path}?token=${(minted.json() as { token: string }).token}`)
    }
  }
}

/** The one sample of a query that aggregates to a single value (`sum(...)`), or `undefined` for none. */
const single = (samples: Sample[]): number | undefined => samples.length === 1 ? samples[0].value : undefined

t.test('a real Prometheus scraping the demo\'s /metrics', { skip: prometheusMissing() ?? false }, async t => {
  const demo = await startDemo(t)
  const rules = fencedBlocks(CHAPTER, 'yaml').find(block => /^groups:/m.test(block))
  t.ok(rules, 'the chapter has alerting rules, loaded into this Prometheus')
  const prometheus = await startPrometheus(t, { targets: [{ job: 'ws-auth-demo', address: demo.address }], rules })
  await prometheus.targetsUp()

  const open: Client[] = []
  for (const [path, user] of [['/ws/stream', 'carol'], ['/ws/admin', 'alice'], ['/ws/projects/apollo', 'carol']]) {
    const client = await demo.open(path, user, 'valid')
    t.match(await client.message(1), { type: 'connection_established', user: { id: user } }, `${user} on ${path}: established`)
    open.push(client)
  }
  for (const path of ['/ws/stream', '/ws/projects/hermes']) {
    t.same(await refusal(await demo.open(path, 'alice', 'tampered')), { code: 4001, reason: 'Invalid token' }, `a tampered token on ${path}: 4001`)
  }
  t.same(await refusal(await demo.open('/ws/admin', 'bob', 'valid')), { code: 4003, reason: 'Forbidden' }, 'a manager on /ws/admin: 4003')

  await t.test('handshakes, by outcome: what was driven, once each', async t => {
    const outcomes = await prometheus.until('sum by (outcome) (ws_auth_handshakes_total)', s => isDeepStrictEqual(byLabel(s, 'outcome'), DRIVEN))
    t.same(byLabel(outcomes, 'outcome'), DRIVEN, 'established, invalid_token and forbidden, as driven')
    t.equal(single(await prometheus.query('sum(ws_auth_handshakes_total{outcome="established"})')), 3, 'three established')
    t.equal(single(await prometheus.query('sum(ws_auth_handshake_duration_seconds_count)')), 6, 'each handshake timed once')
    t.same(byLabel(await prometheus.query('sum by (route) (ws_auth_handshakes_total{outcome!="established"})'), 'route'),
      { '/ws/stream': 1, '/ws/projects/:id': 1, '/ws/admin': 1 }, 'the refusals, by route pattern')
  })

  await t.test('open sessions by route; labels are route patterns, never a URL, a user or a token', async t => {
    const sessions = await prometheus.until('sum by (route) (ws_auth_sessions)', s => s.length === 3)
    t.same(byLabel(sessions, 'route'), { '/ws/stream': 1, '/ws/admin': 1, '/ws/projects/:id': 1 }, 'one open session on each route')
    const series = await prometheus.query('{__name__=~"ws_auth_.+"}')
    t.ok(series.length > 20, `${series.length} ws_auth_* series`)
    const routes = [...new Set(series.map(s => s.labels.route).filter(r => r !== undefined))].sort()
    t.same(routes, ['/ws/admin', '/ws/projects/:id', '/ws/stream'], 'route: the patterns of the routes used')
    t.ok(routes.every(r => PATTERNS.includes(r)), 'none is a URL (/ws/projects/apollo) or carries a query')
    const names = new Set(series.flatMap(s => Object.keys(s.labels)))
    t.same([...names].filter(n => !LABELS.includes(n)), [], `label names: ${[...names].sort().join(', ')}`)
    const values = series.flatMap(s => Object.values(s.labels))
    t.same(values.filter(v => /alice|bob|carol|eyJ|token=|apollo|hermes/.test(v)), [], 'no label value names a user, a token or a project')
  })

  await t.test('when the clients leave: no session left, and every close counted by its code', async t => {
    for (const client of open) {
      client.ws.close(1000)
      t.same(await client.closed, { code: 1000, reason: '' }, 'a client closes with 1000')
    }
    const closes = await prometheus.until('sum by (code) (ws_auth_closes_total)', s => isDeepStrictEqual(byLabel(s, 'code'), { 1000: 3, 4001: 2, 4003: 1 }))
    t.same(byLabel(closes, 'code'), { 1000: 3, 4001: 2, 4003: 1 }, '1000 x3 (the clients), 4001 x2 and 4003 x1 (the refusals)')
    // The gauge has no sample once no route has a session: Prometheus marks the series stale.
    const left = await prometheus.until('sum(ws_auth_sessions)', s => s.length === 0 || single(s) === 0)
    t.ok(left.length === 0 || single(left) === 0, 'no open session')
  })

  await t.test('the chapter\'s queries run, and its alerting rules load and evaluate', async t => {
    const queries = fencedBlocks(CHAPTER, 'promql')
    t.ok(queries.length >= 4, `${queries.length} PromQL queries in docs/observability.md`)
    for (const query of queries) {
      await t.resolves(prometheus.query(query), query.replace(/\s+/g, ' ').trim())
    }
    const loaded = await prometheus.rules()
    const alerts = [...(rules ?? '').matchAll(/^\s*- alert: (\S+)/gm)].map(m => m[1])
    t.ok(alerts.length >= 2, `alerts in the chapter: ${alerts.join(', ')}`)
    t.same(loaded.map(r => r.name).sort(), alerts.sort(), 'every alert of the chapter loaded')
    t.same(loaded.filter(r => r.health !== 'ok'), [], 'each evaluated without error')
  })
})
