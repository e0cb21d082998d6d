// Starts the reflections example: `npx tsx examples/reflections/server.ts` (PORT, JWT_SECRET optional).
import { build } from './app.ts'

async function main (): Promise<void> {
  const port = Number(process.env.PORT ?? 3005)
  const app = await build({ secret: process.env.JWT_SECRET, logger: { level: 'info' } })
  await app.listen({ host: '127.0.0.1', port })
  // Ctrl-C: open sockets get 1001 "Server shutting down" rather than a dropped connection.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  }

  const token = (sub: string) => app.jwt.sign({ sub }, { expiresIn: '1h' })
  const url = `ws://127.0.0.1:${port}/ws/reflections`
  console.log(`reflections example listening on http://127.0.0.1:${port}
Try (tokens valid for 1 hour), e.g. with npx wscat -c '<url>':
  alice, her entry (streams, then 1000): ${url}/e1?token=${token('alice')}
  alice, bob's entry (4003):             ${url}/e2?token=${token('alice')}
  alice, no such entry (4004):           ${url}/e9?token=${token('alice')}
  carol, inactive (4002):                ${url}/e1?token=${token('carol')}
  a bad token (4001):                    ${url}/e1?token=not-a-token`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
