// Also decided (issue 21): `revoke({ userId })` compared `iat` (seconds) with the call time
// truncated to seconds, so a token issued up to 999 ms before the call still worked. A token
// issued before the call returns is never accepted after it; a token issued later in the same
// second is refused too (fail closed): issue tokens after the next second boundary.
import t from 'tap'
import { buildApp, connect, refusal } from '../helpers/index.ts'

t.test('a token issued in the second of a revoke({ userId }) is refused, before or after the call', async (t) => {
  const server = await buildApp(t)
  const before = server.sign({ sub: 'u1' }, { expiresIn: '1h' })
  const second = Math.floor(Date.now() / 1000)
  server.app.wsAuth.revoke({ userId: 'u1' })
  const after = server.sign({ sub: 'u1', iat: Math.floor(Date.now() / 1000) }, { expiresIn: '1h' })
  for (const token of [before, after]) {
    const client = connect(server.url('/ws?token=' + token))
    t.same(await refusal(client), { code: 4001, reason: 'Token revoked' })
  }
  const next = server.sign({ sub: 'u1', iat: Math.max(second, Math.floor(Date.now() / 1000)) + 1 }, { expiresIn: '1h' })
  const client = connect(server.url('/ws?token=' + next))
  t.equal(((await refusal(client)) as { message?: { type: string } }).message?.type, 'connection_established', 'a token of the next second gets in')
  client.ws.close()
})

t.test('an explicit issuedBefore revokes every token whose iat second began before it', async (t) => {
  const server = await buildApp(t)
  const at = new Date(Math.floor(Date.now() / 1000) * 1000 - 10_000 + 500) // half a second into a past second
  server.app.wsAuth.revoke({ userId: 'u1', issuedBefore: at })
  const sameSecond = server.sign({ sub: 'u1', iat: Math.floor(at.getTime() / 1000) }, { expiresIn: '1h' })
  const refused = connect(server.url('/ws?token=' + sameSecond))
  t.same(await refusal(refused), { code: 4001, reason: 'Token revoked' }, 'may have been issued before it: refused')
  const later = server.sign({ sub: 'u1', iat: Math.floor(at.getTime() / 1000) + 1 }, { expiresIn: '1h' })
  const admitted = connect(server.url('/ws?token=' + later))
  t.equal(((await refusal(admitted)) as { message?: { type: string } }).message?.type, 'connection_established')
  admitted.ws.close()
})
