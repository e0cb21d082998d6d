// The demo page in a real headless Chromium (Debian's /usr/bin/chromium, never a downloaded
// browser): every token source, the close codes with their meaning, refresh, expiry. Leaves a
// screenshot in test-artifacts/demo.png.
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

/** Waits for a log line after the first `from` lines that contains `text`; returns the whole line. */
async function line (page: Page, from: number, text: string): Promise<string> {
  const handle = await page.waitForFunction(([from, text]) => {
    const found = Array.from(document.querySelectorAll('#log li')).slice(from).find(li => li.textContent!.includes(text))
    return found?.textContent ?? false
  }, [from, text] as const)
  return await handle.jsonValue() as string
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
