// The auth-message phase and the hold buffer alone (lib/server/waiting.ts).
import t from 'tap'
import { authMessageToken, Waiting } from '../lib/server/waiting.ts'
import { manualClock } from './helpers/clock.ts'

t.test('the first message: a token, or the failure class it stands for', async t => {
  const text = (s: string) => Buffer.from(s)
  t.same(authMessageToken(text('{"type":"auth","token":"abc"}'), false, 100), { token: 'abc' })
  t.same(authMessageToken(text('{"type":"\\u0061uth","token":"abc"}'), false, 100), { token: 'abc' }, 'escapes decoded')
  t.equal(authMessageToken(text('{"type":"auth","token":"abc"}'), true, 100), 'policy_violation', 'binary')
  t.equal(authMessageToken(new ArrayBuffer(4), false, 100), 'policy_violation', 'not a Buffer')
  t.equal(authMessageToken(text('{"type":"auth","token":"' + 'x'.repeat(100) + '"}'), false, 100), 'message_too_big')
  for (const bad of ['{"type":"auth"}', '{"type":"auth","token":""}', '{"type":"auth","token":1}', '{"type":"ping"}', '[]', 'auth', '{']) {
    t.equal(authMessageToken(text(bad), false, 100), 'invalid_auth_message', bad)
  }
})

t.test('the hold buffer keeps order and says when a limit is passed', async t => {
  const waiting = new Waiting()
  t.equal(waiting.hold(Buffer.from('ab'), false, 3, 5), true)
  t.equal(waiting.hold([Buffer.from('c'), Buffer.from('d')], true, 3, 5), true, 'fragments counted by their bytes')
  t.equal(waiting.count, 2)
  t.equal(waiting.hold(new ArrayBuffer(2), true, 3, 5), false, '6 bytes > 5')
  t.equal(new Waiting().hold(new Blob(['abcdef']), true, 3, 5), false, 'a Blob (binaryType "blob") counts its bytes')
  t.same(waiting.take()?.map(([, binary]) => binary), [false, true, true])
  t.equal(waiting.count, 0)
  t.equal(waiting.take(), null)
  for (let i = 0; i < 3; i++) t.equal(waiting.hold(Buffer.alloc(0), false, 3, 5), true)
  t.equal(waiting.hold(Buffer.alloc(0), false, 3, 5), false, 'a fourth message > 3')
})

t.test('the auth timer fires once, at its time, and can be stopped before', async t => {
  const time = manualClock(t)
  const running = new Waiting()
  let fired = 0
  running.startTimer(100, () => { fired++ })
  t.equal(running.timing, true)
  await time.tick(99)
  t.equal(fired, 0, 'not before its time')
  await time.tick(1)
  t.equal(fired, 1, 'at its time')
  await time.tick(1000)
  t.equal(fired, 1, 'once')

  const stopped = new Waiting()
  t.equal(stopped.timing, false)
  let stoppedFired = 0
  stopped.startTimer(100, () => { stoppedFired++ })
  stopped.stopTimer()
  t.equal(stopped.timing, false)
  stopped.stopTimer()
  await time.tick(1000)
  t.equal(stoppedFired, 0, 'stopped before it fired')
  t.equal(time.pending(), 0, 'no timer left armed')
})
