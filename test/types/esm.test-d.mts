// The `import` condition of the package: dist/esm/index.d.ts.
import Fastify from 'fastify'
import wsAuth, { closeCodes, fastifyWsAuth, type WsAuthPluginOptions } from 'fastify-ws-auth'

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectTrue<T extends true> (_: T): void {}

expectTrue<Equal<typeof wsAuth, typeof fastifyWsAuth>>(true)
expectTrue<Equal<typeof closeCodes.no_token.code, 4001>>(true)

const app = Fastify()
const options: WsAuthPluginOptions = { sources: ['query', 'message'] }
await app.register(wsAuth, options)
// @ts-expect-error: unknown source
await app.register(wsAuth, { sources: ['body'] })
app.get('/ws', { websocket: true, wsAuth: { roles: ['admin'] } }, (socket) => { socket.send('hi') })
// @ts-expect-error: roles is a list
app.get('/ws/bad', { websocket: true, wsAuth: { roles: 'admin' } }, () => {})
app.get('/ws/user', { websocket: true }, (socket) => { socket.send(String(socket.user?.id)) })
