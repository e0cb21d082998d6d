import t from 'tap'
import type { WebSocket } from 'ws'
import { authMessage } from '../lib/protocol/messages.ts'
import { barrier, buildApp, connect, connectWith, deferred, spyRoute, type Client, type RouteSpy } from './helpers/index.ts'

/** A route handler's view of the messages it received, resolving `done` at the n-th. */
function recorder (n: number) {
  const received: Array<[string, boolean]> = []
  const done = deferred()
  return {
    received,
    done: done.promise,
    listen (socket: WebSocket) {
      socket.on('message', (data, isBinary) => {
        received.push([data.toString(), isBinary])
        if (received.length === n) done.resolve()
      })
    }
  }
}

const texts = (n: number, prefix = 'm') => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

t.test('first-message auth: a message before the auth message -> 4001 Invalid auth message, handler never runs', async t => {
  for (const first of ['hello', JSON.stringify({ type: 'subscribe', channel: 'x' })]) {
    let spy!: RouteSpy
    const { url, sign } = await buildApp(t, { routes (app) { spy = spyRoute(app, '/ws') } })
    const c = connect(url('/ws'))
    await c.opened
    c.send(first)
    c.send({ type: 'auth', token: sign({ sub: 'u1' }) })
    c.send('after')
    t.same(await c.closed, { code: 4001, reason: 'Invalid auth message' }, `first message ${first}`)
    t.equal(spy.calls, 0, 'the handler never ran')
    t.same(c.messages, [], 'nothing was sent to the client (the handler echoes what it gets)')
  }
})

t.test('messages behind a failing auth message never reach the handler', async t => {
  let spy!: RouteSpy
  const { url } = await buildApp(t, { routes (app) { spy = spyRoute(app, '/ws') } })
  const c = connectWith(url('/ws'), 'message', 'not.a.jwt')
  c.ws.once('open', () => { for (const m of texts(10)) c.send(m) })
  t.same(await c.closed, { code: 4001, reason: 'Invalid token' })
  t.equal(spy.calls, 0, 'the handler never ran')
  t.same(c.messages, [])
})

t.test('messages sent while verification is in progress are held, then delivered in order', async t => {
  const verifying = deferred()
  const verdict = deferred<Record<string, unknown>>()
  let spy!: RouteSpy
  const { url } = await buildApp(t, {
    auth: {
      verify: () => {
        verifying.resolve()
        return verdict.promise
      }
    },
    routes (app) { spy = spyRoute(app, '/ws') }
  })
  const c = connectWith(url('/ws'), 'message', 'opaque-token')
  c.ws.once('open', () => { for (const m of ['a', 'b', 'c']) c.send(m) })
  await verifying.promise
  await barrier(c)

  t.equal(spy.calls, 0, 'the handler has not run while verification is pending')
  t.same(c.messages, [], 'the client got nothing yet')

  verdict.resolve({ sub: 'u1' })
  await c.message(4)
  t.equal(spy.calls, 1)
  t.match(c.messages[0], { type: 'connection_established', user: { id: 'u1' } })
  t.same(c.messages.slice(1), ['a', 'b', 'c'], 'held messages delivered in order (the handler echoes them)')
  c.ws.close()
  await c.closed
})

t.test('held messages over maxPendingMessages during verification -> 1008 Policy violation, handler never runs', async t => {
  const verifying = deferred()
  let spy!: RouteSpy
  const { url } = await buildApp(t, {
    auth: {
      maxPendingMessages: 5,
      verify: () => {
        verifying.resolve()
        return new Promise(() => {})
      }
    },
    routes (app) { spy = spyRoute(app, '/ws') }
  })
  const c = connectWith(url('/ws'), 'message', 'opaque-token')
  c.ws.once('open', () => { for (const m of texts(6)) c.send(m) })
  t.same(await c.closed, { code: 1008, reason: 'Policy violation' })
  await verifying.promise
  t.equal(spy.calls, 0)
  t.same(c.messages, [])
})

t.test('50 messages sent right behind the auth message all reach the handler, in order', async t => {
  const rec = recorder(50)
  const { url, sign } = await buildApp(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => rec.listen(socket))
    }
  })
  const c = connect(url('/ws'))
  await c.opened
  const sent = texts(50)
  c.send({ type: 'auth', token: sign({ sub: 'u1' }) })
  // Every tenth one binary: the gate keeps the binary flag too.
  sent.forEach((m, i) => c.ws.send(i % 10 === 9 ? Buffer.from(m) : m))
  await rec.done
  t.same(rec.received, sent.map((m, i) => [m, i % 10 === 9]))
  t.match(await c.message(1), { type: 'connection_established' })
  c.ws.close()
  await c.closed
})

t.test('an async handler that listens late still receives every message, in order', async t => {
  t.test('message auth: 50 messages right behind the auth message', async t => {
    const gate = deferred()
    const rec = recorder(50)
    let running = false
    const { url, sign } = await buildApp(t, {
      routes (app) {
        app.get('/ws', { websocket: true }, async (socket) => {
          running = true
          await gate.promise
          rec.listen(socket)
        })
      }
    })
    const c = connect(url('/ws'))
    await c.opened
    const sent = texts(50)
    c.send({ type: 'auth', token: sign({ sub: 'u1' }) })
    for (const m of sent) c.send(m)
    await barrier(c)
    t.ok(running, 'the handler is running when every message has arrived')
    t.same(rec.received, [], 'and not listening yet')
    gate.resolve()
    await rec.done
    t.same(rec.received.map(([m]) => m), sent)
    c.ws.close()
    await c.closed
  })

  t.test('query token: 25 messages sent back-to-back after connection_established', async t => {
    const gate = deferred()
    const rec = recorder(25)
    const { url, sign } = await buildApp(t, {
      routes (app) {
        app.get('/ws', { websocket: true }, async (socket) => {
          await gate.promise
          rec.listen(socket)
        })
      }
    })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    t.match(await c.message(1), { type: 'connection_established' })
    const sent = texts(25)
    for (const m of sent) c.send(m)
    await barrier(c)
    gate.resolve()
    await rec.done
    t.same(rec.received.map(([m]) => m), sent)
    c.ws.close()
    await c.closed
  })

  t.test('query token: messages on both sides of the moment the handler starts listening, in order', async t => {
    const gate = deferred()
    const rec = recorder(50)
    const { url, sign } = await buildApp(t, {
      routes (app) {
        app.get('/ws', { websocket: true }, async (socket) => {
          await gate.promise
          rec.listen(socket)
        })
      }
    })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    const held = texts(25, 'held')
    const live = texts(25, 'live')
    for (const m of held) c.send(m)
    await barrier(c)
    // Released now: the handler listens at the next turn, while the rest are on their way.
    gate.resolve()
    for (const m of live) c.send(m)
    await rec.done
    t.same(rec.received.map(([m]) => m), [...held, ...live])
    c.ws.close()
    await c.closed
  })
})

t.test('a handler that never listens: the hold buffer overflows -> 1008 Policy violation', async t => {
  const { url, sign } = await buildApp(t, {
    auth: { maxPendingMessages: 5 },
    routes (app) {
      app.get('/ws', { websocket: true }, () => {})
    }
  })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  for (const m of texts(6)) c.send(m)
  t.same(await c.closed, { code: 1008, reason: 'Policy violation' })
})

t.test('a handler that switched to binaryType "fragments" and never listens: held bytes still count -> 1008 Policy violation', async t => {
  const { url, sign } = await buildApp(t, {
    auth: { maxPendingMessages: 100, maxPendingBytes: 1024 },
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => { socket.binaryType = 'fragments' })
    }
  })
  const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await c.message(1)
  c.ws.send(Buffer.alloc(600), { binary: true })
  await barrier(c)
  t.equal(c.ws.readyState, c.ws.OPEN, '600 bytes held: under the limit')
  c.ws.send(Buffer.alloc(600), { binary: true })
  t.same(await c.closed, { code: 1008, reason: 'Policy violation' }, '1200 bytes held: over maxPendingBytes')
})

t.test('connection_established arrives before anything the handler sends on connect', async t => {
  const { url, sign } = await buildApp(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => {
        socket.send('hello from the handler')
        socket.send(JSON.stringify({ type: 'snapshot', items: [] }))
      })
    }
  })
  const token = sign({ sub: 'u1' })
  const clients: Array<[string, Client]> = (['query', 'header', 'protocol', 'message'] as const)
    .map(source => [source, connectWith(url('/ws'), source, token)])
  for (const [source, c] of clients) {
    await c.message(3)
    t.match(c.messages[0], { type: 'connection_established', user: { id: 'u1' } }, `${source}: established first`)
    t.same(c.messages.slice(1), ['hello from the handler', { type: 'snapshot', items: [] }], `${source}: then the handler's messages`)
    c.ws.close()
    await c.closed
  }
})

t.test('the auth message built by authMessage (what the client library sends) opens a session', async t => {
  const { url, sign } = await buildApp(t, { auth: { sources: ['message'] } })
  const token = sign({ sub: 'u1' })
  t.same(JSON.parse(authMessage(token)), { type: 'auth', token })
  const c = connect(url('/ws'))
  await c.opened
  c.send(authMessage(token))
  t.match(await c.message(1), { type: 'connection_established', user: { id: 'u1' } })
  c.send('after')
  t.equal(await c.message(2), 'after')
  c.ws.close()
  await c.closed
})
