import type { ClusterStats, WsAuthStats } from '../../types.ts'

/**
 * `stats({ cluster: true })`: counters and live counts summed over the instances that answered;
 * `users` is a sum too (a user with sockets on two instances counts twice); `revocations` is the
 * largest count, since every instance holds the same shared list.
 */
export function sumStats (instances: Record<string, WsAuthStats>): ClusterStats {
  const total: ClusterStats = {
    active: 0, authenticating: 0, users: 0, attempts: 0, established: 0, failures: {}, ended: {}, revocations: 0, refused: {}, subscriptions: 0, instances
  }
  for (const stats of Object.values(instances)) {
    total.active += number(stats.active)
    total.authenticating += number(stats.authenticating)
    total.users += number(stats.users)
    total.attempts += number(stats.attempts)
    total.established += number(stats.established)
    total.revocations = Math.max(total.revocations, number(stats.revocations))
    addCounts(total.failures, stats.failures)
    addCounts(total.ended, stats.ended)
    addCounts(total.refused, stats.refused)
    total.subscriptions += number(stats.subscriptions)
  }
  return total
}

function addCounts (into: Record<number, number>, from: unknown): void {
  if (from === null || typeof from !== 'object') return
  for (const [code, n] of Object.entries(from)) into[Number(code)] = (into[Number(code)] ?? 0) + number(n)
}

function number (value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0
}
