import { once } from 'node:events'
import t from 'tap'
import type { WebSocket } from 'ws'
import { authMessage } from '../lib/protocol/messages.ts'
import { buildApp, connect, type Client } from './helpers/index.ts'

function deferred<T = void> () {
  let resolve!: (value: T) => void
  const promise = new Promise<T>(_resolve => { resolve = _resolve })
  return { promise, resolve }
}

/**
 * Resolves once the server has read every frame the client sent before this call: the server
 * answers a ping only after it has processed the frames in front of it.
 */
async function flushed (c: Client): Promise<void> {
  const pong = once(c.ws, 'pong')
  c.ws.ping()
  await pong
}

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
    let runs = 0
    const { url, sign } = await buildApp(t, {
      routes (app) {
        app.get('/ws', { websocket: true }, (socket) => {
          runs++
          socket.on('message', () => { runs++ })
        })
      }
    })
    const c = connect(url('/ws'))
    await c.opened
    c.send(first)
    c.send({ type: 'auth', token: sign({ sub: 'u1' }) })
    c.send('after')
    t.same(await c.closed, { code: 4001, reason: 'Invalid auth message' }, `first message ${first}`)
    t.equal(runs, 0, 'the handler never ran')
    t.same(c.messages, [], 'nothing was sent to the client')
  }
})

t.test('messages behind a failing auth message never reach the handler', async t => {
  let runs = 0
  const { url } = await buildApp(t, {
    routes (app) {
      app.get('/ws', { websocket: true }, () => { runs++ })
    }
  })
  const c = connect(url('/ws'))
  await c.opened
  c.send({ type: 'auth', token: 'not.a.jwt' })
  for (const m of texts(10)) c.send(m)
  t.same(await c.closed, { code: 4001, reason: 'Invalid token' })
  t.equal(runs, 0, 'the handler never ran')
  t.same(c.messages, [])
})

t.test('messages sent while verification is in progress are held, then delivered in order', async t => {
  const verifying = deferred()
  const verdict = deferred<Record<string, unknown>>()
  const rec = recorder(3)
  let runs = 0
  const { url } = await buildApp(t, {
    auth: {
      verify: () => {
        verifying.resolve()
        return verdict.promise
      }
    },
    routes (app) {
      app.get('/ws', { websocket: true }, (socket) => {
        runs++
        rec.listen(socket)
        socket.on('message', (data) => socket.send('echo:' + data.toString()))
      })
    }
  })
  const c = connect(url('/ws'))
  await c.opened
  c.send({ type: 'auth', token: 'opaque-token' })
  for (const m of ['a', 'b', 'c']) c.send(m)
  await verifying.promise
  await flushed(c)

  t.equal(runs, 0, 'the handler has not run while verification is pending')
  t.same(rec.received, [], 'no message reached a handler')
  t.same(c.messages, [], 'the client got nothing yet')

  verdict.resolve({ sub: 'u1' })
  await rec.done
  t.same(rec.received, [['a', false], ['b', false], ['c', false]], 'held messages delivered in order')
  await c.message(4)
  t.match(c.messages[0], { type: 'connection_established', user: { id: 'u1' } })
  t.same(c.messages.slice(1), ['echo:a', 'echo:b', 'echo:c'])
  c.ws.close()
  await c.closed
})

t.test('held messages over maxPendingMessages during verification -> 1008 Policy violation, handler never runs', async t => {
  const verifying = deferred()
  let runs = 0
  const { url } = await buildApp(t, {
    auth: {
      maxPendingMessages: 5,
      verify: () => {
        verifying.resolve()
        return new Promise(() => {})
      }
    },
    routes (app) {
      app.get('/ws', { websocket: true }, () => { runs++ })
    }
  })
  const c = connect(url('/ws'))
  await c.opened
  c.send({ type: 'auth', token: 'opaque-token' })
  for (const m of texts(6)) c.send(m)
  t.same(await c.closed, { code: 1008, reason: 'Policy violation' })
  await verifying.promise
  t.equal(runs, 0)
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
    let runs = 0
    const { url, sign } = await buildApp(t, {
      routes (app) {
        app.get('/ws', { websocket: true }, async (socket) => {
          runs++
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
    await flushed(c)
    t.equal(runs, 1, 'the handler is running (and not listening) when every message has arrived')
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
    await flushed(c)
    gate.resolve()
    await rec.done
    t.same(rec.received.map(([m]) => m), sent)
    c.ws.close()
    await c.closed
  })

  t.test('query token, handler awaiting a 50 ms timer before listening', async t => {
    const rec = recorder(25)
    const { url, sign } = await buildApp(t, {
      routes (app) {
        app.get('/ws', { websocket: true }, async (socket) => {
          await new Promise(resolve => setTimeout(resolve, 50))
          rec.listen(socket)
        })
      }
    })
    const c = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await c.message(1)
    const sent = texts(25)
    for (const m of sent) c.send(m)
    await rec.done
    t.same(rec.received.map(([m]) => m), sent)
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
  await flushed(c)
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
  const viaMessage = connect(url('/ws'))
  viaMessage.opened.then(() => viaMessage.send({ type: 'auth', token }), () => {})
  const clients: Record<string, Client> = {
    query: connect(url('/ws?token=' + token)),
    header: connect(url('/ws'), undefined, { headers: { authorization: 'Bearer ' + token } }),
    protocol: connect(url('/ws'), ['bearer.' + token, 'bearer']),
    message: viaMessage
  }
  for (const [source, c] of Object.entries(clients)) {
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
