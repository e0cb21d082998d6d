// Issue 17's publish row: `app.wsAuth.publish` to N subscribers ÷ the restaurant example's old
// hand-written hub (bench/lib/hand-hub.mjs) publishing the same bytes to the same sockets, in one
// server process (bench/servers/topics.mjs) whose every socket holds the topic in both. The N
// client sockets live in the load generator (another process, pinned to the other core), spread
// over 127.0.0.1–16. Per round, each side publishes `publishes` times (one per event-loop turn),
// the two in alternating order; a side's figure is the server's CPU from just before its first
// publish until the clients hold every frame (the writes' callbacks included), divided by the
// publishes.

/** The server of the row, as bench/variants.mjs describes one (not a variant of the main table). */
export const TOPICS_SERVER = { id: 'topics', label: 'publish row: plugin topic + hand-written hub', kind: 'topics', alg: 'HS256', cache: false, auth: 'query', protocol: 'ws', expect: '"type":"connection_established"', spread: 16 }
export const PUBLISH_IDS = { plugin: 'publish-plugin', hand: 'publish-hand' }
const MATCH = '"type":"publication"'

async function publishRound (loadgen, server, via, mode) {
  const expected = mode.publishes * mode.subscribers
  await loadgen.request('arm', { match: MATCH })
  await server.child.request('mark')
  const sent = await server.child.request('publish', { via, count: mode.publishes }, 120_000)
  const got = await loadgen.request('received', { n: expected, timeoutMs: 60_000 }, 70_000)
  const stats = await server.child.request('stats')
  const reached = sent.reached.reduce((a, b) => a + b, 0)
  const missing = Math.max(0, expected - reached) + Math.max(0, expected - got.count)
  return {
    cpuPerPublish: stats.cpuUs / mode.publishes,
    cpuPerSend: stats.cpuUs / reached,
    wallMs: stats.elapsedMs,
    errors: missing,
    firstError: missing > 0 ? `${reached}/${expected} sent, ${got.count} received${got.timedOut ? ' (timed out)' : ''}` : null
  }
}

/**
 * Opens `mode.subscribers` connections to a fresh topics server, warms both publishers up, then
 * measures `mode.publishRounds` rounds; `record(id, round)` files each side's figure.
 */
export async function publishPhase (loadgen, start, mode, record, log) {
  const [server] = await start([TOPICS_SERVER])
  if (!server.child) {
    log(`publish row not measured: ${server.error}`)
    return server.error
  }
  try {
    const timeoutMs = Math.max(30_000, mode.subscribers * 5)
    const opened = await loadgen.request('open', { target: { ...server.target, spread: TOPICS_SERVER.spread }, client: 'lean', n: mode.subscribers, concurrency: mode.concurrency, timeoutMs }, timeoutMs + 10_000)
    if (opened.ok !== mode.subscribers) throw new Error(`${opened.ok}/${mode.subscribers} subscribers connected (first error: ${opened.firstError})`)
    const warm = { ...mode, publishes: mode.publishWarm }
    for (const via of ['plugin', 'hand', 'plugin', 'hand']) await publishRound(loadgen, server, via, warm)
    for (let r = 0; r < mode.publishRounds; r++) {
      log(`publish round ${r + 1}/${mode.publishRounds}: ${mode.publishes} publishes × ${mode.subscribers} subscribers, plugin and hand-written hub`)
      const order = r % 2 === 0 ? ['plugin', 'hand'] : ['hand', 'plugin']
      for (const via of order) record(PUBLISH_IDS[via], await publishRound(loadgen, server, via, mode))
    }
    return null
  } catch (err) {
    log(`publish row failed: ${err.message}`)
    return err.message
  } finally {
    await loadgen.request('release', { timeoutMs: 10_000 }, 20_000).catch(() => {})
    await server.child.stop()
  }
}
