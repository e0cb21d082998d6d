// The demo page in a real headless Chromium (Debian's /usr/bin/chromium, never a downloaded
// browser): every token source, a one-time ticket (and the same ticket again, refused), the close
// codes with their meaning, refresh, expiry, the topics panel (a subscription, publications,
// refusals). Leaves a screenshot in test-artifacts/demo.png.
import { mkdirSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import type { Page } from 'playwright-core'
import { chromiumMissing, launchChromium } from '../test/helpers/browser.ts'
import { manualClockOfBuilt as manualClock } from '../test/helpers/index.ts'
import { build } from './app.ts'

const ARTIFACTS = join(__dirname, '..', 'test-artifacts')

interface Choice { user: string, kind: string, source: string, route: string }

/** Picks user, kind, source and route, forgets any previous token, and clicks Connect. */
async function connectWith (page: Page, choice: Choice): Promise<number> {
  await page.selectOption('#user', choice.user)
  await page.selectOption('#kind', choice.kind)
  await page.selectOption('#source', choice.source)
  await page.selectOption('#route', choice.route)
  await page.fill('#token', '')
  const from = await page.locator('#log li').count()
  await page.click('#connect')
  return from
}

/** Waits for a line of `list` after its first `from` lines that contains `text`; returns the whole line. */
async function lineOf (page: Page, list: string, from: number, text: string): Promise<string> {
  const handle = await page.waitForFunction(([list, from, text]) => {
    const found = Array.from(document.querySelectorAll(`${list} li:not(.empty)`)).slice(from).find(li => li.textContent!.includes(text))
    return found?.textContent ?? false
  }, [list, from, text] as const)
  return await handle.jsonValue() as string
}

/** A line of the session log. */
async function line (page: Page, from: number, text: string): Promise<string> {
  return lineOf(page, '#log', from, text)
}

/** How many lines the topics panel shows. */
async function topicLines (page: Page): Promise<number> {
  return page.locator('#topic-events li:not(.empty)').count()
}

/** Clicks a button of the topics panel; returns how many panel lines there were before. */
async function topicClick (page: Page, action: string, topic?: string): Promise<number> {
  const from = await topicLines(page)
  await page.click(`#topics button[data-action=${action}]${topic === undefined ? '' : `[data-topic="${topic}"]`}`)
  return from
}

/** A line of the topics panel. */
async function topicLine (page: Page, from: number, text: string): Promise<string> {
  return lineOf(page, '#topic-events', from, text)
}

async function topicState (page: Page, topic: string): Promise<string | null> {
  return page.textContent(`#topics tr[data-topic="${topic}"] td.state`)
}

async function disconnect (page: Page): Promise<void> {
  const from = await page.locator('#log li').count()
  await page.click('#disconnect')
  await line(page, from, 'close 1000')
}

t.test('the demo page in Chromium', async t => {
  const missing = chromiumMissing()
  if (missing !== undefined) return t.fail(missing)
  // The server's deadlines (expiry warning, expiry) wait for the test's clock: the short-lived
  // token lives a minute, and the test moves time to its warning and its expiry.
  const time = manualClock(t)
  const app = await build({ shortLivedMs: 60_000, expiryWarning: 30_000 })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo

  const context = await launchChromium(t, { viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  page.setDefaultTimeout(10_000)
  const errors: string[] = []
  page.on('pageerror', (err) => errors.push(err.message))
  await page.goto(`http://127.0.0.1:${port}/`)
  await page.waitForSelector('body[data-ready=true]')
  t.equal(await page.locator('#codes tbody tr').count(), Object.keys(app.wsAuth.closeCodes).length, 'the close-code table, from the server')

  for (const source of ['query', 'protocol', 'message']) {
    const from = await connectWith(page, { user: 'alice', kind: 'valid', source, route: '/ws/stream' })
    t.match(await line(page, from, 'connection_established'), '"id":"alice"', `${source}: connection_established`)
    if (source === 'protocol') await line(page, from, 'subprotocol selected by the server: bearer')
    if (source === 'message') await line(page, from, '{"type":"auth","token":"eyJ')
    t.match(await page.textContent('#status'), 'authenticated as alice (admin)')
    await disconnect(page)
  }

  let from = await connectWith(page, { user: 'alice', kind: 'tampered', source: 'query', route: '/ws/stream' })
  t.match(await line(page, from, 'close 4001'), /close 4001 Invalid token meaning: invalid_token · HTTP 401/, 'tampered: 4001 with its reason and meaning')

  from = await connectWith(page, { user: 'carol', kind: 'valid', source: 'protocol', route: '/ws/admin' })
  t.match(await line(page, from, 'close 4003'), /close 4003 Forbidden meaning: forbidden · HTTP 403 .*· client should: never/, 'viewer on the admin route: 4003')
  t.equal(await page.getAttribute('#codes tr.hit', 'data-failure'), 'forbidden', 'the table row of the close is highlighted')

  from = await connectWith(page, { user: 'alice', kind: 'valid', source: 'query', route: '/ws/projects/unknown' })
  t.match(await line(page, from, 'close 4004'), /close 4004 Not found meaning: not_found/, 'authorize -> not_found: 4004')

  from = await connectWith(page, { user: 'bob', kind: 'short', source: 'message', route: '/ws/stream' })
  const expiresAt = Date.parse(/"expires_at":"([^"]+)"/.exec(await line(page, from, 'connection_established'))![1])
  // The warning is due 30 s before exp (the shared timer fires within 200 ms after); the
  // heartbeat's first ping goes out on the way.
  await time.tick(expiresAt - 30_000 - time.now() + 1000)
  await line(page, from, 'token_expiring')
  t.match(await page.textContent('#status'), 'authenticated as bob', 'warned, still open')
  // The page's ping leaves behind the browser's answer to the heartbeat's: once its pong is here,
  // the server knows the socket alive, and the next heartbeat does not end it.
  await page.click('#ping')
  await line(page, from, '"type":"pong"')
  await time.tick(30_000)
  t.match(await line(page, from, 'close 4001'), /close 4001 Token expired meaning: token_expired/, 'the short-lived token expires: 4001')

  // The topics panel: carol (viewer) on the news route may have news:general, not news:admin.
  from = await connectWith(page, { user: 'carol', kind: 'valid', source: 'query', route: '/ws/news' })
  await line(page, from, 'connection_established')
  let at = await topicClick(page, 'subscribe', 'news:general')
  t.match(await topicLine(page, at, 'subscribed news:general'), 'subscribed news:general (id 1)', 'the allowed topic: subscribed')
  await line(page, from, '{"type":"subscribed","topic":"news:general","id":1}')
  t.equal(await topicState(page, 'news:general'), 'subscribed')
  at = await topicClick(page, 'publish', 'news:general')
  t.match(await topicLine(page, at, 'publication news:general'), 'publication news:general: {"n":1,"headline":"news:general bulletin #1"', 'the Publish button: a publication')
  t.match(await topicLine(page, at, 'server: app.wsAuth.publish'), "app.wsAuth.publish('news:general', bulletin #1) reached 1 socket(s)")
  at = await topicLines(page)
  t.equal(app.wsAuth.publish('news:general', { from: 'the test' }), 1, 'the test publishes: one subscriber, the page')
  t.match(await topicLine(page, at, 'publication news:general'), 'publication news:general: {"from":"the test"}', 'a publication from the server side')

  at = await topicClick(page, 'subscribe', 'news:admin')
  t.match(await topicLine(page, at, 'refused subscribe news:admin'),
    /refused subscribe news:admin: 4003 Forbidden \(id 2\) meaning: forbidden · HTTP 403 .*· client should: never/, 'the forbidden topic: 4003 with its meaning')
  t.match(await line(page, from, '"type":"refused"'), /\{"type":"refused","of":"subscribe","topic":"news:admin","code":4003,"reason":"Forbidden","id":2\} meaning: forbidden/)
  t.equal(await topicState(page, 'news:admin'), 'refused: 4003 Forbidden')
  t.equal(await page.getAttribute('#codes tr.hit', 'data-failure'), 'forbidden', 'the table row of the refusal is highlighted')
  at = await topicClick(page, 'publish', 'news:admin')
  t.match(await topicLine(page, at, 'server: app.wsAuth.publish'), "app.wsAuth.publish('news:admin', bulletin #1) reached 0 socket(s)", 'refused: no publication')
  at = await topicClick(page, 'subscribe-other')
  t.match(await topicLine(page, at, 'refused subscribe news:sports'), /refused subscribe news:sports: 4004 Not found \(id 3\) meaning: not_found/, 'no pattern matches: 4004')
  // The pong comes after every frame the server sent before it: none was a news:admin publication.
  await page.click('#ping')
  await line(page, from, '"type":"pong"')
  t.equal(await page.locator('#topic-events li', { hasText: 'publication news:admin' }).count(), 0, 'no publication of the refused topic')
  t.match(await page.textContent('#status'), 'authenticated as carol', 'refusals leave the socket open')
  at = await topicClick(page, 'unsubscribe', 'news:general')
  t.match(await topicLine(page, at, 'unsubscribed news:general'), 'unsubscribed news:general (id 4)')
  t.equal(await topicState(page, 'news:general'), 'not subscribed')
  at = await topicClick(page, 'subscribe', 'news:general')
  await topicLine(page, at, 'subscribed news:general (id 5)')
  at = await topicLines(page)
  await disconnect(page)
  t.match(await topicLine(page, at, 'connection closed'), 'connection closed: news:general ended with it', 'a close ends the subscriptions')
  t.equal(await topicState(page, 'news:general'), 'not subscribed')

  // A one-time ticket: the page trades the minted token for one at POST /demo/ticket, then opens ?ticket=.
  const issued = page.waitForResponse(res => res.url().endsWith('/demo/ticket'))
  from = await connectWith(page, { user: 'bob', kind: 'valid', source: 'ticket', route: '/ws/projects/hermes' })
  const { ticket } = await (await issued).json() as { ticket: string }
  t.match(await line(page, from, 'ticket issued'), 'POST /demo/ticket: ticket issued for /ws/projects/:id (24 chars, single use, 30 s)')
  t.match(await line(page, from, 'connection_established'), '"id":"bob"', 'ticket: connection_established')
  t.match(await line(page, from, '"type":"project"'), '"id":"hermes"', 'the route\'s handler runs')
  t.match(await page.textContent('#status'), 'authenticated as bob (manager)')
  await disconnect(page)
  from = await connectWith(page, { user: 'bob', kind: 'valid', source: 'ticket_reuse', route: '/ws/projects/hermes' })
  await line(page, from, 'reusing the last ticket (24 chars)')
  t.match(await line(page, from, 'close 4001'), /close 4001 Invalid ticket meaning: invalid_ticket · HTTP 401 .*· client should: reauthenticate/,
    'the same ticket again: 4001 Invalid ticket')
  t.equal(await page.getAttribute('#codes tr.hit', 'data-failure'), 'invalid_ticket', 'its row is highlighted')
  const shown = (await page.textContent('body'))!
  t.notOk(shown.includes(ticket.slice(0, 12)) || shown.includes(ticket.slice(-12)), 'no part of the ticket on the page')

  from = await connectWith(page, { user: 'alice', kind: 'valid', source: 'protocol', route: '/ws/stream' })
  await line(page, from, 'connection_established')
  await line(page, from, '"type":"tick"')
  await page.click('#ping')
  await line(page, from, '"type":"pong"')
  await page.click('#refresh')
  t.match(await line(page, from, 'token_refreshed'), '"expires_at":"', 'refresh in band: token_refreshed')
  t.match(await page.textContent('#status'), 'authenticated as alice')

  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true })
  await disconnect(page)
  t.same(errors, [], 'no uncaught error in the page')
})
