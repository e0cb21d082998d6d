import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { createSigner } from 'fast-jwt'
import { connect } from './helpers/index.ts'

const root = join(__dirname, '..')
const SECRET = 'a-readme-secret-that-is-long-enough'

/** The first TypeScript block of a README section, as written. */
function codeOf (section: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const start = readme.indexOf(`## ${section}\n`)
  if (start === -1) throw new Error(`README.md has no "## ${section}" section`)
  const open = readme.indexOf('```ts\n', start)
  return readme.slice(open + 6, readme.indexOf('\n```', open))
}

t.test('the README\'s Usage example runs as written', async t => {
  const dir = join(root, 'test-artifacts')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, 'readme-usage.mts')
  writeFileSync(file, codeOf('Usage'))
  const tsx = createRequire(__filename).resolve('tsx/cli')
  // No coverage from the child (_TAPJS_PROCESSINFO_COVERAGE_=0; tap's hooks still follow it): it runs
  // lib/ through tsx's own ESM transform, whose byte ranges, merged with the suite's coverage of
  // the same files, would make nonsense of it.
  const env = { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
  const child = spawn(process.execPath, [tsx, file], { cwd: root, env: { ...env, PORT: '0', JWT_SECRET: SECRET } })
  t.teardown(() => { child.kill() })
  child.stderr.resume()
  const address = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the example exited (${code})`)))
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
      if (match !== null) resolve(match[1].replace('http:', 'ws:'))
    })
  })
  const sign = createSigner({ key: SECRET })
  const token = sign({ sub: 'u1', roles: ['admin'] })

  const owner = connect(`${address}/ws/entries/1?token=${token}`)
  t.match(await owner.message(1), { type: 'connection_established', user: { id: 'u1', username: 'alice', permissions: ['journal.read'] } })
  owner.send('hello')
  t.equal(await owner.message(2), 'alice: hello')
  owner.ws.close()

  const missing = connect(`${address}/ws/entries/404?token=${token}`)
  t.same(await missing.closed, { code: 4004, reason: 'Not found' })
  const stranger = connect(`${address}/ws/entries/1?token=${sign({ sub: 'nobody' })}`)
  t.same(await stranger.closed, { code: 4002, reason: 'User not found or inactive' })
  const anonymous = connect(`${address}/ws/entries/1`)
  await anonymous.opened
  anonymous.send({ type: 'auth', token })
  t.match(await anonymous.message(1), { type: 'connection_established' })
  anonymous.ws.close()
})
