import createError from '@fastify/error'

/**
 * Every error this plugin throws, one table. Startup errors are thrown at registration (or at
 * route declaration) and name the option at fault; none carries a token.
 */

/** An option has a wrong type or value; the message names the option. */
export const InvalidOptionError = createError<'FST_WS_AUTH_INVALID_OPTION', [string, string, { cause: unknown }?]>(
  'FST_WS_AUTH_INVALID_OPTION', 'fastify-ws-auth: option "%s" %s', 500, TypeError)

/** A route's `wsAuth` setting is invalid; the message names the route and the field. */
export const InvalidRouteOptionError = createError<'FST_WS_AUTH_INVALID_ROUTE_OPTION', [string, string, string]>(
  'FST_WS_AUTH_INVALID_ROUTE_OPTION', 'fastify-ws-auth: route %s: %s %s', 500, TypeError)

/** Neither `@fastify/jwt` nor a `verify` option is available. */
export const NoVerifierError = createError(
  'FST_WS_AUTH_NO_VERIFIER',
  'fastify-ws-auth: no way to verify tokens: register @fastify/jwt before fastify-ws-auth, or pass a "verify" option', 500)

/** The `cookie` source is enabled but `@fastify/cookie` is not registered. */
export const CookiePluginMissingError = createError(
  'FST_WS_AUTH_COOKIE_PLUGIN_MISSING',
  'fastify-ws-auth: the "cookie" source needs @fastify/cookie: register @fastify/cookie before fastify-ws-auth, or remove "cookie" from "sources"', 500)

/** An upgrade reached a websocket route that this plugin does not guard; it was refused. */
export const UnguardedRouteError = createError<'FST_WS_AUTH_UNGUARDED_ROUTE', [string]>(
  'FST_WS_AUTH_UNGUARDED_ROUTE',
  'fastify-ws-auth: refused a WebSocket upgrade to %s: no fastify-ws-auth guard on this route (a plain HTTP route, or a websocket route declared before the plugin was registered or outside its scope: declare it after registering fastify-ws-auth, or set wsAuth: false on it)', 500)

/** A registry call got an argument it cannot use; the message names it. */
export const InvalidArgumentError = createError<'FST_WS_AUTH_INVALID_ARGUMENT', [string, string]>(
  'FST_WS_AUTH_INVALID_ARGUMENT', 'fastify-ws-auth: %s %s', 500, TypeError)

/**
 * Throw this from a custom `verify` to say "this token is bad" (closes with 4001 `Invalid token`).
 * Anything else thrown by `verify` means "I could not verify" and closes with 1011.
 */
export const InvalidTokenError = createError('FST_WS_AUTH_INVALID_TOKEN', 'Invalid token', 401)

/** Throw this from a custom `verify` for an expired token (closes with 4001 `Token expired`). */
export const TokenExpiredError = createError('FST_WS_AUTH_TOKEN_EXPIRED', 'Token expired', 401)

/**
 * Throw this from a custom `verify` (or an `@fastify/jwt` `secret` function) when the keys cannot
 * be fetched right now: the JWKS endpoint is down, slow or answers garbage. Closes with 1013
 * `Try again later` (the client backs off and keeps its token), not 4001. Pass the failure as
 * `{ cause }`; it is logged (scrubbed), never sent.
 */
export const KeySourceUnavailableError = createError<'FST_WS_AUTH_KEY_SOURCE_UNAVAILABLE', [{ cause: unknown }?]>(
  'FST_WS_AUTH_KEY_SOURCE_UNAVAILABLE', 'fastify-ws-auth: the signing keys cannot be fetched right now', 503)
