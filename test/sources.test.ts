// Every token source, as a client uses it: query, header, cookie, subprotocol, first message; the
// configured order; no fall-through past a token that is present but invalid.
import t, { type Test } from 'tap'
import cookie from '@fastify/cookie'
import websocket from '@fastify/websocket'
import type { ClientOptions } from 'ws'
import type { WsAuthPluginOptions, WsAuthRouteSetting } from '../lib/types.ts'
import { manualClock } from './helpers/clock.ts'
import { barrier, buildApp, connect, connectWith, refusal, spyRoute, type BuildOptions, type Client, type Closed, type RouteSpy } from './helpers/index.ts'

interface Established { type: string, user: { id: string } }

async function serve (t: Test, auth: WsAuthPluginOptions, more: BuildOptions & { wsAuth?: WsAuthRouteSetting } = {}) {
  let spy!: RouteSpy
  const app = await buildApp(t, { ...more, auth, routes: (app) => { spy = spyRoute(app, '/ws', more.wsAuth) } })
  return { ...app, spy: () => spy }
}

/** The client got `connection_established` for `sub`, the handler echoes, then the client leaves. */
async function establishedAs (t: Test, client: Client, sub: string): Promise<void> {
  const first = await client.message(1) as Established
  t.equal(first.type, 'connection_established')
  t.equal(first.user.id, sub, `authenticated as ${sub}`)
  client.send('echo')
  t.equal(await client.message(2), 'echo', 'the route handler is listening')
  client.ws.close()
  await client.closed
}

const header = (token: string): ClientOptions => ({ headers: { authorization: 'Bearer ' + token } })
const cookieHeader = (value: string): ClientOptions => ({ headers: { cookie: value } })
const withCookie: BuildOptions = { before: async (app) => { await app.register(cookie) } }

t.test('query: ?token=', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['query'] })
  await establishedAs(t, connectWith(url('/ws'), 'query', sign({ sub: 'u1' })), 'u1')
  await establishedAs(t, connectWith(url('/ws?a=1'), 'query', sign({ sub: 'u2' })), 'u2')
  await establishedAs(t, connect(url('/ws?a=1&token=' + sign({ sub: 'u3' }) + '&b=2')), 'u3')
  t.equal(spy().calls, 3)
})

t.test('query: queryParam renames the parameter; the default name is then not read', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['query'], queryParam: 'access_token' })
  await establishedAs(t, connect(url('/ws?access_token=' + sign({ sub: 'u1' }))), 'u1')
  const other = connect(url('/ws?token=' + sign({ sub: 'u2' })))
  t.same(await refusal(other), { code: 4001, reason: 'No token provided' })
  t.equal(spy().calls, 1)
})

t.test('query: an empty or repeated parameter is present but invalid', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['query', 'header'] })
  const good = sign({ sub: 'u1' })
  for (const query of ['?token=', '?token=' + good + '&token=' + good]) {
    const client = connect(url('/ws' + query), undefined, header(good))
    t.same(await refusal(client), { code: 4001, reason: 'Invalid token' }, `${query.slice(0, 12)}: no fall-through to the header`)
  }
  t.equal(spy().calls, 0)
})

t.test('header: Authorization: Bearer <token>', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['header'] })
  await establishedAs(t, connectWith(url('/ws'), 'header', sign({ sub: 'u1' })), 'u1')
  await establishedAs(t, connect(url('/ws'), undefined, { headers: { authorization: 'bearer ' + sign({ sub: 'u2' }) } }), 'u2')

  const empty = connect(url('/ws'), undefined, { headers: { authorization: 'Bearer ' } })
  t.same(await refusal(empty), { code: 4001, reason: 'Invalid token' }, '"Bearer" with nothing after it is present, and invalid')
  const basic = connect(url('/ws'), undefined, { headers: { authorization: 'Basic dTE6cGFzcw==' } })
  t.same(await refusal(basic), { code: 4001, reason: 'No token provided' }, 'another scheme is no bearer token')
  t.equal(spy().calls, 2)
})

t.test('cookie: the "token" cookie through @fastify/cookie', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['cookie'], allowedOrigins: ['https://app.test'] }, withCookie)
  await establishedAs(t, connect(url('/ws'), undefined, cookieHeader('theme=dark; token=' + sign({ sub: 'u1' }))), 'u1')
  const none = connect(url('/ws'), undefined, cookieHeader('theme=dark'))
  t.same(await refusal(none), { code: 4001, reason: 'No token provided' })
  const bad = connect(url('/ws'), undefined, cookieHeader('token=garbage'))
  t.same(await refusal(bad), { code: 4001, reason: 'Invalid token' })
  t.equal(spy().calls, 1)
})

t.test('cookie: cookieName', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['cookie'], cookieName: 'session', allowedOrigins: ['https://app.test'] }, withCookie)
  await establishedAs(t, connect(url('/ws'), undefined, cookieHeader('session=' + sign({ sub: 'u1' }))), 'u1')
  const other = connect(url('/ws'), undefined, cookieHeader('token=' + sign({ sub: 'u2' })))
  t.same(await refusal(other), { code: 4001, reason: 'No token provided' }, 'the default cookie name is not read')
  t.equal(spy().calls, 1)
})

t.test('protocol: token entry offered first, "bearer" selected, the token never echoed', async t => {
  const { url, sign } = await serve(t, { sources: ['protocol'] })
  const token = sign({ sub: 'u1' })
  let answered: string | undefined
  const client = connect(url('/ws'), ['bearer.' + token, 'bearer'])
  client.ws.once('upgrade', (res) => { answered = res.headers['sec-websocket-protocol'] as string | undefined })
  await client.opened
  t.equal(client.ws.protocol, 'bearer')
  t.equal(answered, 'bearer', 'the response header names "bearer", not the token entry')
  await establishedAs(t, client, 'u1')
})

t.test('protocol: the app\'s own protocol is selected, never the token entry', async t => {
  const { url, sign } = await serve(t, { sources: ['protocol'] })
  const token = sign({ sub: 'u1' })
  const after = connect(url('/ws'), ['bearer.' + token, 'bearer', 'graphql-transport-ws'])
  await after.opened
  t.equal(after.ws.protocol, 'graphql-transport-ws')
  await establishedAs(t, after, 'u1')
  const between = connect(url('/ws'), ['bearer.' + token, 'chat.v1', 'bearer'])
  await between.opened
  t.equal(between.ws.protocol, 'chat.v1')
  await establishedAs(t, between, 'u1')
})

t.test('protocol: the app\'s handleProtocols chooses among the non-token entries', async t => {
  for (const websocketFirst of [false, true]) {
    t.test(websocketFirst ? '@fastify/websocket registered first' : 'registered by the plugin', async t => {
      const seen: string[][] = []
      const handleProtocols = (protocols: Set<string>) => {
        seen.push([...protocols])
        return protocols.has('v2') ? 'v2' : false
      }
      const websocketOptions = { options: { handleProtocols } }
      const { url, sign } = await serve(t, websocketFirst ? { sources: ['protocol'] } : { sources: ['protocol'], websocket: websocketOptions }, websocketFirst
        ? { before: async (app) => { await app.register(websocket, websocketOptions) } }
        : {})
      const token = sign({ sub: 'u1' })
      const chosen = connect(url('/ws'), ['bearer.' + token, 'bearer', 'v1', 'v2'])
      await chosen.opened
      t.equal(chosen.ws.protocol, 'v2', 'the app\'s choice')
      await establishedAs(t, chosen, 'u1')
      t.same(seen, [['v1', 'v2']], 'the app never sees the token entry, nor "bearer"')

      const declined = connect(url('/ws'), ['bearer.' + token, 'bearer', 'v1'])
      await declined.opened
      t.equal(declined.ws.protocol, 'bearer', 'the app declined: "bearer" is selected')
      await establishedAs(t, declined, 'u1')
    })
  }
})

t.test('protocol: protocolPrefix', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['protocol'], protocolPrefix: 'access_token' })
  const token = sign({ sub: 'u1' })
  const client = connect(url('/ws'), ['access_token.' + token, 'access_token'])
  await client.opened
  t.equal(client.ws.protocol, 'access_token')
  await establishedAs(t, client, 'u1')
  const old = connect(url('/ws'), ['bearer.' + token, 'bearer'])
  t.same(await refusal(old), { code: 4001, reason: 'No token provided' }, 'the default prefix is not read')
  t.equal(spy().calls, 1)
})

t.test('protocol: an entry that only contains the prefix is no token entry', async t => {
  const { url, spy } = await serve(t, { sources: ['protocol'] })
  const client = connect(url('/ws'), ['x-bearer.abc', 'bearer'])
  t.same(await refusal(client), { code: 4001, reason: 'No token provided' })
  t.equal(spy().calls, 0)
})

t.test('protocol: an invalid token entry is refused', async t => {
  const { url, spy } = await serve(t, { sources: ['protocol'] })
  const client = connect(url('/ws'), ['bearer.garbage', 'bearer'])
  t.same(await refusal(client), { code: 4001, reason: 'Invalid token' })
  t.equal(spy().calls, 0)
})

t.test('message: {"type":"auth","token"} as the first message', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['message'] })
  await establishedAs(t, connectWith(url('/ws'), 'message', sign({ sub: 'u1' })), 'u1')
  t.equal(spy().calls, 1)
})

t.test('message: a token that came with the upgrade needs no auth message', async t => {
  const { url, sign, spy } = await serve(t, {})
  const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  t.match(await client.message(1), { type: 'connection_established' })
  client.send('hello')
  t.equal(await client.message(2), 'hello', 'the first client message is the app\'s own')
  t.equal(spy().calls, 1)
  client.ws.close()
  await client.closed
})

t.test('sources are tried in the configured order', async t => {
  const tokens = (app: { sign: (p: object) => string }) => ({ query: app.sign({ sub: 'from-query' }), header: app.sign({ sub: 'from-header' }) })
  t.test('query first', async t => {
    const app = await serve(t, { sources: ['query', 'header'] })
    const { query, header: h } = tokens(app)
    await establishedAs(t, connect(app.url('/ws?token=' + query), undefined, header(h)), 'from-query')
    await establishedAs(t, connect(app.url('/ws'), undefined, header(h)), 'from-header')
  })
  t.test('header first', async t => {
    const app = await serve(t, { sources: ['header', 'query'] })
    const { query, header: h } = tokens(app)
    await establishedAs(t, connect(app.url('/ws?token=' + query), undefined, header(h)), 'from-header')
    await establishedAs(t, connect(app.url('/ws?token=' + query)), 'from-query')
  })
  t.test('protocol before cookie', async t => {
    const app = await serve(t, { sources: ['protocol', 'cookie'], allowedOrigins: ['https://app.test'] }, withCookie)
    const client = connect(app.url('/ws'), ['bearer.' + app.sign({ sub: 'from-protocol' }), 'bearer'], cookieHeader('token=' + app.sign({ sub: 'from-cookie' })))
    await establishedAs(t, client, 'from-protocol')
  })
})

t.test('a present but invalid token in an earlier source is refused: no fall-through', async t => {
  const cases: Array<[string, (token: string) => [string, string[] | undefined, ClientOptions | undefined]]> = [
    ['query before header', (good) => ['/ws?token=garbage', undefined, header(good)]],
    ['header before protocol', (good) => ['/ws', ['bearer.' + good, 'bearer'], header('garbage')]],
    ['protocol before cookie', (good) => ['/ws', ['bearer.garbage', 'bearer'], cookieHeader('token=' + good)]],
    ['cookie before message', () => ['/ws', undefined, cookieHeader('token=garbage')]]
  ]
  const { url, sign, spy } = await serve(t, { sources: ['query', 'header', 'protocol', 'cookie', 'message'], allowedOrigins: ['https://app.test'] }, withCookie)
  const good = sign({ sub: 'u1' })
  for (const [name, make] of cases) {
    const [path, protocols, options] = make(good)
    const client = connect(url(path), protocols, options)
    // With 'message' last, falling through would wait for an auth message: send a valid one.
    client.opened.then(() => client.send({ type: 'auth', token: good }), () => {})
    t.same(await refusal(client), { code: 4001, reason: 'Invalid token' }, name)
    t.same(client.messages, [], `${name}: no connection_established`)
  }
  t.equal(spy().calls, 0, 'the route handler never ran')
})

t.test('an expired token in an earlier source is refused as expired, not replaced by a later one', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['query', 'header'] })
  const now = Math.floor(Date.now() / 1000)
  const client = connect(url('/ws?token=' + sign({ sub: 'u1', iat: now - 120, exp: now - 60 })), undefined, header(sign({ sub: 'u1' })))
  const closed = await refusal(client) as Closed
  t.equal(closed.code, 4001)
  t.match(closed.reason, /expired/i)
  t.equal(spy().calls, 0)
})

t.test('route-level sources override the plugin\'s', async t => {
  let q!: RouteSpy
  let h!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: { sources: ['query'] },
    routes: (app) => {
      q = spyRoute(app, '/ws/q')
      h = spyRoute(app, '/ws/h', { sources: ['header'] })
    }
  })
  const token = sign({ sub: 'u1' })
  const viaQuery = connect(url('/ws/h?token=' + token))
  t.same(await refusal(viaQuery), { code: 4001, reason: 'No token provided' }, 'the route reads the header only')
  await establishedAs(t, connect(url('/ws/h'), undefined, header(token)), 'u1')
  const viaHeader = connect(url('/ws/q'), undefined, header(token))
  t.same(await refusal(viaHeader), { code: 4001, reason: 'No token provided' }, 'the other route keeps the plugin\'s sources')
  await establishedAs(t, connect(url('/ws/q?token=' + token)), 'u1')
  t.equal(q.calls, 1)
  t.equal(h.calls, 1)
})

t.test('route-level sources may enable the first message', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['query'] }, { wsAuth: { sources: ['message'] } })
  await establishedAs(t, connectWith(url('/ws'), 'message', sign({ sub: 'u1' })), 'u1')
  t.equal(spy().calls, 1)
})

t.test('reject: http without a token -> 401 at once, no first message awaited', async t => {
  const { url, sign, spy } = await serve(t, { reject: 'http', authTimeout: 60_000 })
  const client = connect(url('/ws'))
  t.equal(await client.refusedStatus, 401)
  t.equal((await client.closed).code, 1006, 'never opened')
  t.equal(spy().calls, 0)
  await establishedAs(t, connect(url('/ws'), ['bearer.' + sign({ sub: 'u1' }), 'bearer']), 'u1')
})

t.test('reject: http reads every request source', async t => {
  const { url, sign, spy } = await serve(t, { reject: 'http', sources: ['query', 'header', 'cookie', 'protocol'], allowedOrigins: ['https://app.test'] }, withCookie)
  const token = sign({ sub: 'u1' })
  for (const source of ['query', 'header', 'cookie', 'protocol'] as const) {
    await establishedAs(t, connectWith(url('/ws'), source, token), 'u1')
  }
  const bad = connect(url('/ws'), ['bearer.garbage', 'bearer'])
  t.equal(await bad.refusedStatus, 401)
  t.equal(spy().calls, 4)
})

t.test('default sources: query, header, protocol, message; not cookie', async t => {
  // The auth timeout waits for the test's clock: the message client cannot be late, and the
  // cookie client times out when the test moves time, not when the machine is slow.
  const time = manualClock(t)
  const { url, sign, spy } = await serve(t, { authTimeout: 100, allowedOrigins: ['https://app.test'] }, withCookie)
  const token = sign({ sub: 'u1' })
  for (const source of ['query', 'header', 'protocol', 'message'] as const) {
    await establishedAs(t, connectWith(url('/ws'), source, token), 'u1')
  }
  const viaCookie = connectWith(url('/ws'), 'cookie', token)
  await viaCookie.opened
  await barrier(viaCookie)
  t.equal(viaCookie.closedWith, undefined, 'the upgrade carried a token cookie, and the socket waits')
  await time.tick(100)
  t.same(await refusal(viaCookie), { code: 4008, reason: 'Authentication timeout' }, 'a cookie is not read: the socket waited for an auth message')
  t.equal(spy().calls, 4)
})
