'use strict'
// ts-node's transpiler for the test processes (tsconfig.json, "ts-node"."transpiler"): the very
// transform ts-node applies by default in transpile-only mode (its own TypeScript transpileModule),
// with its output kept on disk by a hash of everything it depends on. Each of the suite's ~80
// test processes used to transpile lib/, the helpers and their imports anew, some 2-3 s of CPU
// each; now only the first one to load a file does. The code and the source maps are the ones
// ts-node makes, so coverage is mapped as before.
const { createHash } = require('node:crypto')
const { mkdirSync, readFileSync, renameSync, writeFileSync } = require('node:fs')
const { dirname, join } = require('node:path')

/** Gitignored (and left alone by the linter); a key never names a stale output, so nothing expires. */
const CACHE = join(__dirname, '..', '.tap', 'ts-node-cache')

exports.create = function create ({ service, nodeModuleEmitKind }) {
  const ts = require(service.projectLocalResolveHelper('typescript', true))
  const tsNode = dirname(require.resolve('@isaacs/ts-node-temp-fork-for-pr-2009'))
  const { createTsTranspileModule } = require(join(tsNode, 'ts-transpile-module.js'))
  const compilerOptions = service.config.options
  const transpileModule = createTsTranspileModule(ts, { compilerOptions, reportDiagnostics: true })
  const moduleKind = nodeModuleEmitKind === 'nodeesm' ? 'module' : 'commonjs'
  const salt = JSON.stringify([ts.version, require(join(tsNode, '..', 'package.json')).version, compilerOptions, moduleKind, readFileSync(__filename, 'utf8')])
  return {
    transpile (code, { fileName }) {
      const key = createHash('sha256').update(salt).update('\0').update(fileName).update('\0').update(code).digest('hex')
      const file = join(CACHE, key + '.json')
      try {
        return JSON.parse(readFileSync(file, 'utf8'))
      } catch {
        // Not cached yet (or unreadable): transpile.
      }
      const result = transpileModule(code, { fileName }, moduleKind)
      // A file with errors is transpiled again each time, so that ts-node reports them each time.
      if (result.diagnostics === undefined || result.diagnostics.length === 0) {
        const { outputText, sourceMapText } = result
        mkdirSync(CACHE, { recursive: true })
        // Written aside, then renamed: a test process running alongside never reads half of it.
        const partial = `${file}.${process.pid}`
        writeFileSync(partial, JSON.stringify({ outputText, sourceMapText }))
        renameSync(partial, file)
      }
      return result
    }
  }
}
