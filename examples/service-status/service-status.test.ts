import { createServer } from 'node:net'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import Fastify, { type FastifyReply } from 'fastify'
import jwt from '@fastify/jwt'
import { barrier, connect, connectWith, listen, waitFor } from '../helpers.ts'
import { build } from './app.ts'
import { buildAuthService } from './auth-service.ts'
import { StatusBoard } from './status.ts'

const SECRET = 'the-secret-the-feed-shares-with-its-auth-service'
const OTHER_SECRET = 'a-secret-nobody-here-trusts-at-all-0123456789'

/** The auth service, then the feed pointed at it (or at `authUrl`), both on 127.0.0.1:0. */
async function start (t: Test, opts: { authUrl?: string, timeoutMs?: number } = {}) {
  const auth = await buildAuthService({ secret: SECRET })
  let validations = 0
  auth.app.addHook('onResponse', async () => { validations++ })
  const authServed = await listen(t, auth.app)
  const board = new StatusBoard()
  const app = await build({
    secret: SECRET,
    authServiceUrl: opts.authUrl ?? authServed.http('/'),
    authServiceTimeoutMs: opts.timeoutMs ?? 2000,
    board
  })
  const served = await listen(t, app)
  const open = (token?: string) => token === undefined ? connect(served.ws('/ws/mcp-status')) : connectWith(served.ws('/ws/mcp-status'), 'query', token)
  return { auth, board, app, served, open, validations: () => validations }
}

/** A URL where nothing listens: a port that was free a moment ago. */
async function deadUrl (): Promise<string> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return `http://127.0.0.1:${port}`
}

/** A stand-in auth service whose /auth/validate answers with `answer`. */
async function stubAuthService (t: Test, answer: (reply: FastifyReply) => unknown): Promise<string> {
  // Closes even the connection of a request the feed gave up on (else it lingers in keep-alive).
  const stub = Fastify({ forceCloseConnections: true })
  stub.post('/auth/validate', async (_request, reply) => answer(reply))
  return (await listen(t, stub)).http('/')
}

t.test('a developer gets connection_established, initial_status, then status changes', async t => {
  const { auth, board, open, validations } = await start(t)
  const dev = open(auth.issueToken('u-dev'))
  const dba = open(auth.issueToken('u-dba'))
  t.match(await waitFor(dev, 'connection_established'), { user: { id: 'u-dev', username: 'dev', roles: ['developer'] }, expires_at: String })
  const initial = await waitFor(dev, 'initial_status')
  t.same((initial.data as { servers: Array<{ name: string, status: string }> }).servers.map(s => [s.name, s.status]),
    [['filesystem', 'up'], ['github', 'up'], ['postgres', 'up'], ['slack', 'up']])
  t.equal(dev.messages.indexOf(initial), 1, 'right after connection_established')
  await waitFor(dba, 'initial_status')

  board.set('github', 'down')
  board.set('github', 'down') // no change, no message
  board.set('postgres', 'degraded')
  for (const c of [dev, dba]) {
    t.match(await waitFor(c, 'status_change'), { data: { server: 'github', previous: 'up', status: 'down', timestamp: String } })
    t.match(await waitFor(c, 'status_change', 2), { data: { server: 'postgres', previous: 'up', status: 'degraded' } })
  }
  await barrier(dev)
  t.equal(dev.messages.length, 4, 'one message per change')
  t.equal(validations(), 2, 'each handshake asked the auth service')
  dev.ws.close()
  dba.ws.close()
})

t.test('a Node client can send the token in the Authorization header', async t => {
  const { auth, served } = await start(t)
  const c = connectWith(served.ws('/ws/mcp-status'), 'header', auth.issueToken('u-admin'))
  t.match(await waitFor(c, 'connection_established'), { user: { id: 'u-admin' } })
  await waitFor(c, 'initial_status')
  c.ws.close()
})

t.test('with the auth service up, every refusal is 1008 with its reason', async t => {
  const { app, auth, open, validations } = await start(t)
  const foreign = Fastify()
  await foreign.register(jwt, { secret: OTHER_SECRET })
  await foreign.ready()
  t.same(await open().closed, { code: 1008, reason: 'Authentication required' })
  t.same(await open('not-a-token').closed, { code: 1008, reason: 'Invalid token' })
  t.same(await open(foreign.jwt.sign({ sub: 'u-admin', roles: ['admin'] })).closed, { code: 1008, reason: 'Invalid token' })
  t.same(await open(auth.issueToken('u-dev', -10)).closed, { code: 1008, reason: 'Token expired' })
  t.same(await open(auth.issueToken('u-support')).closed, { code: 1008, reason: 'Insufficient permissions' })
  t.equal(validations(), 4, 'every presented token went to the auth service')
  t.same(app.wsAuth.stats().failures, { 1008: 5 })
  await foreign.close()
})

t.test('the auth service has the last word: a token it refuses is not verified locally', async t => {
  const { app, auth, open } = await start(t)
  // Both tokens carry a valid signature of the shared secret.
  t.same(await open(auth.issueToken('u-gone')).closed, { code: 1008, reason: 'User not found or inactive' }, 'deactivated account')
  t.same(await open(app.jwt.sign({ sub: 'u-unknown', roles: ['admin'] })).closed, { code: 1008, reason: 'Invalid token' }, 'account unknown to the service')
})

t.test('with the auth service unreachable, tokens are verified locally', async t => {
  const { auth, open } = await start(t, { authUrl: await deadUrl() })
  const dev = open(auth.issueToken('u-dev'))
  await waitFor(dev, 'initial_status')
  t.same(await open(auth.issueToken('u-dev', -10)).closed, { code: 1008, reason: 'Token expired' })
  t.same(await open('not-a-token').closed, { code: 1008, reason: 'Invalid token' })
  t.same(await open(auth.issueToken('u-support')).closed, { code: 1008, reason: 'Insufficient permissions' }, 'roles from the token')
  const gone = open(auth.issueToken('u-gone'))
  await waitFor(gone, 'initial_status')
  t.pass('degraded mode: a deactivated account gets in until its token expires (the token cannot tell)')
  dev.ws.close()
  gone.ws.close()
})

t.test('a slow auth service times out and the token is verified locally', async t => {
  let release!: () => void
  const stalled = new Promise<void>((resolve) => { release = resolve })
  let asked = 0
  const authUrl = await stubAuthService(t, async () => { asked++; await stalled; return { valid: false } })
  const { auth, open } = await start(t, { authUrl, timeoutMs: 150 })
  const c = open(auth.issueToken('u-dba'))
  t.match(await waitFor(c, 'initial_status'), { type: 'initial_status' })
  t.equal(asked, 1, 'the service was asked first')
  release()
  c.ws.close()
})

t.test('an auth service answering 5xx counts as down', async t => {
  const authUrl = await stubAuthService(t, (reply) => reply.code(503).send({ error: 'maintenance' }))
  const { auth, open } = await start(t, { authUrl })
  const c = open(auth.issueToken('u-admin'))
  await waitFor(c, 'initial_status')
  t.same(await open('not-a-token').closed, { code: 1008, reason: 'Invalid token' })
  c.ws.close()
})

t.test('an unexpected answer is an internal error (1008 "Authentication failed"), and the feed keeps serving', async t => {
  let broken = true
  const authUrl = await stubAuthService(t, (reply) => broken
    ? reply.code(400).send({ error: 'bad request' })
    : { valid: true, user: { id: 'u-dev', username: 'dev', roles: ['developer'], active: true }, exp: null })
  const { auth, open } = await start(t, { authUrl })
  t.same(await open(auth.issueToken('u-dev')).closed, { code: 1008, reason: 'Authentication failed' })
  broken = false
  const c = open(auth.issueToken('u-dev'))
  t.match(await waitFor(c, 'connection_established'), { expires_at: null })
  c.ws.close()
})
