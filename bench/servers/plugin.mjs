// (4)-(6) This plugin, imported by name as a user would: `fastify-ws-auth` resolves through the
// package's `exports` to the built dist/ (run `npm run build` first).
// With `config.direct`, a custom `verify` calls `fastify.jwt.verify` itself (after the plugin's own
// token-shape check): no `request.jwtVerify()`, so no `trusted`, `formatUser` or secret function.
// With `config.messages`, the route has those message policies (`wsAuth.messages`).
// With `config.source === 'ticket'` (issue 18's row), the same route reads one-time tickets
// (`?ticket=`) instead of tokens, and the command `tickets {n}` issues n of them before a round,
// outside the measured window (bench/lib/tickets.mjs), with the claims the tokens carry.
// With `config.metrics` (issue 19), the plugin registers its metrics on a prom-client `Registry` of
// this server's own, and the command `scrape {n}` times n scrapes of it (bench/lib/scrape.mjs);
// `config.traces`, when set, is the plugin's `traces` option (else its default, 'auto').
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import { echo, fastifyOptions, jwtOptions, LISTEN } from './common.mjs'
import { benchClaims } from '../lib/tokens.mjs'
import { pluginSpecifier } from '../lib/build-stamp.mjs'

/** Users whose claims the tickets carry, round-robin, as the load generator reuses 100 tokens. */
const TICKET_USERS = 100
/** Long enough for the slowest round to redeem them all; the default 30 s is not. */
const TICKET_TTL_MS = 120_000

export async function start (config) {
  const { default: wsAuth, tokenShapeProblem } = await import(pluginSpecifier())
  const app = Fastify(fastifyOptions(config))
  await app.register(jwt, jwtOptions(config))
  const verify = config.direct ? (token) => tokenShapeProblem(token) === undefined ? app.jwt.verify(token) : null : undefined
  const registry = config.metrics ? new (await import('prom-client')).Registry() : null
  await app.register(wsAuth, { sources: [config.source], verify, ...observability(config, registry) })
  const wsAuthRoute = config.messages ? { roles: ['admin'], messages: config.messages } : { roles: ['admin'] }
  app.get('/ws', { websocket: true, wsAuth: wsAuthRoute }, (socket) => {
    socket.on('message', echo)
  })
  await app.listen(LISTEN)
  const commands = config.source === 'ticket' ? ticketCommands(app) : registry !== null ? scrapeCommands(registry) : undefined
  return { server: app.server, close: () => app.close(), commands }
}

/** The plugin's `metrics` and `traces` options of this server; none (the defaults) unless the variant sets them. */
function observability (config, registry) {
  const opts = {}
  if (registry !== null) opts.metrics = { registry }
  if (config.traces !== undefined) opts.traces = config.traces
  return opts
}

/** Warm-up scrapes before the timed ones of a `scrape` command: the first runs compile the code. */
const SCRAPE_WARM = 20
const SESSIONS_SAMPLE = /^ws_auth_sessions\{route="\/ws"\} (\d+)$/m

function scrapeCommands (registry) {
  return {
    /**
     * Times `n` scrapes (`await registry.metrics()`), one after the other, after SCRAPE_WARM more.
     * Answers with each scrape's wall time (µs), the CPU time of all n (µs, this process), the
     * size of the text and the sessions gauge's sample, which must equal the open connections.
     */
    async scrape ({ n }) {
      for (let i = 0; i < SCRAPE_WARM; i++) await registry.metrics()
      const wallUs = new Array(n)
      let text = ''
      const cpu0 = process.cpuUsage()
      for (let i = 0; i < n; i++) {
        const t0 = performance.now()
        text = await registry.metrics()
        wallUs[i] = (performance.now() - t0) * 1000
      }
      const cpu = process.cpuUsage(cpu0)
      const sessions = SESSIONS_SAMPLE.exec(text)
      return { wallUs, cpuUs: cpu.user + cpu.system, bytes: Buffer.byteLength(text), sessions: sessions === null ? 0 : Number(sessions[1]) }
    }
  }
}

function ticketCommands (app) {
  const claims = Array.from({ length: TICKET_USERS }, (_, i) => benchClaims(i))
  let issued = 0
  return {
    /** Issues `n` tickets; answers with them and the CPU time the issuing took (µs, this process). */
    async tickets ({ n }) {
      const tickets = new Array(n)
      const cpu0 = process.cpuUsage()
      for (let i = 0; i < n; i++) tickets[i] = await app.wsAuth.issueTicket(claims[issued++ % TICKET_USERS], { ttl: TICKET_TTL_MS })
      const cpu = process.cpuUsage(cpu0)
      return { tickets, cpuUs: cpu.user + cpu.system }
    }
  }
}
