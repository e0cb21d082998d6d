// The admin test page (GET /admin/test) driven in a real headless Chromium: Debian's `chromium`
// at /usr/bin/chromium (CI installs it), never a downloaded browser.
import t from 'tap'
import type { Page } from 'playwright-core'
import { closeCodes } from 'fastify-ws-auth'
import { chromiumMissing, launchChromium } from '../../test/helpers/browser.ts'
import { listen } from '../helpers.ts'
import { build } from './app.ts'

/** Resolves once the page's #log contains `text`. */
async function waitForLog (page: Page, text: string): Promise<void> {
  await page.waitForFunction((wanted) => document.getElementById('log')?.textContent?.includes(wanted) === true, text, { timeout: 5000 })
}

async function logLines (page: Page): Promise<string[]> {
  return ((await page.textContent('#log')) ?? '').split('\n')
}

async function logIn (page: Page, username: string, password: string): Promise<void> {
  await page.fill('#username', username)
  await page.fill('#password', password)
  await page.click('#login')
  await waitForLog(page, 'login ok')
}

t.test('the admin test page in Chromium', async t => {
  const missing = chromiumMissing()
  if (missing !== undefined) return t.fail(missing)
  const app = await build({ statsIntervalMs: false })
  const served = await listen(t, app)
  const context = await launchChromium(t)
  const page = context.pages()[0] ?? await context.newPage()
  const errors: string[] = []
  page.on('pageerror', (err) => errors.push(err.message))
  const fresh = () => page.goto(served.http('/admin/test'))

  t.test('an admin logs in, connects, sees connection_established, stats and pong', async t => {
    await fresh()
    await logIn(page, 'admin', 'admin-password')
    t.ok(((await page.inputValue('#token')) ?? '').split('.').length === 3, 'the token is in #token')
    await page.click('#connect')
    await waitForLog(page, 'message connection_established')
    t.equal(await page.textContent('#status'), 'authenticated')
    await page.click('#get-stats')
    await waitForLog(page, 'message stats_update')
    await page.click('#ping')
    await waitForLog(page, 'message pong')
    await page.click('#disconnect')
    await waitForLog(page, 'close 1000 bye')
    t.equal(await page.textContent('#status'), 'closed 1000')
  })

  t.test('a bad token: close 4001 Invalid token', async t => {
    await fresh()
    await page.fill('#token', 'not-a-token')
    await page.click('#connect')
    await waitForLog(page, 'close 4001')
    const lines = await logLines(page)
    t.ok(lines.includes('close 4001 Invalid token'), 'close line with code and reason')
    t.ok(lines.includes(`  ${closeCodes.invalid_token.description} (retry: reauthenticate)`), 'the table\'s meaning and advice')
    t.notOk(lines.some(l => l.startsWith('message connection_established')), 'never established')
    t.equal(await page.textContent('#status'), 'closed 4001')
  })

  t.test('a viewer connects; Get stats is refused with 4003 and the request\'s id, the socket stays open', async t => {
    await fresh()
    await logIn(page, 'viewer', 'viewer-password')
    await page.click('#connect')
    await waitForLog(page, 'message connection_established')
    await page.click('#get-stats')
    await waitForLog(page, 'message refused')
    const lines = await logLines(page)
    t.ok(lines.includes('sent get_stats 1'), 'the request and its id')
    t.ok(lines.includes('message refused {"type":"refused","of":"get_stats","code":4003,"reason":"Forbidden","id":1}'), 'the refusal, with code, reason and id')
    t.notOk(lines.some(l => l.startsWith('message stats_update')), 'no stats')
    await page.click('#ping')
    await waitForLog(page, 'message pong')
    t.equal(await page.textContent('#status'), 'authenticated', 'still open')
  })

  t.test('a guest (neither admin nor viewer): close 4003 Forbidden', async t => {
    await fresh()
    await logIn(page, 'guest', 'guest-password')
    await page.click('#connect')
    await waitForLog(page, 'close 4003')
    const lines = await logLines(page)
    t.ok(lines.includes('close 4003 Forbidden'), 'close line with code and reason')
    t.ok(lines.includes(`  ${closeCodes.forbidden.description} (retry: never)`), 'the table\'s meaning and advice')
    t.equal(await page.textContent('#status'), 'closed 4003')
  })

  t.test('wrong password: the page says so, no token', async t => {
    await fresh()
    await page.fill('#password', 'wrong')
    await page.click('#login')
    await waitForLog(page, 'login failed 401 Invalid username or password')
    t.equal(await page.inputValue('#token'), '')
  })

  t.test('no uncaught error in the page', async t => {
    t.same(errors, [])
  })
})
