// Runs the test suite against the newest releases of the packages the plugin leans on, without
// touching this checkout: the files git sees (tracked, and untracked ones it does not ignore) are
// copied into a temporary directory, installed there from the lockfile, upgraded with
// `npm install --no-save <pkg>@latest`, and `npm test` runs in the copy. The versions installed
// are printed next to the lockfile's. When a dependant's range keeps an older copy of one of them
// (fastify's range for pino, say), the copy's package.json gets npm `overrides` so that the
// newest is the only one. Exits with npm test's code; the copy is removed unless --keep is given.
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { constants, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'

const PACKAGES = ['fastify', '@fastify/websocket', '@fastify/jwt', 'ws', 'pino']
const USAGE = `Usage: npm run test:latest -- [--keep] [--only <pkg,...>]

Copies the project into a temporary directory, upgrades ${PACKAGES.join(', ')}
there to their latest releases, prints the versions against package-lock.json and runs npm test.

  --keep           keep the temporary directory and print its path
  --only <pkg,...> upgrade only these (comma-separated, from the list above)
  -h, --help       print this help`

const root = join(import.meta.dirname, '..')
const shell = process.platform === 'win32' // npm is npm.cmd there, which only a shell runs
let child = null
let stoppedBy = null // the signal that stopped this script, which then exits with 128 + its number

/** The options, or usage and exit code 2 when they do not parse. */
function parseOptions () {
  try {
    const { values } = parseArgs({
      options: { keep: { type: 'boolean' }, only: { type: 'string' }, help: { type: 'boolean', short: 'h' } }
    })
    return values
  } catch (err) {
    console.error(`${err.message}\n\n${USAGE}`)
    process.exit(2)
  }
}

/** The packages to upgrade: all five, or those named by --only. */
function selected (only) {
  if (only === undefined) return PACKAGES
  const names = only.split(',').map((name) => name.trim()).filter(Boolean)
  const unknown = names.filter((name) => !PACKAGES.includes(name))
  if (names.length > 0 && unknown.length === 0) return names
  console.error(`--only takes names from: ${PACKAGES.join(', ')}; got ${only}`)
  process.exit(2)
}

/** Copies every file git sees in the work tree, so node_modules, dist and other ignored files stay behind. */
function copyProject (dir) {
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: root, encoding: 'utf8' })
  for (const file of files.split('\0').filter(Boolean)) {
    if (!existsSync(join(root, file))) continue // tracked, but deleted in the work tree
    mkdirSync(dirname(join(dir, file)), { recursive: true })
    copyFileSync(join(root, file), join(dir, file))
  }
}

/** Runs npm in dir with its output streamed; resolves to its exit code (128 + signal when killed). */
function npm (args, dir) {
  console.log(`\n> npm ${args.join(' ')}`)
  return new Promise((resolve) => {
    child = spawn('npm', args, { cwd: dir, stdio: 'inherit', shell })
    child.on('error', (err) => { console.error(err.message); resolve(1) })
    child.on('close', (code, signal) => {
      child = null
      signal ??= stoppedBy
      resolve(signal ? 128 + constants.signals[signal] : code)
    })
  })
}

/** Runs an npm step that must succeed: exits with its code when it fails. */
async function step (args, dir) {
  const code = await npm(args, dir)
  if (code !== 0) {
    console.error(`npm ${args[0]} failed (exit code ${code})`)
    process.exit(code)
  }
}

/** The version at the top of a node_modules, or undefined when it is not installed. */
function installed (dir, name) {
  const file = join(dir, 'node_modules', name, 'package.json')
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).version : undefined
}

/** For each of the five, every version in the copy's tree with the packages that use it ('.' is the project). */
function versionsInTree (dir) {
  const { stdout } = spawnSync('npm', ['ls', ...PACKAGES, '--all', '--json'], { cwd: dir, encoding: 'utf8', shell })
  const found = new Map(PACKAGES.map((name) => [name, new Map()]))
  const walk = (parent, dependencies = {}) => {
    for (const [name, node] of Object.entries(dependencies)) {
      const users = found.get(name)
      if (users && node.version) users.set(node.version, (users.get(node.version) ?? new Set()).add(parent))
      walk(name, node.dependencies)
    }
  }
  walk('.', JSON.parse(stdout || '{}').dependencies)
  return found
}

/** Which of the five hold an older copy of name than the top-level one, their range excluding it (fastify's for pino, say). */
function holdersOfOlder (dir, name, tree) {
  const newest = installed(dir, name)
  const older = [...tree.get(name)].filter(([version]) => version !== newest)
  return [...new Set(older.flatMap(([, users]) => [...users]))].filter((user) => PACKAGES.includes(user))
}

/** Makes the five use the newest copy of each upgraded package, with `overrides` in the copy's package.json, and installs again. */
async function unsplit (dir, packages) {
  const tree = versionsInTree(dir)
  const overrides = {}
  for (const name of packages) {
    for (const holder of holdersOfOlder(dir, name, tree)) overrides[holder] = { ...overrides[holder], [name]: installed(dir, name) }
  }
  if (Object.keys(overrides).length === 0) return
  console.log('\nA range among the five keeps an older copy; overriding in the copy\'s package.json:', overrides)
  const file = join(dir, 'package.json')
  const pkg = JSON.parse(readFileSync(file, 'utf8'))
  writeFileSync(file, JSON.stringify({ ...pkg, overrides: { ...pkg.overrides, ...overrides } }, null, 2) + '\n')
  await step(['install', '--no-audit', '--no-fund', '--no-save', ...packages.map((name) => `${name}@${installed(dir, name)}`)], dir)
}

/** Prints, for each of the five, the lockfile's version, the one installed and any other copy in the tree. */
function printVersions (dir, packages) {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')).packages
  const tree = versionsInTree(dir)
  const rows = PACKAGES.map((name) => {
    const before = lock[`node_modules/${name}`]?.version ?? '-'
    const after = installed(dir, name) ?? '-'
    const others = [...tree.get(name)].filter(([version]) => version !== after)
      .map(([version, users]) => `${version} under ${[...users].join(', ')}`)
    const note = !packages.includes(name) ? 'not upgraded (--only)' : before === after ? 'same' : 'CHANGED'
    return [name, before, after, [note, ...others].join('; ')]
  })
  const table = [['package', 'lockfile', 'installed', ''], ...rows]
  const widths = [0, 1, 2].map((i) => Math.max(...table.map((row) => row[i].length)))
  console.log('')
  for (const row of table) console.log(row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd())
}

/** Removes the copy (called on every exit), or says where it is kept. */
function cleanup (dir, keep) {
  if (keep) return console.log(`\nkept: ${dir}`)
  rmSync(dir, { recursive: true, force: true })
}

/** On Ctrl-C or a kill, stops the running npm and lets its exit end this script (and clean up). */
function onSignal (signal) {
  stoppedBy = signal
  if (child === null) process.exit(128 + constants.signals[signal])
  child.kill(signal)
}

const options = parseOptions()
if (options.help) {
  console.log(USAGE)
  process.exit(0)
}
const packages = selected(options.only)
const dir = mkdtempSync(join(tmpdir(), 'fastify-ws-auth-latest-'))
process.on('exit', () => cleanup(dir, options.keep))
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, onSignal)

console.log(`copying the project into ${dir}`)
copyProject(dir)
await step(['ci', '--no-audit', '--no-fund'], dir)
await step(['install', '--no-audit', '--no-fund', '--no-save', ...packages.map((name) => `${name}@latest`)], dir)
await unsplit(dir, packages)
printVersions(dir, packages)
process.exit(await npm(['test'], dir))
