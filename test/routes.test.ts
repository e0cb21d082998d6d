// Which routes are guarded and how: secure by default, opting out, route-level overrides, both
// registration orders, fail-closed for routes the plugin cannot guard, Origin, roles, the user the
// handler and the client see, custom verification, and the startup errors and warnings.
import t, { type Test } from 'tap'
import cookie from '@fastify/cookie'
import type { FastifyRequest } from 'fastify'
import { InvalidTokenError, TokenExpiredError } from '../lib/index.ts'
import type { DefaultWsAuthUser, WsAuthClaims, WsAuthPluginOptions, WsAuthRouteSetting } from '../lib/types.ts'
import { buildApp, connect, connectWith, logCapture, refusal, spyHttpRoute, spyRoute, type BuildOptions, type Client, type Closed, type RouteSpy } from './helpers/index.ts'

interface Established {
  type: 'connection_established'
  client_id: string
  user: Record<string, unknown>
  timestamp: string
  expires_at: string | null
}

const now = () => Math.floor(Date.now() / 1000)

async function serve (t: Test, auth: WsAuthPluginOptions = {}, more: BuildOptions & { wsAuth?: WsAuthRouteSetting } = {}) {
  let spy!: RouteSpy
  const app = await buildApp(t, { ...more, auth, routes: (app) => { spy = spyRoute(app, '/ws', more.wsAuth) } })
  return { ...app, spy: () => spy }
}

async function established (client: Client): Promise<Established> {
  const first = await client.message(1) as Established
  if (first?.type !== 'connection_established') throw new Error('expected connection_established, got ' + JSON.stringify(first))
  return first
}

async function leave (client: Client): Promise<void> {
  client.ws.close()
  await client.closed
}

t.test('secure by default: a plain websocket: true route needs a token', async t => {
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: { sources: ['query'] },
    routes: (app) => { spy = spyRoute(app, '/ws') }
  })
  const none = connect(url('/ws'))
  t.same(await refusal(none), { code: 4001, reason: 'No token provided' })
  t.equal(spy.calls, 0, 'the handler never ran')
  const good = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await established(good)
  t.equal(spy.calls, 1)
  await leave(good)
})

t.test('wsAuth: true requires a token', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['query'] }, { wsAuth: true })
  const none = connect(url('/ws'))
  t.same(await refusal(none), { code: 4001, reason: 'No token provided' })
  t.equal(spy().calls, 0)
  const good = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  await established(good)
  await leave(good)
  t.equal(spy().calls, 1)
})

t.test('wsAuth: false opts out: no token needed, no connection_established, no user', async t => {
  for (const reject of ['close', 'http'] as const) {
    t.test(`reject: ${reject}`, async t => {
      const { url, spy } = await serve(t, { sources: ['query'], reject }, { wsAuth: false })
      for (const path of ['/ws', '/ws?token=garbage']) {
        const client = connect(url(path))
        await client.opened
        client.send('hello')
        t.equal(await client.message(1), 'hello', `${path}: the handler's echo is the first message`)
        await leave(client)
      }
      t.equal(spy().calls, 2)
      t.same(spy().users, [undefined, undefined], 'socket.user is not set')
    })
  }
})

t.test('route-level reject overrides the plugin\'s', async t => {
  for (const reject of ['close', 'http'] as const) {
    t.test(`plugin reject: ${reject}`, async t => {
      const spies: RouteSpy[] = []
      const { url } = await buildApp(t, {
        auth: { sources: ['query'], reject },
        routes: (app) => {
          spies.push(spyRoute(app, '/ws/http', { reject: 'http' }))
          spies.push(spyRoute(app, '/ws/close', { reject: 'close' }))
          spies.push(spyRoute(app, '/ws/inherit', true))
        }
      })
      const http = connect(url('/ws/http'))
      t.equal(await http.refusedStatus, 401, 'route reject: http -> 401')
      const close = connect(url('/ws/close'))
      t.same(await refusal(close), { code: 4001, reason: 'No token provided' }, 'route reject: close -> 4001')
      t.equal(await close.refusedStatus, undefined, 'the upgrade was accepted, then closed')
      const inherit = connect(url('/ws/inherit'))
      if (reject === 'http') t.equal(await inherit.refusedStatus, 401, 'no override: the plugin\'s reject')
      else t.same(await refusal(inherit), { code: 4001, reason: 'No token provided' }, 'no override: the plugin\'s reject')
      t.same(spies.map(s => s.calls), [0, 0, 0])
    })
  }
})

t.test('both registration orders', async t => {
  for (const websocketFirst of [true, false]) {
    t.test(websocketFirst ? '@fastify/websocket, then fastify-ws-auth' : 'fastify-ws-auth registers @fastify/websocket', async t => {
      let guarded!: RouteSpy
      let open!: RouteSpy
      const { url, sign } = await buildApp(t, {
        websocketFirst,
        auth: { sources: ['query'] },
        routes: (app) => {
          guarded = spyRoute(app, '/ws')
          open = spyRoute(app, '/public', false)
        }
      })
      const none = connect(url('/ws'))
      t.same(await refusal(none), { code: 4001, reason: 'No token provided' })
      t.equal(guarded.calls, 0)
      const good = connect(url('/ws?token=' + sign({ sub: 'u1' })))
      t.match(await established(good), { user: { id: 'u1' } })
      await leave(good)
      t.equal(guarded.calls, 1)
      const pub = connect(url('/public'))
      await pub.opened
      pub.send('x')
      t.equal(await pub.message(1), 'x')
      await leave(pub)
      t.equal(open.calls, 1)
    })
  }
})

t.test('the "websocket" option is ignored, with a warning, when @fastify/websocket came first', async t => {
  const logs = logCapture()
  await buildApp(t, {
    websocketFirst: true,
    auth: { websocket: { options: { maxPayload: 1024 } } },
    fastify: { logger: { level: 'info', stream: logs.stream } }
  })
  t.match(logs.records().filter(r => r.level === 40).map(r => r.msg), [/option "websocket" is ignored/])
})

t.test('routes in child plugins (with a prefix) are guarded too', async t => {
  let spy!: RouteSpy
  const { url, sign } = await buildApp(t, {
    auth: { sources: ['query'] },
    routes: async (app) => {
      await app.register(async (child) => { spy = spyRoute(child, '/ws') }, { prefix: '/v1' })
    }
  })
  const none = connect(url('/v1/ws'))
  t.same(await refusal(none), { code: 4001, reason: 'No token provided' })
  t.equal(spy.calls, 0)
  const good = connect(url('/v1/ws?token=' + sign({ sub: 'u1' })))
  await established(good)
  await leave(good)
  t.equal(spy.calls, 1)
})

t.test('a websocket route declared before the plugin is refused (fail closed), and the log names it', async t => {
  const logs = logCapture()
  let early!: RouteSpy
  let late!: RouteSpy
  const { url, sign } = await buildApp(t, {
    websocketFirst: true,
    fastify: { logger: { level: 'info', stream: logs.stream } },
    before: (app) => { early = spyRoute(app, '/early') },
    routes: (app) => { late = spyRoute(app, '/late') }
  })
  const token = sign({ sub: 'u1' })
  const client = connect(url('/early?token=' + token))
  const status = await client.refusedStatus
  t.ok(typeof status === 'number' && status >= 400, `refused with an HTTP error status (${status})`)
  await t.rejects(client.opened, 'the client never opens')
  t.equal(early.calls, 0, 'the handler never ran')
  const refused = logs.records().filter(r => (r.err as { code?: unknown } | undefined)?.code === 'FST_WS_AUTH_UNGUARDED_ROUTE')
  t.equal(refused.length, 1, 'one log line for the refusal')
  t.ok(Number(refused[0]?.level) >= 40, 'at warn level or above')
  t.match(refused[0], { err: { message: /\/early/ } }, 'it names the route')
  t.notMatch(logs.lines.join('\n'), token.split('.')[2], 'no token in the log')

  const good = connect(url('/late?token=' + token))
  await established(good)
  await leave(good)
  t.equal(late.calls, 1, 'routes declared after the plugin work')
})

t.test('wsAuth on a route that is not a websocket route is a startup error', async t => {
  for (const wsAuth of [true, false, { roles: ['admin'] }] as WsAuthRouteSetting[]) {
    await t.rejects(buildApp(t, {
      routes: (app) => { app.get('/plain', { wsAuth }, async () => 'ok') }
    }), { code: 'FST_WS_AUTH_INVALID_ROUTE_OPTION', message: /\/plain/ }, `wsAuth: ${JSON.stringify(wsAuth)}`)
  }
})

t.test('an invalid route-level wsAuth is a startup error naming the route and the field', async t => {
  const cases: Array<[unknown, RegExp]> = [
    [{ roles: 'admin' }, /\/ws.*wsAuth\.roles/],
    [{ permissions: [''] }, /\/ws.*wsAuth\.permissions/],
    [{ reject: 'never' }, /\/ws.*wsAuth\.reject/],
    [{ sources: ['carrier-pigeon'] }, /\/ws.*wsAuth\.sources/],
    [{ authTimeout: -1 }, /\/ws.*wsAuth\.authTimeout/],
    [{ authorize: 'yes' }, /\/ws.*wsAuth\.authorize/],
    [{ rols: ['admin'] }, /\/ws.*wsAuth\.rols/],
    ['yes', /\/ws/],
    [{ reject: 'http', sources: ['message'] }, /\/ws.*wsAuth\.sources/]
  ]
  for (const [wsAuth, message] of cases) {
    await t.rejects(buildApp(t, {
      routes: (app) => { app.get('/ws', { websocket: true, wsAuth: wsAuth as WsAuthRouteSetting }, () => {}) }
    }), { code: 'FST_WS_AUTH_INVALID_ROUTE_OPTION', message }, JSON.stringify(wsAuth))
  }
})

t.test('a plain GET to a websocket route still answers 404; HTTP routes are untouched', async t => {
  for (const reject of ['close', 'http'] as const) {
    let spy!: RouteSpy
    const { httpUrl, sign } = await buildApp(t, {
      auth: { reject },
      routes: (app) => {
        spy = spyRoute(app, '/ws')
        app.get('/health', async () => ({ ok: true }))
      }
    })
    t.equal((await fetch(httpUrl('/ws'))).status, 404, `reject ${reject}: no token`)
    t.equal((await fetch(httpUrl('/ws?token=' + sign({ sub: 'u1' })))).status, 404, `reject ${reject}: with a token`)
    t.equal((await fetch(httpUrl('/ws'), { method: 'HEAD' })).status, 404, `reject ${reject}: HEAD`)
    const health = await fetch(httpUrl('/health'))
    t.equal(health.status, 200)
    t.same(await health.json(), { ok: true })
    t.equal(spy.calls, 0)
  }
})

t.test('a WebSocket upgrade to a plain HTTP route never opens', async t => {
  const logs = logCapture()
  let health!: { calls: number }
  const { url, httpUrl, sign } = await buildApp(t, {
    fastify: { logger: { level: 'info', stream: logs.stream } },
    routes: (app) => { health = spyHttpRoute(app, '/health') }
  })
  const client = connect(url('/health?token=' + sign({ sub: 'u1' })))
  await t.rejects(client.opened, 'the client never opens')
  t.equal(health.calls, 0, 'the HTTP handler did not run')
  t.equal(await (await fetch(httpUrl('/health'))).text(), 'ok', 'a plain GET runs it')
  t.equal(health.calls, 1, 'the spy counts its calls')
  // Any anonymous client can send this upgrade: it is not a server error, and the route is no
  // unguarded websocket route.
  t.same(logs.records().filter(r => r.level === 50).map(r => r.msg), [], 'no error-level log line')
})

t.test('Origin check', async t => {
  t.test('allowedOrigins array', async t => {
    const { url, sign, spy } = await serve(t, { sources: ['query'], allowedOrigins: ['https://app.example.test'] })
    const token = sign({ sub: 'u1' })
    const evil = connect(url('/ws?token=' + token), undefined, { origin: 'https://evil.test' })
    t.same(await refusal(evil), { code: 4003, reason: 'Forbidden' }, 'a disallowed Origin, even with a valid token')
    t.equal(spy().calls, 0)
    const lookalike = connect(url('/ws?token=' + token), undefined, { origin: 'https://app.example.test.evil.test' })
    t.same(await refusal(lookalike), { code: 4003, reason: 'Forbidden' }, 'exact match only')
    const allowed = connect(url('/ws?token=' + token), undefined, { origin: 'https://app.example.test' })
    await established(allowed)
    await leave(allowed)
    const noOrigin = connect(url('/ws?token=' + token))
    t.match(await established(noOrigin), { user: { id: 'u1' } }, 'no Origin header (a non-browser client) is allowed')
    await leave(noOrigin)
    t.equal(spy().calls, 2, 'only the allowed Origin and the Origin-less client reached the handler')
  })
  t.test('predicate', async t => {
    const seen: Array<[string, string]> = []
    const allowedOrigins = (origin: string, request: FastifyRequest) => {
      seen.push([origin, request.url.split('?')[0]])
      return origin.endsWith('.example.test')
    }
    const { url, sign, spy } = await serve(t, { sources: ['query'], allowedOrigins })
    const token = sign({ sub: 'u1' })
    const evil = connect(url('/ws?token=' + token), undefined, { origin: 'https://evil.test' })
    t.same(await refusal(evil), { code: 4003, reason: 'Forbidden' })
    const good = connect(url('/ws?token=' + token), undefined, { origin: 'https://a.example.test' })
    await established(good)
    await leave(good)
    t.same(seen, [['https://evil.test', '/ws'], ['https://a.example.test', '/ws']], 'the predicate gets the Origin and the request')
    t.equal(spy().calls, 1)
  })
  t.test('reject: http -> 403', async t => {
    const { url, sign, spy } = await serve(t, { sources: ['query'], reject: 'http', allowedOrigins: ['https://app.example.test'] })
    const evil = connect(url('/ws?token=' + sign({ sub: 'u1' })), undefined, { origin: 'https://evil.test' })
    t.equal(await evil.refusedStatus, 403)
    t.equal(spy().calls, 0)
  })
})

t.test('rolePermissions expands roles into permissions', async t => {
  const wsAuth = { permissions: ['journal.write'] }
  const rolePermissions = { editor: ['journal.read', 'journal.write'], viewer: ['journal.read'] }
  const { url, sign, spy } = await serve(t, { sources: ['query'], rolePermissions }, { wsAuth })
  const editor = connect(url('/ws?token=' + sign({ sub: 'e', role: 'editor' })))
  t.match(await established(editor), { user: { id: 'e', roles: ['editor'] } }, 'the role grants the permission')
  await leave(editor)
  const viewer = connect(url('/ws?token=' + sign({ sub: 'v', roles: ['viewer'] })))
  t.same(await refusal(viewer), { code: 4003, reason: 'Forbidden' }, 'the role does not grant it')
  const own = connect(url('/ws?token=' + sign({ sub: 'o', roles: ['viewer'], permissions: ['journal.write'] })))
  t.match(await established(own), { user: { id: 'o' } }, 'the user\'s own permissions still count')
  await leave(own)
  t.equal(spy().calls, 2)

  t.test('without rolePermissions the same role is refused', async t => {
    const { url, sign, spy } = await serve(t, { sources: ['query'] }, { wsAuth })
    const editor = connect(url('/ws?token=' + sign({ sub: 'e', role: 'editor' })))
    t.same(await refusal(editor), { code: 4003, reason: 'Forbidden' })
    t.equal(spy().calls, 0)
  })
})

t.test('the default user mapping, as the client and the handler see it', async t => {
  const { url, sign, spy } = await serve(t, { sources: ['query'] })
  const cases: Array<[object, Record<string, unknown>]> = [
    [{ sub: 'u1', username: 'alice', preferred_username: 'al', email: 'a@x.test', roles: ['a', 'b'], role: 'z', permissions: ['p1'], tenant: 't1' },
      { id: 'u1', username: 'alice', roles: ['a', 'b'], permissions: ['p1'] }],
    [{ sub: 'u2', preferred_username: 'bob', email: 'b@x.test', role: 'admin' },
      { id: 'u2', username: 'bob', roles: ['admin'], permissions: [] }],
    [{ sub: 'u3', email: 'c@x.test' },
      { id: 'u3', username: 'c@x.test', roles: [], permissions: [] }],
    [{ sub: 'u4' },
      { id: 'u4', roles: [], permissions: [] }]
  ]
  for (const [claims, user] of cases) {
    const token = sign(claims)
    const client = connect(url('/ws?token=' + token))
    const message = await established(client)
    t.same(message.user, user, JSON.stringify(claims))
    t.same(Object.keys(message).sort(), ['client_id', 'expires_at', 'timestamp', 'type', 'user'], 'no raw claims, no token')
    t.notOk(JSON.stringify(message).includes(token.split('.')[2]), 'the token is not echoed')
    await leave(client)
  }
  t.equal(spy().calls, 4)
  t.match(spy().users[0], { id: 'u1', username: 'alice', roles: ['a', 'b'], permissions: ['p1'] }, 'the handler gets the same user')
})

t.test('publicUser customizes what the client sees; the handler keeps the whole user', async t => {
  const publicUser = (user: unknown) => ({ name: (user as DefaultWsAuthUser).username, admin: ((user as DefaultWsAuthUser).roles ?? []).includes('admin') })
  const { url, sign, spy } = await serve(t, { sources: ['query'], publicUser })
  const client = connect(url('/ws?token=' + sign({ sub: 'u1', username: 'alice', roles: ['admin'], permissions: ['secret.read'] })))
  t.same((await established(client)).user, { name: 'alice', admin: true })
  await leave(client)
  t.match(spy().users[0], { id: 'u1', permissions: ['secret.read'] })
})

/** A route that greets with what the handler sees: the user, and whether `socket.user === request.user`. */
function greetingRoute (wsAuth?: WsAuthRouteSetting): BuildOptions['routes'] {
  return (app) => {
    app.get('/ws', { websocket: true, ...(wsAuth === undefined ? {} : { wsAuth }) }, (socket, request) => {
      socket.send(JSON.stringify({ type: 'hello', user: socket.user ?? null, same: socket.user !== undefined && socket.user === request.user }))
    })
  }
}

t.test('established: false sends no message; the handler still gets the user', async t => {
  t.test('plugin option', async t => {
    const { url, sign } = await buildApp(t, { auth: { sources: ['query'], established: false }, routes: greetingRoute() })
    const client = connect(url('/ws?token=' + sign({ sub: 'u1', roles: ['r'] })))
    t.same(await client.message(1), { type: 'hello', user: { id: 'u1', roles: ['r'], permissions: [] }, same: true })
    await leave(client)
    t.equal(client.messages.length, 1)
  })
  t.test('route option', async t => {
    const { url, sign } = await buildApp(t, { auth: { sources: ['query'] }, routes: greetingRoute({ established: false }) })
    const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    t.match(await client.message(1), { type: 'hello', user: { id: 'u1' } })
    await leave(client)
  })
  t.test('established: true (default): connection_established comes before the handler\'s messages', async t => {
    const { url, sign } = await buildApp(t, { auth: { sources: ['query'] }, routes: greetingRoute() })
    const client = connect(url('/ws?token=' + sign({ sub: 'u1' })))
    await established(client)
    t.match(await client.message(2), { type: 'hello', user: { id: 'u1' }, same: true })
    await leave(client)
  })
})

t.test('socket.user === request.user, the object loadUser returned', async t => {
  const loaded: unknown[] = []
  const loadUser = async (claims: WsAuthClaims, request: FastifyRequest) => {
    const user = { id: claims.sub as string, roles: [], permissions: [], loadedFor: request.url.split('?')[0] }
    loaded.push(user)
    return user
  }
  for (const source of ['query', 'message'] as const) {
    let spy!: RouteSpy
    const { url, sign } = await buildApp(t, { auth: { sources: [source], loadUser }, routes: (app) => { spy = spyRoute(app, '/ws') } })
    const client = connectWith(url('/ws'), source, sign({ sub: 'u1' }))
    await established(client)
    await leave(client)
    t.same(spy.sameUser, [true], `${source}: socket.user === request.user`)
    t.equal(spy.users[0], loaded.at(-1), `${source}: it is the very object loadUser returned`)
    t.match(spy.users[0], { loadedFor: '/ws' }, 'loadUser got the request')
  }
})

t.test('connection_established: expires_at, timestamp, client_id', async t => {
  const { url, sign } = await serve(t, { sources: ['query'] })
  const exp = now() + 3600
  const before = Date.now()
  const a = connect(url('/ws?token=' + sign({ sub: 'u1', exp })))
  const first = await established(a)
  t.equal(first.expires_at, new Date(exp * 1000).toISOString(), 'the ISO time of exp')
  const at = Date.parse(first.timestamp)
  t.equal(new Date(at).toISOString(), first.timestamp, 'timestamp is ISO')
  t.ok(at >= before - 1000 && at <= Date.now() + 1000, 'timestamp is now')
  const b = connect(url('/ws?token=' + sign({ sub: 'u1' })))
  const second = await established(b)
  t.equal(second.expires_at, null, 'no exp: null')
  t.type(first.client_id, 'string')
  t.ok(first.client_id.length > 0)
  t.not(first.client_id, second.client_id, 'client ids are unique')
  await leave(a)
  await leave(b)
})

t.test('custom verify', async t => {
  const tokens: Record<string, unknown> = {
    'opaque-ok': { sub: 'u1', roles: ['admin'] },
    'opaque-null': null,
    'opaque-false': false,
    'opaque-undefined': undefined,
    'opaque-string': 'u1',
    'opaque-array': [{ sub: 'u1' }]
  }
  const seen: string[] = []
  const verify = async (token: string, request: FastifyRequest) => {
    seen.push(request.url.split('?')[0])
    if (token === 'opaque-invalid') throw new InvalidTokenError()
    if (token === 'opaque-expired') throw new TokenExpiredError()
    if (token === 'opaque-broken') throw new Error('introspection endpoint down: client_secret=s3cr3t')
    return tokens[token] as WsAuthClaims
  }
  for (const jwt of [false, undefined] as const) {
    t.test(jwt === false ? 'without @fastify/jwt' : 'with @fastify/jwt registered too: verify wins', async t => {
      seen.length = 0
      let spy!: RouteSpy
      const app = await buildApp(t, { jwt, auth: { sources: ['query'], verify }, routes: (app) => { spy = spyRoute(app, '/ws') } })
      const open = (token: string) => connect(app.url('/ws?token=' + token))

      const ok = open('opaque-ok')
      t.match(await established(ok), { user: { id: 'u1', roles: ['admin'] } }, 'claims returned -> accepted')
      await leave(ok)
      t.same(seen, ['/ws'], 'verify got the request')

      for (const token of ['opaque-null', 'opaque-false', 'opaque-undefined', 'opaque-string', 'opaque-array', 'unknown']) {
        t.same(await refusal(open(token)), { code: 4001, reason: 'Invalid token' }, `${token}: no claims -> 4001`)
      }
      t.same(await refusal(open('opaque-invalid')), { code: 4001, reason: 'Invalid token' }, 'InvalidTokenError -> 4001 Invalid token')
      const expired = await refusal(open('opaque-expired')) as Closed
      t.equal(expired.code, 4001)
      t.match(expired.reason, /expired/i, 'TokenExpiredError -> the reason says expired')
      t.same(await refusal(open('opaque-broken')), { code: 1011, reason: 'Internal error' }, 'a plain Error -> 1011, no internals')
      if (jwt === undefined) {
        t.same(await refusal(open(app.sign({ sub: 'u1' }))), { code: 4001, reason: 'Invalid token' }, 'a JWT that verify does not know is refused')
      }
      const again = open('opaque-ok')
      await established(again)
      await leave(again)
      t.equal(spy.calls, 2, 'only the accepted clients reached the handler; the server kept serving')
    })
  }
})

t.test('startup error FST_WS_AUTH_NO_VERIFIER: neither @fastify/jwt nor verify', async t => {
  await t.rejects(buildApp(t, { jwt: false }), { code: 'FST_WS_AUTH_NO_VERIFIER', message: /@fastify\/jwt.*verify/ })
})

t.test('startup error FST_WS_AUTH_COOKIE_PLUGIN_MISSING: cookie source without @fastify/cookie', async t => {
  await t.rejects(buildApp(t, { auth: { sources: ['cookie'], allowedOrigins: ['https://app.test'] } }),
    { code: 'FST_WS_AUTH_COOKIE_PLUGIN_MISSING', message: /@fastify\/cookie/ }, 'plugin-level sources')
  await t.rejects(buildApp(t, {
    auth: { sources: ['query'] },
    routes: (app) => { spyRoute(app, '/ws', { sources: ['cookie'] }) }
  }), { code: 'FST_WS_AUTH_COOKIE_PLUGIN_MISSING' }, 'route-level sources')
  await buildApp(t, { auth: { sources: ['cookie'], allowedOrigins: ['https://app.test'] }, before: async (app) => { await app.register(cookie) } })
  t.pass('starts with @fastify/cookie registered')
})

t.test('startup warning: cookie source without allowedOrigins', async t => {
  const warnings = async (auth: WsAuthPluginOptions) => {
    const logs = logCapture()
    await buildApp(t, {
      auth,
      fastify: { logger: { level: 'info', stream: logs.stream } },
      before: async (app) => { await app.register(cookie) }
    })
    return logs.records().filter(r => r.level === 40).map(r => String(r.msg))
  }
  const warned = await warnings({ sources: ['cookie', 'query'] })
  t.equal(warned.length, 1)
  t.match(warned[0], /cookie.*allowedOrigins/)
  t.same(await warnings({ sources: ['cookie'], allowedOrigins: ['https://app.test'] }), [], 'no warning with allowedOrigins')
  t.same(await warnings({ sources: ['query'] }), [], 'no warning without the cookie source')
})
