import t from 'tap'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { barrier, connect, connectWith, WAIT_MS, type Client } from '../helpers/index.ts'
import { closeCodes } from '../../lib/protocol/close-codes.ts'
import { MessageType } from '../../lib/protocol/messages.ts'
import { redisProxy, startRedis, type RedisServer } from './server.ts'
import { bounded, cluster, inspector, instance, outcome, prefix, stillOpen } from './helpers.ts'

/*
 * Promises of docs/cluster.md and the close-code table that only a cluster can show: what travels
 * through Redis, what a hanging Redis or a frozen instance costs, and where a refusal happens
 * with `reject: 'http'`.
 */

const tokenRevoked = closeCodes.token_revoked
const tryAgainLater = closeCodes.try_again_later
const tooMany = closeCodes.too_many_connections
const LIMITS_REFUSED = 'refused with 1013'

/** `/ws/a` and `/ws/b` as in helpers.ts, and `/ws/http`, whose refusals are HTTP answers. */
function routes (app: FastifyInstance): void {
  for (const path of ['/ws/a', '/ws/b']) app.get(path, { websocket: true }, (socket) => { socket.on('message', () => {}) })
  app.get('/ws/http', { websocket: true, wsAuth: { reject: 'http' } }, (socket) => { socket.on('message', () => {}) })
}

/** A refused upgrade's HTTP answer, body included (the `ws` client drops the body); rejects if upgraded. */
function httpRefusal (url: string): Promise<{ status: number, body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') }
    })
    req.on('upgrade', (_res, socket) => {
      socket.destroy()
      reject(new Error(`${url}: upgraded, not refused over HTTP`))
    })
    req.on('response', (res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => { text += chunk.toString() })
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }))
    })
    req.on('error', reject)
    req.end()
  })
}

interface Teardown { teardown (fn: () => unknown): void }

/** Every command Redis runs, as `redis-cli monitor` prints it; stopped at teardown. */
async function monitor (t: Teardown, redis: RedisServer): Promise<{ text: () => string, upTo: (marker: string) => Promise<void> }> {
  const proc = spawn('redis-cli', ['-p', String(redis.port), 'monitor'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { proc.kill() })
  let text = ''
  const waiters = new Set<() => void>()
  proc.stdout.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1')
    for (const w of [...waiters]) w()
  })
  const upTo = (marker: string) => new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-cli monitor: ${marker} not seen within ${WAIT_MS} ms`)), WAIT_MS)
    const check = () => {
      if (!text.includes(marker)) return
      waiters.delete(check)
      clearTimeout(timer)
      resolve()
    }
    waiters.add(check)
    check()
  })
  await upTo('OK')
  return { text: () => text, upTo }
}

t.test('Redis never sees a token, nor any 16 characters of one: commands, pub/sub messages, keys', async t => {
  const redis = await startRedis(t)
  const seen = await monitor(t, redis)
  // A pattern subscriber on every channel. PUBLISH counts it as a receiver that never answers, so
  // fan-outs here end at requestTimeout (kept short) with the instances' answers.
  const spy = new Redis(redis.url)
  t.teardown(() => spy.disconnect())
  let messages = ''
  const spied = new Set<() => void>()
  spy.on('pmessage', (_pattern: string, channel: string, message: string) => {
    messages += `${channel} ${message}\n`
    for (const w of [...spied]) w()
  })
  /** Resolves once a message carrying `text` came through the pattern subscriber. */
  const relayedUpTo = (text: string) => bounded(new Promise<void>(resolve => {
    const check = () => { if (messages.includes(text)) { spied.delete(check); resolve() } }
    spied.add(check)
    check()
  }), `${text} through the pattern subscriber`)
  await spy.psubscribe('*')

  const [a, b] = await cluster(t, redis.url, 2, { auth: { maxConnectionsPerUser: 5 }, redis: { requestTimeout: 300 }, routes })
  const iat = Math.floor(Date.now() / 1000)
  const tokens = {
    query: a.sign({ sub: 'u1', jti: 'jti-query', roles: ['staff'] }),
    header: b.sign({ sub: 'u1', jti: 'jti-header' }),
    protocol: a.sign({ sub: 'u2', jti: 'jti-protocol' }),
    message: b.sign({ sub: 'u3', iat: iat - 60 }),
    refresh: b.sign({ sub: 'u2', jti: 'jti-refresh' }),
    http: a.sign({ sub: 'u4', jti: 'jti-http' })
  }
  const clients: Client[] = [
    connectWith(a.url('/ws/a'), 'query', tokens.query),
    connectWith(b.url('/ws/b'), 'header', tokens.header),
    connectWith(b.url('/ws/a'), 'protocol', tokens.protocol),
    connectWith(a.url('/ws/a'), 'message', tokens.message)
  ]
  t.same(await Promise.all(clients.map(outcome)), ['established', 'established', 'established', 'established'])
  const viaHttp = connectWith(b.url('/ws/http'), 'query', tokens.http)
  t.equal(await outcome(viaHttp), 'established')
  clients[2].send({ type: MessageType.Auth, token: tokens.refresh })
  t.match(await clients[2].message(2), { type: MessageType.TokenRefreshed }, 'an in-band refresh')

  // Each call is followed by its effect on a client, not by its count: the counts wait for the
  // pattern subscriber, which never answers, and so end at requestTimeout whatever arrived.
  const clientId = (c: Client) => (c.messages[0] as { client_id: string }).client_id
  await a.app.wsAuth.sendToUser('u2', 'sentinel-send')
  await clients[2].messageWhere(m => m === 'sentinel-send')
  await b.app.wsAuth.sendToUser('u1', Buffer.from([1, 2, 3]))
  await clients[0].messageWhere(m => Buffer.isBuffer(m))
  await b.app.wsAuth.broadcast('sentinel-broadcast', { roles: ['staff'] })
  await clients[0].messageWhere(m => m === 'sentinel-broadcast')
  await a.app.wsAuth.connections(undefined, { cluster: true })
  await b.app.wsAuth.stats({ cluster: true })
  await relayedUpTo(clientId(clients[1]))
  await a.app.wsAuth.revoke({ jti: 'jti-header' })
  t.same(await clients[1].closed, { code: tokenRevoked.code, reason: tokenRevoked.reason }, 'revoked by jti on the other instance')
  await b.app.wsAuth.revoke({ userId: 'u3', issuedBefore: new Date((iat - 30) * 1000) })
  t.same(await clients[3].closed, { code: tokenRevoked.code, reason: tokenRevoked.reason }, 'revoked by user on the other instance')
  t.equal(await outcome(connectWith(a.url('/ws/a'), 'query', tokens.header)), `${tokenRevoked.code} ${tokenRevoked.reason}`)
  await a.app.wsAuth.disconnectUser('u4')
  t.equal((await viaHttp.closed).code, tokenRevoked.code)
  await b.app.wsAuth.disconnectUser('u1', { code: 4000, reason: 'sentinel-disconnect' })
  t.same(await clients[0].closed, { code: 4000, reason: 'sentinel-disconnect' })
  await a.app.close()

  // Everything Redis ran and relayed so far is in once a marker published last has come through.
  await inspector(t, redis.url).publish('zz-last', 'sentinel-end')
  await relayedUpTo('zz-last sentinel-end')
  await seen.upTo('"zz-last"')
  const monitored = seen.text()
  const relayed = messages

  // The capture sees what it should: without this, an empty capture would pass.
  for (const expected of ['sentinel-send', 'sentinel-broadcast', 'sentinel-disconnect', 'jti-header', '"evalsha"', '"publish"']) {
    t.ok(monitored.includes(expected), `the monitor saw ${expected}`)
  }
  for (const expected of ['sentinel-send', 'sentinel-broadcast', 'jti-header', 'ws-auth:replies:']) {
    t.ok(relayed.includes(expected), `the pattern subscriber saw ${expected}`)
  }

  for (const [source, token] of Object.entries(tokens)) {
    const slices: string[] = []
    for (let i = 0; i + 16 <= token.length; i++) slices.push(token.slice(i, i + 16))
    const [, , signature] = token.split('.')
    t.notOk(monitored.includes(signature) || relayed.includes(signature), `${source}: no signature in Redis traffic`)
    t.same(slices.filter(s => monitored.includes(s)), [], `${source}: no 16 characters of the token in any command`)
    t.same(slices.filter(s => relayed.includes(s)), [], `${source}: none in any pub/sub message`)
  }
  for (const c of clients) c.ws.close()
})

t.test('a Redis that hangs, \'fail-closed\': a limited user\'s new connection gets 1013 once requestTimeout has passed, with reject: \'http\' too', async t => {
  const redis = await startRedis(t)
  const app = await instance(t, redis.url, prefix(), {
    auth: { maxConnectionsPerUser: 2 },
    redis: { onRedisError: 'fail-closed', requestTimeout: 500 },
    routes
  })
  t.equal(await outcome(connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))), 'established')
  redis.pause()
  t.teardown(() => redis.resume())

  const started = Date.now()
  const refused = connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' })))
  t.same(await refused.closed, { code: tryAgainLater.code, reason: tryAgainLater.reason })
  const waited = Date.now() - started
  // A floor only: the slot request fails once Date.now() is requestTimeout past its send.
  t.ok(waited >= 500, `refused after waiting ${waited} ms for Redis (requestTimeout 500)`)
  t.match(await app.logs.waitFor(LIMITS_REFUSED), { level: 40, onRedisError: 'fail-closed' }, 'the refusal is logged, as a warning')

  // reject: 'http' refuses before the upgrade only what this instance knows then; the cluster's
  // slot is taken once the socket is open (docs/live-sessions.md), so with Redis out of reach
  // the refusal is try_again_later after the upgrade: its close code, not its HTTP status.
  const viaHttp = connect(app.url('/ws/http?token=' + app.sign({ sub: 'u2' })))
  t.equal(await viaHttp.refusedStatus, undefined, 'upgraded: no HTTP answer')
  t.same(await viaHttp.closed, { code: tryAgainLater.code, reason: tryAgainLater.reason })
  t.equal(app.logged(LIMITS_REFUSED).length, 1, 'logged once for the outage')
  t.match(app.app.wsAuth.stats().failures, { [tryAgainLater.code]: 2 })
})

t.test('an instance that stops answering costs each fan-out one requestTimeout, calls in flight side by side', async t => {
  const namespace = prefix()
  const redis = await startRedis(t)
  const requestTimeout = 1000
  const options = { redis: { requestTimeout } }
  const a = await instance(t, redis.url, namespace, options)
  // b talks to Redis through a proxy: held, b looks frozen (a SIGSTOPped process): its connections
  // stay open, so PUBLISH still counts it as a receiver, and nothing it would answer arrives.
  const proxy = await redisProxy(t, redis)
  const b = await instance(t, redis.url, namespace, { redis: { ...options.redis, url: proxy.url } })
  const c = await instance(t, redis.url, namespace, options)
  const clients = [a, b, c].map(app => connect(app.url('/ws/a?token=' + app.sign({ sub: 'u1' }))))
  t.same(await Promise.all(clients.map(outcome)), ['established', 'established', 'established'])
  t.equal(await a.app.wsAuth.sendToUser('u1', 'warm'), 3, 'every instance answers')

  proxy.hold()
  const started = Date.now()
  const settled: string[] = []
  const track = <T>(name: string, p: T | Promise<T>) => Promise.resolve(p).then(value => { settled.push(name); return value })
  // Each call arms its own requestTimeout timer as it is made; this one, of the same length, is
  // armed after them all, and Node fires timers of one length in the order they were armed.
  const calls = {
    sendToUser: track('sendToUser', a.app.wsAuth.sendToUser('u1', 'during')),
    broadcast: track('broadcast', a.app.wsAuth.broadcast('all')),
    disconnectUser: track('disconnectUser', a.app.wsAuth.disconnectUser('nobody')),
    connections: track('connections', a.app.wsAuth.connections('u1', { cluster: true })),
    stats: track('stats', a.app.wsAuth.stats({ cluster: true }))
  }
  const reference = new Promise<void>(resolve => setTimeout(() => { settled.push('reference'); resolve() }, requestTimeout))
  t.equal(await calls.sendToUser, 2, 'a and c: the frozen instance is missing from the count')
  t.equal(await calls.broadcast, 2)
  t.equal(await calls.disconnectUser, 0)
  t.equal((await calls.connections).length, 2)
  t.same(Object.keys((await calls.stats).instances).length, 2)
  const waited = Date.now() - started
  await reference
  t.ok(waited >= requestTimeout, `the calls waited ${waited} ms for the frozen instance (requestTimeout ${requestTimeout})`)
  t.same(settled, ['sendToUser', 'broadcast', 'disconnectUser', 'connections', 'stats', 'reference'],
    'each call ended at its own requestTimeout, side by side: none waited for another, nor longer than its timeout')
  t.same(await clients[2].message(4).then(() => clients[2].messages.slice(1)), ['warm', 'during', 'all'], 'c got both')
  // Whatever b sent its socket has arrived once the socket answered a ping (only b's Redis is held).
  await barrier(clients[1])
  t.same(clients[1].messages.slice(1), ['warm'], 'the frozen instance delivered nothing')

  proxy.release()
  // Once it runs again, b works through what it was sent; its late answers are dropped.
  t.equal(await clients[1].message(4), 'all')
  t.equal(await a.app.wsAuth.sendToUser('u1', 'after'), 3, 'the next fan-out counts every instance again, late answers not mixed in')
  t.same(await clients[1].message(5).then(() => clients[1].messages.slice(1)), ['warm', 'during', 'all', 'after'])
})

t.test('cluster and reject: \'http\': a user at the limit through another instance is refused with 4029 after the upgrade', async t => {
  const redis = await startRedis(t)
  const [a, b] = await cluster(t, redis.url, 2, { auth: { maxConnectionsPerUser: 2 }, routes })
  const onB = [0, 1].map(() => connect(b.url('/ws/http?token=' + b.sign({ sub: 'u1' }))))
  t.same(await Promise.all(onB.map(outcome)), ['established', 'established'])

  // Before the upgrade, a knows only its own sessions of u1 (none): the cluster-wide slot is taken
  // by one Redis script once the socket is open, so the refusal can only come then, as a close.
  const elsewhere = connect(a.url('/ws/http?token=' + a.sign({ sub: 'u1' })))
  t.equal(await elsewhere.refusedStatus, undefined, 'upgraded: no HTTP answer')
  t.same(await elsewhere.closed, { code: tooMany.code, reason: tooMany.reason })
  t.match(a.app.wsAuth.stats().failures, { [tooMany.code]: 1 })

  // Where this instance's own sessions reach the limit, it knows before the upgrade: HTTP.
  const here = connect(b.url('/ws/http?token=' + b.sign({ sub: 'u1' })))
  t.equal(await here.refusedStatus, tooMany.status, 'on the instance holding both: HTTP 429 before the upgrade')
  t.ok(await stillOpen(onB[0]))
})

t.test('reject: \'http\' in a cluster: a token revoked on another instance gets the table\'s HTTP status (401, token_revoked)', async t => {
  const redis = await startRedis(t)
  const [a, b] = await cluster(t, redis.url, 2, { routes })
  const token = a.sign({ sub: 'u1', jti: 'gone' })
  t.equal(await a.app.wsAuth.revoke({ jti: 'gone' }), 0)
  const answer = await httpRefusal(b.httpUrl('/ws/http?token=' + token))
  t.equal(answer.status, tokenRevoked.status)
  t.match(answer.body, { statusCode: tokenRevoked.status, message: tokenRevoked.reason, failure: 'token_revoked' },
    'token_revoked, not another 401 (an invalid token gets the same status)')
  const fine = connect(b.url('/ws/http?token=' + a.sign({ sub: 'u1', jti: 'kept' })))
  t.equal(await outcome(fine), 'established', 'another token of the user is let in')
  fine.ws.close()
})
