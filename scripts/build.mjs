// Builds dist/cjs (require) and dist/esm (import) from lib/ with one tsc run each, side by side.
// The CommonJS entry is patched so that `require('fastify-ws-auth')` returns the plugin
// function itself, carrying every named export as a property (the Fastify plugin convention).
// With `--if-changed` (the bench), nothing is done when dist/ was built from the same sources:
// a hash of lib/, the tsconfigs and this script, kept in node_modules/.cache.
import { createHash } from 'node:crypto'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const root = join(import.meta.dirname, '..')
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
const dist = join(root, 'dist')
const stamp = join(root, 'node_modules', '.cache', 'fastify-ws-auth', 'build-hash')

/** A hash of everything the build reads from this repository. */
function sourceHash () {
  const hash = createHash('sha256')
  const sources = readdirSync(join(root, 'lib'), { recursive: true }).filter((f) => f.endsWith('.ts')).sort()
  for (const file of [...sources.map((f) => join('lib', f)), 'tsconfig.json', 'tsconfig.build.json', join('scripts', 'build.mjs')]) {
    hash.update(file).update('\0').update(readFileSync(join(root, file))).update('\0')
  }
  return hash.digest('hex')
}

const hash = sourceHash()
const built = existsSync(join(dist, 'cjs', 'index.js')) && existsSync(join(dist, 'esm', 'index.js')) &&
  existsSync(stamp) && readFileSync(stamp, 'utf8') === hash
if (process.argv.includes('--if-changed') && built) {
  console.log('dist/ is up to date with lib/')
  process.exit(0)
}

rmSync(stamp, { force: true })
rmSync(dist, { recursive: true, force: true })
const builds = [['cjs', 'commonjs', 'node10'], ['esm', 'es2022', 'bundler']].map(async ([dir, module, resolution]) => {
  const outDir = join(dist, dir)
  const child = spawn(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', outDir,
    '--module', module, '--moduleResolution', resolution], { stdio: 'inherit' })
  const [code, signal] = await once(child, 'exit')
  if (code !== 0) throw new Error(`tsc (${dir}) failed: ${signal ?? `exit code ${code}`}`)
  writeFileSync(join(outDir, 'package.json'), JSON.stringify({ type: dir === 'cjs' ? 'commonjs' : 'module' }) + '\n')
})
// Both settle before the verdict, so that a failed one does not leave the other writing.
const failed = (await Promise.allSettled(builds)).filter(r => r.status === 'rejected')
if (failed.length > 0) {
  for (const { reason } of failed) console.error(reason.message)
  process.exit(1)
}

appendFileSync(join(dist, 'cjs', 'index.js'),
  '\nmodule.exports = Object.assign(exports.default, exports)\n')
mkdirSync(dirname(stamp), { recursive: true })
writeFileSync(stamp, hash)
