// Starts the inventory example: `npx tsx examples/inventory/server.ts` (PORT, JWT_SECRET optional).
import { build } from './app.ts'
import { DEMO_USERS } from './store.ts'

async function main (): Promise<void> {
  const port = Number(process.env.PORT ?? 3004)
  const app = await build({ secret: process.env.JWT_SECRET, logger: { level: 'info' } })
  await app.listen({ host: '127.0.0.1', port })
  // Ctrl-C: open sockets get 1001 "Server shutting down" rather than a dropped connection.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  }
  console.log(`inventory example listening on http://127.0.0.1:${port}
Connect to ws://127.0.0.1:${port}/ws/inventory and send {"type":"auth","token":"<token>"} first
(or add ?token=<token>). Tokens, valid for 1 hour:`)
  for (const user of DEMO_USERS) {
    console.log(`  ${user.username} (${user.roles.join(', ')}${user.active ? '' : ', inactive: 4002'}): ${app.jwt.sign({ sub: user.id }, { expiresIn: '1h' })}`)
  }
  console.log('Then e.g. {"type":"inventory:reserve","data":{"sku":"WIDGET-1","quantity":8}}')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
