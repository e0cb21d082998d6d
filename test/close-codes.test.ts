// THE failure table: what it holds, what `mergeCloseCodes` accepts, that README.md shows it, and
// that a remapped row is what a client sees.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  closeCodes, entryForCode, isSendableCloseCode, mergeCloseCodes, utf8Length, MAX_REASON_BYTES,
  type CloseCodeEntry, type CloseCodeOverrides, type FailureClass, type RetryAdvice
} from '../lib/protocol/close-codes.ts'
import { buildApp, connect, refusal, spyRoute, type Closed, type RouteSpy } from './helpers/index.ts'

const rows = Object.entries(closeCodes) as Array<[FailureClass, CloseCodeEntry]>
const emitted = rows.filter(([, row]) => row.emitted)
const RETRY = ['reauthenticate', 'never', 'backoff', 'immediately', 'done']

t.test('every reason fits a close frame: at most 123 bytes of UTF-8', async t => {
  t.equal(MAX_REASON_BYTES, 123)
  for (const [name, row] of rows) {
    t.type(row.reason, 'string', name)
    t.ok(Buffer.byteLength(row.reason, 'utf8') <= 123, `${name}: ${Buffer.byteLength(row.reason)} bytes`)
  }
})

t.test('every emitted row has a non-empty reason and a code that can be sent', async t => {
  t.ok(emitted.length >= 10)
  for (const [name, row] of emitted) {
    t.ok(row.reason.length > 0, `${name}: reason`)
    t.ok(isSendableCloseCode(row.code), `${name}: ${row.code} can be sent`)
    t.notOk(/token[=:]|eyJ/i.test(row.reason), `${name}: the reason carries no token`)
  }
})

t.test('(code, reason) pairs are unique: a client can tell every row apart', async t => {
  const pairs = rows.map(([, row]) => `${row.code} ${row.reason}`)
  t.same(pairs.filter((pair, i) => pairs.indexOf(pair) !== i), [])
})

t.test('statuses and retry advice are well-formed', async t => {
  for (const [name, row] of rows) {
    t.ok(row.status === null || (Number.isInteger(row.status) && row.status >= 400 && row.status <= 599), `${name}: status ${row.status}`)
    t.ok(RETRY.includes(row.retry), `${name}: retry ${row.retry}`)
    t.type(row.emitted, 'boolean')
  }
})

t.test('the rows of the issue-2 contract', async t => {
  const contract: Array<[FailureClass, number, string | RegExp, number | null]> = [
    ['no_token', 4001, 'No token provided', 401],
    ['invalid_token', 4001, 'Invalid token', 401],
    ['token_expired', 4001, /expired/, 401],
    ['invalid_auth_message', 4001, 'Invalid auth message', null],
    ['user_not_found', 4002, 'User not found or inactive', 401],
    ['forbidden', 4003, 'Forbidden', 403],
    ['not_found', 4004, 'Not found', 404],
    // Issue 21 gave it a status: checks before the upgrade that do not answer in time, with reject: 'http'.
    ['auth_timeout', 4008, 'Authentication timeout', 408],
    ['policy_violation', 1008, 'Policy violation', null],
    ['message_too_big', 1009, 'Message too big', null],
    ['internal_error', 1011, 'Internal error', 500]
  ]
  for (const [name, code, reason, status] of contract) {
    t.match(closeCodes[name], { code, reason, status, emitted: true }, name)
  }
})

t.test('utf8Length counts bytes as Buffer does', async t => {
  const samples = [
    '', 'ascii', 'é', '€', '😀', 'aé€😀',
    'é'.repeat(62), '😀'.repeat(31),
    '\uD800', '\uDC00', '\uD800a', '\uD800é', '\uD800€', '\uD800\uD800\uDC00', 'a\uDC00\uD800'
  ]
  for (const text of samples) {
    t.equal(utf8Length(text), Buffer.byteLength(text, 'utf8'), JSON.stringify(text))
  }
})

t.test('mergeCloseCodes', async t => {
  t.test('no overrides: the same rows, frozen', async t => {
    const table = mergeCloseCodes()
    t.same(table, closeCodes)
    t.ok(Object.isFrozen(table))
    t.ok(Object.isFrozen(table.forbidden))
  })

  t.test('an override changes one row of a copy; the table is untouched', async t => {
    const before = JSON.stringify(closeCodes)
    const overrides = { forbidden: { code: 1008, reason: 'Access denied' } }
    const table = mergeCloseCodes(overrides)
    t.match(table.forbidden, { code: 1008, reason: 'Access denied', status: 403, retry: 'never', emitted: true }, 'other fields kept')
    t.same(table.not_found, closeCodes.not_found)
    t.equal(JSON.stringify(closeCodes), before, 'closeCodes unchanged')
    t.same(overrides, { forbidden: { code: 1008, reason: 'Access denied' } }, 'the overrides unchanged')
    t.match(mergeCloseCodes({ forbidden: { status: 401 } }).forbidden, { code: 4003, reason: 'Forbidden', status: 401 })
    t.match(mergeCloseCodes({ auth_timeout: { status: null } }).auth_timeout, { status: null })
  })

  t.test('an unknown failure class', async t => {
    t.throws(() => mergeCloseCodes({ forbiden: { code: 4003 } } as CloseCodeOverrides), { name: 'TypeError', message: /closeCodes\.forbiden: is not a failure class/ })
  })

  t.test('a code that cannot be sent in a close frame', async t => {
    for (const code of [1005, 1006, 999, 5000, 1004, 1015, 2999, 0, -1, 4000.5, Number.NaN, '4003']) {
      t.throws(() => mergeCloseCodes({ forbidden: { code } } as unknown as CloseCodeOverrides), { name: 'TypeError', message: /closeCodes\.forbidden\.code/ }, String(code))
    }
    for (const code of [1000, 1008, 1011, 1014, 3000, 4999]) {
      t.equal(mergeCloseCodes({ forbidden: { code } }).forbidden.code, code, `${code} is accepted`)
    }
  })

  t.test('a reason over 123 bytes, counted in bytes not characters', async t => {
    // Each fits in 123 characters (a character count would pass) but not in 123 bytes.
    const multibyte = ['é'.repeat(62), '😀'.repeat(31), '€'.repeat(42), '\uD800€'.repeat(21)]
    t.equal(Buffer.byteLength('é'.repeat(62)), 124)
    for (const reason of multibyte) {
      t.ok(reason.length <= 123 && Buffer.byteLength(reason) > 123, `${reason.length} characters, ${Buffer.byteLength(reason)} bytes`)
      t.throws(() => mergeCloseCodes({ forbidden: { reason } }), { name: 'TypeError', message: /closeCodes\.forbidden\.reason.*123 bytes/ },
        `${reason.length} characters, ${Buffer.byteLength(reason)} bytes: refused`)
    }
    t.throws(() => mergeCloseCodes({ forbidden: { reason: 'a'.repeat(124) } }), { message: /closeCodes\.forbidden\.reason/ }, '124 ASCII bytes')
    for (const reason of ['é'.repeat(61) + 'a', '€'.repeat(41), 'a'.repeat(123), '']) {
      t.equal(mergeCloseCodes({ forbidden: { reason } }).forbidden.reason, reason, `${Buffer.byteLength(reason)} bytes is accepted`)
    }
    t.throws(() => mergeCloseCodes({ forbidden: { reason: 42 } } as unknown as CloseCodeOverrides), { message: /closeCodes\.forbidden\.reason/ })
  })

  t.test('a status that is not an HTTP error status', async t => {
    for (const status of [200, 101, 302, 399, 600, 401.5, '401', Number.NaN]) {
      t.throws(() => mergeCloseCodes({ forbidden: { status } } as unknown as CloseCodeOverrides), { name: 'TypeError', message: /closeCodes\.forbidden\.status/ }, String(status))
    }
  })

  t.test('an override that is not an object of code, reason, status', async t => {
    for (const override of [1008, 'Forbidden', null, [1008], true]) {
      t.throws(() => mergeCloseCodes({ forbidden: override } as unknown as CloseCodeOverrides), { name: 'TypeError', message: /closeCodes\.forbidden: must be an object/ }, JSON.stringify(override))
    }
    t.throws(() => mergeCloseCodes({ forbidden: { cod: 1008 } } as unknown as CloseCodeOverrides), { name: 'TypeError', message: /closeCodes\.forbidden\.cod: is not a field/ })
    t.throws(() => mergeCloseCodes({ forbidden: { retry: 'backoff' } } as unknown as CloseCodeOverrides), { message: /closeCodes\.forbidden\.retry: is not a field/ }, 'retry advice is not overridable')
  })
})

/** The words README.md's "client should" column uses for each retry advice. */
const ADVICE_WORDS: Record<RetryAdvice, string> = {
  reauthenticate: 'reauthenticate',
  never: 'never retry',
  backoff: 'backoff',
  immediately: 'reconnect immediately',
  done: 'done'
}

/** The rows of the table under README.md's "## Close codes" heading, cells trimmed, by failure class. */
function readmeRows (): Map<string, string[]> {
  const text = readFileSync(join(__dirname, '..', 'README.md'), 'utf8')
  const heading = /^## Close codes$/m.exec(text)
  if (heading === null) throw new Error('README.md has no "## Close codes" heading: the table must stay where users look for it')
  const body = text.slice(heading.index + heading[0].length)
  const end = body.search(/^#{1,2} /m)
  const cells = (end === -1 ? body : body.slice(0, end)).split('\n')
    .filter(line => /^\| `/.test(line))
    .map(line => line.split('|').slice(1, -1).map(cell => cell.trim()))
  return new Map(cells.map(row => [row[0].replace(/`/g, ''), row.slice(1)]))
}

t.test('README.md shows the table as it is: every class, code, reason, HTTP status and advice, and no other row', async t => {
  const readme = readmeRows()
  t.same([...readme.keys()].sort(), [...rows.map(([name]) => name)].sort(), 'the same failure classes')
  for (const [name, row] of rows) {
    const [code, reason, status, advice] = readme.get(name) ?? []
    t.equal(code, String(row.code), `${name}: code`)
    if (row.emitted && row.reason !== '') t.equal(reason, '`' + row.reason + '`', `${name}: reason`)
    t.equal(status, row.status === null ? '—' : String(row.status), `${name}: HTTP status`)
    t.equal(advice, ADVICE_WORDS[row.retry], `${name}: what a client should do`)
  }
})

t.test('closeCodes option: a remapped row is what the client sees', async t => {
  t.test('forbidden -> 1008 with a custom reason, for roles and for Origin', async t => {
    let spy!: RouteSpy
    const { url, sign } = await buildApp(t, {
      auth: { sources: ['query'], allowedOrigins: ['https://app.test'], closeCodes: { forbidden: { code: 1008, reason: 'Access denied' } } },
      routes: (app) => { spy = spyRoute(app, '/ws', { roles: ['admin'] }) }
    })
    const role = connect(url('/ws?token=' + sign({ sub: 'u1', roles: ['viewer'] })))
    t.same(await refusal(role), { code: 1008, reason: 'Access denied' }, 'missing role')
    const origin = connect(url('/ws?token=' + sign({ sub: 'u1', roles: ['admin'] })), undefined, { origin: 'https://evil.test' })
    t.same(await refusal(origin), { code: 1008, reason: 'Access denied' }, 'disallowed Origin')
    const none = connect(url('/ws'))
    t.same(await refusal(none), { code: 4001, reason: 'No token provided' }, 'other rows unchanged')
    t.equal(spy.calls, 0)
  })

  t.test('a 123-byte multi-byte reason arrives intact', async t => {
    const reason = 'é'.repeat(61) + 'a'
    const { url, sign } = await buildApp(t, {
      auth: { sources: ['query'], closeCodes: { not_found: { reason } } },
      routes: (app) => { spyRoute(app, '/ws/:id', { authorize: () => 'not_found' }) }
    })
    const client = connect(url('/ws/1?token=' + sign({ sub: 'u1' })))
    const closed = await refusal(client) as Closed
    t.same(closed, { code: 4004, reason })
    t.equal(Buffer.byteLength(closed.reason), 123)
  })

  t.test('a remapped status with reject: http', async t => {
    const { url, sign } = await buildApp(t, {
      auth: { sources: ['query'], reject: 'http', closeCodes: { forbidden: { status: 401 }, internal_error: { status: 503 } } },
      routes: (app) => { spyRoute(app, '/ws', { roles: ['admin'], authorize: () => { throw new Error('down') } }) }
    })
    t.equal(await connect(url('/ws?token=' + sign({ sub: 'u1' }))).refusedStatus, 401)
    t.equal(await connect(url('/ws?token=' + sign({ sub: 'u1', roles: ['admin'] }))).refusedStatus, 503)
  })

  t.test('an invalid override is a registration error naming the field', async t => {
    const cases: Array<[unknown, RegExp]> = [
      [{ forbidden: { code: 1006 } }, /closeCodes\.forbidden\.code/],
      [{ forbidden: { reason: 'é'.repeat(62) } }, /closeCodes\.forbidden\.reason/],
      [{ forbidden: { status: 200 } }, /closeCodes\.forbidden\.status/],
      [{ nope: { code: 4000 } }, /closeCodes\.nope/],
      [{ forbidden: 1008 }, /closeCodes\.forbidden/],
      ['1008', /closeCodes/]
    ]
    for (const [closeCodes, message] of cases) {
      await t.rejects(buildApp(t, { auth: { closeCodes: closeCodes as CloseCodeOverrides } }),
        { code: 'FST_WS_AUTH_INVALID_OPTION', message }, JSON.stringify(closeCodes))
    }
  })
})

t.test('entryForCode: the first class listed with a code, undefined for a code the table does not know', async t => {
  t.match(entryForCode(4001), { failure: 'no_token', code: 4001, reason: 'No token provided' }, 'the first of the 4001 rows')
  t.match(entryForCode(4003), { failure: 'forbidden', reason: 'Forbidden', status: 403 })
  t.equal(entryForCode(4999), undefined, 'a code in the application range the table does not use')
  t.equal(entryForCode(1006 + 3000), undefined)
  const remapped = mergeCloseCodes({ forbidden: { code: 4403 } })
  t.match(entryForCode(4403, remapped), { failure: 'forbidden', code: 4403 }, 'a remapped table is searched when given')
  t.equal(entryForCode(4003, remapped), undefined, 'the old code is gone from the remapped table')
})
