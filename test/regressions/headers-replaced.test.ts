// Finding 1 (high): an app hook that replaces `request.headers` made @fastify/jwt verify the
// Authorization header's token while the plugin took exp, jti and iat from the unverified token
// of another source. The token the facts come from must be exactly the token that was verified.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp, connect, refusal, spyRoute, type TestApp } from '../helpers/index.ts'
import { hmacToken, nowSeconds } from '../hardening/helpers.ts'

const FOREIGN_KEY = 'a-key-nobody-configured-that-is-long-enough'

/** A forged token: the claims an attacker wants, signed with a key the server does not know. */
function forged (payload: object): string {
  return hmacToken({ alg: 'HS256', typ: 'JWT' }, payload, FOREIGN_KEY)
}

async function appWithHeaderCopy (t: Test): Promise<TestApp> {
  return buildApp(t, {
    routes: (app: FastifyInstance) => {
      // What type providers and header-adding hooks do: Fastify keeps the copy and merges it over raw.
      app.addHook('onRequest', async (request) => {
        request.headers = { ...request.headers, 'x-request-source': 'edge' }
      })
      spyRoute(app, '/ws')
    }
  })
}
t.test('a forged query token with a revoked but signed Authorization token is refused', async (t) => {
  const server = await appWithHeaderCopy(t)
  const revoked = server.sign({ sub: 'u1', jti: 'j-revoked' }, { expiresIn: '1h' })
  server.app.wsAuth.revoke({ jti: 'j-revoked' })
  const client = connect(server.url('/ws?token=' + forged({ sub: 'u1' })), undefined, { headers: { authorization: 'Bearer ' + revoked } })
  t.same(await refusal(client), { code: 4001, reason: 'Invalid token' })
  t.same(server.app.wsAuth.stats().established, 0)
})

t.test('a forged query token with a valid Authorization token does not lend its expiry', async (t) => {
  const server = await appWithHeaderCopy(t)
  const valid = server.sign({ sub: 'u1' }, { expiresIn: '1h' })
  const client = connect(server.url('/ws?token=' + forged({ sub: 'u1', exp: nowSeconds() + 10 * 365 * 86400 })), undefined, { headers: { authorization: 'Bearer ' + valid } })
  t.same(await refusal(client), { code: 4001, reason: 'Invalid token' })
})

t.test('an in-band refresh with a forged token is refused, whatever the handshake headers carry', async (t) => {
  const server = await appWithHeaderCopy(t)
  const valid = server.sign({ sub: 'u1' }, { expiresIn: '1h' })
  const client = connect(server.url('/ws'), undefined, { headers: { authorization: 'Bearer ' + valid } })
  const established = await client.message(1) as { type: string, expires_at: string }
  t.equal(established.type, 'connection_established')
  client.send({ type: 'auth', token: forged({ sub: 'u1', exp: 2_100_000_000 }) })
  t.same(await refusal(client, 2), { code: 4001, reason: 'Invalid token' })
  t.equal(client.messages.length, 1, 'no token_refreshed was sent')
})

t.test('the token verified is the token read, on a route whose headers were copied', async (t) => {
  const server = await appWithHeaderCopy(t)
  const valid = server.sign({ sub: 'u1' }, { expiresIn: '1h' })
  const client = connect(server.url('/ws?token=' + valid))
  const established = await client.message(1) as { type: string, expires_at: string }
  t.equal(established.type, 'connection_established')
  t.ok(Date.parse(established.expires_at) - Date.now() < 3_700_000, 'expiry of the verified token')
  client.send({ type: 'auth', token: server.sign({ sub: 'u1' }, { expiresIn: '2h' }) })
  const refreshed = await client.message(2) as { type: string, expires_at: string }
  t.equal(refreshed.type, 'token_refreshed')
  t.ok(Date.parse(refreshed.expires_at) - Date.now() > 3_700_000, 'the refreshed expiry')
  client.ws.close()
})
