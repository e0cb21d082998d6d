// Builds dist/cjs (require) and dist/esm (import) from lib/ with one tsc run each.
// The CommonJS entry is patched so that `require('fastify-ws-auth')` returns the plugin
// function itself, carrying every named export as a property (the Fastify plugin convention).
import { execFileSync } from 'node:child_process'
import { appendFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
const dist = join(root, 'dist')

rmSync(dist, { recursive: true, force: true })
for (const [dir, module, resolution] of [['cjs', 'commonjs', 'node10'], ['esm', 'es2022', 'bundler']]) {
  const outDir = join(dist, dir)
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', outDir,
    '--module', module, '--moduleResolution', resolution], { stdio: 'inherit' })
  writeFileSync(join(outDir, 'package.json'), JSON.stringify({ type: dir === 'cjs' ? 'commonjs' : 'module' }) + '\n')
}

appendFileSync(join(dist, 'cjs', 'index.js'),
  '\nmodule.exports = Object.assign(exports.default, exports)\n')
