// The manual clock the suite drives the library's timers with (test/helpers/clock.ts).
import t from 'tap'
import { clock } from '../lib/protocol/clock.ts'
import { manualClock } from './helpers/clock.ts'

t.test('timers fire in order of their time as the clock moves, and not before', async t => {
  const time = manualClock(t, 1_000)
  const fired: string[] = []
  clock.after(30, () => fired.push('b@' + clock.now()))
  clock.after(10, () => fired.push('a@' + clock.now()))
  const cancel = clock.after(20, () => fired.push('cancelled'))
  const stop = clock.every(25, () => fired.push('every@' + clock.now()))
  cancel()
  await time.tick(9)
  t.same(fired, [], 'nothing is due yet')
  await time.tick(41)
  t.same(fired, ['a@1010', 'every@1025', 'b@1030', 'every@1050'])
  t.equal(time.now(), 1_050)
  stop()
  t.equal(time.pending(), 0)
})

t.test('the system clock is back once the test ends', async t => {
  await t.test('inner', async t => { manualClock(t, 5) })
  t.ok(Math.abs(clock.now() - Date.now()) < 1000)
  let fired = false
  await new Promise<void>(resolve => clock.after(1, () => { fired = true; resolve() }))
  t.ok(fired, 'real timers fire by themselves')
})
