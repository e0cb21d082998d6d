// Issue 19's scrape figure: how long `registry.metrics()` takes on a server with the plugin's
// metrics, with no session open and with `mode.conns` (10,000) idle authenticated sessions, whose
// gauges are read at scrape time (`ws_auth_sessions` goes through every open session). Not a
// target: a fact for the docs. Each round asks the server (bench/servers/plugin.mjs, command
// `scrape`) for `mode.scrapes` scrapes one after the other, timed in the server, then opens the
// sessions, scrapes again and closes them.
import { summary } from './stats.mjs'

/**
 * Runs `mode.scrapeRounds` rounds on `server` (a running metrics server, all its connections
 * closed) and hands each round to `record(id, round)`: wall µs per scrape (the median of the
 * round's scrapes) and CPU µs per scrape, empty and loaded, the sessions held and the sessions the
 * gauge reported, and the size of the loaded scrape's text.
 */
export async function scrapePhase (loadgen, server, mode, record, log) {
  const id = server.variant.id
  const timeoutMs = Math.max(30_000, mode.conns * 5)
  for (let r = 0; r < mode.scrapeRounds; r++) {
    log(`scrape round ${r + 1}/${mode.scrapeRounds}: ${mode.scrapes} scrapes of ${id} with no session, then with ${mode.conns} open`)
    const empty = await server.child.request('scrape', { n: mode.scrapes }, 120_000)
    const opened = await loadgen.request('open', { target: server.target, client: 'lean', n: mode.conns, concurrency: mode.concurrency, timeoutMs }, timeoutMs + 10_000)
    let loaded
    try {
      loaded = await server.child.request('scrape', { n: mode.scrapes }, 120_000)
    } finally {
      await loadgen.request('release', { timeoutMs: 10_000 }, 20_000)
    }
    const miscounted = loaded.sessions !== opened.ok
    record(id, {
      held: opened.ok,
      sessions: loaded.sessions,
      bytes: loaded.bytes,
      emptyUs: summary(empty.wallUs).median,
      loadedUs: summary(loaded.wallUs).median,
      emptyCpuUs: empty.cpuUs / mode.scrapes,
      loadedCpuUs: loaded.cpuUs / mode.scrapes,
      errors: opened.errors + (miscounted ? 1 : 0),
      firstError: miscounted ? `the sessions gauge read ${loaded.sessions}, ${opened.ok} connections were open` : opened.firstError
    })
  }
}
