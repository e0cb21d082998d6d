// The client module as built, loaded by a page in headless Chromium with <script type="module">,
// against a real server on the same origin.
import { readFileSync } from 'node:fs'
import { join, normalize, sep } from 'node:path'
import t, { type Test } from 'tap'
import type { Page } from 'playwright-core'
import { chromiumMissing, launchChromium } from '../helpers/browser.ts'
import { serve, type Served } from './helpers/server.ts'
import { builtRoot } from './helpers/dist.ts'

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>loading</title>
<script type="module">
  import * as wsAuthClient from '/dist/client/index.js'
  window.wsAuthClient = wsAuthClient
  document.title = 'ready'
</script>`

/** What a page reports about one client's life: its events, in order, as plain data. */
type Log = Array<[string, ...unknown[]]>

interface Scenario {
  path: string
  transport?: string
  tokens: { connect: string, refresh?: string }
  /** Close the client after this many app messages (0: wait for a final close). */
  messages?: number
  /** Also wait for a `refreshed` event before closing. */
  refreshed?: boolean
  /** Send `after refresh` once refreshed (the echo proves the session survived). */
  echoAfterRefresh?: boolean
  send?: string
  maxAttempts?: number
}

// Runs in the page: creates a client from the module the page loaded and logs its events.
function runInPage (s: Scenario): Promise<Log> {
  const { createClient } = (window as unknown as { wsAuthClient: typeof import('../../lib/client/index.ts') }).wsAuthClient
  const client = createClient({
    url: s.path,
    transport: s.transport as 'protocol',
    token: async (ctx) => ctx.reason === 'refresh' ? s.tokens.refresh! : s.tokens.connect,
    reconnect: { initialDelay: 20, jitter: false, maxAttempts: s.maxAttempts ?? 2 },
    // Refresh only on token_expiring, so a refresh proves the warning was handled.
    refreshMargin: 0
  })
  const log: Log = []
  let messages = 0
  let refreshed = false
  return new Promise((resolve) => {
    const maybeDone = (): void => {
      if ((s.messages ?? 0) > 0 && messages >= s.messages! && (!s.refreshed || refreshed)) {
        client.close()
        resolve(log)
      }
    }
    if (s.send !== undefined) client.send(s.send)
    client.on('established', (info) => { log.push(['established', info.user.id, client.state, client.protocol]) })
    client.on('message', (data) => { messages++; log.push(['message', data]); maybeDone() })
    client.on('refreshed', (info) => {
      refreshed = true
      log.push(['refreshed', typeof info.expires_at])
      if (s.echoAfterRefresh === true) client.send('after refresh')
      maybeDone()
    })
    client.on('error', (err) => { log.push(['error', err.name, err.code, err.kind, err.reason, err.retry]) })
    client.on('close', (c) => {
      log.push(['close', c.code, c.reason, c.kind, c.willRetry])
      if (!c.willRetry) resolve(log)
    })
  })
}

async function setup (t: Test): Promise<{ served: Served, page: Page, errors: string[] }> {
  const { root } = builtRoot(t)
  const esm = join(root, 'dist', 'esm')
  // expiryWarning: a 3 s token (2-3 s left, as exp counts whole seconds) is warned within 0.5 s.
  const served = await serve(t, {
    auth: { expiryWarning: 2500 },
    routes (app) {
      app.get('/page', async (_request, reply) => reply.type('text/html').send(PAGE))
      app.get('/dist/*', async (request, reply) => {
        const file = normalize(join(esm, (request.params as { '*': string })['*']))
        if (!file.startsWith(esm + sep) || !file.endsWith('.js')) return reply.code(404).send()
        return reply.type('text/javascript').send(readFileSync(file))
      })
      app.get('/ws', { websocket: true }, (socket) => { socket.on('message', (data, binary) => socket.send(data, { binary })) })
      app.get('/admin', { websocket: true, wsAuth: { roles: ['root'] } }, () => {})
      app.get('/http-refused', { websocket: true, wsAuth: { roles: ['root'], reject: 'http' } }, () => {})
    }
  })
  const context = await launchChromium(t)
  const page = await context.newPage()
  const errors: string[] = []
  page.on('pageerror', (err) => errors.push(err.message))
  page.on('response', (response) => { if (response.status() >= 400 && !response.url().endsWith('/favicon.ico')) errors.push(`${response.status()} ${response.url()}`) })
  await page.goto(served.httpUrl('/page'))
  await page.waitForFunction(() => document.title === 'ready', undefined, { timeout: 20_000 })
    .catch((err: Error) => { throw new Error(`the page did not load the client module: ${errors.join('; ') || err.message}`) })
  return { served, page, errors }
}

t.test('in Chromium', async t => {
  const missing = chromiumMissing()
  if (missing !== undefined) return t.fail(missing)
  const { served, page, errors } = await setup(t)
  const token = served.sign({ sub: 'u1', roles: ['admin'] })

  for (const transport of ['protocol', 'message', 'query']) {
    t.test(`transport ${transport}: connects, flushes the queue, echoes`, async t => {
      const log = await page.evaluate(runInPage, { path: '/ws', transport, tokens: { connect: token }, messages: 1, send: `hi from ${transport}` })
      t.same(log, [
        ['established', 'u1', 'open', transport === 'protocol' ? 'bearer' : ''],
        ['message', `hi from ${transport}`],
        ['close', 1000, '', 'closed', false]
      ])
    })
  }

  t.test('a fatal 4003: error and final close, no retry', async t => {
    const before = served.attempts.length
    const log = await page.evaluate(runInPage, { path: '/admin', tokens: { connect: token } })
    t.same(log, [
      ['error', 'WsAuthError', 4003, 'refused', 'Forbidden', 'never'],
      ['close', 4003, 'Forbidden', 'refused', false]
    ])
    t.equal(served.attempts.length - before, 1)
  })

  t.test('an HTTP refusal is only 1006 in a browser: maxAttempts bounds the retries', async t => {
    const before = served.attempts.length
    const log = await page.evaluate(runInPage, { path: '/http-refused', tokens: { connect: token }, maxAttempts: 2 })
    t.same(log, [
      ['close', 1006, '', 'transient', true],
      ['close', 1006, '', 'transient', true],
      ['error', 'WsAuthError', 1006, 'transient', '', 'backoff'],
      ['close', 1006, '', 'transient', false]
    ])
    t.equal(served.attempts.length - before, 3)
  })

  t.test('refreshes in band on token_expiring', async t => {
    const before = served.attempts.length
    const short = served.sign({ sub: 'u1', roles: ['admin'] }, { expiresIn: '3s' })
    const fresh = served.sign({ sub: 'u1', roles: ['admin'] }, { expiresIn: '2m' })
    const log = await page.evaluate(runInPage, { path: '/ws', tokens: { connect: short, refresh: fresh }, refreshed: true, echoAfterRefresh: true, messages: 1 })
    t.same(log, [
      ['established', 'u1', 'open', 'bearer'],
      ['refreshed', 'string'],
      ['message', 'after refresh'],
      ['close', 1000, '', 'closed', false]
    ])
    t.equal(served.attempts.length - before, 1, 'no reconnect')
  })

  t.test('no uncaught error in the page', async t => {
    t.same(errors, [])
  })
})
