// Also decided (issue 21): `revoke({ userId })` compared `iat` (seconds) with the call time
// truncated to seconds, so a token issued up to 999 ms before the call still worked. A token
// issued before the call returns is never accepted after it; a token issued later in the same
// second is refused too (fail closed): issue tokens after the next second boundary. The rule
// (README, Registry): revoked when `iat < ceil(issuedBefore / 1 s)`.
// The revocation reads the library's clock: the manual clock puts the call at a chosen
// millisecond of a chosen second, and tokens carry their `iat` explicitly, so no second boundary
// can fall between the call and the tokens.
import t from 'tap'
import { buildApp, connect, refusal } from '../helpers/index.ts'
import { manualClock } from '../helpers/clock.ts'

/** A second a minute ago: tokens of it, and of the seconds around it, still verify. */
const S = Math.floor(Date.now() / 1000) - 60

async function verdicts (server: Awaited<ReturnType<typeof buildApp>>, iats: number[]): Promise<Record<number, string>> {
  const out: Record<number, string> = {}
  for (const iat of iats) {
    const client = connect(server.url('/ws?token=' + server.sign({ sub: 'u1', iat }, { expiresIn: '1h' })))
    const verdict = await refusal(client) as { code?: number, reason?: string, message?: { type: string } }
    out[iat - S] = verdict.message?.type ?? `${verdict.code} ${verdict.reason}`
    client.ws.close()
  }
  return out
}

for (const ms of [0, 1, 999]) {
  t.test(`revoke({ userId }) at ms ${ms} of a second refuses every token of that second and before, and admits the next`, async (t) => {
    manualClock(t, S * 1000 + ms)
    const server = await buildApp(t)
    server.app.wsAuth.revoke({ userId: 'u1' })
    t.same(await verdicts(server, [S - 1, S, S + 1]), {
      [-1]: '4001 Token revoked',
      0: '4001 Token revoked',
      1: 'connection_established'
    })
  })
}

t.test('an explicit issuedBefore within a second revokes every token whose iat second began before it', async (t) => {
  const server = await buildApp(t)
  server.app.wsAuth.revoke({ userId: 'u1', issuedBefore: new Date(S * 1000 + 500) })
  t.same(await verdicts(server, [S - 1, S, S + 1]), {
    [-1]: '4001 Token revoked',
    0: '4001 Token revoked', // may have been issued before it
    1: 'connection_established'
  })
})

t.test('an explicit issuedBefore on a second boundary admits the tokens of that second', async (t) => {
  const server = await buildApp(t)
  server.app.wsAuth.revoke({ userId: 'u1', issuedBefore: new Date(S * 1000) })
  t.same(await verdicts(server, [S - 1, S]), {
    [-1]: '4001 Token revoked',
    0: 'connection_established' // issued at or after it
  })
})
