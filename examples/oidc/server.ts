// Starts the identity provider and the fleet console, and sends a dispatch now and then:
// `npx tsx examples/oidc/server.ts` (PORT 3006, IDP_PORT 3016). With ISSUER set (e.g.
// `ISSUER=https://sso.example.com/realms/fleet AUDIENCE=fleet-console`), no local IdP is started:
// the console trusts that one, found through its OpenID discovery document.
import { build, DISPATCH_PATH, POSITIONS_PATH } from './app.ts'
import { buildIdp, DEMO_USERS } from './idp.ts'

async function main (): Promise<void> {
  const port = Number(process.env.PORT ?? 3006)
  const idpPort = Number(process.env.IDP_PORT ?? 3016)
  const idp = process.env.ISSUER === undefined ? buildIdp() : undefined
  const issuer = process.env.ISSUER ?? await idp!.listen(idpPort)

  const app = await build({ issuer, audience: process.env.AUDIENCE, logger: { level: 'info' } })
  // Stand-in dispatches: every 5 s a van is sent somewhere, seen by every viewer.
  const places = ['depot', 'harbour', 'station', 'airport']
  const moves = setInterval(() => {
    const to = places[Math.floor(Math.random() * places.length)]
    app.wsAuth.broadcast({ type: 'dispatched', vehicle: 'van-1', to, by: 'scheduler' }, { route: POSITIONS_PATH })
  }, 5000)
  app.addHook('onClose', async () => clearInterval(moves))
  await app.listen({ host: '127.0.0.1', port })
  // Ctrl-C: open sockets get 1001 "Server shutting down" rather than a dropped connection.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { Promise.all([app.close(), idp?.app.close()]).then(() => process.exit(0), () => process.exit(1)) })
  }

  const ws = `ws://127.0.0.1:${port}`
  console.log(`fleet console listening on http://127.0.0.1:${port}, trusting the issuer ${issuer}`)
  if (idp === undefined) return
  console.log(`identity provider on ${issuer} (${issuer}/.well-known/openid-configuration)
Users: ${DEMO_USERS.map(u => `${u.username}/${u.password} (${u.roles.join(', ')})`).join('; ')}
Get a token (add "alg":"ES256" for one signed with the EC key):
  curl -s ${issuer}/token -H 'content-type: application/json' -d '{"username":"ada","password":"ada-password"}'
Then, e.g. with npx wscat -c '<url>' (tokens below are valid for 5 minutes):
  ada, operator (welcome, positions):     ${ws}${POSITIONS_PATH}?token=${idp.issue('ada')}
  ada on the dispatch route (ES256):      ${ws}${DISPATCH_PATH}?token=${idp.issue('ada', { alg: 'ES256' })}   then send {"vehicle":"van-2","to":"depot"}
  bob, viewer, on dispatch (4003):        ${ws}${DISPATCH_PATH}?token=${idp.issue('bob')}
  a token for another audience (4001):    ${ws}${POSITIONS_PATH}?token=${idp.issue('ada', { aud: 'billing' })}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
