import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import { CookiePluginMissingError, InvalidRouteOptionError } from '../errors.ts'
import { clock, type Cancel } from '../protocol/clock.ts'
import type { WsAuthPluginOptions, WsAuthRouteSetting } from '../types.ts'
import type { Verifier } from './authenticate.ts'
import { buildDecorator } from './decorator.ts'
import { Host } from './host.ts'
import { isEnclosingScope } from './internals.ts'
import { jwtVerifier } from './jwt.ts'
import { buildObserver } from './observer.ts'
import { buildConfig, buildRoutePolicy } from './options.ts'
import { buildReqSerializer, redactRequestLogs, redactUrl } from './redact.ts'
import { optOutHook, routeGuard } from './route-guard.ts'
import { failClosed, guardServer, scrubClientErrors } from './upgrade.ts'

/*
 * The plugin: checks its options, decorates, puts its hook first on every websocket route
 * declared after it, guards the WebSocketServer, and runs the timers of live sessions.
 */

/** Marks the plugin's route hooks with the instance that added them. */
const kOwner = Symbol.for('fastify-ws-auth.owner')

type WebsocketRoute = RouteOptions & { wsAuth?: WsAuthRouteSetting, websocket?: boolean, wsHandler?: unknown }
type RouteHook = ((...args: never[]) => unknown) & { [kOwner]?: FastifyInstance }

const wsAuthPlugin: FastifyPluginAsync<WsAuthPluginOptions> = async function fastifyWsAuth (fastify, opts) {
  const config = buildConfig(opts)
  const host = new Host(config, fastify.log)
  host.observer = await buildObserver(config, host.gaugeSource())
  // Every request line of the app's logger, 404s included; else a serializer per protected route.
  const params = config.secretParams
  const serializeRequest = redactRequestLogs(fastify.log, params) ? null : buildReqSerializer(params)
  let usesCookie = config.sources.includes('cookie')

  if (usesCookie && config.originAllowed === null) {
    fastify.log.warn('fastify-ws-auth: the "cookie" source is enabled without "allowedOrigins": any web page can open an authenticated socket with the user\'s cookie (cross-site WebSocket hijacking)')
  }
  if (!fastify.hasRequestDecorator('user')) fastify.decorateRequest('user', null as never)
  // A token sent to a path with no route would reach the 404 handler's log line and its answer.
  fastify.addHook('onRequest', function redactNotFound (request, _reply, done) {
    if (request.is404 && request.raw.url !== undefined && request.raw.url.includes('?')) {
      request.raw.url = redactUrl(request.raw.url, params)
    }
    done()
  })
  fastify.decorate('wsAuth', buildDecorator(host))
  // This instance's own opt-out hook, so that it can be told from another instance's.
  const optOut: RouteHook = (request: FastifyRequest, reply: FastifyReply, done: () => void) => optOutHook(request, reply, done)

  fastify.addHook('onRoute', function onRoute (route: WebsocketRoute) {
    const isWebsocket = route.websocket === true || route.wsHandler !== undefined
    if (!isWebsocket) {
      if (route.wsAuth !== undefined && route.method !== 'HEAD') {
        throw new InvalidRouteOptionError(route.url, 'wsAuth', 'is set on a route that is not a websocket route (add websocket: true)')
      }
      return
    }
    // Fastify adds a HEAD twin of every GET route; it cannot be upgraded.
    if (route.method === 'HEAD') return
    const hooks = toArray(route.preValidation as RouteHook | RouteHook[] | undefined)
    // With the plugin registered in nested scopes, the innermost instance governs the route alone.
    if (hooks.some(hook => hook[kOwner] !== undefined && hook[kOwner] !== fastify && isEnclosingScope(fastify, hook[kOwner]))) return
    const policy = buildRoutePolicy(config, route.url, route.wsAuth)
    const guard: RouteHook = policy === null ? optOut : routeGuard(host, policy)
    guard[kOwner] = fastify
    route.preValidation = [guard, ...hooks.filter(hook => hook[kOwner] === undefined)] as RouteOptions['preValidation']
    if (policy === null) return
    if (policy.requestSources.includes('cookie')) usesCookie = true
    if (policy.requestSources.includes('ticket')) host.tickets.routes.add(policy.url)
    if (serializeRequest === null) return
    // Fastify's own `incoming request` line is written before any hook: redact its URL.
    if (route.logSerializers) route.logSerializers.req = serializeRequest
    else route.logSerializers = { req: serializeRequest }
  })

  if (fastify.hasDecorator('websocketServer')) {
    if (config.websocket !== undefined) {
      fastify.log.warn('fastify-ws-auth: option "websocket" is ignored: @fastify/websocket was registered before fastify-ws-auth')
    }
  } else {
    await fastify.register(websocket, config.websocket ?? {})
  }
  guardServer(fastify.websocketServer, config, fastify.log)
  failClosed(fastify.websocketServer, fastify.server, fastify.log)
  scrubClientErrors(fastify.server)

  const timers: Cancel[] = []
  fastify.addHook('onReady', async function start () {
    if (usesCookie && !fastify.hasRequestDecorator('cookies')) throw new CookiePluginMissingError()
    host.verifier = config.verify === undefined ? jwtVerifier(fastify) : config.verify as Verifier
    if (config.heartbeatInterval !== null) timers.push(clock.every(config.heartbeatInterval, () => host.registry.heartbeat()))
    if (config.revalidateInterval !== null) timers.push(clock.every(config.revalidateInterval, () => { host.revalidate() }))
    timers.push(clock.every(60_000, () => host.revocations.sweep()))
    if (config.adapter !== null) await config.adapter.start(host)
    // Added once Fastify has added its own close handler: onClose handlers run last-added first,
    // so this one runs before every preClose hook, and sockets see 1001 whatever the order of
    // registration (@fastify/websocket's preClose closes them without a code).
    fastify.addHook('onClose', async function goingAway () {
      for (const cancel of timers) cancel()
      host.observer?.metrics?.close()
      host.registry.closeAll('going_away')
      host.deadlines.stop()
      if (config.adapter !== null) await config.adapter.close()
    })
  })
}

function toArray<T> (value: T | T[] | undefined): T[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value : [value]
}

/**
 * The plugin. Register it once, next to `@fastify/jwt`; it registers `@fastify/websocket` too when
 * the app has not. Every `websocket: true` route declared after it requires a valid token.
 */
export const fastifyWsAuth = fp(wsAuthPlugin, {
  fastify: '5.x',
  name: 'fastify-ws-auth'
})
