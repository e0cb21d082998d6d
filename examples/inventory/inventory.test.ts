import t, { type Test } from 'tap'
import { manualClockOfBuilt as manualClock } from '../../test/helpers/index.ts'
import { barrier, connect, connectWith, listen, ofType, waitFor, type Client } from '../helpers.ts'
import { build, type BuildOptions } from './app.ts'

async function start (t: Test, opts: BuildOptions = {}) {
  const app = await build(opts)
  const served = await listen(t, app)
  const token = (sub: string) => app.jwt.sign({ sub })
  /** Connects and authenticates with the first message, as the inventory's clients do. */
  async function join (sub: string): Promise<Client> {
    const c = connectWith(served.ws('/ws/inventory'), 'message', token(sub))
    await waitFor(c, 'inventory:snapshot')
    return c
  }
  return { app, served, token, join }
}

t.test('first-message auth: connection_established, then the snapshot', async t => {
  const { served, token } = await start(t)
  const c = connectWith(served.ws('/ws/inventory'), 'message', token('u-sales'))
  t.match(await waitFor(c, 'connection_established'), { user: { id: 'u-sales', username: 'sal', roles: ['sales'] } })
  const snapshot = await waitFor(c, 'inventory:snapshot')
  t.same((snapshot.data as { items: Array<{ sku: string }> }).items.map(i => i.sku), ['WIDGET-1', 'GADGET-7', 'BOLT-M6'])
  c.ws.close()
})

t.test('messages sent right behind the auth message are handled, or refused, in order', async t => {
  const { served, token } = await start(t)
  const c = connectWith(served.ws('/ws/inventory'), 'message', token('u-sales'))
  c.ws.once('open', () => {
    c.send({ type: 'inventory:adjust', data: { sku: 'GADGET-7', delta: 100 }, id: 1 })
    c.send({ type: 'inventory:reserve', data: { sku: 'GADGET-7', quantity: 1 }, id: 2 })
  })
  t.match(await waitFor(c, 'inventory:reserved'), { data: { sku: 'GADGET-7', quantity: 1, remaining: 39 } }, 'the adjustment was not made')
  t.same(c.messages.map(m => (m as { type?: unknown }).type),
    ['connection_established', 'inventory:snapshot', 'refused', 'inventory:update', 'inventory:reserved'])
  t.same(await waitFor(c, 'refused'), { type: 'refused', of: 'inventory:adjust', code: 4003, reason: 'Forbidden', id: 1 })
  c.ws.close()
})

t.test('query-token auth', async t => {
  const { served, token } = await start(t)
  const c = connectWith(served.ws('/ws/inventory'), 'query', token('u-manager'))
  t.match(await waitFor(c, 'connection_established'), { user: { id: 'u-manager' } })
  c.ws.close()
})

t.test('refusals: inactive or unknown user 4002, bad auth message 4001, no auth message 4008', async t => {
  // The auth timeout waits for the test's clock: a client that sends a message is never late,
  // and the silent one times out when the test says so.
  const time = manualClock(t)
  const { served, token } = await start(t)
  const first = (message: unknown) => {
    const c = connect(served.ws('/ws/inventory'))
    c.ws.once('open', () => c.send(message))
    return c.closed
  }
  t.same(await first({ type: 'auth', token: token('u-former') }), { code: 4002, reason: 'User not found or inactive' })
  t.same(await first({ type: 'auth', token: token('u-nobody') }), { code: 4002, reason: 'User not found or inactive' })
  t.same(await first({ type: 'auth', token: 'forged' }), { code: 4001, reason: 'Invalid token' })
  t.same(await first({ type: 'inventory:reserve', data: {} }), { code: 4001, reason: 'Invalid auth message' })
  const silent = connect(served.ws('/ws/inventory'))
  await silent.opened
  await barrier(silent)
  await time.tick(5000)
  t.same(await silent.closed, { code: 4008, reason: 'Authentication timeout' })
  t.same(await connectWith(served.ws('/ws/inventory'), 'query', token('u-former')).closed, { code: 4002, reason: 'User not found or inactive' })
})

t.test('a reservation: update to all, lowStock to stock managers only, the confirmation to all sessions of its user only', async t => {
  const { join } = await start(t)
  const admin = await join('u-admin')
  const manager = await join('u-manager')
  const salesTab1 = await join('u-sales')
  const salesTab2 = await join('u-sales')
  const otherSales = await join('u-sales-2')
  const everyone = [admin, manager, salesTab1, salesTab2, otherSales]

  // 12 -> 4, at or under the threshold of 5.
  salesTab1.send({ type: 'inventory:reserve', data: { sku: 'WIDGET-1', quantity: 8 } })
  for (const c of everyone) t.match(await waitFor(c, 'inventory:update'), { data: { sku: 'WIDGET-1', quantity: 4, by: 'sal' } })
  for (const c of [admin, manager]) {
    t.same((await waitFor(c, 'inventory:lowStock')).data, { sku: 'WIDGET-1', name: 'Blue widget', quantity: 4, threshold: 5 })
  }
  for (const c of [salesTab1, salesTab2]) t.same((await waitFor(c, 'inventory:reserved')).data, { sku: 'WIDGET-1', quantity: 8, remaining: 4 })

  // Anything else would have been sent before the server answered these pings.
  await Promise.all(everyone.map(c => barrier(c)))
  for (const c of [salesTab1, salesTab2, otherSales]) t.same(ofType(c, 'inventory:lowStock'), [], 'sales staff get no lowStock')
  t.same(ofType(otherSales, 'inventory:reserved'), [], 'another user gets no confirmation')
  t.same(ofType(admin, 'inventory:reserved'), [])
  for (const c of everyone) c.ws.close()
})

t.test('adjusting stock is for stock managers: anyone else is refused; errors go to the asking socket only', async t => {
  const { join } = await start(t)
  const manager = await join('u-manager')
  const sales = await join('u-sales')

  sales.send({ type: 'inventory:adjust', data: { sku: 'BOLT-M6', delta: 50 }, id: 'adjust-1' })
  t.same(await waitFor(sales, 'refused'), { type: 'refused', of: 'inventory:adjust', code: 4003, reason: 'Forbidden', id: 'adjust-1' })
  sales.send({ type: 'inventory:adjust', data: { sku: 'BOLT-M6', delta: 50 } })
  t.same(await waitFor(sales, 'refused', 2), { type: 'refused', of: 'inventory:adjust', code: 4003, reason: 'Forbidden' }, 'no id, none in the answer')

  manager.send({ type: 'inventory:adjust', data: { sku: 'BOLT-M6', delta: 50 } })
  t.same((await waitFor(manager, 'inventory:adjusted')).data, { sku: 'BOLT-M6', delta: 50, quantity: 53 }, 'from 3: the refused ones changed nothing')
  t.match(await waitFor(sales, 'inventory:update'), { data: { sku: 'BOLT-M6', quantity: 53, by: 'max' } })
  await barrier(manager)
  t.same(ofType(manager, 'inventory:lowStock'), [], 'above the threshold: no lowStock')
  t.same(ofType(manager, 'refused'), [], 'a stock manager is never refused')

  sales.send({ type: 'inventory:reserve', data: { sku: 'NOPE-0', quantity: 1 } })
  t.same((await waitFor(sales, 'error')).data, { message: 'Unknown SKU: NOPE-0' })
  sales.send({ type: 'inventory:reserve', data: { sku: 'GADGET-7', quantity: 41 } })
  t.same((await waitFor(sales, 'error', 2)).data, { message: 'Only 40 of GADGET-7 in stock' })
  sales.send('hello')
  t.same((await waitFor(sales, 'error', 3)).data, { message: 'Messages are {"type":"...","data":{...}}' })
  await barrier(manager)
  t.same(ofType(manager, 'error'), [], 'the manager saw none of the errors')
  t.equal(ofType(sales, 'inventory:update').length, 1, 'the only update the sales socket saw is the manager\'s')
  manager.ws.close()
  sales.ws.close()
})
