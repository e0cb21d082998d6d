// Prints the public surface of the built package: for every entry point of package.json
// `exports`, each exported name with its kind and its type as TypeScript prints it, sorted.
// Two builds give the same text when their public surface is the same, so a layout change is
// checked with: node scripts/api-surface.mjs > before.txt; (change, build); node scripts/api-surface.mjs | diff before.txt -
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import ts from 'typescript'

const root = join(import.meta.dirname, '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))

const entries = []
for (const [subpath, conditions] of Object.entries(pkg.exports)) {
  if (typeof conditions !== 'object') continue
  for (const [condition, target] of Object.entries(conditions)) entries.push({ name: `${subpath} (${condition})`, file: join(root, target.types) })
}

const program = ts.createProgram(entries.map(e => e.file), { strict: true, noEmit: true, skipLibCheck: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext })
const checker = program.getTypeChecker()
// Names, not file paths: the same type in another file prints the same.
const flags = ts.TypeFormatFlags.NoTruncation | ts.TypeFormatFlags.InTypeAlias

for (const entry of entries) {
  const source = program.getSourceFile(entry.file)
  if (source === undefined) throw new Error(`not built: ${entry.file}`)
  const module = checker.getSymbolAtLocation(source)
  console.log(`## ${entry.name}`)
  const lines = checker.getExportsOfModule(module).map(symbol => describe(symbol))
  for (const line of lines.sort()) console.log(line)
}

function describe (symbol) {
  const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol
  const kinds = []
  if (target.flags & ts.SymbolFlags.Value) kinds.push('value: ' + checker.typeToString(checker.getTypeOfSymbol(target), undefined, flags))
  if (target.flags & (ts.SymbolFlags.Type | ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias)) {
    const type = checker.getDeclaredTypeOfSymbol(target)
    kinds.push('type: ' + checker.typeToString(type, undefined, flags) + ' ' + members(type))
  }
  return `${symbol.name} ${kinds.join(' | ')}`
}

/** The members of an object type, with their types (so that a changed field shows). */
function members (type) {
  if ((type.flags & ts.TypeFlags.Object) === 0) return ''
  const props = checker.getPropertiesOfType(type)
  if (props.length === 0 || props.length > 80) return ''
  return '{ ' + props.map(p => `${p.name}${p.flags & ts.SymbolFlags.Optional ? '?' : ''}: ${checker.typeToString(checker.getTypeOfSymbol(p), undefined, flags)}`).sort().join('; ') + ' }'
}
