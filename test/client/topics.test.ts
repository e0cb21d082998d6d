// The client's topics (issue 17) against a real server: `subscribe()` and its `ready`, refusals as
// rows of the client's table, publications to the callbacks, `unsubscribe()`, resubscription after a
// reconnect, subscriptions the server ends, `refused` for refused messages, and none of the new
// server messages at the app's `message` listeners.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import { WsAuthError, closeCodes, createClient, mergeCloseCodes } from '../../lib/client/index.ts'
import type { ClientOptions, CloseCodeOverrides, WsAuthClient } from '../../lib/client/index.ts'
import { Topics } from '../../lib/client/topics.ts'
import type { WsAuthRouteOptions } from '../../lib/types.ts'
import { bounded } from '../helpers/index.ts'
import { serve } from './helpers/server.ts'
import { record, sockets, type Recorder } from './helpers/record.ts'

const fast = { initialDelay: 20, maxDelay: 1000, factor: 2, jitter: false }

const ROUTE: WsAuthRouteOptions = {
  topics: {
    'queue:{id}': { roles: ['staff'], authorize: (_r, _u, topic) => topic.params.id === 'gone' ? 'not_found' : topic.params.id !== 'secret' },
    'open:{id}': true,
    'broken:{id}': { authorize: () => { throw new Error('acl store down') } }
  },
  messages: { 'order:void': { roles: ['manager'] }, 'debug:dump': false },
  maxTopics: 3
}

interface Setup {
  /** `wsAuth` of the `/ws` route. */
  wsAuth?: WsAuthRouteOptions
  /** The roles of each token the client gets, in turn (the last one repeats). */
  roles?: string[][]
  closeCodes?: CloseCodeOverrides
  client?: Partial<ClientOptions>
}

/** A server whose `/ws` route echoes `heard <message>`, and a client of it, recorded from the start. */
async function setup (t: Test, opts: Setup = {}) {
  const server: WebSocket[] = []
  const served = await serve(t, {
    auth: opts.closeCodes === undefined ? {} : { closeCodes: opts.closeCodes },
    routes (app: FastifyInstance) {
      app.get('/ws', { websocket: true, wsAuth: opts.wsAuth ?? ROUTE }, (socket) => {
        server.push(socket)
        socket.on('message', (data) => socket.send('heard ' + data.toString()))
      })
    }
  })
  const roles = opts.roles ?? [['staff']]
  let n = 0
  const spy = sockets()
  const client = createClient({
    url: served.url(),
    token: () => served.sign({ sub: 'u1', roles: roles[Math.min(n++, roles.length - 1)] }),
    WebSocket: spy.WebSocket,
    reconnect: fast,
    ...(opts.closeCodes === undefined ? {} : { closeCodes: opts.closeCodes }),
    ...opts.client
  })
  const events = record(client)
  t.teardown(() => client.close())
  return { app: served.app, client, events, spy, server }
}

/** A `subscribe()` callback that records the data it gets; `next(n)` resolves at the n-th. */
function collector () {
  const got: unknown[] = []
  const waiters = new Set<() => void>()
  const fn = (data: unknown): void => {
    got.push(data)
    for (const w of [...waiters]) w()
  }
  const next = (n: number): Promise<unknown> => bounded(new Promise(resolve => {
    const check = (): void => {
      if (got.length < n) return
      waiters.delete(check)
      resolve(got[n - 1])
    }
    waiters.add(check)
    check()
  }), () => `publication #${n}: ${got.length} received`)
  return { got, fn, next }
}

/**
 * Sends `mark` and waits for the route's echo of it: the server has read every frame the client
 * sent before, and the client every frame the server sent before the echo.
 */
async function roundTrip (client: WsAuthClient, events: Recorder, mark: string): Promise<void> {
  client.send(mark)
  await events.next('message', 1, m => m === 'heard ' + mark)
}

/** The `[type, topic]` of each subscribe and unsubscribe the client sent on its `n`-th socket. */
function requests (spy: ReturnType<typeof sockets>, n: number): Array<[string, string]> {
  return spy.sent(n).filter(f => f.startsWith('{"type":"')).map(f => JSON.parse(f) as { type: string, topic: string })
    .filter(m => m.type === 'subscribe' || m.type === 'unsubscribe').map(m => [m.type, m.topic])
}

t.test('subscribe before the connection: sent once established, before the queued messages; ready; publications reach the callback', async t => {
  const { app, client, events, spy } = await setup(t)
  const queue = collector()
  const sub = client.subscribe('queue:1', queue.fn)
  client.send('queued')
  t.equal(client.state, 'connecting', 'subscribed before the connection exists')
  t.same(Object.keys(sub).sort(), ['ready', 'unsubscribe'])
  await sub.ready
  t.same(spy.sent(1), ['{"type":"subscribe","topic":"queue:1","id":1}', 'queued'], 'the subscribe first, then the queue')
  t.same(app.wsAuth.subscribers('queue:1').map(s => s.userId), ['u1'])
  t.equal(app.wsAuth.publish('queue:1', { order: 7 }), 1)
  app.wsAuth.publish('queue:1', 'two')
  app.wsAuth.publish('queue:1', null)
  await queue.next(3)
  t.same(queue.got, [{ order: 7 }, 'two', null], 'each publication\'s data, decoded, in order')
  await roundTrip(client, events, 'end')
  t.same(events.all('message'), ['heard queued', 'heard end'], 'neither subscribed nor publication reached "message"')
  t.same(events.all('publication'), [], 'a subscribe() topic goes to its callback, not to the publication event')
  t.same([events.all('refused'), events.all('unsubscribed'), events.all('close')], [[], [], []])
})

t.test('a refused subscription rejects ready with the table\'s code, reason, kind and failure, and emits refused; the connection goes on', async t => {
  const { client, events } = await setup(t)
  const cases: Array<[string, number, string, string, string]> = [
    ['queue:secret', 4003, 'Forbidden', 'forbidden', 'refused'],
    ['queue:gone', 4004, 'Not found', 'not_found', 'refused'],
    ['nothing:here', 4004, 'Not found', 'not_found', 'refused'],
    ['broken:1', 1011, 'Internal error', 'internal_error', 'transient']
  ]
  for (const [i, [topic, code, reason, failure, kind]] of cases.entries()) {
    const sub = client.subscribe(topic, () => t.fail('no publication for a refused topic'))
    const err = await sub.ready.then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof WsAuthError, `${topic}: a WsAuthError`)
    t.match(err, { name: 'WsAuthError', code, reason, failure, kind, message: new RegExp(`subscription to "${topic}" refused \\(${code} ${reason}\\)`) }, topic)
    t.same(await events.next('refused', i + 1), { of: 'subscribe', topic, code, reason, failure, id: i + 1 }, `${topic}: the refused event`)
  }
  for (const topic of ['queue:1', 'queue:2', 'queue:3']) await client.subscribe(topic, () => {}).ready
  const over = client.subscribe('queue:4', () => {})
  await t.rejects(over.ready, { name: 'WsAuthError', code: 4029, reason: 'Too many subscriptions', failure: 'too_many_subscriptions', kind: 'refused', retry: 'never' },
    'over maxTopics: 4029 is too_many_subscriptions (by its reason), not too_many_connections')
  t.match(await events.next('refused', 5), { of: 'subscribe', topic: 'queue:4', code: 4029, failure: 'too_many_subscriptions' })
  t.equal(client.state, 'open')
  await roundTrip(client, events, 'still here')
  t.same(events.all('close'), [], 'no refusal closed the connection')
  t.same(events.all('unsubscribed'), [], 'a subscription that never started does not end')
  t.same(events.all('message'), ['heard still here'], 'no refused message reached "message"')
})

t.test('refusals are read with the client\'s closeCodes overrides, as the server sends them', async t => {
  const overrides: CloseCodeOverrides = { forbidden: { code: 4403, reason: 'Not yours' } }
  const { client, events } = await setup(t, { closeCodes: overrides })
  await t.rejects(client.subscribe('queue:secret', () => {}).ready, { code: 4403, reason: 'Not yours', failure: 'forbidden', kind: 'refused' })
  client.send({ type: 'debug:dump', id: 'd1' })
  t.same(await events.next('refused', 2), { of: 'debug:dump', code: 4403, reason: 'Not yours', failure: 'forbidden', id: 'd1' })
})

t.test('unsubscribe(): delivery stops at once, the last callback sends unsubscribe, and what was on its way is dropped', async t => {
  const { app, client, events, spy } = await setup(t)
  const a = collector()
  const b = collector()
  const marker = collector()
  const c = collector()
  const subA = client.subscribe('open:1', (data) => {
    a.fn(data)
    if (data !== 1) return
    subA.unsubscribe()
    subC.unsubscribe()
  })
  const subMarker = client.subscribe('open:marker', marker.fn)
  await Promise.all([subA.ready, subMarker.ready])
  const subB = client.subscribe('open:1', b.fn)
  const subC = client.subscribe('open:1', c.fn)
  await Promise.all([subB.ready, subC.ready])
  t.same(requests(spy, 1), [['subscribe', 'open:1'], ['subscribe', 'open:marker']], 'more callbacks on a held topic: ready at once, no new request')

  app.wsAuth.publish('open:1', 1) // A unsubscribes itself and C in its callback
  app.wsAuth.publish('open:1', 2) // on its way already: A must not get it, B does
  app.wsAuth.publish('open:marker', 'm1')
  await marker.next(1)
  t.same([a.got, b.got, c.got], [[1], [1, 2], []], 'C, unsubscribed by A, does not get even the publication A was handling')
  t.same(requests(spy, 1).length, 2, 'B still holds open:1: no unsubscribe sent')

  subB.unsubscribe()
  subB.unsubscribe()
  t.same(requests(spy, 1), [['subscribe', 'open:1'], ['subscribe', 'open:marker'], ['unsubscribe', 'open:1']], 'the last callback gone: one unsubscribe')
  t.equal(app.wsAuth.publish('open:1', 3), 1, 'the server has not read the unsubscribe yet: this one is on its way')
  app.wsAuth.publish('open:marker', 'm2')
  await marker.next(2)
  t.same([a.got, b.got, c.got], [[1], [1, 2], []], 'dropped on arrival')
  t.same(events.all('publication'), [], 'nor handed to the publication event')
  await roundTrip(client, events, 'mark')
  t.same(app.wsAuth.subscribers('open:1'), [], 'the server let it go')

  const early = client.subscribe('open:2', () => {})
  early.unsubscribe()
  await t.rejects(early.ready, { name: 'WsAuthError', code: null, kind: 'closed', message: /"open:2" ended by unsubscribe\(\)/ }, 'unsubscribe() before the answer rejects ready')
  t.same(events.all('unsubscribed'), [], 'the app\'s own unsubscribe is no unsubscribed event')
})

t.test('after a reconnect the client subscribes again to every active topic, and to those asked for meanwhile', async t => {
  const { app, client, events, spy } = await setup(t)
  const queue = collector()
  const open = collector()
  const subs = [client.subscribe('queue:1', queue.fn), client.subscribe('open:1', open.fn), client.subscribe('open:2', () => {})]
  await Promise.all(subs.map(s => s.ready))
  subs[2].unsubscribe()
  await t.rejects(client.subscribe('queue:secret', () => {}).ready, { code: 4003 })
  await events.next('established')
  t.equal(app.wsAuth.disconnectUser('u1', { code: closeCodes.lifetime_exceeded.code, reason: closeCodes.lifetime_exceeded.reason }), 1)
  t.match(await events.next('close'), { code: 4010, willRetry: true })
  const late = collector()
  const subLate = client.subscribe('open:3', late.fn)
  await events.next('established', 2)
  await subLate.ready
  t.same(requests(spy, 2), [['subscribe', 'queue:1'], ['subscribe', 'open:1'], ['subscribe', 'open:3']],
    'the active topics and the new one, not the one dropped nor the one refused')
  for (const topic of ['queue:1', 'open:1', 'open:3']) t.equal(app.wsAuth.publish(topic, topic), 1, `${topic}: held again`)
  t.equal(app.wsAuth.publish('open:2', 'x'), 0, 'open:2 was not asked for again')
  await Promise.all([queue.next(1), open.next(1), late.next(1)])
  t.same([queue.got, open.got, late.got], [['queue:1'], ['open:1'], ['open:3']])
  t.same(events.all('unsubscribed'), [], 'a reconnect ends no subscription')
})

t.test('a resubscription refused after a reconnect ends the subscription: unsubscribed and refused events', async t => {
  const { app, client, events } = await setup(t, { roles: [['staff'], ['viewer']] })
  const queue = collector()
  const sub = client.subscribe('queue:1', queue.fn)
  const open = client.subscribe('open:1', () => {})
  await Promise.all([sub.ready, open.ready])
  await events.next('established')
  app.wsAuth.disconnectUser('u1', { code: closeCodes.lifetime_exceeded.code, reason: closeCodes.lifetime_exceeded.reason })
  t.same(await events.next('unsubscribed'), { topic: 'queue:1', code: 4003, reason: 'Forbidden', failure: 'forbidden' })
  t.match(await events.next('refused'), { of: 'subscribe', topic: 'queue:1', code: 4003 })
  await roundTrip(client, events, 'mark')
  t.equal(app.wsAuth.publish('open:1', 1), 1, 'the allowed one is held again')
  t.equal(app.wsAuth.publish('queue:1', 1), 0)
  t.same(queue.got, [])
})

t.test('a subscription the server ends: dropped, with an unsubscribed event; not asked for again after a reconnect', async t => {
  const { app, client, events, spy, server } = await setup(t)
  const queue = collector()
  const sub = client.subscribe('queue:1', queue.fn)
  await sub.ready
  await roundTrip(client, events, 'handler listens')
  t.equal(app.wsAuth.unsubscribe({ userId: 'u1' }, 'queue:1'), 1)
  t.same(await events.next('unsubscribed'), { topic: 'queue:1', code: 4003, reason: 'Forbidden', failure: 'forbidden' })
  // The server subscribes the socket itself now: the dropped callback must not see what comes.
  app.wsAuth.subscribe(server[0], 'queue:1')
  app.wsAuth.publish('queue:1', 'x')
  t.same(await events.next('publication'), { topic: 'queue:1', data: 'x' }, 'to the publication event, as a server-side subscription')
  t.same(queue.got, [], 'not to the callback of the ended subscription')
  sub.unsubscribe()
  t.same(requests(spy, 1), [['subscribe', 'queue:1']], 'unsubscribe() of an ended subscription sends nothing')

  server[0].close(closeCodes.going_away.code, closeCodes.going_away.reason)
  await events.next('established', 2)
  await roundTrip(client, events, 'second connection')
  t.same(requests(spy, 2), [], 'the ended topic is not asked for again')
  t.same(events.all('message'), ['heard handler listens', 'heard second connection'], 'unsubscribed and publication never reached "message"')
})

t.test('a topic the server subscribed the socket to: publications to the publication event; its end is an unsubscribed event without a code', async t => {
  const server: WebSocket[] = []
  const served = await serve(t, {
    routes (app) {
      app.get('/orders/:id', { websocket: true }, (socket, request) => {
        server.push(socket)
        app.wsAuth.subscribe(socket, 'order:' + (request.params as { id: string }).id)
      })
    }
  })
  const client = createClient({ url: served.url('/orders/7'), token: served.sign({ sub: 'u1' }), WebSocket: sockets().WebSocket })
  const events = record(client)
  t.teardown(() => client.close())
  await events.next('established')
  served.app.wsAuth.publish('order:7', { status: 'cooking' })
  t.same(await events.next('publication'), { topic: 'order:7', data: { status: 'cooking' } })
  served.app.wsAuth.unsubscribe(server[0], 'order:7')
  t.same(await events.next('unsubscribed'), { topic: 'order:7', code: null, reason: '' })
  t.same(events.all('message'), [])
})

t.test('a server with established: false: a topic message proves the session is authenticated, as an app message does', async t => {
  const served = await serve(t, {
    auth: { established: false },
    routes (app) {
      app.get('/feed', { websocket: true }, (socket) => {
        app.wsAuth.subscribe(socket, 'feed:1')
        socket.on('message', (data) => socket.send('heard ' + data.toString()))
      })
    }
  })
  const client = createClient({ url: served.url('/feed'), token: served.sign({ sub: 'u1' }), WebSocket: sockets().WebSocket })
  const events = record(client)
  t.teardown(() => client.close())
  client.send('queued')
  t.equal(await events.next('message'), 'heard queued', 'the queue was flushed at the server\'s subscribed')
  t.equal(client.state, 'open')
  served.app.wsAuth.publish('feed:1', 1)
  t.same(await events.next('publication'), { topic: 'feed:1', data: 1 })
})

t.test('a refused message: the refused event with of, code, reason, failure and id; the app\'s message listeners never see it', async t => {
  const { client, events } = await setup(t)
  client.send({ type: 'order:void', order: 7, id: 7 })
  client.send({ type: 'debug:dump' })
  client.send({ type: 'chat', text: 'allowed' })
  t.same(await events.next('refused', 1), { of: 'order:void', code: 4003, reason: 'Forbidden', failure: 'forbidden', id: 7 })
  t.same(await events.next('refused', 2), { of: 'debug:dump', code: 4003, reason: 'Forbidden', failure: 'forbidden' }, 'no id: none in the event')
  await roundTrip(client, events, 'mark')
  t.same(events.all('message'), ['heard {"type":"chat","text":"allowed"}', 'heard mark'])
  t.equal(client.state, 'open')
  t.same(events.all('close'), [])
})

t.test('ready when the client stops first; an ignored rejection is not unhandled', async t => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

  const refusedAtDoor = await setup(t, { wsAuth: { roles: ['root'], topics: { 'open:{id}': true } } })
  const atDoor = refusedAtDoor.client.subscribe('open:1', () => {})
  await t.rejects(atDoor.ready, { name: 'WsAuthError', code: 4003, kind: 'refused', failure: 'forbidden', message: /"open:1" ended: the client stopped \(4003 Forbidden\)/ },
    'the final close\'s code and kind')

  const closed = await setup(t)
  const beforeOpen = closed.client.subscribe('open:1', () => {})
  closed.client.close()
  await t.rejects(beforeOpen.ready, { code: 1000, kind: 'closed' }, 'close() first')
  t.throws(() => closed.client.subscribe('open:1', () => {}), { name: 'ClientError', code: 'FST_WS_AUTH_CLIENT_CLOSED' })

  const ignored = await setup(t)
  ignored.client.subscribe('queue:secret', () => {})
  await ignored.events.next('refused')
  // Unhandled rejections are reported once the microtasks of this turn have run.
  await new Promise(resolve => setImmediate(resolve))
  t.same(unhandled, [], 'a refusal nobody awaited is not an unhandled rejection')
})

t.test('subscribe() checks its arguments', async t => {
  const { client, events } = await setup(t)
  const invalid = { name: 'ClientError', code: 'FST_WS_AUTH_CLIENT_INVALID_SUBSCRIPTION' }
  t.throws(() => client.subscribe('', () => {}), { ...invalid, message: /the topic must be a non-empty string of at most 256 bytes/ })
  t.throws(() => client.subscribe(42 as unknown as string, () => {}), invalid)
  t.throws(() => client.subscribe('é'.repeat(129), () => {}), invalid, '258 bytes in 129 characters')
  t.throws(() => client.subscribe('open:1', 'nope' as unknown as () => void), { ...invalid, message: /must be a function/ })
  await client.subscribe('open:' + 'é'.repeat(125) + 'x', () => {}).ready
  await roundTrip(client, events, 'mark')
  t.same(events.all('refused'), [], 'nothing invalid was sent')
})

// The matching rules alone, with a fake client: answers a real server sends only in races (a late
// answer to a request since dropped) or never (no topic), fed in a chosen order.
function fakeHost () {
  const sent: string[] = []
  const told: Array<[string, unknown]> = []
  const topics = new Topics({
    table: mergeCloseCodes(),
    sendNow: (frame) => { sent.push(frame); return true },
    refused: (info) => { told.push(['refused', info]) },
    unsubscribed: (info) => { told.push(['unsubscribed', info]) },
    publication: (info) => { told.push(['publication', info]) }
  })
  return { topics, sent, told }
}

/** Whether `promise` has settled once the current microtasks have run. */
async function settled (promise: Promise<unknown>): Promise<boolean> {
  let done = false
  promise.then(() => { done = true }, () => { done = true })
  await new Promise(resolve => setImmediate(resolve))
  return done
}

t.test('Topics alone: an answer settles only the request of its topic and id', async t => {
  const { topics, sent, told } = fakeHost()
  const first = topics.subscribe('a', () => {})
  first.unsubscribe()
  const second = topics.subscribe('a', () => {})
  t.same(sent.map(f => JSON.parse(f)), [
    { type: 'subscribe', topic: 'a', id: 1 }, { type: 'unsubscribe', topic: 'a', id: 2 }, { type: 'subscribe', topic: 'a', id: 3 }
  ])
  topics.receive({ type: 'subscribed', topic: 'a', id: 1 })
  topics.receive({ type: 'unsubscribed', topic: 'a', id: 2 })
  topics.receive({ type: 'refused', of: 'subscribe', topic: 'a', code: 4003, reason: 'Forbidden', id: 1 })
  topics.receive({ type: 'unsubscribed', topic: 'a', code: 4003, reason: 'Forbidden' })
  t.notOk(await settled(second.ready), 'late answers to the dropped request settle nothing')
  t.same(told, [['refused', { of: 'subscribe', code: 4003, reason: 'Forbidden', failure: 'forbidden', id: 1, topic: 'a' }]],
    'the refusal is told; the end of a subscription not held yet is not')
  topics.receive({ type: 'subscribed', topic: 'a', id: 3 })
  await second.ready
  topics.receive({ type: 'subscribed', topic: 'b', id: 99 })
  topics.receive({ type: 'publication', topic: 'b', data: 1 })
  topics.receive({ type: 'publication', data: 1 })
  topics.receive({ type: 'pong' })
  t.equal(told.length, 1, 'an answer to a request never made, and a publication without a topic: nothing')

  const unknown = topics.subscribe('c', () => {})
  topics.receive({ type: 'refused', of: 'subscribe', topic: 'c', code: 4999, reason: 'Custom', id: 4 })
  await t.rejects(unknown.ready, { code: 4999, reason: 'Custom', kind: 'transient', retry: 'backoff', failure: undefined }, 'a code the table does not know: transient')
})

t.test('Topics alone: a callback that throws does not stop the others; the error is rethrown from a microtask', async t => {
  const { topics } = fakeHost()
  const seen: string[] = []
  topics.subscribe('a', (d) => { seen.push(`1:${String(d)}`) })
  topics.subscribe('a', () => { throw new Error('callback bug') })
  topics.subscribe('a', (d) => { seen.push(`3:${String(d)}`) })
  topics.receive({ type: 'subscribed', topic: 'a', id: 1 })
  const deferred: Array<() => void> = []
  const real = globalThis.queueMicrotask
  globalThis.queueMicrotask = (fn) => { deferred.push(fn) }
  try {
    topics.receive({ type: 'publication', topic: 'a', data: 'x' })
  } finally {
    globalThis.queueMicrotask = real
  }
  t.same(seen, ['1:x', '3:x'])
  t.equal(deferred.length, 1)
  t.throws(() => deferred[0](), { message: 'callback bug' })
})

t.test('Topics alone: a callback that closes the client stops the calls of the same publication', async t => {
  const { topics } = fakeHost()
  const seen: number[] = []
  topics.subscribe('a', () => { seen.push(1); topics.stop({ code: 1000, reason: '', kind: 'closed', retry: 'never' }) })
  topics.subscribe('a', () => { seen.push(2) })
  topics.receive({ type: 'subscribed', topic: 'a', id: 1 })
  topics.receive({ type: 'publication', topic: 'a', data: 'x' })
  t.same(seen, [1])
})
