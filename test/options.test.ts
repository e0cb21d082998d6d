import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import jwt from '@fastify/jwt'
import cookie from '@fastify/cookie'
import wsAuth from '../lib/index.ts'
import type { WsAuthPluginOptions } from '../lib/types.ts'
import { buildApp, connect, SECRET } from './helpers/index.ts'

type CodedError = Error & { code?: string, cause?: unknown }

/**
 * Registers the plugin with `opts` (then declares `routes`) and returns the error that
 * registration, route declaration or `ready()` raised; `undefined` when all went well.
 */
async function registrationError (opts: unknown, routes?: (app: FastifyInstance) => void): Promise<CodedError | undefined> {
  const app = Fastify()
  try {
    await app.register(jwt, { secret: SECRET })
    await app.register(wsAuth, opts as WsAuthPluginOptions)
    routes?.(app)
    await app.ready()
    return undefined
  } catch (err) {
    return err as CodedError
  } finally {
    await app.close().catch(() => {})
  }
}

const noop = () => {}

t.test('plugin options: registration fails loudly, naming the option', async t => {
  const cases: Array<[string, unknown, ...string[]]> = [
    ['unknown option (typo)', { source: ['query'] }, 'source'],
    ['plugin-level authorize (a route option)', { authorize: () => true }, 'authorize'],
    ['unknown source', { sources: ['query', 'body'] }, 'sources', 'body'],
    ['duplicate source', { sources: ['query', 'header', 'query'] }, 'sources'],
    ['empty sources', { sources: [] }, 'sources'],
    ['sources not an array', { sources: 'query' }, 'sources'],
    ['authTimeout 0', { authTimeout: 0 }, 'authTimeout'],
    ['authTimeout -1', { authTimeout: -1 }, 'authTimeout'],
    ['authTimeout 1.5', { authTimeout: 1.5 }, 'authTimeout'],
    ['authTimeout 2**31', { authTimeout: 2 ** 31 }, 'authTimeout'],
    ['authTimeout "5000"', { authTimeout: '5000' }, 'authTimeout'],
    ['authTimeout NaN', { authTimeout: NaN }, 'authTimeout'],
    ['authTimeout Infinity', { authTimeout: Infinity }, 'authTimeout'],
    ['maxAuthMessageBytes 0', { maxAuthMessageBytes: 0 }, 'maxAuthMessageBytes'],
    ['maxPendingMessages -1', { maxPendingMessages: -1 }, 'maxPendingMessages'],
    ['maxPendingBytes 1.5', { maxPendingBytes: 1.5 }, 'maxPendingBytes'],
    ['loadUser not a function', { loadUser: 'db' }, 'loadUser'],
    ['verify not a function', { verify: { url: 'https://auth.example' } }, 'verify'],
    ['publicUser not a function', { publicUser: true }, 'publicUser'],
    ['onAuthSuccess not a function', { onAuthSuccess: 'log' }, 'onAuthSuccess'],
    ['onAuthFailure not a function', { onAuthFailure: 1 }, 'onAuthFailure'],
    ['reject unknown', { reject: 'never' }, 'reject'],
    ['reject not a string', { reject: true }, 'reject'],
    ['protocolPrefix with a space', { protocolPrefix: 'bad prefix' }, 'protocolPrefix'],
    ['protocolPrefix with a comma', { protocolPrefix: 'bearer,x' }, 'protocolPrefix'],
    ['protocolPrefix empty', { protocolPrefix: '' }, 'protocolPrefix'],
    ['queryParam empty', { queryParam: '' }, 'queryParam'],
    ['cookieName not a string', { cookieName: 1 }, 'cookieName'],
    ['established not a boolean', { established: 'yes' }, 'established'],
    ['rolePermissions not an object', { rolePermissions: 'admin' }, 'rolePermissions'],
    ['rolePermissions an array', { rolePermissions: [['admin', ['x']]] }, 'rolePermissions'],
    ['rolePermissions null', { rolePermissions: null }, 'rolePermissions'],
    ['rolePermissions role -> string', { rolePermissions: { admin: 'journal.read' } }, 'rolePermissions.admin'],
    ['rolePermissions role -> [number]', { rolePermissions: { admin: [1] } }, 'rolePermissions.admin'],
    ['allowedOrigins a string', { allowedOrigins: 'https://app.example' }, 'allowedOrigins'],
    ['allowedOrigins [number]', { allowedOrigins: [443] }, 'allowedOrigins'],
    ['allowedOrigins [""]', { allowedOrigins: [''] }, 'allowedOrigins'],
    ['closeCodes not an object', { closeCodes: 'strict' }, 'closeCodes'],
    ['closeCodes unknown class', { closeCodes: { forbiden: { code: 4403 } } }, 'closeCodes.forbiden'],
    ['closeCodes code 1006', { closeCodes: { forbidden: { code: 1006 } } }, 'closeCodes.forbidden.code'],
    ['closeCodes code 5000', { closeCodes: { forbidden: { code: 5000 } } }, 'closeCodes.forbidden.code'],
    ['closeCodes 124-byte reason', { closeCodes: { forbidden: { reason: 'é'.repeat(62) } } }, 'closeCodes.forbidden.reason'],
    ['closeCodes status 200', { closeCodes: { forbidden: { status: 200 } } }, 'closeCodes.forbidden.status'],
    ['websocket not an object', { websocket: 'yes' }, 'websocket'],
    ['adapter missing methods', { adapter: { publish: () => 0 } }, 'adapter', 'missing: start, close, acquire, release, revoke, connections, stats'],
    ['reject http with only message', { reject: 'http', sources: ['message'] }, 'sources', 'reject', 'message']
  ]
  for (const [label, opts, ...names] of cases) {
    const err = await registrationError(opts)
    t.equal(err?.code, 'FST_WS_AUTH_INVALID_OPTION', `${label}: code`)
    t.ok(err instanceof TypeError, `${label}: a TypeError`)
    for (const name of names) t.match(err?.message, name, `${label}: message names ${name}`)
    t.match(err?.message, `"${names[0]}"`, `${label}: the option is quoted`)
  }
})

t.test('plugin options at their limits are accepted', async t => {
  const cases: Array<[string, WsAuthPluginOptions]> = [
    ['authTimeout 1', { authTimeout: 1 }],
    ['authTimeout 2**31 - 1', { authTimeout: 2 ** 31 - 1 }],
    ['every source once', { sources: ['message', 'protocol', 'cookie', 'header', 'query'] }],
    ['protocolPrefix with token characters', { protocolPrefix: 'x-auth.v1' }],
    ['a 123-byte reason', { closeCodes: { forbidden: { reason: 'é'.repeat(61) + 'x', code: 4403 } } }],
    ['allowedOrigins as a predicate', { allowedOrigins: () => true }],
    ['reject http with a request source', { reject: 'http', sources: ['header', 'message'] }],
    ['Fastify register options', { prefix: '/api', logLevel: 'warn' } as WsAuthPluginOptions]
  ]
  for (const [label, opts] of cases) {
    const err = await registrationError(opts, (app) => {
      // The `cookie` source needs @fastify/cookie.
      app.register(cookie)
    })
    t.equal(err, undefined, label)
  }
})

t.test('route options: errors name the route and the field', async t => {
  const handler = () => {}
  const cases: Array<[string, unknown, string, WsAuthPluginOptions?]> = [
    ['roles not an array', { roles: 'admin' }, 'roles'],
    ['permissions [number]', { permissions: [1] }, 'permissions'],
    ['unknown field (typo)', { rols: ['admin'] }, 'rols'],
    ['reject unknown', { reject: 'never' }, 'reject'],
    ['unknown source', { sources: ['body'] }, 'sources'],
    ['empty sources', { sources: [] }, 'sources'],
    ['authTimeout 0', { authTimeout: 0 }, 'authTimeout'],
    ['authTimeout "5000"', { authTimeout: '5000' }, 'authTimeout'],
    ['authorize not a function', { authorize: 'owner' }, 'authorize'],
    ['established not a boolean', { established: 1 }, 'established'],
    ['reject http with only message', { reject: 'http', sources: ['message'] }, 'sources'],
    ['only message under a plugin-wide reject http', { sources: ['message'] }, 'sources', { reject: 'http' }],
    ['wsAuth a string', 'admin', 'wsAuth'],
    ['wsAuth an array', ['admin'], 'wsAuth'],
    ['wsAuth null', null, 'wsAuth']
  ]
  for (const [label, setting, field, pluginOpts] of cases) {
    const err = await registrationError(pluginOpts ?? {}, (app) => {
      app.get('/ws/entries/:id', { websocket: true, wsAuth: setting as never }, handler)
    })
    t.equal(err?.code, 'FST_WS_AUTH_INVALID_ROUTE_OPTION', `${label}: code`)
    t.match(err?.message, '/ws/entries/:id', `${label}: message names the route`)
    t.match(err?.message, field, `${label}: message names ${field}`)
  }
})

t.test('route options: wsAuth through app.route and under a prefix', async t => {
  const viaRoute = await registrationError({}, (app) => {
    app.route({ method: 'GET', url: '/ws/r', websocket: true, wsAuth: { roles: 'admin' as never }, handler: () => {} })
  })
  t.equal(viaRoute?.code, 'FST_WS_AUTH_INVALID_ROUTE_OPTION')
  t.match(viaRoute?.message, /\/ws\/r\b.*roles/)

  const prefixed = await registrationError({}, (app) => {
    app.register(async (scope) => {
      scope.get('/ws/r', { websocket: true, wsAuth: { permissions: 'x' as never } }, () => {})
    }, { prefix: '/api' })
  })
  t.equal(prefixed?.code, 'FST_WS_AUTH_INVALID_ROUTE_OPTION')
  t.match(prefixed?.message, /\/api\/ws\/r\b.*permissions/, 'the full URL of the route')
})

t.test('wsAuth on a route that is not a websocket route is an error', async t => {
  const err = await registrationError({}, (app) => {
    app.get('/plain', { wsAuth: true }, async () => 'ok')
  })
  t.equal(err?.code, 'FST_WS_AUTH_INVALID_ROUTE_OPTION')
  t.match(err?.message, '/plain')
  t.match(err?.message, 'websocket')
})

function deepFreeze<T> (value: T): T {
  if (value !== null && (typeof value === 'object' || typeof value === 'function') && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const key of Reflect.ownKeys(value as object)) {
      const prop = (value as Record<string | symbol, unknown>)[key]
      if (prop !== null && typeof prop === 'object') deepFreeze(prop)
    }
  }
  return value
}

/** Plain-data view of an options object, functions by name, to compare before and after. */
function snapshot (value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (_key, v) => typeof v === 'function' ? `[fn ${v.name}]` : v))
}

t.test("the caller's options object is not mutated", async t => {
  const make = (): WsAuthPluginOptions => ({
    sources: ['query', 'header', 'protocol', 'message'],
    queryParam: 'token',
    authTimeout: 2000,
    reject: 'close',
    rolePermissions: { admin: ['journal.read', 'journal.write'], member: ['journal.read'] },
    allowedOrigins: ['https://app.example'],
    closeCodes: { forbidden: { code: 4403, reason: 'Nope' } },
    publicUser: function publicUser (user) { return { id: (user as { id: string }).id } },
    onAuthSuccess: function onAuthSuccess () {},
    websocket: { options: { maxPayload: 64 * 1024 } }
  })

  for (const frozen of [true, false]) {
    const opts = frozen ? deepFreeze(make()) : make()
    const before = snapshot(opts)
    const { url, sign } = await buildApp(t, {
      auth: opts,
      routes (app) {
        app.get('/ws', { websocket: true, wsAuth: { permissions: ['journal.read'] } }, noop)
        app.get('/ws/admin', { websocket: true, wsAuth: { permissions: ['journal.write'] } }, noop)
      }
    })
    const token = sign({ sub: 'u1', roles: ['member'] })
    const ok = connect(url('/ws?token=' + token))
    const hello = await ok.message(1) as { type: string, user: unknown }
    t.equal(hello.type, 'connection_established')
    t.same(hello.user, { id: 'u1' }, 'publicUser and rolePermissions are in effect')
    ok.ws.close()
    await ok.closed
    const no = connect(url('/ws/admin'), ['bearer.' + token, 'bearer'])
    t.same(await no.closed, { code: 4403, reason: 'Nope' }, 'closeCodes override in effect')
    t.same(snapshot(opts), before, frozen ? 'deep-frozen options work' : 'options left as they were')
  }
})
