// The playground page: plain browser JavaScript, no framework, no build step. It speaks the wire
// protocol by hand (three token sources, one-time tickets, in-band refresh, app ping, topic
// subscriptions) so every frame shows in the log. A ticket never shows: only its length.
/* global document, fetch, location, Option, WebSocket */
'use strict'

;(function () {
  const $ = (id) => document.getElementById(id)
  const el = {}
  for (const id of ['user', 'kind', 'kind-help', 'mint', 'token', 'claims', 'source', 'route', 'route-help', 'connect', 'disconnect',
    'refresh', 'ping', 'kick', 'message', 'send', 'status', 'expiry', 'stats', 'clear', 'log', 'codes', 'topics', 'topics-route',
    'topic-events']) el[id] = $(id)

  /** The server's close-code table, by failure class: the only source of each code's meaning. */
  let table = {}
  let kinds = []
  let sources = []
  /** The page's routes, each with the pattern a ticket is bound to. */
  let routes = []
  /** The last ticket the server issued to this page: kept to show that a used one is refused, never displayed. */
  let lastTicket = null
  /** A topic typed in the last row: no pattern of the route matches it unless it is one of the above. */
  const OTHER_TOPIC = 'news:sports'
  /** The open socket and what we know of its session (`requests`: topic requests by id). */
  let session = null
  let countdown = null

  async function getJson (url, init) {
    const res = await fetch(url, init)
    const body = await res.json()
    if (!res.ok) throw new Error(body.message || res.statusText)
    return body
  }

  function fill (select, options) {
    select.replaceChildren(...options.map(([value, label]) => new Option(label, value)))
  }

  // ---- the log ------------------------------------------------------------------------------

  function now () {
    const d = new Date()
    return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0')
  }

  /** Appends a line: `kind` is sent, received, event or close; `note` is a second, quieter line. */
  function log (kind, text, { note, extra } = {}) {
    const empty = el.log.querySelector('.empty')
    if (empty) empty.remove()
    const li = document.createElement('li')
    li.className = [kind, extra].filter(Boolean).join(' ')
    const dir = { sent: '→', received: '←', event: '•', close: '✕' }[kind]
    const body = document.createElement('span')
    body.className = 'text'
    body.textContent = text
    if (note) {
      const meaning = document.createElement('span')
      meaning.className = 'meaning'
      // The space keeps `close <code> <reason> meaning: ...` readable as plain text; CSS puts it on its own line.
      meaning.textContent = ' ' + note
      body.append(meaning)
    }
    li.append(span('time', now()), span('dir', dir), body)
    el.log.append(li)
    el.log.scrollTop = el.log.scrollHeight
  }

  function span (className, text) {
    const s = document.createElement('span')
    s.className = className
    s.textContent = text
    return s
  }

  /** A token shortened for display: the log shows what was sent, not a wall of base64. */
  function short (token) {
    return token.length > 24 ? `${token.slice(0, 16)}…${token.slice(-6)} (${token.length} chars)` : token
  }

  // ---- the close-code table -------------------------------------------------------------------

  /** The table row for a close: same code and reason first, else the first row with that code. */
  function rowFor (code, reason) {
    const rows = Object.entries(table).filter(([, entry]) => entry.code === code)
    return rows.find(([, entry]) => entry.reason === reason) || rows[0]
  }

  function meaningOf (code, reason) {
    const row = rowFor(code, reason)
    if (!row) return `meaning: code ${code} is not in the plugin's table`
    const [failure, entry] = row
    const http = entry.status === null ? 'no HTTP equivalent' : `HTTP ${entry.status} with reject: 'http'`
    return `meaning: ${failure} · ${http} · client should: ${entry.retry}`
  }

  function renderCodes () {
    const body = el.codes.tBodies[0]
    body.replaceChildren(...Object.entries(table).map(([failure, entry]) => {
      const tr = document.createElement('tr')
      tr.dataset.failure = failure
      if (!entry.emitted) tr.classList.add('foreign')
      const cells = [['failure', failure], ['code', entry.code], ['reason', entry.reason || '—'],
        ['status', entry.status ?? '—'], ['retry', entry.retry]]
      tr.append(...cells.map(([className, text]) => {
        const td = document.createElement('td')
        td.className = className
        td.textContent = String(text)
        return td
      }))
      return tr
    }))
  }

  function highlight (code, reason) {
    const row = rowFor(code, reason)
    for (const tr of el.codes.tBodies[0].rows) tr.classList.toggle('hit', row !== undefined && tr.dataset.failure === row[0])
  }

  // ---- status -----------------------------------------------------------------------------------

  function setStatus (state, text) {
    el.status.dataset.state = state
    el.status.textContent = text
  }

  function setOpen (open) {
    el.connect.disabled = open
    for (const button of [el.disconnect, el.refresh, el.ping, el.kick, el.send]) button.disabled = !open
    for (const button of el.topics.querySelectorAll('button[data-socket]')) button.disabled = !open
  }

  function showExpiry () {
    if (!session || !session.expiresAt) {
      el.expiry.textContent = session && session.established ? 'token has no exp' : ''
      return
    }
    const left = Math.round((Date.parse(session.expiresAt) - Date.now()) / 1000)
    const clock = left >= 60 ? `${Math.floor(left / 60)} min ${String(left % 60).padStart(2, '0')} s` : `${left} s`
    el.expiry.textContent = left > 0 ? `token expires in ${clock}` : 'token expired'
  }

  async function refreshStats () {
    try {
      const s = await getJson('/demo/stats')
      const byCode = (counts) => Object.entries(counts || {}).map(([code, n]) => `${code}×${n}`).join(' ') || 'none'
      el.stats.textContent = `Server (app.wsAuth.stats()): ${s.active} active · ${s.attempts} attempts · ${s.established} established · ` +
        `refused by code: ${byCode(s.failures)} · ${s.subscriptions} subscription(s) · refused after the door: ${byCode(s.refused)}`
    } catch {
      el.stats.textContent = ''
    }
  }

  // ---- tokens -----------------------------------------------------------------------------------

  async function mint (user, kind) {
    return getJson('/demo/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user, kind })
    })
  }

  async function mintIntoBox () {
    const minted = await mint(el.user.value, el.kind.value)
    el.token.value = minted.token
    el.claims.textContent = JSON.stringify(minted.claims, null, 1).replace(/\n\s*/g, ' ')
    log('event', `minted a ${minted.kind} token for ${minted.user}`)
    return minted.token
  }

  // ---- tickets ----------------------------------------------------------------------------------

  /** Asks the ticket route for a one-time ticket, with the token as its credential; `null` (logged) when refused. */
  async function requestTicket (token, pattern) {
    let answer
    try {
      answer = await getJson('/demo/ticket', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ route: pattern })
      })
    } catch (error) {
      log('event', `POST /demo/ticket refused: ${error.message}`, { extra: 'error' })
      return null
    }
    lastTicket = answer.ticket
    log('event', `POST /demo/ticket: ticket issued for ${answer.route} (${answer.ticket.length} chars, single use, ${answer.ttl / 1000} s)`)
    return answer.ticket
  }

  function reuseTicket () {
    if (lastTicket === null) {
      log('event', 'no ticket yet: connect once with the one-time ticket source first', { extra: 'error' })
      return null
    }
    log('event', `reusing the last ticket (${lastTicket.length} chars), already used by a connection`)
    return lastTicket
  }

  function forgetToken () {
    el.token.value = ''
    el.claims.textContent = ''
  }

  function showKindHelp () {
    const kind = kinds.find(k => k.kind === el.kind.value)
    el['kind-help'].textContent = kind ? kind.description : ''
  }

  // ---- the socket -------------------------------------------------------------------------------

  function send (data, shown) {
    const text = typeof data === 'string' ? data : JSON.stringify(data)
    session.ws.send(text)
    log('sent', shown || text)
  }

  async function connect () {
    if (session) return
    const source = el.source.value
    const path = el.route.value
    let token = el.token.value.trim()
    let ticket = null
    el.connect.disabled = true
    try {
      if (token === '' && source !== 'none' && source !== 'ticket_reuse') token = await mintIntoBox()
      if (source === 'ticket') ticket = await requestTicket(token, routes.find(r => r.path === path).pattern)
      if (source === 'ticket_reuse') ticket = reuseTicket()
    } finally {
      el.connect.disabled = false
    }
    if (ticket === null && (source === 'ticket' || source === 'ticket_reuse')) return
    const base = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`
    const label = sources.find(s => s.source === source).label
    let ws
    try {
      if (source === 'query') ws = new WebSocket(`${base}?token=${encodeURIComponent(token)}`)
      else if (source === 'protocol') ws = new WebSocket(base, [`bearer.${token}`, 'bearer'])
      else if (ticket !== null) ws = new WebSocket(`${base}?ticket=${encodeURIComponent(ticket)}`)
      else ws = new WebSocket(base)
    } catch (error) {
      log('event', `the browser refused to open the socket: ${error.message}`, { extra: 'error' })
      return
    }
    session = { ws, user: el.user.value, established: false, expiresAt: null, nextId: 1, requests: new Map() }
    setOpen(true)
    setStatus('connecting', 'connecting')
    log('event', `connecting to ${path}, token source: ${label}`)
    ws.addEventListener('open', () => {
      log('event', `open${ws.protocol ? `, subprotocol selected by the server: ${ws.protocol}` : ''}`)
      setStatus('open', source === 'message' || source === 'none' ? 'open, waiting for authentication' : 'open')
      if (source === 'message') send({ type: 'auth', token }, `{"type":"auth","token":"${short(token)}"}`)
    })
    ws.addEventListener('message', (event) => received(ws, event.data))
    ws.addEventListener('close', (event) => closed(ws, event))
  }

  function received (ws, data) {
    if (!session || session.ws !== ws) return
    let message = null
    try { message = JSON.parse(data) } catch {}
    const type = message && typeof message === 'object' ? message.type : undefined
    const control = ['connection_established', 'token_expiring', 'token_refreshed', 'pong', 'subscribed', 'unsubscribed'].includes(type)
    if (type === 'refused') {
      log('received', String(data), { note: meaningOf(message.code, message.reason), extra: 'error' })
    } else {
      log('received', String(data), { extra: control ? 'control' : '' })
    }
    if (['subscribed', 'unsubscribed', 'publication', 'refused'].includes(type)) topicMessage(message)
    if (type === 'connection_established') {
      session.established = true
      session.expiresAt = message.expires_at
      const user = message.user || {}
      setStatus('authenticated', `authenticated as ${user.username || user.id} (${(user.roles || []).join(', ') || 'no role'})`)
      countdown = setInterval(showExpiry, 250)
      showExpiry()
      refreshStats()
    } else if (type === 'token_refreshed') {
      session.expiresAt = message.expires_at
      showExpiry()
    }
  }

  function closed (ws, event) {
    if (!session || session.ws !== ws) return
    log('close', `close ${event.code}${event.reason ? ' ' + event.reason : ''}`, {
      note: meaningOf(event.code, event.reason),
      extra: event.code === 1000 ? 'normal' : ''
    })
    highlight(event.code, event.reason)
    endSubscriptions()
    setStatus('closed', `closed ${event.code}`)
    clearInterval(countdown)
    session = null
    el.expiry.textContent = ''
    setOpen(false)
    refreshStats()
  }

  async function refresh () {
    const { ws } = session
    const minted = await mint(el.user.value, el.kind.value)
    if (!session || session.ws !== ws) return
    log('event', `refresh in band with a new ${minted.kind} token for ${minted.user}`)
    send({ type: 'auth', token: minted.token }, `{"type":"auth","token":"${short(minted.token)}"}`)
  }

  async function kick () {
    const user = session.user
    const { closed: count } = await getJson('/demo/kick', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user })
    })
    log('event', `server: app.wsAuth.disconnectUser('${user}') closed ${count} socket(s)`)
  }

  // ---- topics -------------------------------------------------------------------------------------

  /** A line in the topics panel: `kind` is subscribed, unsubscribed, ended, publication, refused or server. */
  function topicEvent (kind, text, note) {
    const empty = el['topic-events'].querySelector('.empty')
    if (empty) empty.remove()
    const li = document.createElement('li')
    li.className = kind
    const body = span('text', text)
    if (note) body.append(span('meaning', ' ' + note))
    li.append(span('time', now()), body)
    el['topic-events'].append(li)
    el['topic-events'].scrollTop = el['topic-events'].scrollHeight
  }

  /** The table row showing `topic` (compared as data, never put into a selector). */
  function topicRow (topic) {
    return Array.from(el.topics.tBodies[0].rows).find(tr => tr.dataset.topic === topic)
  }

  function setTopicState (topic, state, text) {
    setRowState(topicRow(topic), state, text)
  }

  function setRowState (tr, state, text) {
    if (!tr) return
    const cell = tr.querySelector('td.state')
    cell.dataset.state = state
    cell.textContent = text
  }

  function button (label, action, topic, socket) {
    const b = document.createElement('button')
    b.type = 'button'
    b.textContent = label
    b.dataset.action = action
    if (topic !== undefined) b.dataset.topic = topic
    if (socket) {
      b.dataset.socket = ''
      b.disabled = true
    }
    return b
  }

  function cell (className, content) {
    const td = document.createElement('td')
    td.className = className
    if (typeof content === 'string') td.textContent = content
    else td.append(...content)
    return td
  }

  function renderTopics (topics) {
    const rows = topics.map(({ topic, label }) => {
      const tr = document.createElement('tr')
      tr.dataset.topic = topic
      tr.append(cell('topic', topic), cell('who', label), cell('state', 'not subscribed'), cell('actions', [
        button('Subscribe', 'subscribe', topic, true), button('Unsubscribe', 'unsubscribe', topic, true), button('Publish', 'publish', topic, false)
      ]))
      return tr
    })
    const input = document.createElement('input')
    input.type = 'text'
    input.id = 'topic-other'
    input.value = OTHER_TOPIC
    input.setAttribute('aria-label', 'Another topic')
    const other = document.createElement('tr')
    other.dataset.topic = OTHER_TOPIC
    other.append(cell('topic', [input]), cell('who', 'any other name: no pattern matches (4004)'), cell('state', 'not subscribed'),
      cell('actions', [button('Subscribe', 'subscribe-other', undefined, true)]))
    input.addEventListener('input', () => {
      other.dataset.topic = input.value.trim()
      setRowState(other, 'idle', 'not subscribed')
    })
    el.topics.tBodies[0].replaceChildren(...rows, other)
    for (const b of el.topics.querySelectorAll('button[data-action]')) {
      const topic = () => b.dataset.action === 'subscribe-other' ? input.value.trim() : b.dataset.topic
      on(b, () => ({ subscribe: request, 'subscribe-other': request, unsubscribe: request, publish })[b.dataset.action](topic(), b.dataset.action))
    }
  }

  /** Sends `subscribe` or `unsubscribe` with a fresh id, remembered to match the answer. */
  function request (topic, action) {
    if (!session) return
    const type = action === 'unsubscribe' ? 'unsubscribe' : 'subscribe'
    const id = session.nextId++
    session.requests.set(id, { type, topic })
    setTopicState(topic, 'pending', type === 'subscribe' ? 'subscribing…' : 'unsubscribing…')
    send({ type, topic, id })
  }

  async function publish (topic) {
    const { n, reached } = await getJson('/demo/publish', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ topic })
    })
    topicEvent('server', `server: app.wsAuth.publish('${topic}', bulletin #${n}) reached ${reached} socket(s)`)
  }

  /** A `subscribed`, `unsubscribed`, `publication` or `refused` message, in the panel and the table. */
  function topicMessage (message) {
    const asked = session.requests.get(message.id)
    if (asked) session.requests.delete(message.id)
    const topic = typeof message.topic === 'string' ? message.topic : asked && asked.topic
    const id = message.id === undefined ? '' : ` (id ${message.id})`
    if (message.type === 'subscribed') {
      setTopicState(topic, 'subscribed', 'subscribed')
      topicEvent('subscribed', `subscribed ${topic}${id}`)
    } else if (message.type === 'unsubscribed' && message.code === undefined) {
      setTopicState(topic, 'idle', 'not subscribed')
      topicEvent('unsubscribed', `unsubscribed ${topic}${id}`)
    } else if (message.type === 'unsubscribed') {
      setTopicState(topic, 'ended', `ended by the server: ${message.code} ${message.reason}`)
      topicEvent('ended', `unsubscribed ${topic} by the server: ${message.code} ${message.reason}`, meaningOf(message.code, message.reason))
      highlight(message.code, message.reason)
    } else if (message.type === 'publication') {
      topicEvent('publication', `publication ${topic}: ${JSON.stringify(message.data)}`)
    } else {
      const about = message.of === 'subscribe' || message.of === 'unsubscribe' ? `${message.of} ${topic === undefined ? '(no valid topic)' : topic}` : `message ${message.of}`
      if (topic !== undefined) setTopicState(topic, 'refused', `refused: ${message.code} ${message.reason}`)
      topicEvent('refused', `refused ${about}: ${message.code} ${message.reason}${id}`, meaningOf(message.code, message.reason))
      highlight(message.code, message.reason)
    }
    if (message.type !== 'publication') refreshStats()
  }

  /** Subscriptions belong to one connection: at its close they all end. */
  function endSubscriptions () {
    const held = Array.from(el.topics.tBodies[0].rows).filter(tr => tr.querySelector('td.state').dataset.state === 'subscribed')
    for (const tr of el.topics.tBodies[0].rows) setRowState(tr, 'idle', 'not subscribed')
    if (held.length > 0) topicEvent('ended', `connection closed: ${held.map(tr => tr.dataset.topic).join(', ')} ended with it`)
  }

  /** Runs a click handler, logging what went wrong instead of failing silently. */
  function on (button, handler) {
    button.addEventListener('click', () => {
      Promise.resolve().then(handler).catch((error) => log('event', `error: ${error.message}`, { extra: 'error' }))
    })
  }

  async function init () {
    const [info, codes] = await Promise.all([getJson('/demo/info'), getJson('/demo/close-codes')])
    table = codes
    kinds = info.kinds
    sources = info.sources
    routes = info.routes
    fill(el.user, info.users.map(u => [u.id, `${u.id} (${u.role})${u.active ? '' : ', deactivated'}`]))
    fill(el.kind, kinds.map(k => [k.kind, k.label]))
    fill(el.source, sources.map(s => [s.source, s.label]))
    fill(el.route, routes.map(r => [r.path, r.path]))
    const showRouteHelp = () => { el['route-help'].textContent = routes.find(r => r.path === el.route.value).label }
    el.route.addEventListener('change', showRouteHelp)
    showRouteHelp()
    renderCodes()
    renderTopics(info.topics)
    el['topics-route'].textContent = info.topicsRoute
    showKindHelp()
    el.user.addEventListener('change', forgetToken)
    el.kind.addEventListener('change', () => { forgetToken(); showKindHelp() })
    on(el.mint, mintIntoBox)
    on(el.connect, connect)
    on(el.disconnect, () => session.ws.close(1000, 'Closed by the page'))
    on(el.refresh, refresh)
    on(el.ping, () => send({ type: 'ping' }))
    on(el.kick, kick)
    on(el.send, () => send(el.message.value))
    el.message.addEventListener('keydown', (event) => { if (event.key === 'Enter' && session) send(el.message.value) })
    on(el.clear, () => el.log.replaceChildren())
    refreshStats()
    document.body.dataset.ready = 'true'
  }

  init().catch((error) => log('event', `could not load the demo: ${error.message}`, { extra: 'error' }))
})()
