// The HTML test page served at GET /admin/test: log in (or paste a token), connect to /admin/ws,
// send ping / get_stats (each with an `id`, which a `refused` answer carries back), and watch every
// message and close. Element ids are stable (a browser test drives them): #username #password
// #login #token #connect #disconnect #ping #get-stats #status #log.
// Each close is logged as `close <code> <reason>`, then its meaning and retry advice from the
// plugin's close-code table (the row with that code and reason, else the first with that code).
import type { CloseCodeTable } from 'fastify-ws-auth'

/** The rows of the table in force, as the page needs them to explain a close. */
function rows (table: CloseCodeTable): Array<{ code: number, reason: string, retry: string, description: string }> {
  return Object.values(table).map(({ code, reason, retry, description }) => ({ code, reason, retry, description }))
}

/** JSON safe to place inside a <script> element. */
function scriptJson (value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c')
}

export function testPage (options: { wsPath: string, loginPath: string, closeCodes: CloseCodeTable }): string {
  const config = scriptJson({ wsPath: options.wsPath, loginPath: options.loginPath, rows: rows(options.closeCodes) })
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Admin WebSocket test page</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2rem; max-width: 60rem; }
  fieldset { margin-bottom: 1rem; }
  textarea { width: 100%; height: 4.5rem; font-family: monospace; }
  #status { font-weight: bold; }
  #log { background: #111; color: #ddd; padding: 1rem; min-height: 12rem; white-space: pre-wrap; word-break: break-all; }
</style>
</head>
<body>
<h1>Admin WebSocket test page</h1>
<fieldset>
  <legend>1. Get a token</legend>
  <input id="username" placeholder="username" value="admin" autocomplete="username">
  <input id="password" type="password" placeholder="password" autocomplete="current-password">
  <button id="login" type="button">Log in</button>
  <p><label for="token">or paste a token:</label></p>
  <textarea id="token" spellcheck="false"></textarea>
</fieldset>
<fieldset>
  <legend>2. Connect</legend>
  <button id="connect" type="button">Connect</button>
  <button id="disconnect" type="button">Disconnect</button>
  <button id="ping" type="button">Send ping</button>
  <button id="get-stats" type="button">Get stats</button>
  Status: <span id="status">disconnected</span>
</fieldset>
<pre id="log"></pre>
<script>
'use strict'
const config = ${config}
const $ = (id) => document.getElementById(id)
let socket = null
let nextId = 1

function log (line) {
  $('log').textContent += line + '\\n'
}

function setStatus (text) {
  $('status').textContent = text
}

$('login').addEventListener('click', async () => {
  const response = await fetch(config.loginPath, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: $('username').value, password: $('password').value })
  })
  const body = await response.json()
  if (!response.ok) return log('login failed ' + response.status + ' ' + (body.message || ''))
  $('token').value = body.token
  log('login ok: token expires in ' + body.expires_in + ' s')
})

$('connect').addEventListener('click', () => {
  if (socket !== null) socket.close()
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  const url = scheme + '//' + location.host + config.wsPath + '?token=' + encodeURIComponent($('token').value.trim())
  const ws = new WebSocket(url)
  socket = ws
  setStatus('connecting')
  ws.addEventListener('open', () => { setStatus('open'); log('open') })
  ws.addEventListener('message', (event) => {
    let type = '?'
    try { type = JSON.parse(event.data).type } catch {}
    if (type === 'connection_established') setStatus('authenticated')
    log('message ' + type + ' ' + event.data)
  })
  ws.addEventListener('close', (event) => {
    if (socket === ws) socket = null
    setStatus('closed ' + event.code)
    log('close ' + event.code + ' ' + event.reason)
    const row = config.rows.find((r) => r.code === event.code && r.reason === event.reason) ||
      config.rows.find((r) => r.code === event.code)
    if (row) log('  ' + row.description + ' (retry: ' + row.retry + ')')
  })
})

$('disconnect').addEventListener('click', () => { if (socket !== null) socket.close(1000, 'bye') })
$('ping').addEventListener('click', () => send({ type: 'ping' }))
$('get-stats').addEventListener('click', () => send({ type: 'get_stats' }))

function send (message) {
  if (socket === null || socket.readyState !== WebSocket.OPEN) return log('not connected')
  const id = nextId++
  socket.send(JSON.stringify({ ...message, id }))
  log('sent ' + message.type + ' ' + id)
}
</script>
</body>
</html>
`
}
