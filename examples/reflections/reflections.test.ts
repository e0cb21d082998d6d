import t, { type Test } from 'tap'
import { connect, connectWith, deferred, listen } from '../helpers.ts'
import { build } from './app.ts'
import { reflectionText, templateReflector, type Reflector } from './reflect.ts'
import { DEMO_ENTRIES, memoryStore, type JournalStore } from './store.ts'

async function start (t: Test, opts: { store?: JournalStore, reflect?: Reflector } = {}) {
  const app = await build({ reflect: templateReflector(0), ...opts })
  const served = await listen(t, app)
  const token = (sub: string, options?: { expiresIn?: number | string }) => app.jwt.sign({ sub }, options)
  const open = (entryId: string, token?: string) =>
    connect(served.ws(`/ws/reflections/${entryId}` + (token === undefined ? '' : `?token=${token}`)))
  return { app, served, token, open }
}

t.test('the owner gets the reflection as text messages, then 1000', async t => {
  const { token, open } = await start(t)
  const c = open('e1', token('alice'))
  t.same(await c.closed, { code: 1000, reason: 'Reflection complete' })
  t.ok(c.messages.length > 5, 'streamed in pieces')
  t.ok(c.messages.every(m => typeof m === 'string'), 'plain text only: no connection_established in front')
  t.equal(c.messages.join(''), reflectionText(DEMO_ENTRIES[0]))
})

t.test('a browser-style client authenticates with the bearer subprotocol', async t => {
  const { served, token } = await start(t)
  const c = connectWith(served.ws('/ws/reflections/e2'), 'protocol', token('bob'))
  t.same(await c.closed, { code: 1000, reason: 'Reflection complete' })
  t.equal(c.ws.protocol, 'bearer', 'the token entry is never echoed')
  t.equal(c.messages.join(''), reflectionText(DEMO_ENTRIES[1]))
})

t.test('4001: no token, a bad token, an expired token', async t => {
  const { token, open } = await start(t)
  t.same(await open('e1').closed, { code: 4001, reason: 'No token provided' })
  t.same(await open('e1', 'not-a-token').closed, { code: 4001, reason: 'Invalid token' })
  t.same(await open('e1', token('alice', { expiresIn: -10 })).closed, { code: 4001, reason: 'Token expired' })
})

t.test('4002: an inactive user, an unknown user', async t => {
  const { token, open } = await start(t)
  t.same(await open('e1', token('carol')).closed, { code: 4002, reason: 'User not found or inactive' })
  t.same(await open('e1', token('mallory')).closed, { code: 4002, reason: 'User not found or inactive' })
})

t.test('4003: an entry of someone else; 4004: no such entry', async t => {
  const { token, open } = await start(t)
  const other = open('e2', token('alice'))
  const missing = open('e404', token('alice'))
  t.same(await other.closed, { code: 4003, reason: 'Forbidden' })
  t.same(await missing.closed, { code: 4004, reason: 'Not found' })
  t.same([...other.messages, ...missing.messages], [], 'nothing streamed')
})

t.test('1011 when the store fails, and the server keeps serving', async t => {
  const healthy = memoryStore()
  const store: JournalStore = {
    findUser: (id) => healthy.findUser(id),
    async findEntry (id) {
      if (id === 'e1') throw new Error('connection to the journal database lost')
      return healthy.findEntry(id)
    }
  }
  const { token, open } = await start(t, { store })
  t.same(await open('e1', token('alice')).closed, { code: 1011, reason: 'Internal error' })
  t.same(await open('e2', token('bob')).closed, { code: 1000, reason: 'Reflection complete' })
})

t.test('1011 when the reflection fails mid-stream, after what was already sent', async t => {
  const reflect: Reflector = async function * () {
    yield 'You called this '
    throw new Error('model unavailable')
  }
  const { token, open } = await start(t, { reflect })
  const c = open('e1', token('alice'))
  t.same(await c.closed, { code: 1011, reason: 'Internal error' })
  t.same(c.messages, ['You called this '])
})

t.test('a client that leaves mid-stream stops the reflection: nothing is generated past the word in flight', async t => {
  let pulled = 0
  /** Resolved by the test once the client has left (the server has its close). */
  const left = deferred()
  const ended = deferred()
  const reflect: Reflector = async function * () {
    try {
      // At most 50 words: a route that went on pulling ends the test with a count, not a hang.
      for (let i = 0; i < 50; i++) {
        pulled++
        yield 'word '
        // The next word is asked for while the first is out; it comes once the client has left.
        if (i === 0) await left.promise
      }
    } finally {
      ended.resolve()
    }
  }
  const { token, open } = await start(t, { reflect })
  const c = open('e1', token('alice'))
  await c.messageWhere(m => m === 'word ')
  c.ws.close()
  await c.closed
  t.equal(pulled, 1, 'one word generated while the client was there')
  left.resolve()
  await ended.promise
  t.equal(pulled, 2, 'after the client left, only the word already asked for was generated, then the iteration was ended')
  t.same(c.messages, ['word '], 'the client got the one word')
})
