// The client must stay one dependency-free module that a browser can load as built: it compiles
// with the DOM library and no Node types, and imports nothing outside lib/client but lib/protocol.
import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { privateBuild } from './helpers/dist.ts'

t.test('the client compiles alone for browsers and imports only itself and the protocol', async t => {
  const esm = join(privateBuild(), 'dist', 'esm')
  t.same(readdirSync(esm).sort(), ['client', 'package.json', 'protocol'], 'nothing of the server side came along')
  for (const file of readdirSync(join(esm, 'client')).filter(f => f.endsWith('.js'))) {
    const source = readFileSync(join(esm, 'client', file), 'utf8')
    const specifiers = [...source.matchAll(/(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/g)].map(m => m[1])
    for (const specifier of specifiers) {
      t.match(specifier, /^(\.\/[a-z-]+\.js|\.\.\/protocol\/[a-z-]+\.js)$/, `${file} imports ${specifier}`)
    }
  }
  for (const file of readdirSync(join(esm, 'protocol')).filter(f => f.endsWith('.js'))) {
    t.same(readFileSync(join(esm, 'protocol', file), 'utf8').match(/^\s*import\s/m), null, `protocol/${file} imports nothing`)
  }
  // A child process: this test file is compiled to CommonJS, where import() becomes require().
  const loaded = execFileSync(process.execPath, ['--input-type=module', '-e',
    'const m = await import(process.argv[1]); console.log(typeof m.createClient, typeof m.closeCodes.forbidden)',
    pathToFileURL(join(esm, 'client', 'index.js')).href], { encoding: 'utf8' })
  t.equal(loaded.trim(), 'function object', 'Node loads the built module as ESM')
})
