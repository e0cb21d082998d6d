// The suite's one way to start a browser: Debian's Chromium (apt-get install chromium; .ci/run
// installs it), headless, never a downloaded one.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'

interface Teardown { teardown (fn: () => unknown): void }

export const CHROMIUM = '/usr/bin/chromium'

/** Headless, no sandbox (CI runs as root), and nothing that reaches for the network by itself. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** Why a browser test cannot run here, or `undefined` when Chromium is installed. */
export function chromiumMissing (): string | undefined {
  return existsSync(CHROMIUM)
    ? undefined
    : `no Chromium at ${CHROMIUM}: install the Debian package "chromium" (apt-get install chromium; .ci/run does it in CI)`
}

/**
 * A Chromium context with a fresh profile (nothing cached or remembered from another run), closed
 * and deleted at teardown. Playwright refuses a --user-data-dir argument to launch(); a
 * persistent context is how it takes a chosen profile.
 */
export async function launchChromium (t: Teardown, options: { viewport?: { width: number, height: number } } = {}): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'ws-auth-chromium-'))
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, ...options })
  t.teardown(async () => {
    await context.close()
    rmSync(profile, { recursive: true, force: true })
  })
  return context
}
