import t from 'tap'
import WebSocket from 'ws'
import {
  ClientError, WsAuthError, backoffDelay, closeCodes, createClient, handshake, kindForAdvice, mergeCloseCodes,
  parseControl, rowForClose, rowForStatus
} from '../../lib/client/index.ts'
import type { ClientOptions } from '../../lib/client/index.ts'
import { setLongTimeout } from '../../lib/client/backoff.ts'
import { MAX_DELAY } from '../../lib/protocol/clock.ts'
import { Emitter } from '../../lib/client/emitter.ts'

const backoff = { initialDelay: 500, maxDelay: 30_000, factor: 2, jitter: false, maxAttempts: Infinity }

t.test('backoffDelay grows by factor up to maxDelay', async t => {
  t.same([0, 1, 2, 3, 6, 7, 20].map(step => backoffDelay(step, backoff)), [500, 1000, 2000, 4000, 30_000, 30_000, 30_000])
})

t.test('backoffDelay with full jitter stays between 0 and the ceiling', async t => {
  const jitter = { ...backoff, jitter: true }
  t.equal(backoffDelay(2, jitter, () => 0), 0)
  t.equal(backoffDelay(2, jitter, () => 0.5), 1000)
  t.equal(backoffDelay(2, jitter, () => 0.999999), 1999)
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3, jitter)
    t.ok(d >= 0 && d < 4000 && Number.isInteger(d), `${d} in [0, 4000)`)
  }
})

t.test('setLongTimeout splits delays past 2^31-1 ms', async t => {
  const armed: number[] = []
  let fire: () => void = () => {}
  let cleared: unknown
  const timers = {
    after: (ms: number, fn: () => void) => {
      armed.push(ms)
      fire = fn
      const handle = armed.length
      return () => { cleared = handle }
    }
  }
  let fired = false
  const cancel = setLongTimeout(() => { fired = true }, MAX_DELAY * 2 + 5, timers)
  t.same(armed, [MAX_DELAY])
  fire()
  fire()
  t.same(armed, [MAX_DELAY, MAX_DELAY, 5])
  t.notOk(fired)
  cancel()
  t.equal(cleared, 3, 'cancels the timer armed last')
  fire()
  t.ok(fired)
  setLongTimeout(() => {}, -10, timers)
  t.equal(armed.at(-1), 0, 'a past deadline fires at once')
})

t.test('handshake carries the token per transport', async t => {
  t.same(handshake({ url: 'ws://h/ws', token: 'a.b.c', transport: 'protocol', protocols: ['graphql-ws'] }),
    { url: 'ws://h/ws', protocols: ['bearer.a.b.c', 'bearer', 'graphql-ws'], authMessage: null })
  t.same(handshake({ url: 'ws://h/ws', token: 'a.b.c', transport: 'protocol', protocolPrefix: 'jwt' }).protocols, ['jwt.a.b.c', 'jwt'])
  t.same(handshake({ url: 'ws://h/ws', token: 'a.b.c', transport: 'message' }),
    { url: 'ws://h/ws', protocols: [], authMessage: '{"type":"auth","token":"a.b.c"}' })
  t.same(handshake({ url: 'ws://h/ws?room=1', token: 'a.b+c', transport: 'query' }),
    { url: 'ws://h/ws?room=1&token=a.b%2Bc', protocols: [], authMessage: null })
  t.equal(handshake({ url: 'ws://h/ws?access=old', token: 't', transport: 'query', queryParam: 'access' }).url, 'ws://h/ws?access=t')
})

t.test('parseControl picks out the four control messages only', async t => {
  t.same(parseControl('{"type":"connection_established","client_id":"c"}'), { type: 'connection_established', client_id: 'c' })
  t.same(parseControl(' {"expires_at":null,"type":"token_refreshed"}'), { expires_at: null, type: 'token_refreshed' })
  t.same(parseControl('{"type":"token_expiring","expires_at":"x"}')?.type, 'token_expiring')
  t.same(parseControl('{"type":"pong","timestamp":"x"}')?.type, 'pong')
  for (const app of ['{"type":"chat","text":"hi"}', '{"type":"auth","token":"t"}', '["type"]', '{"type": broken', 'type', '',
    '{"kind":"pong"}', '{"type":42}', 'null']) {
    t.equal(parseControl(app), undefined, app)
  }
  t.equal(parseControl(new Uint8Array([123])), undefined, 'binary is never control')
})

t.test('rowForClose matches code and reason, then code alone', async t => {
  t.equal(rowForClose(4001, 'Token expired', closeCodes)?.failure, 'token_expired')
  t.equal(rowForClose(4001, 'Token revoked', closeCodes)?.failure, 'token_revoked')
  t.equal(rowForClose(4001, 'something else', closeCodes)?.failure, 'no_token')
  t.equal(rowForClose(4003, 'Forbidden', closeCodes)?.retry, 'never')
  t.equal(rowForClose(1000, '', closeCodes)?.retry, 'done')
  t.equal(rowForClose(4999, '', closeCodes), undefined)
  const remapped = mergeCloseCodes({ forbidden: { code: 1008, reason: 'Policy violation: forbidden' } })
  t.equal(rowForClose(1008, 'Policy violation: forbidden', remapped)?.failure, 'forbidden')
  t.equal(rowForClose(4003, 'Forbidden', remapped), undefined, 'the remapped code is no longer known')
})

t.test('rowForStatus prefers the failure named by the body', async t => {
  t.equal(rowForStatus(401, undefined, closeCodes)?.failure, 'no_token')
  t.equal(rowForStatus(401, 'user_not_found', closeCodes)?.retry, 'never')
  t.equal(rowForStatus(401, 'forbidden', closeCodes)?.failure, 'no_token', 'a failure without that status is ignored')
  t.equal(rowForStatus(403, 'forbidden', closeCodes)?.code, 4003)
  t.equal(rowForStatus(404, undefined, closeCodes)?.code, 4004)
  t.equal(rowForStatus(429, undefined, closeCodes)?.retry, 'backoff')
  t.equal(rowForStatus(500, undefined, closeCodes)?.retry, 'backoff')
  t.equal(rowForStatus(502, undefined, closeCodes), undefined)
})

t.test('every retry advice of the table has a kind', async t => {
  for (const [name, row] of Object.entries(closeCodes)) {
    t.ok(kindForAdvice[row.retry], `${name}: ${row.retry} -> ${kindForAdvice[row.retry]}`)
  }
})

t.test('options are validated at creation, naming the option', async t => {
  const base: ClientOptions = { url: 'ws://127.0.0.1:1/ws', token: 't', WebSocket }
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ url: 'ftp://x/ws' }, /option "url" must use ws:, wss:, http: or https:/],
    [{ url: 'not a url' }, /option "url" must be an absolute URL/],
    [{ url: 'ws://h/ws#x' }, /option "url" must not have a #fragment/],
    [{ url: 42 }, /option "url" must be a string or a URL, got 42/],
    [{ token: 42 }, /option "token" must be a string or a function/],
    [{ transport: 'header' }, /option "transport" must be one of "protocol", "message", "query", got "header"/],
    [{ protocols: ['a b'] }, /option "protocols" must be an array of subprotocol names/],
    [{ reconnect: { factor: 0.5 } }, /option "reconnect.factor" must be a number >= 1, got 0.5/],
    [{ reconnect: { initialDelay: -1 } }, /option "reconnect.initialDelay" must be a number >= 0/],
    [{ reconnect: { initialDelay: 100, maxDelay: 10 } }, /option "reconnect.maxDelay" must be >= reconnect.initialDelay/],
    [{ reconnect: { maxAttempts: 1.5 } }, /option "reconnect.maxAttempts" must be a whole number >= 0/],
    [{ reconnect: { jitter: 'yes' } }, /option "reconnect.jitter" must be a boolean/],
    [{ reconnect: { stableAfter: -5 } }, /option "reconnect.stableAfter" must be a number >= 0/],
    [{ reconnect: { delay: 1 } }, /option "reconnect.delay" is not an option of reconnect/],
    [{ reconnect: 5 }, /option "reconnect" must be an object or false/],
    [{ queue: -1 }, /option "queue" must be a whole number >= 0/],
    [{ refresh: 1 }, /option "refresh" must be a boolean/],
    [{ closeCodes: { nope: {} } }, /option "closeCodes.nope" is not a failure class/],
    [{ closeCodes: { forbidden: { code: 1006 } } }, /option "closeCodes.forbidden.code" is 1006, which cannot be sent/],
    [{ protocolPrefix: 'a.b c' }, /option "protocolPrefix" must be a non-empty name/],
    [{ queryParam: '' }, /option "queryParam" must be a non-empty string/],
    [{ WebSocket: 'ws' }, /option "WebSocket" must be a WebSocket constructor/],
    [{ reconect: {} }, /option "reconect" is not an option of the client/]
  ]
  for (const [override, message] of bad) {
    t.throws(() => createClient({ ...base, ...override } as ClientOptions),
      { name: 'ClientError', code: 'FST_WS_AUTH_CLIENT_INVALID_OPTION', message }, JSON.stringify(override))
  }
  t.throws(() => createClient({ url: 'ws://h/ws', token: 't' }), { code: 'FST_WS_AUTH_CLIENT_NO_WEBSOCKET', message: /pass one/ },
    'Node 20 has no global WebSocket')
  const options = { ...base, reconnect: { initialDelay: 1 } }
  const frozen = JSON.stringify(options)
  createClient(options).close()
  t.equal(JSON.stringify(options), frozen, 'the caller\'s options are not changed')
})

t.test('close() and send() reject misuse', async t => {
  const client = createClient({ url: 'ws://127.0.0.1:1/ws', token: 't', WebSocket })
  t.throws(() => client.close(1006), { code: 'FST_WS_AUTH_CLIENT_INVALID_CLOSE', message: /close\(1006\): the code must be 1000 or 3000-4999/ })
  t.throws(() => client.close(1000, 'é'.repeat(62)), { code: 'FST_WS_AUTH_CLIENT_INVALID_CLOSE', message: /at most 123 bytes/ })
  t.throws(() => client.send(undefined), { code: 'FST_WS_AUTH_CLIENT_INVALID_MESSAGE' })
  t.throws(() => client.on('erorr' as 'error', () => {}), { code: 'FST_WS_AUTH_CLIENT_UNKNOWN_EVENT', message: /unknown event "erorr"/ })
  client.close()
  t.equal(client.state, 'closed')
  t.throws(() => client.send('x'), { code: 'FST_WS_AUTH_CLIENT_CLOSED', message: /send\(\) after the client closed/ })
  client.close()
})

t.test('emitter: order, off, and a throwing listener does not stop the others', async t => {
  const emitter = new Emitter<{ a: number }>(['a'])
  const seen: string[] = []
  const offFirst = emitter.on('a', (n) => { seen.push(`1:${n}`) })
  emitter.on('a', () => { throw new Error('listener bug') })
  emitter.on('a', (n) => { seen.push(`3:${n}`) })
  const deferred: Array<() => void> = []
  const real = globalThis.queueMicrotask
  globalThis.queueMicrotask = (fn) => { deferred.push(fn) }
  try {
    emitter.emit('a', 1)
    offFirst()
    emitter.emit('a', 2)
  } finally {
    globalThis.queueMicrotask = real
  }
  t.same(seen, ['1:1', '3:1', '3:2'])
  t.equal(deferred.length, 2)
  t.throws(() => deferred[0](), { message: 'listener bug' }, 'rethrown from a microtask, where the platform reports it')
})

t.test('WsAuthError carries the row facts', async t => {
  const err = new WsAuthError('m', { code: 4003, kind: 'refused', reason: 'Forbidden', retry: 'never', failure: 'forbidden', status: 403 })
  t.match(err, { name: 'WsAuthError', message: 'm', code: 4003, kind: 'refused', reason: 'Forbidden', retry: 'never', failure: 'forbidden', status: 403 })
  t.ok(err instanceof Error)
  t.notOk('failure' in new WsAuthError('m', { code: null, kind: 'token', reason: '', retry: 'never' }))
  t.ok(new ClientError('FST_WS_AUTH_CLIENT_CLOSED', 'x').message.startsWith('fastify-ws-auth client: '))
})
