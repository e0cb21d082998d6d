// Which build of dist/ the bench servers load: `scripts/build.mjs` stamps each build with a hash of
// the lib/ sources it was built from. Others may rebuild while a run goes on (lib/ changing under
// it): the report names the build its servers started with and says when it changed during the run.
// With `--frozen`, the harness copies the current build to bench/.tmp/frozen/<build>/ first and
// every server imports that copy (env BENCH_PLUGIN) instead of `fastify-ws-auth`, so that all the
// processes of a long comparison run the same code whatever happens to dist/ meanwhile.
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const ROOT = join(import.meta.dirname, '..', '..')
const STAMP = join(ROOT, 'node_modules', '.cache', 'fastify-ws-auth', 'build-hash')
const FROZEN = join(ROOT, 'bench', '.tmp', 'frozen')

/** The first 12 hex digits of the sources hash of the current dist/ build; `unknown` without a stamp. */
export function distBuild () {
  try {
    return readFileSync(STAMP, 'utf8').trim().slice(0, 12)
  } catch {
    return 'unknown'
  }
}

/** The build when this module was first imported: when the run started its servers. */
export const DIST_AT_START = distBuild()

/** The build the servers import, frozen by `freezeDist` (here or in a parent process); `null` when they import dist/. */
export function frozenBuild () {
  return process.env.BENCH_PLUGIN_BUILD ?? null
}

/**
 * Copies dist/esm of the current build to bench/.tmp/frozen/<build>/ (unless there already) and
 * points this process's servers at it; returns the build. A build under way (the stamp missing or
 * changed during the copy) is waited out, up to 30 s.
 */
export function freezeDist () {
  for (let attempt = 0; attempt < 60; attempt++) {
    const build = distBuild()
    const dir = join(FROZEN, build)
    const entry = join(dir, 'esm', 'index.js')
    try {
      if (build !== 'unknown' && !existsSync(entry)) {
        rmSync(dir, { recursive: true, force: true })
        cpSync(join(ROOT, 'dist', 'esm'), join(dir, 'esm'), { recursive: true })
      }
      if (build !== 'unknown' && distBuild() === build) {
        process.env.BENCH_PLUGIN = pathToFileURL(entry).href
        process.env.BENCH_PLUGIN_BUILD = build
        return build
      }
    } catch {
      // dist/ removed mid-copy by a build: try again once it is done
    }
    rmSync(dir, { recursive: true, force: true })
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500)
  }
  throw new Error('dist/ kept changing for 30 s: no build to freeze')
}

/** What the bench servers import: the frozen copy, or the package by name (its built dist/). */
export function pluginSpecifier () {
  return process.env.BENCH_PLUGIN ?? 'fastify-ws-auth'
}
