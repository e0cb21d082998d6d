import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

export const ROOT = join(__dirname, '..', '..', '..')
const tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc')

interface Commented { comment (...args: unknown[]): void }

/** The client's sources and the build output each one becomes under `dist/esm`. */
function sources (): Array<[string, string]> {
  return ['protocol', 'client'].flatMap(dir => readdirSync(join(ROOT, 'lib', dir)).filter(f => f.endsWith('.ts'))
    .map((f): [string, string] => [join(dir, f), join(dir, f.replace(/\.ts$/, '.js'))]))
}

function isFresh (root: string): boolean {
  return sources().every(([source, built]) => {
    const out = join(root, 'dist', 'esm', built)
    return existsSync(out) && statSync(out).mtimeMs >= statSync(join(ROOT, 'lib', source)).mtimeMs
  })
}

/**
 * Compiles the client alone, as `scripts/build.mjs` compiles `dist/esm` (ES2022 modules, `.ts`
 * imports rewritten to `.js`), with the DOM library and no Node types: it fails if the client
 * uses anything Node-only.
 */
export function compileClient (outDir: string, emit = true): void {
  const config = join(outDir, 'tsconfig.client.json')
  writeFileSync(config, JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module: 'es2022',
      moduleResolution: 'bundler',
      lib: ['ES2022', 'DOM'],
      types: [],
      strict: true,
      skipLibCheck: true,
      allowImportingTsExtensions: true,
      rewriteRelativeImportExtensions: true,
      rootDir: join(ROOT, 'lib'),
      outDir: join(outDir, 'dist', 'esm'),
      noEmit: !emit
    },
    files: [join(ROOT, 'lib', 'client', 'index.ts')]
  }))
  execFileSync(process.execPath, [tsc, '-p', config], { stdio: 'pipe' })
  if (emit) writeFileSync(join(outDir, 'dist', 'esm', 'package.json'), '{"type":"module"}\n')
}

/** Builds `dir` through a staging directory renamed into place, so readers never see half of it. */
function publish (dir: string, build: (staging: string) => void): string {
  if (existsSync(join(dir, 'dist', 'esm', 'package.json'))) return dir
  const artifacts = join(ROOT, 'test-artifacts')
  mkdirSync(artifacts, { recursive: true })
  const staging = mkdtempSync(join(artifacts, 'staging-'))
  try {
    build(staging)
    symlinkSync(join(ROOT, 'node_modules'), join(staging, 'node_modules'), 'dir')
    renameSync(staging, dir)
  } catch (err) {
    rmSync(staging, { recursive: true, force: true })
    // Another test file published the same directory first.
    if (!existsSync(join(dir, 'dist', 'esm', 'package.json'))) throw err
  }
  return dir
}

function digest (parts: Array<string | Buffer>): string {
  const hash = createHash('sha256')
  for (const part of parts) hash.update(part)
  return hash.digest('hex').slice(0, 16)
}

/**
 * A private build of the client (see `compileClient`) under `test-artifacts/`, keyed by a hash of
 * the sources, so the test files that need one share it and build it once per change. It links
 * `node_modules`, so `bin/` scripts copied there resolve their imports.
 */
export function privateBuild (): string {
  const key = digest(sources().flatMap(([source]) => [source, readFileSync(join(ROOT, 'lib', source))]))
  return publish(join(ROOT, 'test-artifacts', `client-build-${key}`), compileClient)
}

/**
 * A copy of the client files of the shared `dist/esm`, taken once they are up to date: another
 * `npm run build` (which empties `dist/` first) can then run while a test serves the copy.
 * Returns `null` when `dist/esm` is missing or older than the sources.
 */
function distSnapshot (): string | null {
  if (!isFresh(ROOT)) return null
  let files: Array<[string, Buffer]>
  try {
    files = sources().map(([, built]) => [built, readFileSync(join(ROOT, 'dist', 'esm', built))])
  } catch {
    return null
  }
  if (!isFresh(ROOT)) return null
  const key = digest(files.flatMap(([name, content]) => [name, content]))
  return publish(join(ROOT, 'test-artifacts', `dist-snapshot-${key}`), (staging) => {
    for (const [name, content] of files) {
      mkdirSync(join(staging, 'dist', 'esm', dirname(name)), { recursive: true })
      writeFileSync(join(staging, 'dist', 'esm', name), content)
    }
    writeFileSync(join(staging, 'dist', 'esm', 'package.json'), '{"type":"module"}\n')
  })
}

/**
 * A package root whose `dist/esm` holds the built client: a snapshot of the repository's own
 * build when it is up to date (as in `npm test`, which builds first), else the private build
 * (never `npm run build` here: the shared `dist/` may be in use by other test files).
 */
export function builtRoot (t: Commented): { root: string, private: boolean } {
  const snapshot = distSnapshot()
  if (snapshot !== null) {
    t.comment('using the built dist/esm (a snapshot of it)')
    return { root: snapshot, private: true }
  }
  t.comment('dist/esm is missing or stale: using a private build of the client')
  return { root: privateBuild(), private: true }
}
