// Tests the BUILT package (dist/), loaded by its own name the way users load it: Node resolves a
// package's own name through its `exports` field. `npm test` builds before running tap.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const root = join(__dirname, '..')
const run = promisify(execFile)
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string, main: string, types: string, exports: Record<string, Record<string, Record<string, string>> | string>
}
const BUILD_HINT = 'run `npm run build` first (`npm test` does it before tap)'

/** The names every entry point must export. */
const REQUIRED_EXPORTS = ['closeCodes', 'fastifyWsAuth', 'default', 'InvalidTokenError', 'TokenExpiredError', 'InvalidOptionError', 'mergeCloseCodes']

/**
 * The part shared by both module systems: register the plugin in a Fastify app, authenticate one
 * real connection with a query token, print what the client saw as JSON.
 */
const scenario = `
const report = { typeofPlugin: typeof plugin, names: Object.keys(mod).sort() }
const app = Fastify()
await app.register(jwt, { secret: 'a-package-test-secret-long-enough-for-hs256' })
await app.register(plugin)
app.get('/ws', { websocket: true }, (socket) => { socket.send(JSON.stringify({ handler: socket.user.id })) })
await app.listen({ host: '127.0.0.1', port: 0 })
const token = app.jwt.sign({ sub: 'pkg-user' })
const ws = new WebSocket('ws://127.0.0.1:' + app.server.address().port + '/ws?token=' + token)
report.received = await new Promise((resolve, reject) => {
  const got = []
  ws.on('message', (data) => { got.push(JSON.parse(data.toString())); if (got.length === 2) resolve(got) })
  ws.on('close', (code, reason) => reject(new Error('closed ' + code + ' ' + reason)))
  ws.on('error', reject)
})
ws.terminate()
await app.close()
process.stdout.write(JSON.stringify(report))
`

const cjs = `
const mod = require(${JSON.stringify(pkg.name)})
const plugin = mod
const Fastify = require('fastify')
const jwt = require('@fastify/jwt')
const WebSocket = require('ws')
;(async () => {
${scenario}
})().catch((err) => { console.error(err); process.exit(1) })
`

const esm = `
const mod = await import(${JSON.stringify(pkg.name)})
const plugin = mod.default
const { default: Fastify } = await import('fastify')
const { default: jwt } = await import('@fastify/jwt')
const { default: WebSocket } = await import('ws')
${scenario}
`

interface Report {
  typeofPlugin: string
  names: string[]
  received: Array<Record<string, unknown>>
}

async function child (args: string[]): Promise<Report> {
  const { stdout } = await run(process.execPath, args, { cwd: root, timeout: 10_000 })
  return JSON.parse(stdout) as Report
}

function newestMtime (dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs)
  }
  return newest
}

const entries = ['dist/cjs/index.js', 'dist/esm/index.js', 'dist/esm/protocol/close-codes.js']
const missing = entries.filter(file => !existsSync(join(root, file)))
if (missing.length > 0) {
  t.fail(`dist/ is not built (missing ${missing.join(', ')}): ${BUILD_HINT}`)
} else {
  t.ok(statSync(join(root, 'dist/cjs/index.js')).mtimeMs >= newestMtime(join(root, 'lib')),
    `dist/ is not older than lib/ (else the tests below test stale output): ${BUILD_HINT}`)

  t.test('package.json: entry points exist, types first in every condition', async t => {
    t.ok(existsSync(join(root, pkg.main)), `main ${pkg.main}`)
    t.ok(existsSync(join(root, pkg.types)), `types ${pkg.types}`)
    const dot = pkg.exports['.'] as Record<string, Record<string, string>>
    t.same(Object.keys(dot).sort(), ['import', 'require'])
    for (const [condition, target] of Object.entries(dot)) {
      t.equal(Object.keys(target)[0], 'types', `${condition}: types first`)
      for (const file of Object.values(target)) t.ok(existsSync(join(root, file)), `${condition}: ${file} exists`)
    }
  })

  let cjsReport: Report | undefined
  let esmReport: Report | undefined

  t.test(`require('${pkg.name}') by name: the plugin function, registers, authenticates`, async t => {
    cjsReport = await child(['-e', cjs])
    t.equal(cjsReport.typeofPlugin, 'function', 'require() returns the plugin function itself')
    for (const name of REQUIRED_EXPORTS) {
      t.ok(cjsReport.names.includes(name), `exports ${name}`)
    }
    t.match(cjsReport.received, [{ type: 'connection_established', user: { id: 'pkg-user' } }, { handler: 'pkg-user' }])
  })

  t.test(`import('${pkg.name}') by name: the plugin function, registers, authenticates`, async t => {
    esmReport = await child(['--input-type=module', '-e', esm])
    t.equal(esmReport.typeofPlugin, 'function', 'the default export is the plugin function')
    for (const name of REQUIRED_EXPORTS) {
      t.ok(esmReport.names.includes(name), `exports ${name}`)
    }
    t.match(esmReport.received, [{ type: 'connection_established', user: { id: 'pkg-user' } }, { handler: 'pkg-user' }])
  })

  t.test('require() and import() give the same named exports', async t => {
    t.ok(cjsReport && esmReport, 'both children reported')
    t.same(cjsReport?.names, esmReport?.names)
  })

  t.test('require(): default and fastifyWsAuth are the plugin itself', async t => {
    const probe = `
      const mod = require(${JSON.stringify(pkg.name)})
      process.stdout.write(JSON.stringify([mod.default === mod, mod.fastifyWsAuth === mod,
        mod[Symbol.for('plugin-meta')] && mod[Symbol.for('plugin-meta')].name]))`
    const { stdout } = await run(process.execPath, ['-e', probe], { cwd: root, timeout: 10_000 })
    t.same(JSON.parse(stdout), [true, true, 'fastify-ws-auth'])
  })

  t.test('dist/esm/protocol/close-codes.js imports nothing, so a browser can load it', async t => {
    const source = readFileSync(join(root, 'dist/esm/protocol/close-codes.js'), 'utf8')
    const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
    t.notMatch(code, /^\s*import[\s{*'"]/m, 'no static import')
    t.notMatch(code, /\bimport\s*\(/, 'no dynamic import')
    t.notMatch(code, /^\s*export\s[^;]*\bfrom\s*['"]/m, 'no re-export from another module')
    t.notMatch(code, /\brequire\s*\(/, 'no require')
    // A data: URL module cannot resolve a relative or bare specifier: it loads only if self-contained.
    // (The source map comment is dropped: a data: URL cannot resolve it.)
    const self = source.replace(/^\/\/# sourceMappingURL=.*$/m, '')
    const url = 'data:text/javascript;base64,' + Buffer.from(self).toString('base64')
    const probe = 'const m = await import(process.env.MODULE_URL); process.stdout.write(String(m.closeCodes.no_token.code))'
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe],
      { cwd: root, timeout: 10_000, env: { ...process.env, MODULE_URL: url } })
    t.equal(stdout, '4001', 'it loads on its own and exports the table')
  })
}

t.test('the subpath entries load by name with require and import, and the core does not need ioredis', async t => {
  const cjs = "const c = require('fastify-ws-auth/client'); const r = require('fastify-ws-auth/redis');" +
    'console.log(JSON.stringify([typeof c.createClient, typeof r.redisAdapter]))'
  const esm = "const c = await import('fastify-ws-auth/client'); const r = await import('fastify-ws-auth/redis');" +
    'console.log(JSON.stringify([typeof c.createClient, typeof r.redisAdapter]))'
  t.same(JSON.parse((await run(process.execPath, ['-e', cjs], { cwd: root })).stdout), ['function', 'function'])
  t.same(JSON.parse((await run(process.execPath, ['--input-type=module', '-e', esm], { cwd: root })).stdout), ['function', 'function'])
  const core = readFileSync(join(root, 'dist', 'cjs', 'index.js'), 'utf8')
  t.notMatch(core, /ioredis/, 'the core entry never loads ioredis')
  const client = readdirSync(join(root, 'dist', 'esm', 'client')).filter(f => f.endsWith('.js'))
  for (const file of client) {
    const imports = [...readFileSync(join(root, 'dist', 'esm', 'client', file), 'utf8').matchAll(/from '([^']+)'/g)].map(m => m[1])
    t.ok(imports.every(i => i.startsWith('./') || i === '../close-codes.js'), `client/${file} imports only the client and the table`)
  }
})

/** Makes prom-client and @opentelemetry/api unresolvable, as in an app that did not install them. */
const WITHOUT_PEERS_CJS = `
const Module = require('node:module')
const resolve = Module._resolveFilename
Module._resolveFilename = function (request, ...rest) {
  if (request === 'prom-client' || request === '@opentelemetry/api') throw Object.assign(new Error('Cannot find module ' + request), { code: 'MODULE_NOT_FOUND' })
  return resolve.call(this, request, ...rest)
}`
const WITHOUT_PEERS_ESM = `
import { register } from 'node:module'
register('data:text/javascript,' + encodeURIComponent(\`export async function resolve (specifier, context, next) {
  if (specifier === 'prom-client' || specifier === '@opentelemetry/api') throw Object.assign(new Error('Cannot find package ' + specifier), { code: 'ERR_MODULE_NOT_FOUND' })
  return next(specifier, context)
}\`))`
/** Registers the plugin three ways and prints how each went. */
const peersScenario = `
const outcomes = []
for (const options of [{}, { metrics: true }, { traces: true }]) {
  const app = Fastify()
  await app.register(jwt, { secret: 'a-package-test-secret-long-enough-for-hs256' })
  try {
    await app.register(plugin, options)
    await app.ready()
    outcomes.push('ok')
  } catch (err) {
    outcomes.push(err.code + ': ' + err.message)
  }
  await app.close()
}
process.stdout.write(JSON.stringify(outcomes))
`

t.test('without prom-client and @opentelemetry/api: works, and metrics or traces asked for fail naming the option', async t => {
  const expected = [
    'ok',
    'FST_WS_AUTH_INVALID_OPTION: fastify-ws-auth: option "metrics" needs prom-client (npm i prom-client): it could not be loaded',
    'FST_WS_AUTH_INVALID_OPTION: fastify-ws-auth: option "traces" needs @opentelemetry/api (npm i @opentelemetry/api): it could not be loaded'
  ]
  const cjs = WITHOUT_PEERS_CJS + `
const plugin = require('fastify-ws-auth'); const Fastify = require('fastify'); const jwt = require('@fastify/jwt');
(async () => {${peersScenario}})()`
  t.same(JSON.parse((await run(process.execPath, ['-e', cjs], { cwd: root, timeout: 20_000 })).stdout), expected, 'require')
  const esm = WITHOUT_PEERS_ESM + `
const { default: plugin } = await import('fastify-ws-auth'); const { default: Fastify } = await import('fastify'); const { default: jwt } = await import('@fastify/jwt')
${peersScenario}`
  t.same(JSON.parse((await run(process.execPath, ['--input-type=module', '-e', esm], { cwd: root, timeout: 20_000 })).stdout), expected, 'import')
})

t.test('the tracer carries the package\'s version', async t => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }
  t.match(readFileSync(join(root, 'lib', 'server', 'observer.ts'), 'utf8'), `const VERSION = '${version}'`, 'bump lib/server/observer.ts with package.json')
})
