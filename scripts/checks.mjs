// `npm test`'s steps before tap, as many at once as they can run: the build, the typecheck and
// the lint together (none reads another's output), then the public types test, which compiles
// against the built dist/*.d.ts. Each step's output is printed whole when it ends; the run fails
// if any step fails, once all have ended.
import { spawn } from 'node:child_process'
import { once } from 'node:events'

/** Runs `npm run <script>`, collecting its output; resolves with whether it passed. */
async function step (script) {
  const started = Date.now()
  const child = spawn('npm', ['run', '--silent', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  const output = []
  child.stdout.on('data', chunk => output.push(chunk))
  child.stderr.on('data', chunk => output.push(chunk))
  const [code, signal] = await once(child, 'close')
  const ok = code === 0
  const took = ((Date.now() - started) / 1000).toFixed(1)
  process.stdout.write(`> ${script}: ${ok ? 'ok' : `FAILED (${signal ?? `exit code ${code}`})`} in ${took} s\n${Buffer.concat(output)}`)
  return ok
}

const built = step('build')
const results = await Promise.all([
  built.then(ok => {
    if (ok) return step('typecheck:types')
    process.stdout.write('> typecheck:types: not run (it needs the build)\n')
    return false
  }),
  step('typecheck'),
  step('lint')
])
if (!(await built) || results.includes(false)) process.exit(1)
