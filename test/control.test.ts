// The control-message scanner alone (lib/server/control.ts): which text frames are the plugin's
// own `auth` / `ping` messages, by JSON's rules, at every position and spelling.
import t from 'tap'
import { firstNonSpace, hasLetterEscape, mentionsControl, readControl } from '../lib/server/control.ts'

const frame = (text: string): Buffer => Buffer.from(text)

t.test('auth and ping are found wherever they stand', async t => {
  for (let pad = 0; pad < 12; pad++) {
    const filler = 'x'.repeat(pad)
    t.same(readControl(frame(`{"a":"${filler}","type":"auth","token":"t"}`), false), { a: filler, type: 'auth', token: 't' }, `auth after ${pad}`)
    t.same(readControl(frame(`{"a":"${filler}","type":"ping"}`), true), { a: filler, type: 'ping' }, `ping after ${pad}`)
  }
})

t.test('ping is an app message without appPing', async t => {
  t.equal(readControl(frame('{"type":"ping"}'), false), undefined)
  t.equal(mentionsControl(frame('{"type":"ping"}'), false), false)
})

t.test('near misses are app messages', async t => {
  for (const text of ['{"type":"pings"}', '{"type":"PING"}', '["ping"]', '{"v":"ping","type":"x"}', '{"type":"authx"}', 'auth', '"auth"', '{"type":"auth"', ' [{"type":"auth"}]']) {
    t.equal(readControl(frame(text), true), undefined, text)
  }
})

t.test('letters spelled with escapes count, in any position and hex case', async t => {
  t.same(readControl(frame('{"type":"\\u0061uth","token":"t"}'), false)?.type, 'auth')
  t.same(readControl(frame('{"type":"aut\\u0068"}'), false)?.type, 'auth')
  t.same(readControl(frame('{"type":"pi\\u006Eg"}'), true)?.type, 'ping')
  t.same(readControl(frame('{"\\u0074ype":"auth"}'), false)?.type, 'auth', 'an escaped key')
  t.equal(hasLetterEscape(frame('{"text":"\\\\u0061uth"}')), false, 'an escaped backslash followed by u0061 is plain text')
  t.equal(hasLetterEscape(frame('{"text":"line\\nbreak \\"quoted\\""}')), false, 'other escapes are no alarm')
  t.equal(hasLetterEscape(frame('{"a":"\\u0041"}')), false, 'an escaped letter outside 0x60-0x7f')
  t.equal(hasLetterEscape(frame('\\u00')), false, 'a cut escape at the end')
})

t.test('leading white space is skipped, anything else is not an object', async t => {
  t.equal(firstNonSpace(frame(' \n\r\t{')), 0x7b)
  t.equal(firstNonSpace(frame('   ')), undefined)
  t.same(readControl(frame('\n {"type":"auth"}'), false), { type: 'auth' })
})
