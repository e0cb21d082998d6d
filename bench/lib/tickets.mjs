// Issue 18's row: a route that reads one-time tickets (`?ticket=`) is measured like any other, but
// a ticket opens one connection only, so before each round (warm-up, handshake, echo or memory
// round, and before callgrind starts counting) the server issues as many fresh tickets as the round
// will open, outside the measured window: the handshakes redeem them; issuing is reported apart
// (CPU µs per `issueTicket`).

/** Whether connections to this server need a fresh ticket each. */
export function needsTickets (variant) {
  return variant.auth === 'ticket'
}

/**
 * The target of a round of `n` connections: as it is, or, for a ticket route, with `n` fresh
 * tickets as its tokens (the lean client uses token i for connection i). `request(cmd, fields,
 * timeoutMs)` asks the server process. Resolves with `{ target, issueUs }`, `issueUs` being the
 * server's CPU per ticket issued (`NaN` without tickets).
 */
export async function roundTarget (variant, target, n, request) {
  if (!needsTickets(variant)) return { target, issueUs: NaN }
  const issued = await request('tickets', { n }, 60_000 + n * 10)
  if (!Array.isArray(issued.tickets) || issued.tickets.length !== n) throw new Error(`${variant.id}: no tickets (${issued.error ?? 'wrong count'})`)
  return { target: { ...target, tokens: issued.tickets }, issueUs: issued.cpuUs / n }
}
