import { setTimeout as sleep } from 'node:timers/promises'
import type { JournalEntry } from './store.ts'

/** Produces a reflection on an entry, piece by piece (as a language model streams tokens). */
export type Reflector = (entry: JournalEntry) => AsyncIterable<string>

/** The whole reflection the template reflector streams for an entry. */
export function reflectionText (entry: JournalEntry): string {
  const firstSentence = entry.body.split(/(?<=[.!?])\s/)[0]
  return `You called this entry "${entry.title}" and felt ${entry.mood}. ` +
    `One line stands out: "${firstSentence}" ` +
    'What would you like to remember about this day a year from now?'
}

/**
 * A stand-in for a model: streams `reflectionText(entry)` a word at a time, `delayMs` apart.
 * @param delayMs pause between words (0 in tests)
 */
export function templateReflector (delayMs = 40): Reflector {
  return async function * reflect (entry) {
    for (const word of reflectionText(entry).match(/\S+\s*/g) ?? []) {
      if (delayMs > 0) await sleep(delayMs)
      yield word
    }
  }
}
