// (4)-(6) This plugin, imported by name as a user would: `fastify-ws-auth` resolves through the
// package's `exports` to the built dist/ (run `npm run build` first).
// With `config.direct`, a custom `verify` calls `fastify.jwt.verify` itself (after the plugin's own
// token-shape check): no `request.jwtVerify()`, so no `trusted`, `formatUser` or secret function.
// With `config.messages`, the route has those message policies (`wsAuth.messages`).
// With `config.source === 'ticket'` (issue 18's row), the same route reads one-time tickets
// (`?ticket=`) instead of tokens, and the command `tickets {n}` issues n of them before a round,
// outside the measured window (bench/lib/tickets.mjs), with the claims the tokens carry.
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import { echo, fastifyOptions, jwtOptions, LISTEN } from './common.mjs'
import { benchClaims } from '../lib/tokens.mjs'

/** Users whose claims the tickets carry, round-robin, as the load generator reuses 100 tokens. */
const TICKET_USERS = 100
/** Long enough for the slowest round to redeem them all; the default 30 s is not. */
const TICKET_TTL_MS = 120_000

export async function start (config) {
  const { default: wsAuth, tokenShapeProblem } = await import('fastify-ws-auth')
  const app = Fastify(fastifyOptions(config))
  await app.register(jwt, jwtOptions(config))
  const verify = config.direct ? (token) => tokenShapeProblem(token) === undefined ? app.jwt.verify(token) : null : undefined
  await app.register(wsAuth, { sources: [config.source], verify })
  const wsAuthRoute = config.messages ? { roles: ['admin'], messages: config.messages } : { roles: ['admin'] }
  app.get('/ws', { websocket: true, wsAuth: wsAuthRoute }, (socket) => {
    socket.on('message', echo)
  })
  await app.listen(LISTEN)
  return { server: app.server, close: () => app.close(), commands: config.source === 'ticket' ? ticketCommands(app) : undefined }
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
