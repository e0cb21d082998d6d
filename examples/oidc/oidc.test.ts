import t, { type Test } from 'tap'
import { connect, connectWith, listen, waitFor } from '../helpers.ts'
import { build, DISPATCH_PATH, POSITIONS_PATH } from './app.ts'
import { buildIdp, DEMO_USERS } from './idp.ts'

const INVALID = { code: 4001, reason: 'Invalid token' }
const FORBIDDEN = { code: 4003, reason: 'Forbidden' }

/** The identity provider, then the console trusting it, both on 127.0.0.1:0. */
async function start (t: Test) {
  const idp = buildIdp()
  t.teardown(() => idp.app.close())
  const issuer = await idp.listen()
  const app = await build({ issuer })
  const served = await listen(t, app)
  /** Connects with `?token=` (or no token at all). */
  const open = (path: string, token?: string) => token === undefined ? connect(served.ws(path)) : connectWith(served.ws(path), 'query', token)
  return { idp, issuer, open, served }
}

/** What a client does: asks the IdP's token endpoint. */
async function login (issuer: string, username: string, password: string, alg?: string): Promise<Response> {
  return fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password, ...(alg === undefined ? {} : { alg }) })
  })
}

const ada = DEMO_USERS.find(u => u.username === 'ada')!

t.test('a token from the IdP opens the feed; its realm roles reach socket.user', async t => {
  const { issuer, open } = await start(t)
  const answer = await login(issuer, 'ada', 'ada-password')
  t.equal(answer.status, 200)
  const { access_token: token, token_type: type } = await answer.json() as { access_token: string, token_type: string }
  t.equal(type, 'Bearer')

  const c = open(POSITIONS_PATH, token)
  t.match(await waitFor(c, 'connection_established'), { user: { id: ada.sub, username: 'ada', roles: ['operator', 'viewer', 'offline_access'] } })
  t.same(await waitFor(c, 'welcome'), { type: 'welcome', user: { id: ada.sub, username: 'ada', roles: ['operator', 'viewer', 'offline_access'] } },
    'the handler reads realm_access.roles as socket.user.roles')
  t.match(await waitFor(c, 'positions'), { vehicles: [{ id: 'van-1' }, { id: 'van-2' }, { id: 'truck-7' }] })
  c.ws.close()
})

t.test('RS256 and ES256 tokens both verify, from the header or the query', async t => {
  const { idp, issuer, open, served } = await start(t)
  const es = await login(issuer, 'ada', 'ada-password', 'ES256')
  const { access_token: esToken } = await es.json() as { access_token: string }
  t.match(JSON.parse(Buffer.from(esToken.split('.')[0], 'base64url').toString()), { alg: 'ES256', kid: idp.kids()[1] })

  const byQuery = open(POSITIONS_PATH, esToken)
  const byHeader = connectWith(served.ws(POSITIONS_PATH), 'header', idp.issue('bob', { alg: 'RS256' }))
  t.match(await waitFor(byQuery, 'welcome'), { user: { username: 'ada' } }, 'ES256')
  t.match(await waitFor(byHeader, 'welcome'), { user: { username: 'bob', roles: ['viewer', 'offline_access'] } }, 'RS256')
  byQuery.ws.close()
  byHeader.ws.close()
})

t.test('a wrong password gets no token', async t => {
  const { issuer } = await start(t)
  const answer = await login(issuer, 'ada', 'not-her-password')
  t.equal(answer.status, 401)
  t.same(await answer.json(), { error: 'invalid_grant', error_description: 'Invalid user credentials' })
  t.equal((await login(issuer, 'nobody', 'x')).status, 401)
})

t.test('a token for another audience, or for none: 4001 Invalid token', async t => {
  const { idp, open } = await start(t)
  t.same(await open(POSITIONS_PATH, idp.issue('ada', { aud: 'billing' })).closed, INVALID, 'another audience')
  t.same(await open(POSITIONS_PATH, idp.issue('ada', { aud: null })).closed, INVALID, 'no aud claim (requiredClaims)')
  t.same(await open(POSITIONS_PATH, idp.issue('ada', { alg: 'ES256', aud: 'billing' })).closed, INVALID, 'ES256 too')
})

t.test('a token of another issuer: 4001 Invalid token', async t => {
  const { idp, issuer, open } = await start(t)
  t.same(await open(POSITIONS_PATH, idp.issue('ada', { iss: 'https://sso.example.net/realms/other' })).closed, INVALID,
    'signed by the trusted key, another iss')
  // Another IdP claiming to be ours: its key has the same kid as ours, not the same key.
  const impostor = buildIdp()
  await impostor.listen()
  t.teardown(() => impostor.app.close())
  t.same(await open(POSITIONS_PATH, impostor.issue('ada', { iss: issuer })).closed, INVALID, 'our iss, signed by another key')
  t.same(await open(POSITIONS_PATH, idp.issue('ada', { expiresInSeconds: -30 })).closed, { code: 4001, reason: 'Token expired' }, 'expired')
  t.same(await open(POSITIONS_PATH).closed, { code: 4001, reason: 'No token provided' }, 'no token')
})

t.test('a user without the route\'s role: 4003 Forbidden', async t => {
  const { idp, open } = await start(t)
  t.same(await open(DISPATCH_PATH, idp.issue('bob')).closed, FORBIDDEN, 'a viewer on the dispatch route')
  t.same(await open(POSITIONS_PATH, idp.issue('cy')).closed, FORBIDDEN, 'default realm roles only')
})

t.test('an operator dispatches; viewers see it', async t => {
  const { idp, open } = await start(t)
  const viewer = open(POSITIONS_PATH, idp.issue('bob'))
  await waitFor(viewer, 'positions')
  const operator = open(DISPATCH_PATH, idp.issue('ada', { alg: 'ES256' }))
  await waitFor(operator, 'connection_established')
  operator.send({ vehicle: 'van-2', to: 'depot' })
  t.same(await waitFor(operator, 'dispatched'), { type: 'dispatched', vehicle: 'van-2', to: 'depot', by: 'ada' })
  t.same(await waitFor(viewer, 'dispatched'), { type: 'dispatched', vehicle: 'van-2', to: 'depot', by: 'ada' })
  operator.send('not json')
  t.match(await waitFor(operator, 'error'), { message: 'expected {"vehicle","to"}' })
  viewer.ws.close()
  operator.ws.close()
})
