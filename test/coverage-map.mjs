// tap's coverage map: whatever a test file runs, only lib/ counts toward the gate. (Excluding by
// pattern is not enough: tap expands the patterns when it starts, and the client builds the tests
// make under test-artifacts/ do not exist yet in a fresh clone.)
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

const lib = readdirSync('lib', { recursive: true })
  .filter(file => file.endsWith('.ts'))
  .map(file => join('lib', file))

export default () => lib
