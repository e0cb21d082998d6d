// The probe CLI, run as a user would run it (node bin/fastify-ws-auth.mjs), against a real server.
import { execFile } from 'node:child_process'
import { copyFileSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { WAIT_MS } from '../helpers/index.ts'
import { serve } from './helpers/server.ts'
import { ROOT, builtRoot } from './helpers/dist.ts'

const run = promisify(execFile)

function binIn (t: Test): string {
  // The bin imports ../dist/esm/client/index.js: run a copy of it next to the built client.
  const { root } = builtRoot(t)
  mkdirSync(join(root, 'bin'), { recursive: true })
  const bin = join(root, 'bin', `fastify-ws-auth-${process.pid}.mjs`)
  copyFileSync(join(ROOT, 'bin', 'fastify-ws-auth.mjs'), bin)
  t.teardown(() => rmSync(bin, { force: true }))
  return bin
}

async function probe (bin: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env: { ...process.env, ...env } })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

interface Row { transport: string, token: string, result: string, code?: number, reason?: string, failure?: string, retry?: string, ms: number, detail?: string }

t.test('probe', async t => {
  const bin = binIn(t)
  // The CLI runs in its own process, on real time: the manual clock cannot reach it. The server's
  // auth timeout decides the rows with no token (4008) and must be beaten by the message
  // transport's good client: 2 s is far more than it needs, and the CLI's --timeout far more
  // than the server needs to close.
  const served = await serve(t, {
    auth: { authTimeout: 2000 },
    routes (app) {
      app.get('/ws', { websocket: true, wsAuth: { roles: ['admin'] } }, () => {})
      app.get('/http', { websocket: true, wsAuth: { reject: 'http' } }, () => {})
    }
  })
  const admin = served.sign({ sub: 'u1', roles: ['admin'] })

  t.test('a table of every transport with a missing, a garbage and the given token', async t => {
    const { code, stdout, stderr } = await probe(bin, ['probe', served.url(), '--token', admin, '--timeout', String(WAIT_MS)])
    t.equal(code, 0, stderr)
    const lines = stdout.trim().split('\n')
    t.match(lines[0], /^transport\s+token\s+result\s+code\s+reason\s+failure\s+retry\s+ms\s+detail$/)
    const cells = lines.slice(1).map(l => l.split(/\s{2,}/))
    t.equal(cells.length, 12)
    for (const transport of ['protocol', 'message', 'query', 'header']) {
      const mine = cells.filter(c => c[0] === transport)
      t.match(mine[0], [transport, 'missing', 'closed', '4008', 'Authentication timeout', 'auth_timeout', 'backoff', /^\d+$/], `${transport} missing`)
      t.match(mine[1], [transport, 'garbage', 'closed', '4001', 'Invalid token', 'invalid_token', 'reauthenticate', /^\d+$/], `${transport} garbage`)
      t.match(mine[2], [transport, 'given', 'established', /^\d+$/, /^user "u1", expires \d{4}-/], `${transport} given`)
    }
    t.notOk(stdout.includes(admin) || stderr.includes(admin), 'the token is never printed')
  })

  t.test('--json, a refused token, and the exit status', async t => {
    const user = served.sign({ sub: 'u2', roles: ['user'] })
    const { code, stdout } = await probe(bin, ['probe', served.httpUrl('/ws'), '--transports', 'protocol', '--json'], { WS_AUTH_TOKEN: user })
    t.equal(code, 1, 'the given token was refused everywhere')
    const rows = JSON.parse(stdout) as Row[]
    t.match(rows.map(r => [r.token, r.result, r.code, r.failure, r.retry]), [
      ['missing', 'closed', 4008, 'auth_timeout', 'backoff'],
      ['garbage', 'closed', 4001, 'invalid_token', 'reauthenticate'],
      ['given', 'closed', 4003, 'forbidden', 'never']
    ])
  })

  t.test('reject: http shows the HTTP status and the row it maps to', async t => {
    const { code, stdout } = await probe(bin, ['probe', served.url('/http'), '--transports', 'query', '--json', '--token', 'x.y.z'])
    t.equal(code, 1)
    t.match((JSON.parse(stdout) as Row[]).map(r => [r.token, r.result, r.code, r.reason, r.failure]), [
      ['missing', 'http', 401, 'No token provided', 'no_token'],
      ['garbage', 'http', 401, 'Invalid token', 'invalid_token'],
      ['given', 'http', 401, 'Invalid token', 'invalid_token']
    ])
  })

  t.test('usage errors exit with 2', async t => {
    for (const [args, message] of [
      [['probe'], /missing <url>/],
      [['probe', served.url(), '--transports', 'carrier-pigeon'], /unknown transport "carrier-pigeon"/],
      [['probe', served.url(), '--timeout', '0'], /--timeout must be a positive/]
    ] as const) {
      const { code, stderr } = await probe(bin, [...args])
      t.equal(code, 2, args.join(' '))
      t.match(stderr, message)
      t.match(stderr, /Usage: fastify-ws-auth probe <url>/)
    }
    const help = await probe(bin, ['--help'])
    t.equal(help.code, 0)
    t.match(help.stdout, /^Usage: fastify-ws-auth probe/)
  })
})
