// Traces when nothing records: @opentelemetry/api installed but no tracer provider registered (the
// default for an app that does not set up OpenTelemetry), and @opentelemetry/api missing. The
// subtests run in order: the provider is registered halfway, in this file's process alone.
import t from 'tap'
import Fastify from 'fastify'
import jwt from '@fastify/jwt'
import { trace } from '@opentelemetry/api'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { AddressInfo } from 'node:net'
import type { WsAuthPluginOptions } from '../lib/types.ts'
import { buildApp, connect, connectWith, refusal, serverSockets, SECRET } from './helpers/index.ts'

const exporter = new InMemorySpanExporter()
const ours = () => exporter.getFinishedSpans().filter(span => span.instrumentationScope.name === 'fastify-ws-auth')

t.test('no tracer provider: every kind of handshake and refresh works as without traces', async t => {
  const { app, url, sign } = await buildApp(t, {
    routes: (app) => {
      app.get('/ws', { websocket: true }, (socket) => { socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })) })
      app.get('/ws/http', { websocket: true, wsAuth: { reject: 'http', sources: ['header'] } }, () => {})
    }
  })
  const sockets = serverSockets(app)
  const client = connectWith(url('/ws'), 'header', sign({ sub: 'u1' }))
  t.match(await client.message(1), { type: 'connection_established' }, 'established')
  client.send({ type: 'auth', token: sign({ sub: 'u1', exp: Math.floor(Date.now() / 1000) + 600 }) })
  t.match(await client.message(2), { type: 'token_refreshed' }, 'refreshed')
  client.send('hello')
  t.equal(await client.message(3), 'hello', 'the handler has the socket')
  client.send({ type: 'auth', token: sign({ sub: 'u2' }) })
  t.same(await client.closed, { code: 4001, reason: 'Invalid token' }, 'a refused refresh')

  const viaMessage = connectWith(url('/ws'), 'message', sign({ sub: 'u1' }))
  t.match(await viaMessage.message(1), { type: 'connection_established' }, 'through the first message')
  viaMessage.ws.close()
  t.same(await refusal(connectWith(url('/ws'), 'query', 'not-a-jwt')), { code: 4001, reason: 'Invalid token' }, 'refused')
  t.equal(await connectWith(url('/ws/http'), 'header', 'not-a-jwt').refusedStatus, 401, 'refused over HTTP')
  const silent = connect(url('/ws'))
  await silent.opened
  silent.ws.close()
  await silent.closed
  await sockets.allClosed()
  t.equal(app.wsAuth.stats().failures['4001'], 3, 'the refusals counted as ever')
})

t.test('a provider registered after the app started: spans from then on', async t => {
  const { url, sign } = await buildApp(t)
  const before = connectWith(url('/ws'), 'header', sign({ sub: 'u1' }))
  await before.message(1)
  before.ws.close()

  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  t.ok(trace.setGlobalTracerProvider(provider), 'registered')
  t.teardown(() => provider.shutdown())
  await connectWith(url('/ws'), 'header', sign({ sub: 'u2' })).message(1)
  t.strictSame(ours().map(span => [span.name, span.attributes['ws.auth.outcome']]), [['ws.auth.handshake', 'established']],
    'the handshake after the registration only')
})

t.test('without @opentelemetry/api', async t => {
  // A module that throws as it is read stands for one that is not installed.
  const { default: plugin } = t.mockRequire('../lib/index.ts', {
    '@opentelemetry/api': { get trace (): never { throw new Error('Cannot find module \'@opentelemetry/api\'') } }
  }) as typeof import('../lib/index.ts')

  /** An app with the plugin that cannot load the api, listening; or the error its registration raised. */
  async function start (traces: unknown) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(jwt, { secret: SECRET })
    try {
      await app.register(plugin, (traces === undefined ? {} : { traces }) as WsAuthPluginOptions)
      app.get('/ws', { websocket: true }, (socket) => { socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })) })
      await app.listen({ host: '127.0.0.1', port: 0 })
    } catch (err) {
      return { err: err as Error & { code?: string, cause?: Error } }
    }
    const { port } = app.server.address() as AddressInfo
    return { url: `ws://127.0.0.1:${port}/ws`, sign: (payload: object) => app.jwt.sign(payload) }
  }

  for (const traces of [true, { userId: true }, {}]) {
    const { err } = await start(traces)
    t.equal(err?.code, 'FST_WS_AUTH_INVALID_OPTION', `traces: ${JSON.stringify(traces)}: a startup error`)
    t.match(err?.message, /"traces".*@opentelemetry\/api/, 'naming the option and the package')
    t.match(err?.cause?.message, 'Cannot find module', 'with the cause')
  }

  for (const traces of [undefined, false]) {
    exporter.reset()
    const { err, url, sign } = await start(traces)
    t.equal(err, undefined, `traces: ${String(traces)}: no error`)
    t.match(await connectWith(url!, 'header', sign!({ sub: 'u1' })).message(1), { type: 'connection_established' }, 'the app works')
    t.strictSame(ours(), [], 'and no span, though a provider records')
  }
})
