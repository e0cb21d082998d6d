// `npm run demo`: the playground on 127.0.0.1 (PORT, default 3000), with a secret made up for this run.
import { build } from './app.ts'

const DEFAULT_PORT = 3000

async function main (): Promise<void> {
  const port = process.env.PORT === undefined || process.env.PORT === '' ? DEFAULT_PORT : Number(process.env.PORT)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`PORT must be a port number (0-65535), got "${process.env.PORT}"`)
    process.exit(1)
  }
  const app = await build({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
  try {
    await app.listen({ host: '127.0.0.1', port })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error
    console.error(`\nPort ${port} on 127.0.0.1 is already in use. Pick another one: PORT=${port + 1} npm run demo\n`)
    await app.close()
    process.exit(1)
  }
  const address = app.server.address()
  const actual = typeof address === 'object' && address !== null ? address.port : port
  console.log(`\nfastify-ws-auth demo playground: http://127.0.0.1:${actual}/`)
  console.log(`Prometheus metrics: http://127.0.0.1:${actual}/metrics`)
  console.log('(a random secret for this run, in-memory users; Ctrl+C to stop)\n')

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      // Open pages see 1001 "Server shutting down" from the plugin.
      app.close().then(() => process.exit(0), () => process.exit(1))
    })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
