// Starts the auth service and the status feed, and plays health checks that flip statuses:
// `npx tsx examples/service-status/server.ts` (PORT, AUTH_PORT, JWT_SECRET optional;
// AUTH_SERVICE=off leaves the auth service down, to watch the feed verify tokens locally).
import { randomBytes } from 'node:crypto'
import { build } from './app.ts'
import { buildAuthService } from './auth-service.ts'
import { DEMO_SERVERS, StatusBoard, type Health } from './status.ts'

async function main (): Promise<void> {
  const port = Number(process.env.PORT ?? 3003)
  const authPort = Number(process.env.AUTH_PORT ?? 3013)
  const secret = process.env.JWT_SECRET ?? randomBytes(32).toString('base64url')

  const authUp = process.env.AUTH_SERVICE !== 'off'
  const auth = await buildAuthService({ secret })
  if (authUp) await auth.app.listen({ host: '127.0.0.1', port: authPort })

  const board = new StatusBoard()
  const app = await build({ secret, authServiceUrl: `http://127.0.0.1:${authPort}`, board, logger: { level: 'info' } })

  // Stand-in health checks: every 3 s one server changes state.
  const states: Health[] = ['up', 'degraded', 'down']
  const checks = setInterval(() => {
    const name = DEMO_SERVERS[Math.floor(Math.random() * DEMO_SERVERS.length)]
    board.set(name, states[Math.floor(Math.random() * states.length)])
  }, 3000)
  app.addHook('onClose', async () => clearInterval(checks))
  await app.listen({ host: '127.0.0.1', port })
  // Ctrl-C: open sockets get 1001 "Server shutting down" rather than a dropped connection.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { Promise.all([app.close(), auth.app.close()]).then(() => process.exit(0), () => process.exit(1)) })
  }

  const url = `ws://127.0.0.1:${port}/ws/mcp-status`
  console.log(`service status feed listening on http://127.0.0.1:${port}
auth service ${authUp ? 'on' : 'DOWN (AUTH_SERVICE=off): tokens are verified locally; expected at'} http://127.0.0.1:${authPort}
Try (tokens valid for 1 hour), e.g. with npx wscat -c '<url>':
  developer (initial_status, then status_change):  ${url}?token=${auth.issueToken('u-dev')}
  support role (1008 Insufficient permissions):    ${url}?token=${auth.issueToken('u-support')}
  deactivated account (1008 User not found...):    ${url}?token=${auth.issueToken('u-gone')}
  (with the auth service down, the deactivated account gets in: the token alone cannot say it was deactivated)`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
