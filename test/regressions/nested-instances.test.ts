// Finding 3: with the plugin registered at the root and again in a child scope with stricter
// options, the parent's verdict won on the child's routes (and the child logged a refusal that
// did not happen). The innermost instance governs its routes; the outer one does not run there.
import t from 'tap'
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import type { AddressInfo } from 'node:net'
import wsAuth from '../../lib/index.ts'
import { SECRET, connect, logCapture, refusal } from '../helpers/index.ts'

async function nestedApp (t: { teardown (fn: () => unknown): void }) {
  const logs = logCapture()
  const app = Fastify({ logger: { level: 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  await app.register(jwt, { secret: SECRET })
  await app.register(wsAuth)
  app.get('/outer', { websocket: true }, (socket) => { socket.send('outer') })
  await app.register(async (child) => {
    await child.register(wsAuth, {
      allowedOrigins: ['https://app.example'],
      loadUser: (claims) => claims.sub === 'blocked' ? null : { id: claims.sub as string }
    })
    child.get('/inner', { websocket: true }, (socket) => { socket.send('inner') })
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const sign = (sub: string) => (app as unknown as { jwt: { sign: (p: object) => string } }).jwt.sign({ sub })
  return { app, logs, sign, url: (path: string) => `ws://127.0.0.1:${port}${path}` }
}

t.test('the child\'s allowedOrigins governs its routes', async (t) => {
  const { url, sign } = await nestedApp(t)
  const foreign = connect(url('/inner?token=' + sign('u1')), undefined, { origin: 'https://evil.example' })
  t.same(await refusal(foreign), { code: 4003, reason: 'Forbidden' })
  const own = connect(url('/inner?token=' + sign('u1')), undefined, { origin: 'https://app.example' })
  t.equal((await own.message(1) as { type: string }).type, 'connection_established')
  t.equal(await own.message(2), 'inner')
  own.ws.close()
})

t.test('the child\'s loadUser governs its routes', async (t) => {
  const { url, sign, logs } = await nestedApp(t)
  const blocked = connect(url('/inner?token=' + sign('blocked')), undefined, { origin: 'https://app.example' })
  t.same(await refusal(blocked), { code: 4002, reason: 'User not found or inactive' })
  const failures = logs.records().filter(r => r.msg === 'websocket authentication failed')
  t.equal(failures.length, 1, 'one refusal logged, by the instance that refused')
  t.equal(logs.records().filter(r => r.msg === 'websocket authenticated').length, 0, 'and no success logged')
})

t.test('the outer instance still governs its own routes', async (t) => {
  const { url, sign, app } = await nestedApp(t)
  const outer = connect(url('/outer?token=' + sign('blocked')), undefined, { origin: 'https://evil.example' })
  t.equal((await outer.message(1) as { type: string }).type, 'connection_established')
  t.equal(app.wsAuth.stats().established, 1)
  outer.ws.close()
})
