import { utf8Length } from '../../protocol/close-codes.ts'
import { MAX_TOPIC_BYTES } from '../../protocol/messages.ts'
import type { OptionChecker } from '../../protocol/options.ts'
import type { Topic } from '../../types.ts'
import { buildRule, type Rule } from './rules.ts'

/*
 * Topic patterns: `:`-separated segments, where `{name}` matches one non-empty segment and becomes
 * `topic.params.name`. Checked once at route declaration; matched at each `subscribe`.
 */

export { MAX_TOPIC_BYTES }

const PARAM = /^\{([A-Za-z_$][\w$]*)\}$/

/** A topic that matched a pattern, with the pattern's rule. */
export interface MatchedTopic extends Topic {
  readonly rule: Rule<Topic>
}

interface Pattern {
  readonly source: string
  /** Each segment: its literal text, or `null` for a `{name}` segment. */
  readonly literals: ReadonlyArray<string | null>
  /** The parameter name of each `{name}` segment (`undefined` for literal segments). */
  readonly names: ReadonlyArray<string | undefined>
  readonly rule: Rule<Topic>
}

export class TopicPatterns {
  /** Patterns by segment count, the most specific first (a literal segment before a `{name}`). */
  private readonly bySegments = new Map<number, Pattern[]>()

  constructor (c: OptionChecker, name: string, value: unknown) {
    if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.keys(value).length === 0) {
      throw c.problem(name, 'must be an object of topic pattern -> policy (at least one)')
    }
    for (const [source, rule] of Object.entries(value)) {
      const pattern = parsePattern(c, `${name}.${source}`, source, rule === true ? {} : rule)
      const list = this.bySegments.get(pattern.literals.length) ?? []
      if (list.some(other => sameShape(other, pattern))) throw c.problem(`${name}.${source}`, 'matches the same topics as another pattern')
      list.push(pattern)
      list.sort(bySpecificity)
      this.bySegments.set(pattern.literals.length, list)
    }
  }

  /** The pattern a topic name matches, with its params, or `undefined`. */
  match (name: string): MatchedTopic | undefined {
    const segments = name.split(':')
    for (const pattern of this.bySegments.get(segments.length) ?? []) {
      const params = matchSegments(pattern, segments)
      if (params !== undefined) return { name, pattern: pattern.source, params, rule: pattern.rule }
    }
    return undefined
  }
}

/** A topic name from a message: a non-empty string of at most 256 bytes, or `undefined`. */
export function topicName (value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_TOPIC_BYTES || utf8Length(value) > MAX_TOPIC_BYTES) return undefined
  return value
}

function parsePattern (c: OptionChecker, name: string, source: string, rule: unknown): Pattern {
  const literals: Array<string | null> = []
  const names: Array<string | undefined> = []
  for (const segment of source.split(':')) {
    const param = PARAM.exec(segment)
    if (param !== null) {
      if (param[1] === '__proto__' || names.includes(param[1])) throw c.problem(name, `cannot name a parameter ${JSON.stringify(param[1])}${param[1] === '__proto__' ? '' : ' twice'}`)
      literals.push(null)
      names.push(param[1])
      continue
    }
    if (segment.length === 0 || segment.includes('{') || segment.includes('}')) {
      throw c.problem(name, 'must be non-empty segments separated by ":", each a literal or a {name} (a JavaScript identifier)')
    }
    literals.push(segment)
    names.push(undefined)
  }
  if (topicName(source) === undefined) throw c.problem(name, `is longer than ${MAX_TOPIC_BYTES} bytes`)
  return { source, literals, names, rule: buildRule<Topic>(c, name, rule) }
}

function matchSegments (pattern: Pattern, segments: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {}
  for (let i = 0; i < segments.length; i++) {
    const literal = pattern.literals[i]
    if (literal === null) {
      if (segments[i]!.length === 0) return undefined
      params[pattern.names[i]!] = segments[i]!
    } else if (literal !== segments[i]) {
      return undefined
    }
  }
  return params
}

/** Literal segments sort before `{name}` ones, at the first segment where two patterns differ in kind. */
function bySpecificity (a: Pattern, b: Pattern): number {
  for (let i = 0; i < a.literals.length; i++) {
    const aParam = a.literals[i] === null
    const bParam = b.literals[i] === null
    if (aParam !== bParam) return aParam ? 1 : -1
  }
  return 0
}

/** Whether two patterns match exactly the same names (`queue:{a}` and `queue:{b}`). */
function sameShape (a: Pattern, b: Pattern): boolean {
  return a.literals.every((literal, i) => literal === b.literals[i])
}
