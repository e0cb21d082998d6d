// The servers under test: what runs (kind, see bench/servers/), how a client authenticates
// (auth), and what its first message must contain for a handshake to count.
//   quick: part of `--quick` (the servers the targets of issue 5 compare; the others are for information);
//   cross: the off-the-shelf client of the cross-check ('ws' | 'sio');
//   logged: Fastify's logger on at `info` (pino to /dev/null) instead of `logger: false`;
//   direct: the plugin with a custom `verify` calling `fastify.jwt.verify` (no request.jwtVerify());
//   lean: the baseline with what the plugin does for its own sockets (see bench/servers/fastify-ws.mjs);
//   messages: the route's `wsAuth.messages` (issue 17's echo rows: the same route with message policies);
//   source 'ticket': the route reads one-time tickets from `?ticket=` instead of tokens (issue 18's row;
//     the server issues a fresh ticket per connection before each round, see bench/lib/tickets.mjs);
//   metrics, traces: the plugin's `metrics` (true: `{ registry: new Registry() }`, a registry of the
//     server's own) and `traces` options (issue 19's rows). Without `traces`, the plugin's default
//     ('auto'): `@opentelemetry/api` is installed, so every plugin server asks the global tracer for a
//     span per handshake, and with no tracer provider registered gets a non-recording one.

const HELLO = '"type":"hello"'
const ESTABLISHED = '"type":"connection_established"'

function plugin (id, label, { alg = 'HS256', cache = false, source = 'query', quick = true, cross = null, logged = false, direct = false, messages = null, metrics = false, traces } = {}) {
  return { id, label, kind: 'plugin', alg, cache, source, auth: source, protocol: 'ws', expect: ESTABLISHED, quick, cross, logged, direct, messages, metrics, traces }
}

// The echo message is `{"type":"message",...}` (bench/lib/clients.mjs ECHO_BODY). Unlisted: policies
// for other types, as a route would have (the frame is let through by a byte search, not parsed);
// listed: its own type with a roles policy the bench user (roles: ['admin']) passes.
const UNLISTED = { 'order:void': { roles: ['manager'] }, 'stats:get': { permissions: ['analytics.view'] }, 'debug:dump': false }
const LISTED = { ...UNLISTED, message: { roles: ['admin', 'staff'] } }

function hand (id, label, { alg = 'HS256', cache = false, quick = false, logged = false } = {}) {
  return { id, label, kind: 'hand-jwt', alg, cache, auth: 'query', protocol: 'ws', expect: HELLO, quick, cross: null, logged }
}

export const variants = [
  { id: 'raw-ws', label: '(1) raw ws', kind: 'raw-ws', auth: 'none', protocol: 'ws', expect: HELLO, quick: false, cross: 'ws' },
  { id: 'baseline', label: '(2) @fastify/websocket (baseline)', kind: 'fastify-ws', auth: 'none', protocol: 'ws', expect: HELLO, quick: true, cross: 'ws' },
  { id: 'baseline-lean', label: '(2) baseline + the plugin\'s lean sockets', kind: 'fastify-ws', lean: true, auth: 'none', protocol: 'ws', expect: HELLO, quick: false, cross: null },
  hand('hand-hs256', '(3) preValidation + @fastify/jwt, HS256', { quick: true }),
  hand('hand-rs256', '(3) preValidation + @fastify/jwt, RS256', { alg: 'RS256' }),
  hand('hand-es256', '(3) preValidation + @fastify/jwt, ES256', { alg: 'ES256' }),
  hand('hand-es256-cache', '(3) preValidation + @fastify/jwt, ES256 cached', { alg: 'ES256', cache: true }),
  plugin('plugin-hs256', '(4) fastify-ws-auth, HS256 ?token=, roles', { cross: 'ws' }),
  plugin('plugin-hs256-cache', '(4) fastify-ws-auth, HS256 ?token=, roles, cached', { cache: true, quick: false }),
  plugin('plugin-direct', '(4) fastify-ws-auth, HS256, verify: fastify.jwt.verify', { direct: true, quick: false }),
  plugin('plugin-header', '(4) fastify-ws-auth, HS256 Authorization header', { source: 'header', quick: false }),
  plugin('plugin-protocol', '(4) fastify-ws-auth, HS256 subprotocol', { source: 'protocol', quick: false }),
  plugin('plugin-messages-unlisted', '(4) the same route with `messages`, echoing an unlisted type', { quick: false, messages: UNLISTED }),
  plugin('plugin-messages-listed', '(4) the same route with `messages`, echoing a listed type (roles policy)', { quick: false, messages: LISTED }),
  plugin('plugin-ticket', '(4) the same route reading one-time tickets, ?ticket=', { source: 'ticket', quick: false }),
  plugin('plugin-traces-off', '(4) the same route with traces: false', { quick: false, traces: false }),
  plugin('plugin-metrics', '(4) the same route with metrics: { registry }, traces: false', { quick: false, metrics: true, traces: false }),
  plugin('plugin-message', '(5) fastify-ws-auth, first-message auth', { source: 'message', quick: false }),
  plugin('plugin-rs256', '(6) fastify-ws-auth, RS256', { alg: 'RS256', quick: false }),
  plugin('plugin-rs256-cache', '(6) fastify-ws-auth, RS256 cached', { alg: 'RS256', cache: true }),
  plugin('plugin-es256', '(6) fastify-ws-auth, ES256', { alg: 'ES256', quick: false }),
  plugin('plugin-es256-cache', '(6) fastify-ws-auth, ES256 cached', { alg: 'ES256', cache: true }),
  { id: 'socketio', label: '(7) socket.io + io.use JWT, HS256', kind: 'socketio', alg: 'HS256', cache: false, auth: 'eio', protocol: 'eio', expect: '40{', quick: true, cross: 'sio' },
  { id: 'baseline-logged', label: '(2) baseline, logger on', kind: 'fastify-ws', auth: 'none', protocol: 'ws', expect: HELLO, quick: false, cross: null, logged: true },
  hand('hand-hs256-logged', '(3) hand-written HS256, logger on', { logged: true }),
  plugin('plugin-hs256-logged', '(4) fastify-ws-auth HS256, logger on', { quick: false, logged: true })
]

/** The plugin figure the quick run ends with, and the baseline every ratio is taken to. */
export const PLUGIN_ID = 'plugin-hs256'
export const BASELINE_ID = 'baseline'
/** Issue 17's echo rows: these, each ÷ the plugin's same route without `messages` (PLUGIN_ID). */
export const MESSAGES_IDS = ['plugin-messages-unlisted', 'plugin-messages-listed']
/** Issue 18's row: the ticket handshake ÷ the HS256 query-token handshake of the same route (PLUGIN_ID). */
export const TICKET_ID = 'plugin-ticket'
/**
 * Issue 19's rows, each ÷ `off` (the same route with `traces: false`, no metrics): `metrics` (metrics on,
 * traces off) and `auto` (the plugin's default: traces 'auto', no tracer provider; PLUGIN_ID itself).
 */
export const OBSERVABILITY_IDS = { off: 'plugin-traces-off', metrics: 'plugin-metrics', auto: PLUGIN_ID }
