// Authorized topic subscriptions (`wsAuth.topics`), as README.md "After the door" and PROTOCOL.md
// promise them: subscribe/unsubscribe answered with the request's id, every refusal a row of the
// table, publications delivered once to each subscriber, subscriptions re-checked when the user
// changes, and the registry's publish / subscribe / unsubscribe / subscribers.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import type { AuthAttempt, Topic, WsAuthRouteOptions } from '../lib/types.ts'
import { answer, buildApp, connect, deferred, logCapture, serverSockets, stillOpen, type Client } from './helpers/index.ts'
import { manualClock } from './helpers/clock.ts'

const QUEUES: WsAuthRouteOptions = {
  topics: {
    'queue:{queueId}': { roles: ['staff'], authorize: (_request, user, topic) => topic.params.queueId !== 'secret' && (topic.params.queueId === 'gone' ? 'not_found' : true) },
    'queue:main': true,
    'restaurant:{rid}': { authorize: (request, _user, topic) => topic.params.rid === (request.params as { rid: string }).rid },
    'broken:{x}': { authorize: () => { throw new Error('acl store down') } }
  },
  maxTopics: 3
}

/** A topics route whose handler echoes what reaches it. */
function routes (app: FastifyInstance, wsAuth: WsAuthRouteOptions = QUEUES): void {
  app.get('/ws/:rid', { websocket: true, wsAuth }, (socket: WebSocket) => {
    socket.on('message', (data) => socket.send('heard ' + data.toString()))
  })
}

async function open (url: string): Promise<Client> {
  const client = connect(url)
  await client.message(1)
  return client
}

t.test('subscribe, publish, unsubscribe: answered with the id; publications reach subscribers once', async t => {
  const { url, sign, app } = await buildApp(t, { routes })
  const client = await open(url('/ws/r1?token=' + sign({ sub: 'u1', roles: ['staff'] })))
  t.same(await answer(client, { type: 'subscribe', topic: 'queue:42', id: 1 }), { type: 'subscribed', topic: 'queue:42', id: 1 })
  t.same(await answer(client, { type: 'subscribe', topic: 'queue:42', id: 2 }), { type: 'subscribed', topic: 'queue:42', id: 2 }, 'twice: answered again')
  t.same(await answer(client, { type: 'subscribe', topic: 'restaurant:r1' }), { type: 'subscribed', topic: 'restaurant:r1' }, 'no id: none in the answer')
  t.same(app.wsAuth.stats().subscriptions, 2)
  t.same(app.wsAuth.subscribers('queue:42'), [{ clientId: (client.messages[0] as { client_id: string }).client_id, userId: 'u1' }])
  t.equal(app.wsAuth.publish('queue:42', { order: 7 }), 1, 'publish returns the sockets reached')
  t.same(await client.message(5), { type: 'publication', topic: 'queue:42', data: { order: 7 } })
  t.equal(app.wsAuth.publish('queue:43', 'x'), 0, 'an exact topic name: no subscriber')
  t.same(await answer(client, { type: 'unsubscribe', topic: 'queue:42', id: 3 }), { type: 'unsubscribed', topic: 'queue:42', id: 3 })
  t.same(await answer(client, { type: 'unsubscribe', topic: 'queue:42', id: 4 }), { type: 'unsubscribed', topic: 'queue:42', id: 4 }, 'a topic not held: unsubscribed too')
  t.equal(app.wsAuth.publish('queue:42', 1), 0, 'no longer delivered')
  t.equal(await answer(client, 'after'), 'heard after', 'app messages still reach the handler')
  t.equal(client.messages.filter(m => (m as { type?: string }).type === 'publication').length, 1, 'delivered once')
  client.ws.close()
  await serverSockets(app).allClosed()
  t.equal(app.wsAuth.stats().subscriptions, 0, 'a closed socket leaves its topics')
  t.same(app.wsAuth.subscribers('restaurant:r1'), [])
})

t.test('every refusal of a subscribe is a row of the table, the socket stays open', async t => {
  const logs = logCapture()
  const audited: AuthAttempt[] = []
  const { url, sign, app } = await buildApp(t, {
    fastify: { logger: { level: 'warn', stream: logs.stream } },
    auth: { onAuthFailure: (a) => { audited.push(a) } },
    routes
  })
  const viewer = await open(url('/ws/r1?token=' + sign({ sub: 'v1', roles: ['viewer'] })))
  const refused = (topic: string | undefined, code: number, reason: string, id?: number, of = 'subscribe') =>
    ({ type: 'refused', of, ...(topic === undefined ? {} : { topic }), code, reason, ...(id === undefined ? {} : { id }) })
  t.same(await answer(viewer, { type: 'subscribe', topic: 'queue:42', id: 1 }), refused('queue:42', 4003, 'Forbidden', 1), 'a role the pattern needs')
  t.same(await answer(viewer, { type: 'subscribe', topic: 'restaurant:r2', id: 2 }), refused('restaurant:r2', 4003, 'Forbidden', 2), 'authorize false (the URL\'s restaurant only)')
  t.same(await answer(viewer, { type: 'subscribe', topic: 'nothing:here', id: 3 }), refused('nothing:here', 4004, 'Not found', 3), 'no pattern matches')
  t.same(await answer(viewer, { type: 'subscribe', topic: 'broken:1', id: 4 }), refused('broken:1', 1011, 'Internal error', 4), 'authorize throwing')
  t.same(await answer(viewer, { type: 'subscribe', id: 5 }), refused(undefined, 4004, 'Not found', 5), 'no topic')
  t.same(await answer(viewer, { type: 'subscribe', topic: 42 }), refused(undefined, 4004, 'Not found'), 'a topic that is not a string')
  t.same(await answer(viewer, { type: 'subscribe', topic: '' }), refused(undefined, 4004, 'Not found'), 'an empty topic')
  t.same(await answer(viewer, { type: 'subscribe', topic: 'x'.repeat(10_000), id: 6 }), refused(undefined, 4004, 'Not found', 6), 'a 10 KB topic: not echoed')
  t.same(await answer(viewer, { type: 'unsubscribe', id: 7 }), refused(undefined, 4004, 'Not found', 7, 'unsubscribe'), 'an unsubscribe without a topic')
  t.same(await answer(viewer, { type: 'subscribe', topic: 'queue:' }), refused('queue:', 4004, 'Not found'), 'an empty segment matches no {name}')

  const staff = await open(url('/ws/r1?token=' + sign({ sub: 's1', roles: ['staff'] })))
  t.same(await answer(staff, { type: 'subscribe', topic: 'queue:gone', id: 1 }), refused('queue:gone', 4004, 'Not found', 1), 'authorize \'not_found\'')
  t.same(await answer(staff, { type: 'subscribe', topic: 'queue:secret', id: 2 }), refused('queue:secret', 4003, 'Forbidden', 2))
  for (const topic of ['queue:1', 'queue:2', 'queue:3']) t.match(await answer(staff, { type: 'subscribe', topic }), { type: 'subscribed' })
  t.same(await answer(staff, { type: 'subscribe', topic: 'queue:4', id: 3 }), refused('queue:4', 4029, 'Too many subscriptions', 3), 'over maxTopics')
  t.match(await answer(staff, { type: 'subscribe', topic: 'queue:1' }), { type: 'subscribed' }, 'a topic held already is not one more')
  t.ok(await stillOpen(viewer))
  t.ok(await stillOpen(staff))
  t.same(app.wsAuth.stats().refused, { 4003: 3, 4004: 8, 1011: 1, 4029: 1 })
  t.same(audited.map(a => a.phase), Array(13).fill('subscribe'), 'onAuthFailure: phase subscribe')
  t.match(audited[0], { route: '/ws/:rid', userId: 'v1', messageType: 'subscribe', topic: 'queue:42', code: 4003, failure: 'forbidden' })
  t.match(await logs.waitFor('websocket subscription refused'), { level: 40, topic: 'queue:42', code: 4003, phase: 'subscribe' })
  t.match(await logs.waitFor('websocket subscription check failed'), { level: 50, topic: 'broken:1', err: { message: 'acl store down' } })
  viewer.ws.close()
  staff.ws.close()
})

t.test('a literal segment wins over a {name}; authorize sees the topic and its params', async t => {
  const seen: Topic[] = []
  const { url, sign } = await buildApp(t, {
    routes: (app) => routes(app, {
      topics: {
        'queue:{id}': { authorize: (_r, _u, topic) => { seen.push(topic); return true } },
        'queue:main': { roles: ['nobody'] },
        'a:{x}:b:{y}': { authorize: (_r, _u, topic) => { seen.push(topic); return true } }
      }
    })
  })
  const client = await open(url('/ws/r1?token=' + sign({ sub: 'u1' })))
  t.match(await answer(client, { type: 'subscribe', topic: 'queue:main' }), { type: 'refused', code: 4003 }, 'queue:main, not queue:{id}')
  t.match(await answer(client, { type: 'subscribe', topic: 'queue:7' }), { type: 'subscribed' })
  t.match(await answer(client, { type: 'subscribe', topic: 'a:1:b:2' }), { type: 'subscribed' })
  t.same(seen, [
    { name: 'queue:7', pattern: 'queue:{id}', params: { id: '7' } },
    { name: 'a:1:b:2', pattern: 'a:{x}:b:{y}', params: { x: '1', y: '2' } }
  ])
  client.ws.close()
})

t.test('subscribe requests are answered before the handler listens, and by a handler that never does', async t => {
  const { url, sign, app } = await buildApp(t, {
    routes: (app) => {
      app.get('/stream', { websocket: true, wsAuth: { topics: { 'feed:{id}': true } } }, () => {})
    }
  })
  const client = await open(url('/stream?token=' + sign({ sub: 'u1' })))
  t.match(await answer(client, { type: 'subscribe', topic: 'feed:1', id: 1 }), { type: 'subscribed', id: 1 })
  app.wsAuth.publish('feed:1', [1, 2])
  t.same(await client.message(3), { type: 'publication', topic: 'feed:1', data: [1, 2] })
  client.ws.close()
})

t.test('on a route without topics, subscribe messages are app messages', async t => {
  const { url, sign } = await buildApp(t, {
    routes: (app) => {
      app.get('/ws', { websocket: true }, (socket: WebSocket) => { socket.on('message', (data) => socket.send('heard ' + data.toString())) })
    }
  })
  const client = await open(url('/ws?token=' + sign({ sub: 'u1' })))
  t.equal(await answer(client, '{"type":"subscribe","topic":"a"}'), 'heard {"type":"subscribe","topic":"a"}')
  client.ws.close()
})

t.test('an async authorize keeps subscribe requests in order', async t => {
  const gate = deferred<boolean>()
  const { url, sign } = await buildApp(t, { routes: (app) => routes(app, { topics: { 'slow:{x}': { authorize: () => gate.promise } } }) })
  const client = await open(url('/ws/r1?token=' + sign({ sub: 'u1' })))
  client.send({ type: 'subscribe', topic: 'slow:1', id: 1 })
  client.send({ type: 'unsubscribe', topic: 'slow:1', id: 2 })
  client.send('after')
  gate.resolve(true)
  await client.message(4)
  t.same(client.messages.slice(1), [
    { type: 'subscribed', topic: 'slow:1', id: 1 }, { type: 'unsubscribed', topic: 'slow:1', id: 2 }, 'heard after'
  ], 'the unsubscribe waits for the subscribe, and so does the app message')
  client.ws.close()
})

t.test('re-checked when the user changes: a refresh with fewer roles ends the subscriptions it no longer allows', async t => {
  const { url, sign, app } = await buildApp(t, { routes })
  const client = await open(url('/ws/r1?token=' + sign({ sub: 'u1', roles: ['staff'] })))
  t.match(await answer(client, { type: 'subscribe', topic: 'queue:1' }), { type: 'subscribed' })
  t.match(await answer(client, { type: 'subscribe', topic: 'restaurant:r1' }), { type: 'subscribed' })
  client.send({ type: 'auth', token: sign({ sub: 'u1', roles: ['viewer'] }) })
  t.same(await client.messageWhere(m => (m as { type?: string }).type === 'unsubscribed'),
    { type: 'unsubscribed', topic: 'queue:1', code: 4003, reason: 'Forbidden' })
  t.match(await client.messageWhere(m => (m as { type?: string }).type === 'token_refreshed'), { type: 'token_refreshed' })
  t.same(app.wsAuth.subscribers('queue:1'), [], 'the subscription is gone')
  t.equal(app.wsAuth.subscribers('restaurant:r1').length, 1, 'the one still allowed stays')
  t.ok(await stillOpen(client), 'the socket stays open')
  client.ws.close()
})

t.test('re-checked at each revalidation with the user loadUser returns now', async t => {
  const time = manualClock(t)
  const roles = new Map([['u1', ['staff']]])
  const { url, sign, app } = await buildApp(t, {
    auth: { heartbeatInterval: false, revalidateInterval: 60_000, loadUser: (claims) => ({ id: claims.sub as string, roles: roles.get(claims.sub as string) ?? [] }) },
    routes
  })
  const client = await open(url('/ws/r1?token=' + sign({ sub: 'u1' })))
  t.match(await answer(client, { type: 'subscribe', topic: 'queue:1' }), { type: 'subscribed' })
  roles.set('u1', [])
  await time.tick(60_000)
  t.same(await client.message(3), { type: 'unsubscribed', topic: 'queue:1', code: 4003, reason: 'Forbidden' })
  t.equal(app.wsAuth.stats().subscriptions, 0)
  client.ws.close()
})

t.test('a re-check that throws keeps the subscription and logs it', async t => {
  const logs = logCapture()
  let fail = false
  const { url, sign, app } = await buildApp(t, {
    fastify: { logger: { level: 'error', stream: logs.stream } },
    routes: (app) => routes(app, { topics: { 'acl:{x}': { authorize: () => { if (fail) throw new Error('acl down'); return true } } } })
  })
  const client = await open(url('/ws/r1?token=' + sign({ sub: 'u1' })))
  t.match(await answer(client, { type: 'subscribe', topic: 'acl:1' }), { type: 'subscribed' })
  fail = true
  t.match(await answer(client, { type: 'auth', token: sign({ sub: 'u1' }) }), { type: 'token_refreshed' })
  t.match(await logs.waitFor('websocket subscription check failed; subscription kept'), { topic: 'acl:1', err: { message: 'acl down' } })
  t.equal(app.wsAuth.subscribers('acl:1').length, 1)
  client.ws.close()
})

t.test('registry: server-side subscribe and unsubscribe, unsubscribe({ userId }), subscribers', async t => {
  const sockets: WebSocket[] = []
  const { url, sign, app } = await buildApp(t, {
    routes: (app) => {
      app.get('/orders/:id', { websocket: true }, (socket, request) => {
        sockets.push(socket)
        app.wsAuth.subscribe(socket, 'order:' + (request.params as { id: string }).id)
      })
    }
  })
  const a = connect(url('/orders/7?token=' + sign({ sub: 'u1' })))
  const b = connect(url('/orders/7?token=' + sign({ sub: 'u2' })))
  t.same(await a.message(2), { type: 'subscribed', topic: 'order:7' }, 'the client is told, without an id')
  await b.message(2)
  t.equal(app.wsAuth.subscribe(sockets[0], 'order:7'), true, 'idempotent')
  t.same((await app.wsAuth.subscribers('order:7', { cluster: true })).map(s => s.userId).sort(), ['u1', 'u2'])
  t.match(await app.wsAuth.subscribers('order:7', { cluster: true }), [{ instanceId: String }, { instanceId: String }])
  t.equal(await app.wsAuth.publish('order:7', { status: 'cooking' }), 2)
  t.same(await a.message(3), { type: 'publication', topic: 'order:7', data: { status: 'cooking' } })
  t.equal(app.wsAuth.unsubscribe({ userId: 'u2' }, 'order:7'), 1, 'a user\'s subscriptions, ended')
  t.same(await b.message(4), { type: 'unsubscribed', topic: 'order:7', code: 4003, reason: 'Forbidden' })
  t.equal(app.wsAuth.unsubscribe(sockets[0], 'order:7'), true)
  t.same(await a.message(4), { type: 'unsubscribed', topic: 'order:7' }, 'a socket\'s subscription, ended by the app: no code')
  t.equal(app.wsAuth.unsubscribe(sockets[0], 'order:7'), false, 'not held any more')
  t.equal(app.wsAuth.unsubscribe({ userId: 'nobody' }, 'order:7'), 0)
  t.same(app.wsAuth.subscribers('order:7'), [])
  a.ws.close()
  await a.closed
  t.equal(app.wsAuth.subscribe(sockets[0], 'order:7'), false, 'a closed socket cannot subscribe')
  b.ws.close()
})

t.test('registry calls check their arguments', async t => {
  const { app } = await buildApp(t)
  t.throws(() => app.wsAuth.publish('', 1), { code: 'FST_WS_AUTH_INVALID_ARGUMENT', message: /publish: topic must be a non-empty string of at most 256 bytes/ })
  t.throws(() => app.wsAuth.publish('a'.repeat(257), 1), /publish: topic/)
  t.throws(() => app.wsAuth.publish('a', { n: 1n }), /publish: data cannot be encoded as JSON/)
  t.throws(() => app.wsAuth.subscribe({} as WebSocket, 'a'), /subscribe: socket must be a socket of a route protected by fastify-ws-auth/)
  t.throws(() => app.wsAuth.unsubscribe({} as never, 'a'), /unsubscribe takes a socket of a protected route, or \{ userId \}/)
  t.throws(() => app.wsAuth.unsubscribe({ userId: {} } as never, 'a'), /userId must be a string or a number/)
  t.throws(() => app.wsAuth.subscribers(7 as never), /subscribers: topic/)
  t.equal(app.wsAuth.publish('a', undefined), 0, 'undefined data is published as null')
})

t.test('1,000 subscribers receive one publication once each', async t => {
  const { url, sign, app } = await buildApp(t, { routes: (app) => routes(app, { topics: { 'all:{x}': true } }) })
  const token = sign({ sub: 'u1' })
  const clients = await Promise.all(Array.from({ length: 1000 }, () => open(url('/ws/r1?token=' + token))))
  for (const c of clients) c.send({ type: 'subscribe', topic: 'all:1' })
  await Promise.all(clients.map(c => c.message(2)))
  t.equal(app.wsAuth.stats().subscriptions, 1000)
  t.equal(app.wsAuth.publish('all:1', { n: 1 }), 1000)
  await Promise.all(clients.map(c => c.message(3)))
  // A second publication marks the end: nothing else came between.
  app.wsAuth.publish('all:1', { n: 2 })
  await Promise.all(clients.map(c => c.message(4)))
  t.ok(clients.every(c => c.messages.length === 4 && (c.messages[2] as { data: { n: number } }).data.n === 1), 'each got it once')
  for (const c of clients) c.ws.close()
  await serverSockets(app).allClosed()
})

t.test('1,000 subscribes in a burst: maxTopics answered, each with its own answer, and nothing else breaks', async t => {
  const { url, sign } = await buildApp(t, { routes: (app) => routes(app, { topics: { 'n:{x}': true } }) })
  const client = await open(url('/ws/r1?token=' + sign({ sub: 'u1' })))
  for (let i = 0; i < 1000; i++) client.send({ type: 'subscribe', topic: 'n:' + i, id: i })
  client.send('done')
  await client.messageWhere(m => m === 'heard done')
  const answers = client.messages.slice(1, -1) as Array<{ type: string, id: number, code?: number }>
  t.equal(answers.length, 1000)
  t.equal(answers.filter(a => a.type === 'subscribed').length, 100, 'the default maxTopics, 100')
  t.ok(answers.slice(100).every(a => a.type === 'refused' && a.code === 4029), 'the rest refused 4029')
  t.same(answers.map(a => a.id), Array.from({ length: 1000 }, (_, i) => i), 'in order')
  client.ws.close()
})

t.test('topic patterns are checked at declaration', async t => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['empty', {}, /wsAuth\.topics must be an object of topic pattern -> policy \(at least one\)/],
    ['an empty segment', { 'a::b': true }, /wsAuth\.topics\.a::b must be non-empty segments/],
    ['a brace in a literal', { 'a:b{c}': true }, /must be non-empty segments/],
    ['a parameter twice', { 'a:{x}:{x}': true }, /cannot name a parameter "x" twice/],
    ['__proto__', { 'a:{__proto__}': true }, /cannot name a parameter "__proto__"/],
    ['the same shape twice', { 'a:{x}': true, 'a:{y}': true }, /wsAuth\.topics\.a:\{y\} matches the same topics as another pattern/],
    ['a policy that is not an object', { 'a:{x}': 'yes' }, /wsAuth\.topics\.a:\{x\} must be true, false or an object/],
    ['maxTopics 0', undefined, /wsAuth\.maxTopics must be a positive whole number/]
  ]
  for (const [what, topics, message] of cases) {
    const wsAuth = (topics === undefined ? { topics: { 'a:{x}': true }, maxTopics: 0 } : { topics }) as WsAuthRouteOptions
    await t.rejects(buildApp(t, { routes: (app) => routes(app, wsAuth) }), message, what)
  }
})

t.test('an adapter written before topics (no subscribers method): subscribers({ cluster: true }) rejects, naming what is missing', async t => {
  // A custom adapter of the 0.1 contract: every method but `subscribers`, each doing nothing.
  const adapter = {
    start: async () => {},
    close: async () => {},
    acquire: async () => ({ ok: true }),
    release: () => {},
    publish: async () => 0,
    revoke: async () => 0,
    connections: async () => [],
    stats: async () => ({ active: 0, authenticating: 0, users: 0, attempts: 0, established: 0, failures: {}, ended: {}, revocations: 0, refused: {}, subscriptions: 0, instances: {} })
  }
  const { app } = await buildApp(t, { auth: { adapter } })
  await t.rejects(app.wsAuth.subscribers('a:1', { cluster: true }), { code: 'FST_WS_AUTH_INVALID_ARGUMENT', message: /needs an adapter with a subscribers\(\) method/ })
  t.same(app.wsAuth.subscribers('a:1'), [], 'this instance\'s own still answer')
})
