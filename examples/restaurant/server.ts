// Starts the restaurant example and plays a stream of orders and table changes:
// `npx tsx examples/restaurant/server.ts` (PORT, JWT_SECRET optional).
import { build } from './app.ts'
import { DEMO_STAFF, Operations, QUEUES, STATIONS, type TableStatus } from './domain.ts'

const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)]

async function main (): Promise<void> {
  const port = Number(process.env.PORT ?? 3001)
  const operations = new Operations()
  const app = await build({ secret: process.env.JWT_SECRET, operations, logger: { level: 'info' } })

  const menu = ['burger', 'fries', 'salad', 'soup', 'steak', 'lemonade']
  const simulation = [
    setInterval(() => {
      const [queue, restaurant] = pick(Object.entries(QUEUES))
      operations.placeOrder({
        restaurant_id: restaurant,
        station_id: pick(STATIONS),
        queue_id: queue,
        items: [pick(menu), pick(menu)],
        total: Math.round(800 + Math.random() * 4000) / 100
      })
    }, 2000),
    setInterval(() => {
      const restaurant = pick(['r-downtown', 'r-harbor'])
      const table = pick(operations.tablesOf(restaurant))
      const status = pick<TableStatus>(['free', 'seated', 'reserved', 'cleaning'])
      operations.setTable(restaurant, table.id, status, status === 'seated' ? table.seats : 0)
    }, 5000)
  ]
  app.addHook('onClose', async () => { for (const timer of simulation) clearInterval(timer) })
  await app.listen({ host: '127.0.0.1', port })
  // Ctrl-C: open sockets get 1001 "Server shutting down" rather than a dropped connection.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  }

  const base = `ws://127.0.0.1:${port}`
  const token = (sub: string) => app.jwt.sign({ sub }, { expiresIn: '1h' })
  console.log(`restaurant example listening on http://127.0.0.1:${port}
Tokens (1 hour): ${DEMO_STAFF.map(u => `\n  ${u.username.padEnd(4)} ${u.roles.join(',').padEnd(17)} ${u.active ? '' : '(inactive) '}${token(u.id)}`).join('')}
Try, e.g. with npx wscat -c '<url>':
  ${base}/api/v1/kds/ws/grill?token=${token('u-chef')}
  ${base}/api/v1/tables/ws/tables/r-downtown?token=${token('u-server')}
  ${base}/analytics/realtime/dashboard?token=${token('u-analyst')}   then send {"type":"subscribe","topic":"metric:sales","id":1}
  ${base}/api/v1/queues/ws/subscribe   then send {"type":"auth","token":"..."} and {"type":"subscribe","topic":"queue:downtown-takeout","id":1}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
