#!/usr/bin/env node
// fastify-ws-auth probe: connects to a protected WebSocket route once per transport with no
// token, a garbage token and the given one, and prints what the server answered. Plain ESM on
// top of the built client (dist/esm/client), so it runs wherever the package is installed.
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'

const USAGE = `Usage: fastify-ws-auth probe <url> [options]

Connects to <url> once per transport (protocol, message, query, header) with no token, a garbage
token and the given token, all at once, and prints what the server answered: close code, reason,
the failure class and retry advice of the close-code table, and the time it took.

Options:
  --token <jwt>            the token to try (or set WS_AUTH_TOKEN, which stays out of shell history)
  --protocol <name>        an app subprotocol to offer as well (repeatable)
  --transports <list>      comma-separated subset of protocol,message,query,header (default: all)
  --timeout <ms>           give up on one connection after this long (default: 10000)
  --origin <origin>        send this Origin header (to test allowedOrigins)
  --query-param <name>     the server's queryParam (default: token)
  --protocol-prefix <p>    the server's protocolPrefix (default: bearer)
  --json                   print JSON instead of a table
  -h, --help               this text

Exit status: 0 when the given token was accepted on at least one transport, 1 when it was not
(or no token was given), 2 on a usage error.`

// Shaped like a JWT, with a signature no server will accept.
const GARBAGE = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwcm9iZSJ9.bm90LWEtcmVhbC1zaWduYXR1cmU'
const TRANSPORTS = ['protocol', 'message', 'query', 'header']

class UsageError extends Error {}

function parse (argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      token: { type: 'string' },
      protocol: { type: 'string', multiple: true, default: [] },
      transports: { type: 'string', default: TRANSPORTS.join(',') },
      timeout: { type: 'string', default: '10000' },
      origin: { type: 'string' },
      'query-param': { type: 'string', default: 'token' },
      'protocol-prefix': { type: 'string', default: 'bearer' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  if (values.help) return { help: true }
  const [command, url, ...rest] = positionals
  if (command !== 'probe') throw new UsageError(command === undefined ? 'missing command "probe"' : `unknown command "${command}"`)
  if (url === undefined) throw new UsageError('missing <url>')
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`)
  const transports = values.transports.split(',').map(s => s.trim()).filter(Boolean)
  for (const transport of transports) {
    if (!TRANSPORTS.includes(transport)) throw new UsageError(`unknown transport "${transport}" (known: ${TRANSPORTS.join(', ')})`)
  }
  const timeout = Number(values.timeout)
  if (!Number.isInteger(timeout) || timeout <= 0) throw new UsageError('--timeout must be a positive whole number of ms')
  let parsed
  try {
    parsed = new URL(url)
  } catch {
    throw new UsageError(`not a URL: ${url}`)
  }
  if (!['ws:', 'wss:', 'http:', 'https:'].includes(parsed.protocol)) throw new UsageError('the URL must use ws:, wss:, http: or https:')
  parsed.protocol = parsed.protocol.replace(/^http/, 'ws')
  return {
    url: parsed.href,
    token: values.token ?? process.env.WS_AUTH_TOKEN,
    protocols: values.protocol,
    transports,
    timeout,
    origin: values.origin,
    queryParam: values['query-param'],
    protocolPrefix: values['protocol-prefix'],
    json: values.json
  }
}

/** `ws` (which exposes refused handshakes and sends headers), else the runtime's WebSocket. */
function loadWebSocket () {
  const require = createRequire(import.meta.url)
  for (const from of [null, '@fastify/websocket']) {
    try {
      const scoped = from === null ? require : createRequire(require.resolve(from))
      return { WebSocket: scoped('ws'), isWs: true }
    } catch {}
  }
  if (typeof globalThis.WebSocket === 'function') return { WebSocket: globalThis.WebSocket, isWs: false }
  return null
}

/** How one attempt carries `token` (`null`: no token at all, only the transport's shape). */
function plan (client, options, transport, token) {
  const plain = { url: options.url, protocols: [...options.protocols], authMessage: null, headers: undefined }
  if (transport === 'header') return token === null ? plain : { ...plain, headers: { Authorization: `Bearer ${token}` } }
  if (token === null) {
    // The protocol transport still offers its companion entry, as a client without a token would.
    return transport === 'protocol' ? { ...plain, protocols: [options.protocolPrefix, ...options.protocols] } : plain
  }
  const shape = client.handshake({ url: options.url, token, transport, protocols: options.protocols, queryParam: options.queryParam, protocolPrefix: options.protocolPrefix })
  return { ...shape, headers: undefined }
}

/** One connection: resolves with what the server answered, never rejects. */
function attempt (client, ws, options, transport, kind, token) {
  const started = performance.now()
  const row = { transport, token: kind }
  const { url, protocols, authMessage, headers } = plan(client, options, transport, token)
  const socket = ws.isWs
    ? new ws.WebSocket(url, protocols, { headers, origin: options.origin, handshakeTimeout: options.timeout })
    : new ws.WebSocket(url, protocols)
  return new Promise((resolve) => {
    let done = false
    const finish = (result) => {
      if (done) return
      done = true
      clearTimeout(timer)
      resolve({ ...row, ...result, ms: Math.round(performance.now() - started) })
    }
    const timer = setTimeout(() => {
      finish({ result: 'timeout', detail: `no answer in ${options.timeout} ms` })
      if (ws.isWs) socket.terminate()
      else socket.close()
    }, options.timeout)
    if (ws.isWs) {
      socket.on('unexpected-response', (_req, res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk) => { body += chunk })
        res.on('end', () => {
          let failure
          try { failure = JSON.parse(body).failure } catch {}
          const match = client.rowForStatus(res.statusCode, failure, client.closeCodes)
          finish({ result: 'http', code: res.statusCode, reason: match?.reason ?? '', failure: match?.failure, retry: match?.retry ?? 'backoff' })
          socket.terminate()
        })
      })
    }
    socket.onerror = () => {}
    socket.onopen = () => {
      if (authMessage !== null) socket.send(authMessage)
    }
    socket.onmessage = (event) => {
      const control = client.parseControl(typeof event.data === 'string' ? event.data : '')
      const detail = control?.type === 'connection_established'
        ? `user ${JSON.stringify(control.user?.id)}, expires ${control.expires_at ?? 'never'}${socket.protocol ? `, protocol ${socket.protocol}` : ''}`
        : 'open, but the first message was not connection_established'
      finish({ result: control?.type === 'connection_established' ? 'established' : 'open', detail })
      socket.close(1000)
    }
    socket.onclose = (event) => {
      const match = client.rowForClose(event.code, event.reason, client.closeCodes)
      finish({ result: 'closed', code: event.code, reason: event.reason, failure: match?.failure, retry: match?.retry ?? 'backoff' })
    }
  })
}

function table (rows) {
  const columns = [
    ['transport', r => r.transport],
    ['token', r => r.token],
    ['result', r => r.result],
    ['code', r => r.code === undefined ? '' : String(r.code)],
    ['reason', r => r.reason ?? ''],
    ['failure', r => r.failure ?? ''],
    ['retry', r => r.retry ?? ''],
    ['ms', r => String(r.ms)],
    ['detail', r => r.detail ?? '']
  ]
  const cells = [columns.map(([name]) => name), ...rows.map(r => columns.map(([, get]) => get(r)))]
  const widths = columns.map((_, i) => Math.max(...cells.map(line => line[i].length)))
  return cells.map(line => line.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n')
}

async function main (argv) {
  let options
  try {
    options = parse(argv)
  } catch (err) {
    process.stderr.write(`fastify-ws-auth: ${err.message}\n\n${USAGE}\n`)
    return 2
  }
  if (options.help) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  let client
  try {
    client = await import('../dist/esm/client/index.js')
  } catch (err) {
    process.stderr.write(`fastify-ws-auth: cannot load the built client (dist/esm/client/index.js): run "npm run build" first (${err.message})\n`)
    return 2
  }
  const ws = loadWebSocket()
  if (ws === null) {
    process.stderr.write('fastify-ws-auth: no WebSocket implementation: install "ws" or use Node.js 22 or later\n')
    return 2
  }
  const transports = options.transports.filter(t => t !== 'header' || ws.isWs)
  const tokens = [['missing', null], ['garbage', GARBAGE]]
  // The refusals run all at once (a missing token may wait out the server's authTimeout); the
  // given token connects once per transport, one after another, so a per-user connection limit
  // does not refuse the probe's own connections.
  const refusals = Promise.all(transports.flatMap(transport =>
    tokens.map(([kind, token]) => attempt(client, ws, options, transport, kind, token))))
  const accepted = []
  for (const transport of options.token ? transports : []) {
    accepted.push(await attempt(client, ws, options, transport, 'given', options.token))
  }
  const order = (r) => transports.indexOf(r.transport) * 3 + ['missing', 'garbage', 'given'].indexOf(r.token)
  const rows = [...await refusals, ...accepted].sort((a, b) => order(a) - order(b))
  if (options.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n')
  else process.stdout.write(table(rows) + '\n')
  if (!options.token) {
    process.stderr.write('fastify-ws-auth: no --token given (nor WS_AUTH_TOKEN): only the missing and garbage rows were tried\n')
    return 1
  }
  return rows.some(r => r.token === 'given' && r.result === 'established') ? 0 : 1
}

process.exitCode = await main(process.argv.slice(2))
