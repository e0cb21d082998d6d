// README.md and the chapters in docs/: every relative link and #anchor resolves, and every
// ```ts / ```js / ```tsx / ```jsx sample type-checks against the package's public types, all in
// one compiler run. (The Usage sample also runs, in test/readme.test.ts.) All samples share one
// program, as the files of one app would: the TypeScript section's `declare module '@fastify/jwt'`
// types the user and the claims of every sample.
//
// A sample that cannot compile alone gets the declarations it needs from a hidden comment right
// before its block, `<!-- sample-preamble: declare const jwt: string -->` (in the block's own
// language), or is left out with `<!-- not-a-sample: the reason -->`.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, extname, join, relative, resolve } from 'node:path'
import t from 'tap'
import ts from 'typescript'

const root = join(__dirname, '..')
const README_MAX_LINES = 450
/** The languages whose samples are compiled, and the file extension each is checked as. */
const CHECKED: Record<string, string> = { ts: '.ts', typescript: '.ts', tsx: '.tsx', js: '.js', javascript: '.js', jsx: '.jsx' }

/** The Markdown files under test: README.md and every docs/*.md. */
function docFiles (): string[] {
  const docs = existsSync(join(root, 'docs')) ? readdirSync(join(root, 'docs')).filter(f => f.endsWith('.md')).sort() : []
  return ['README.md', ...docs.map(f => join('docs', f))]
}

export interface Block {
  /** The info string's first word, lower-cased ('' for none). */
  lang: string
  code: string
  /** 1-based line of the block's first code line in its file. */
  line: number
  /** From `<!-- sample-preamble: ... -->` right before the block. */
  preamble?: string
  /** From `<!-- not-a-sample: ... -->` right before the block. */
  notASample?: string
}

export interface Parsed {
  blocks: Block[]
  /** Each line outside fenced code (code lines blanked, so that line numbers hold). */
  prose: string[]
}

/** Splits Markdown into fenced code blocks and the prose around them. */
export function parseMarkdown (text: string): Parsed {
  const lines = text.split('\n')
  const blocks: Block[] = []
  const prose: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i])
    if (open === null) {
      prose.push(lines[i])
      continue
    }
    const [, indent, fence, info] = open
    const start = i
    const code: string[] = []
    prose.push('')
    for (i++; i < lines.length; i++) {
      prose.push('')
      if (new RegExp(`^ {0,3}${fence[0]}{${fence.length},}\\s*$`).test(lines[i])) break
      code.push(lines[i].startsWith(indent) ? lines[i].slice(indent.length) : lines[i].trimStart())
    }
    const before = lines.slice(0, start).join('\n').trimEnd()
    const mark = /^<!--\s*(sample-preamble|not-a-sample):([\s\S]*)-->$/.exec(before.slice(before.lastIndexOf('<!--')))
    blocks.push({
      lang: info.toLowerCase(),
      code: code.join('\n'),
      line: start + 2,
      ...(mark?.[1] === 'sample-preamble' ? { preamble: mark[2].trim() } : {}),
      ...(mark?.[1] === 'not-a-sample' ? { notASample: mark[2].trim() } : {})
    })
  }
  return { blocks, prose }
}

/** GitHub's anchor for a heading: its text as rendered, lower-cased, punctuation dropped, spaces to hyphens. */
export function slug (heading: string): string {
  const rendered = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // links and images: their text
    .replace(/<[^>]+>/g, '') // inline HTML
  return rendered.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-')
}

/** Every anchor a Markdown text offers: its headings' slugs (repeats numbered as GitHub does) and HTML ids. */
export function anchorsOf (text: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  for (const line of parseMarkdown(text).prose) {
    const heading = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (heading !== null) {
      const base = slug(heading[1])
      const n = seen.get(base) ?? 0
      seen.set(base, n + 1)
      anchors.add(n === 0 ? base : `${base}-${n}`)
    }
    for (const id of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(id[1])
  }
  return anchors
}

/** Relative links of a Markdown text (outside code) that do not resolve, as `line: target (why)`. */
export function brokenLinks (file: string, text: string, read: (path: string) => string | null): string[] {
  const broken: string[] = []
  parseMarkdown(text).prose.forEach((line, i) => {
    const withoutCode = line.replace(/(`+)[\s\S]*?\1/g, '')
    for (const match of withoutCode.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|\]:\s+(\S+)/g)) {
      const target = match[1] ?? match[2]
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // http:, https:, mailto:...
      const problem = linkProblem(file, target, read)
      if (problem !== null) broken.push(`${file}:${i + 1}: ${target} (${problem})`)
    }
  })
  return broken
}

function linkProblem (file: string, target: string, read: (path: string) => string | null): string | null {
  const hash = target.indexOf('#')
  const path = decodeURIComponent(hash === -1 ? target : target.slice(0, hash))
  const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1))
  const into = path === '' ? file : join(dirname(file), path)
  if (relative(root, resolve(root, into)).startsWith('..')) return 'outside the repository'
  const text = read(into)
  if (text === null) return 'no such file'
  if (anchor === null) return null
  if (extname(into) !== '.md') return 'an anchor into a file that is not Markdown'
  return anchorsOf(text).has(anchor) ? null : `${into} has no heading #${anchor}`
}

/** A file's text; '' for a directory; `null` when nothing is there. */
function readRepo (path: string): string | null {
  const full = join(root, path)
  if (!existsSync(full)) return null
  return statSync(full).isDirectory() ? '' : readFileSync(full, 'utf8')
}

t.test('every relative link and #anchor of README.md, docs/*.md and the other top-level pages resolves', async t => {
  const files = [...new Set([...docFiles(), ...readdirSync(root).filter(f => f.endsWith('.md')).sort()])]
  t.ok(files.length > 8, 'the chapters were found')
  const broken = files.flatMap(file => brokenLinks(file, readFileSync(join(root, file), 'utf8'), readRepo))
  t.same(broken, [])
})

t.test('the link checker finds broken links and anchors', async t => {
  const pages: Record<string, string> = {
    'README.md': '# Title\n\n## Close codes\n\n## Close codes\n\n```md\n## In code\n```\n',
    'docs/a.md': [
      '# A `chapter`: one',
      '[ok](../README.md#close-codes) [ok](../README.md#close-codes-1) [ok](#a-chapter-one) [ok](b.md)',
      '[missing file](c.md) [missing anchor](../README.md#nope) [heading in code](../README.md#in-code)',
      '`[in code](nowhere.md)` [outside](../../etc/passwd) [web](https://example.com/x.md)',
      '[not markdown](b.txt#x)'
    ].join('\n'),
    'docs/b.md': '# B',
    'docs/b.txt': 'b'
  }
  const read = (path: string): string | null => pages[path] ?? null
  t.same(brokenLinks('docs/a.md', pages['docs/a.md'], read), [
    'docs/a.md:3: c.md (no such file)',
    'docs/a.md:3: ../README.md#nope (README.md has no heading #nope)',
    'docs/a.md:3: ../README.md#in-code (README.md has no heading #in-code)',
    'docs/a.md:4: ../../etc/passwd (outside the repository)',
    'docs/a.md:5: b.txt#x (an anchor into a file that is not Markdown)'
  ])
})

t.test('GitHub slugs', async t => {
  t.equal(slug('Registry: `fastify.wsAuth`'), 'registry-fastifywsauth')
  t.equal(slug('With `@fastify/jwt` (no `verify`)'), 'with-fastifyjwt-no-verify')
  t.equal(slug('What is refused, and why'), 'what-is-refused-and-why')
  t.equal(slug('React: `useAuthSocket`'), 'react-useauthsocket')
  t.equal(slug('The `probe` command'), 'the-probe-command')
  t.equal(slug('lib/server/ and max_pending'), 'libserver-and-max_pending')
})

t.test('README.md is the front door', async t => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  t.ok(readme.split('\n').length <= README_MAX_LINES, `at most ${README_MAX_LINES} lines (has ${readme.split('\n').length})`)
  const first = parseMarkdown(readme).blocks[0]
  t.equal(first.lang, 'sh', 'its first block is the set-up')
  t.match(first.code, /^npm run demo\b/m, 'which runs the demo')
  t.match(first.code, /^npm test\b/m, 'and the tests')
  for (const chapter of docFiles().slice(1)) t.ok(readme.includes(`(${chapter}`), `links ${chapter}`)
})

t.test('every docs/ chapter that the code names exists', async t => {
  const named = new Set<string>()
  for (const dir of ['lib', 'bench', 'scripts']) {
    for (const file of readdirSync(join(root, dir), { recursive: true }).map(String)) {
      if (!/\.(ts|mjs|js)$/.test(file) || file.includes('node_modules') || file.startsWith('.tmp')) continue
      for (const m of readFileSync(join(root, dir, file), 'utf8').matchAll(/\bdocs\/[\w.-]+\.md\b/g)) named.add(m[0])
    }
  }
  t.ok(named.has('docs/cluster.md'), 'the Redis adapter points to docs/cluster.md')
  for (const chapter of named) t.ok(existsSync(join(root, chapter)), chapter)
})

/**
 * Where the package's entry points are in lib/: package.json `exports`, each `require.types`
 * (`./dist/cjs/X.d.ts`) mapped back to `lib/X.ts`, so that this test follows a file that moves.
 */
function entryPaths (): Record<string, string[]> {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string, exports: Record<string, unknown> }
  const paths: Record<string, string[]> = {}
  for (const [subpath, conditions] of Object.entries(pkg.exports)) {
    const types = (conditions as { require?: { types?: string } }).require?.types
    if (types === undefined) continue
    const source = /^\.\/dist\/cjs\/(.+)\.d\.ts$/.exec(types)
    if (source === null) throw new Error(`package.json exports["${subpath}"].require.types is not under ./dist/cjs/: ${types}`)
    paths[join(pkg.name, subpath)] = [join(root, 'lib', source[1] + '.ts')]
  }
  return paths
}

/** A sample that must not compile: the check is against the real types, through the path mapping. */
const BROKEN_SAMPLES = [
  { ext: '.ts', code: "import wsAuth from 'fastify-ws-auth'\ndeclare const app: import('fastify').FastifyInstance\nawait app.register(wsAuth, { sourcez: ['query'] })" },
  { ext: '.js', code: "import { createClient } from 'fastify-ws-auth/client'\ncreateClient({ url: 'ws://x', tokn: 'x' })" },
  { ext: '.ts', code: "import { redisAdapter } from 'fastify-ws-auth/redis'\nredisAdapter({ url: 'redis://x', requestTimeout: '1s' })" }
]

t.test('every code sample of README.md and docs/*.md type-checks against the public types', async t => {
  const paths = entryPaths()
  t.same(Object.keys(paths).sort(), ['fastify-ws-auth', 'fastify-ws-auth/client', 'fastify-ws-auth/redis'])
  for (const [name, [file]] of Object.entries(paths)) t.ok(existsSync(file), `${name} -> ${relative(root, file)}`)

  const dir = join(root, 'test-artifacts', 'doc-samples')
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  /** Each sample file, with where its code came from. */
  const samples = new Map<string, { doc: string, block: Block, offset: number }>()
  const skipped: string[] = []
  for (const doc of docFiles()) {
    for (const block of parseMarkdown(readFileSync(join(root, doc), 'utf8')).blocks) {
      const ext = CHECKED[block.lang]
      if (ext === undefined) continue
      if (block.notASample !== undefined) {
        t.ok(block.notASample.length > 10, `${doc}:${block.line}: not-a-sample says why`)
        skipped.push(`${doc}:${block.line}`)
        continue
      }
      const preamble = block.preamble === undefined ? '' : block.preamble + '\n'
      // Every sample is a module of its own, so that samples do not see each other's names.
      const file = join(dir, `${doc.replace(/[/.]/g, '_')}_${block.line}${ext}`)
      writeFileSync(file, preamble + block.code + '\nexport {}\n')
      samples.set(file, { doc, block, offset: preamble.split('\n').length - 1 })
    }
  }
  t.ok(samples.size >= 12, `${samples.size} samples found`)
  t.ok(skipped.length <= 3, `few samples left out (${skipped.join(', ') || 'none'})`)
  const broken = BROKEN_SAMPLES.map(({ ext, code }, i) => {
    const file = join(dir, `broken-${i}${ext}`)
    writeFileSync(file, code + '\nexport {}\n')
    return file
  })
  // React is not a dependency of this package: the hook recipe's imports of it are typed `any`.
  const shims = join(dir, 'shims.d.ts')
  writeFileSync(shims, "declare module 'react'\n")

  // The types as tsconfig.json sees them (node10 resolution, as a CommonJS app would), with
  // modules that allow top-level await.
  const program = ts.createProgram([...samples.keys(), ...broken, shims], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
    types: ['node'],
    typeRoots: [join(root, 'node_modules', '@types')],
    strict: true,
    esModuleInterop: true,
    skipLibCheck: true,
    allowImportingTsExtensions: true,
    allowJs: true,
    checkJs: true,
    jsx: ts.JsxEmit.Preserve,
    noEmit: true,
    paths
  })
  const problems: string[] = []
  for (const [file, { doc, block, offset }] of samples) {
    const source = program.getSourceFile(file)!
    const isJs = /\.jsx?$/.test(file)
    for (const d of [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)]) {
      // JavaScript declares no types: implicit `any` (7xxx) is TypeScript's rule, not an error of the sample.
      if (isJs && d.code >= 7000 && d.code < 8000) continue
      const { line } = source.getLineAndCharacterOfPosition(d.start ?? 0)
      const where = line < offset ? `${doc}:${block.line - 1} (preamble)` : `${doc}:${block.line + line - offset}`
      problems.push(`${where}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`)
    }
  }
  t.same(problems, [], 'no sample has a type error')
  for (const [i, file] of broken.entries()) {
    const source = program.getSourceFile(file)!
    t.ok(program.getSemanticDiagnostics(source).length > 0, `a wrong sample is caught (${BROKEN_SAMPLES[i].code.split('\n').at(-1)})`)
  }
})
