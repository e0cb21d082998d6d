// Per-message policies (`wsAuth.messages`), as README.md "After the door" and PROTOCOL.md promise
// them: a refused message never reaches the handler, the client gets `refused` with the table's
// code and reason and the message's id, the socket stays open (or closes, with onRefused: 'close'),
// order is kept behind a check that awaits, and every refusal is logged, counted and audited.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import type { AuthAttempt, WsAuthRouteOptions } from '../lib/types.ts'
import { StringFinder } from '../lib/server/gate/frames.ts'
import { answer, buildApp, connect, deferred, logCapture, stillOpen } from './helpers/index.ts'

/** A route whose handler echoes what reached it, prefixed, so that a test sees what got through. */
function heard (app: FastifyInstance, path: string, wsAuth: WsAuthRouteOptions): void {
  app.get(path, { websocket: true, wsAuth }, (socket: WebSocket) => {
    socket.on('message', (data, isBinary) => socket.send(isBinary ? 'heard binary' : 'heard ' + data.toString()))
  })
}

/** Sends and resolves with the next message the client gets. */

const RESTAURANT: WsAuthRouteOptions = {
  roles: ['staff', 'manager'],
  messages: {
    'order:void': { roles: ['manager'] },
    'stats:get': { permissions: ['analytics.view'] },
    'table:assign': {
      authorize: (_request, _user, message) => {
        if (message?.table === 500) throw new Error('table store down')
        return message?.table === 404 ? 'not_found' : message?.table === 1
      }
    },
    'debug:dump': false,
    '*': true
  }
}

t.test('each policy: allowed messages reach the handler, refused ones get `refused` with code, reason and id', async t => {
  const logs = logCapture()
  const audited: AuthAttempt[] = []
  const { url, sign, app } = await buildApp(t, {
    fastify: { logger: { level: 'info', stream: logs.stream } },
    auth: { rolePermissions: { manager: ['analytics.view'] }, onAuthFailure: (attempt) => { audited.push(attempt) } },
    routes: (app) => heard(app, '/ws', RESTAURANT)
  })
  const staff = connect(url('/ws?token=' + sign({ sub: 'waiter', roles: ['staff'] })))
  await staff.message(1)
  t.same(await answer(staff, { type: 'order:void', order: 7, id: 1 }),
    { type: 'refused', of: 'order:void', code: 4003, reason: 'Forbidden', id: 1 }, 'a role policy')
  t.same(await answer(staff, { type: 'stats:get', id: 'q-2' }),
    { type: 'refused', of: 'stats:get', code: 4003, reason: 'Forbidden', id: 'q-2' }, 'a permission policy; a string id')
  t.same(await answer(staff, { type: 'table:assign', table: 2, id: { nested: true } }),
    { type: 'refused', of: 'table:assign', code: 4003, reason: 'Forbidden' }, 'authorize false; an id that is not a string or number is left out')
  t.same(await answer(staff, { type: 'table:assign', table: 404, id: 3 }),
    { type: 'refused', of: 'table:assign', code: 4004, reason: 'Not found', id: 3 }, 'authorize \'not_found\'')
  t.same(await answer(staff, { type: 'table:assign', table: 500, id: 4 }),
    { type: 'refused', of: 'table:assign', code: 1011, reason: 'Internal error', id: 4 }, 'authorize throwing')
  t.same(await answer(staff, { type: 'debug:dump', id: 5 }),
    { type: 'refused', of: 'debug:dump', code: 4003, reason: 'Forbidden', id: 5 }, 'false')
  t.equal(await answer(staff, '{"type":"table:assign","table":1}'), 'heard {"type":"table:assign","table":1}', 'authorize true')
  t.equal(await answer(staff, '{"type":"chat","text":"hi"}'), 'heard {"type":"chat","text":"hi"}', 'an unlisted type')
  t.equal(await answer(staff, 'not json'), 'heard not json', 'not JSON')
  t.ok(await stillOpen(staff), 'the socket stays open through every refusal')

  const manager = connect(url('/ws?token=' + sign({ sub: 'boss', roles: ['manager'] })))
  await manager.message(1)
  t.equal(await answer(manager, '{"type":"order:void","order":7}'), 'heard {"type":"order:void","order":7}', 'the role the policy names')
  t.equal(await answer(manager, '{"type":"stats:get"}'), 'heard {"type":"stats:get"}', 'a permission granted through rolePermissions')
  t.same(await answer(manager, { type: 'debug:dump' }), { type: 'refused', of: 'debug:dump', code: 4003, reason: 'Forbidden' }, 'false is never allowed')

  t.same(app.wsAuth.stats().refused, { 4003: 5, 4004: 1, 1011: 1 }, 'stats().refused by code')
  t.same(app.wsAuth.stats().failures, {}, 'refusals after the door are not handshake failures')
  t.same(audited.map(a => [a.phase, a.messageType, a.code, a.userId]), [
    ['message', 'order:void', 4003, 'waiter'], ['message', 'stats:get', 4003, 'waiter'], ['message', 'table:assign', 4003, 'waiter'],
    ['message', 'table:assign', 4004, 'waiter'], ['message', 'table:assign', 1011, 'waiter'], ['message', 'debug:dump', 4003, 'waiter'],
    ['message', 'debug:dump', 4003, 'boss']
  ], 'onAuthFailure sees each refusal, with phase: message')
  const refused = logs.records().filter(r => r.msg === 'websocket message refused')
  t.equal(refused.length, 6)
  t.match(refused[0], { level: 40, route: '/ws', userId: 'waiter', clientId: String, messageType: 'order:void', code: 4003, failure: 'forbidden', phase: 'message' })
  const failed = await logs.waitFor('websocket message check failed')
  t.match(failed, { level: 50, messageType: 'table:assign', code: 1011, err: { message: 'table store down' } }, 'a throw is logged as an error')
  t.notOk(logs.lines.some(line => line.includes('eyJ')), 'no token in any log line')
  staff.ws.close()
  manager.ws.close()
})

t.test('\'*\' governs every other frame: other types, text that is not JSON, binary; `of` is null without a type', async t => {
  let seen: unknown[] = []
  const { url, sign } = await buildApp(t, {
    routes: (app) => {
      heard(app, '/closed', { messages: { chat: true, '*': false } })
      heard(app, '/checked', { messages: { '*': { authorize: (_r, _u, message) => { seen.push(message); return message !== null } } } })
    }
  })
  const token = sign({ sub: 'u1' })
  const closed = connect(url('/closed?token=' + token))
  await closed.message(1)
  t.equal(await answer(closed, '{"type":"chat"}'), 'heard {"type":"chat"}', 'a listed type')
  t.same(await answer(closed, { type: 'other', id: 9 }), { type: 'refused', of: 'other', code: 4003, reason: 'Forbidden', id: 9 })
  t.same(await answer(closed, 'plain text'), { type: 'refused', of: null, code: 4003, reason: 'Forbidden' })
  t.same(await answer(closed, Buffer.from([1, 2, 3])), { type: 'refused', of: null, code: 4003, reason: 'Forbidden' }, 'binary')
  t.same(await answer(closed, { type: 42, id: 1 }), { type: 'refused', of: null, code: 4003, reason: 'Forbidden', id: 1 }, 'a type that is not a string')
  t.same(await answer(closed, '[1,2]'), { type: 'refused', of: null, code: 4003, reason: 'Forbidden' }, 'JSON that is not an object')

  const checked = connect(url('/checked?token=' + token))
  await checked.message(1)
  t.equal(await answer(checked, '{"type":"x","n":1}'), 'heard {"type":"x","n":1}')
  t.same(await answer(checked, Buffer.from('{"type":"x"}')), { type: 'refused', of: null, code: 4003, reason: 'Forbidden' })
  t.same(seen, [{ type: 'x', n: 1 }, null], 'authorize gets the parsed object, or null for a frame that is not a JSON object')
  seen = []
  closed.ws.close()
  checked.ws.close()
})

t.test('a type is read as JSON reads it: escapes, duplicate keys and look-alikes cannot smuggle a refused type', async t => {
  const { url, sign } = await buildApp(t, { routes: (app) => heard(app, '/ws', { messages: { 'debug:dump': false, 'a/b': false } }) })
  const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await client.message(1)
  const refused = (of: string) => ({ type: 'refused', of, code: 4003, reason: 'Forbidden' })
  t.same(await answer(client, '{"type":"debug\\u003adump"}'), refused('debug:dump'), 'a \\u escape')
  t.same(await answer(client, '{"type":"\\u0064ebug:dump"}'), refused('debug:dump'), 'an escaped first letter')
  t.same(await answer(client, '{"type":"a\\/b"}'), refused('a/b'), 'an escaped slash')
  t.same(await answer(client, '{"type":"chat","type":"debug:dump"}'), refused('debug:dump'), 'a duplicate key: the last one counts, as for JSON.parse')
  t.same(await answer(client, ' \n{ "type" : "debug:dump" }'), refused('debug:dump'), 'white space')
  t.equal(await answer(client, '{"type":"chat","note":"debug:dump"}'), 'heard {"type":"chat","note":"debug:dump"}', 'the name as another value')
  t.equal(await answer(client, '{"type":"chat","data":{"type":"debug:dump"}}'), 'heard {"type":"chat","data":{"type":"debug:dump"}}', 'a nested type')
  t.equal(await answer(client, '{"type":"debug:dumpster"}'), 'heard {"type":"debug:dumpster"}', 'a longer name')

  client.ws.close()
})

t.test('the search that spares most frames a parse: it finds the quoted names, and escapes that may spell them', async t => {
  const finder = new StringFinder(['debug:dump', 'ab'])
  const holds = (text: string) => finder.mayHold(Buffer.from(text))
  t.equal(holds('{"type":"debug:dump"}'), true)
  t.equal(holds('{"type":"ab"}'), true, 'the shortest name')
  t.equal(holds('"ab"'), true, 'at both ends of the frame')
  t.equal(holds('{"type":"chat","text":"debug:dum"}'), false)
  t.equal(holds('{"type":"abc"}'), false, 'a longer name is another name')
  t.equal(holds('{"type":"chat","t":"a\\nb \\"q\\""}'), false, 'escapes JSON.stringify writes itself')
  t.equal(holds('{"type":"chat","t":"\\\\u0064"}'), false, 'an escaped backslash before a u is plain text')
  t.equal(holds('{"type":"x\\u0064"}'), true, 'a \\u escape may spell any character')
  t.equal(holds('{"type":"a\\/b"}'), true, 'so may \\/')
  t.equal(holds('ends with a backslash \\'), false)
})

t.test('order is kept: messages behind a check that awaits wait for it, allowed or refused', async t => {
  // The n-th check answers with gates[n]; called[n] resolves when it starts.
  const gates = [deferred<boolean>(), deferred<boolean>()]
  const called = [deferred(), deferred()]
  let checks = 0
  const { url, sign } = await buildApp(t, {
    routes: (app) => heard(app, '/ws', {
      messages: { slow: { authorize: () => { called[checks].resolve(); return gates[checks++].promise } } }
    })
  })
  const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await client.message(1)
  client.send('{"type":"slow","n":1}')
  client.send('{"type":"chat","n":2}')
  client.send('{"type":"slow","n":3}')
  client.send('{"type":"chat","n":4}')
  await called[0].promise
  // The chat message behind it must not overtake: a frame sent after them all comes back only
  // once the checks have answered, and everything before it in order.
  client.send('{"type":"ping-through"}')
  gates[0].resolve(true)
  await called[1].promise
  await client.message(3)
  t.same(client.messages.slice(1), ['heard {"type":"slow","n":1}', 'heard {"type":"chat","n":2}'], 'up to the second slow one, which holds the rest')
  gates[1].resolve(false)
  await client.message(6)
  t.same(client.messages.slice(1), [
    'heard {"type":"slow","n":1}', 'heard {"type":"chat","n":2}',
    { type: 'refused', of: 'slow', code: 4003, reason: 'Forbidden' },
    'heard {"type":"chat","n":4}', 'heard {"type":"ping-through"}'
  ], 'in arrival order')
  client.ws.close()
})

t.test('messages waiting behind a check are bounded by maxPendingMessages: one more closes with 1008', async t => {
  const gate = deferred<boolean>()
  const { url, sign } = await buildApp(t, {
    auth: { maxPendingMessages: 5 },
    routes: (app) => heard(app, '/ws', { messages: { slow: { authorize: () => gate.promise } } })
  })
  const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await client.message(1)
  client.send('{"type":"slow"}')
  for (let i = 0; i < 6; i++) client.send('{"type":"chat"}')
  t.same(await client.closed, { code: 1008, reason: 'Policy violation' })
  gate.resolve(true)
})

t.test('onRefused: \'close\' closes the socket with the refusal\'s code and reason', async t => {
  const { url, sign, app } = await buildApp(t, {
    routes: (app) => {
      heard(app, '/forbidden', { messages: { 'debug:dump': false }, onRefused: 'close' })
      heard(app, '/missing', { messages: { find: { authorize: () => 'not_found' } }, onRefused: 'close' })
    }
  })
  const token = sign({ sub: 'u1' })
  const forbidden = connect(url('/forbidden?token=' + token))
  await forbidden.message(1)
  forbidden.send('{"type":"debug:dump"}')
  t.same(await forbidden.closed, { code: 4003, reason: 'Forbidden' })
  const missing = connect(url('/missing?token=' + token))
  await missing.message(1)
  missing.send('{"type":"find"}')
  t.same(await missing.closed, { code: 4004, reason: 'Not found' })
  t.equal(forbidden.messages.length + missing.messages.length, 2, 'no refused message, no echo: only connection_established')
  t.same(app.wsAuth.stats().refused, { 4003: 1, 4004: 1 })
  t.same(app.wsAuth.stats().ended, { 4003: 1, 4004: 1 }, 'and counted as sessions the plugin ended')
})

t.test('refusals follow the closeCodes remapping', async t => {
  const { url, sign } = await buildApp(t, {
    auth: { closeCodes: { forbidden: { code: 4403, reason: 'Not yours' } } },
    routes: (app) => heard(app, '/ws', { messages: { 'debug:dump': false } })
  })
  const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await client.message(1)
  t.same(await answer(client, { type: 'debug:dump', id: 1 }), { type: 'refused', of: 'debug:dump', code: 4403, reason: 'Not yours', id: 1 })
  client.ws.close()
})

t.test('the plugin\'s own messages are handled first: an in-band refresh and an app ping pass a \'*\': false route', async t => {
  const { url, sign } = await buildApp(t, {
    auth: { appPing: true },
    routes: (app) => heard(app, '/ws', { messages: { '*': false } })
  })
  const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await client.message(1)
  t.match(await answer(client, { type: 'ping' }), { type: 'pong' })
  t.match(await answer(client, { type: 'auth', token: sign({ sub: 'u1' }) }), { type: 'token_refreshed' })
  t.match(await answer(client, { type: 'anything' }), { type: 'refused', of: 'anything' })
  client.ws.close()
})

t.test('a policy judges the user of the moment: after a refresh with fewer roles, the message is refused', async t => {
  const { url, sign } = await buildApp(t, { routes: (app) => heard(app, '/ws', { messages: { 'order:void': { roles: ['manager'] } } }) })
  const client = connect(url('/ws?token=' + sign({ sub: 'u1', roles: ['manager'] })))
  await client.message(1)
  t.equal(await answer(client, '{"type":"order:void"}'), 'heard {"type":"order:void"}')
  t.match(await answer(client, { type: 'auth', token: sign({ sub: 'u1', roles: ['staff'] }) }), { type: 'token_refreshed' })
  t.match(await answer(client, { type: 'order:void' }), { type: 'refused', code: 4003 })
  client.ws.close()
})

t.test('messages held until the handler listens pass the gate when it does', async t => {
  const { url, sign } = await buildApp(t, {
    routes: (app) => {
      app.get('/ws', { websocket: true, wsAuth: { messages: { 'debug:dump': false } } }, async (socket) => {
        await new Promise(resolve => setTimeout(resolve, 50))
        socket.on('message', (data) => socket.send('heard ' + data.toString()))
      })
    }
  })
  const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await client.opened
  client.send('{"type":"debug:dump"}')
  client.send('{"type":"chat"}')
  await client.message(3)
  t.same(client.messages.slice(1), [{ type: 'refused', of: 'debug:dump', code: 4003, reason: 'Forbidden' }, 'heard {"type":"chat"}'])
  client.ws.close()
})

t.test('refusals are answered before the handler listens, and on a push route whose handler never does', async t => {
  const { url, sign } = await buildApp(t, {
    routes: (app) => {
      app.get('/push', { websocket: true, wsAuth: { messages: { '*': false } } }, (socket) => { socket.send('hello') })
      app.get('/late', { websocket: true, wsAuth: { messages: { 'debug:dump': false } } }, async (socket) => {
        socket.send('hello')
        await listening.promise
        socket.on('message', (data) => socket.send('heard ' + data.toString()))
      })
    }
  })
  const listening = deferred()
  const token = sign({ sub: 'u1' })
  const push = connect(url('/push?token=' + token))
  await push.message(2)
  t.same(await answer(push, { type: 'anything', id: 1 }), { type: 'refused', of: 'anything', code: 4003, reason: 'Forbidden', id: 1 })
  const late = connect(url('/late?token=' + token))
  await late.message(2)
  late.send('{"type":"chat","n":1}')
  t.same(await answer(late, { type: 'debug:dump', id: 2 }), { type: 'refused', of: 'debug:dump', code: 4003, reason: 'Forbidden', id: 2 },
    'answered while the handler does not listen yet')
  late.send('{"type":"chat","n":2}')
  listening.resolve()
  await late.message(5)
  t.same(late.messages.slice(3), ['heard {"type":"chat","n":1}', 'heard {"type":"chat","n":2}'], 'the allowed ones, in order, once it listens')
  push.ws.close()
  late.ws.close()
})

t.test('messages sent right behind the auth message pass the gate once the session opens, in order', async t => {
  const { url, sign } = await buildApp(t, {
    auth: { sources: ['message'] },
    routes: (app) => heard(app, '/ws', { messages: { 'debug:dump': false } })
  })
  const client = connect(url('/ws'))
  await client.opened
  client.send({ type: 'auth', token: sign({ sub: 'u1' }) })
  client.send('{"type":"chat","n":1}')
  client.send({ type: 'debug:dump', id: 1 })
  client.send('{"type":"chat","n":2}')
  await client.message(4)
  t.match(client.messages[0], { type: 'connection_established' })
  t.same(client.messages.slice(1), [
    'heard {"type":"chat","n":1}', { type: 'refused', of: 'debug:dump', code: 4003, reason: 'Forbidden', id: 1 }, 'heard {"type":"chat","n":2}'
  ])
  client.ws.close()
})

t.test('route options are checked at declaration, naming the route and the field', async t => {
  const cases: Array<[string, WsAuthRouteOptions, RegExp]> = [
    ['the auth message', { messages: { auth: false } }, /wsAuth\.messages\.auth names a message the plugin handles itself/],
    ['subscribe on a topics route', { topics: { 'a:{b}': true }, messages: { subscribe: false } }, /wsAuth\.messages\.subscribe names a message/],
    ['an unknown policy field', { messages: { x: { role: ['a'] } as never } }, /wsAuth\.messages\.x\.role is not a field of a policy/],
    ['a policy that is not an object', { messages: { x: 'yes' as never } }, /wsAuth\.messages\.x must be true, false or an object/],
    ['roles that are not strings', { messages: { x: { roles: [1] as never } } }, /wsAuth\.messages\.x\.roles must be an array of non-empty strings/],
    ['authorize that is not a function', { messages: { x: { authorize: true as never } } }, /wsAuth\.messages\.x\.authorize must be a function/],
    ['messages that is not an object', { messages: [] as never }, /wsAuth\.messages must be an object/],
    ['an empty type', { messages: { '': false } }, /wsAuth\.messages cannot list an empty message type/],
    ['onRefused alone', { onRefused: 'close' }, /wsAuth\.onRefused has no effect without wsAuth\.messages/],
    ['a bad onRefused', { messages: {}, onRefused: 'drop' as never }, /wsAuth\.onRefused must be "reply" or "close"/],
    ['maxTopics alone', { maxTopics: 5 }, /wsAuth\.maxTopics has no effect without wsAuth\.topics/]
  ]
  for (const [what, wsAuth, message] of cases) {
    await t.rejects(buildApp(t, { routes: (app) => heard(app, '/ws/:id', wsAuth) }), message, what)
  }
  await t.resolves(buildApp(t, { auth: { appPing: false }, routes: (app) => heard(app, '/ws', { messages: { ping: false } }) }),
    'ping is an app message without appPing')
})
