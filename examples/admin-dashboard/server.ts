// Starts the admin dashboard example: `npx tsx examples/admin-dashboard/server.ts` (PORT, JWT_SECRET optional).
import { build } from './app.ts'
import { DEMO_ACCOUNTS } from './users.ts'

async function main (): Promise<void> {
  const port = Number(process.env.PORT ?? 3002)
  const app = await build({ secret: process.env.JWT_SECRET, logger: { level: 'info' } })
  await app.listen({ host: '127.0.0.1', port })
  // Ctrl-C: open sockets get 1001 "Server shutting down" rather than a dropped connection.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  }
  console.log(`admin dashboard example listening on http://127.0.0.1:${port}
Open the test page: http://127.0.0.1:${port}/admin/test
Demo accounts: ${DEMO_ACCOUNTS.map(a => `${a.username} / ${a.password} (${a.roles.join(', ')})`).join(';  ')}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
