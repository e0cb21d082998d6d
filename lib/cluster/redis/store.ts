import type { ChainableCommander } from 'ioredis'
import type { RevocationEntry, Slot, UserId } from '../../types.ts'
import { ScriptQueue } from './batch.ts'
import { publish, within, type Client, type Connections } from './connections.ts'
import { revocationEntry, revocationMember } from './messages.ts'
import { ACQUIRE, HEARTBEAT, Keyspace, LEAVE, RELEASE, RESYNC, userPart, type Script } from './scripts.ts'

/** Slots of dead instances one heartbeat cleans up at most (keeps each script short). */
const SWEEP_BUDGET = 1000
/** How long a released slot may wait for others to be given back with it, in ms. */
const RELEASE_DELAY_MS = 5
/** Slots given back by one script at most. */
const MAX_RELEASES = 500

/** The revocations Redis holds, and the revision of the set they were read at. */
export interface Revocations {
  loaded: RevocationEntry[]
  revision: number
}

/** The answer of the acquire script. */
export type Acquired = { taken: true, evict: string[] } | { taken: false } | { unregistered: true }

/**
 * The Redis side of the adapter: every key it reads or writes, through the command connection,
 * each call bounded by `timeoutMs` so that nothing waits on a Redis that does not answer.
 */
export class Store {
  readonly client: Client
  private readonly scripts: ScriptQueue
  /** (user part, clientId) of the slots waiting to be given back. */
  private releases: string[] = []
  private releaseTimer: NodeJS.Timeout | undefined

  /**
   * @param conns the command client, and whether it publishes sharded (Cluster)
   * @param timeoutMs bounds every call (`requestTimeout`)
   * @param onError hears of the failures of calls nobody awaits (slot releases)
   */
  constructor (
    private readonly conns: Pick<Connections, 'command' | 'sharded'>,
    readonly keys: Keyspace,
    private readonly instanceId: string,
    private readonly instanceTtl: number,
    private readonly timeoutMs: number,
    private readonly onError: (err: unknown) => void
  ) {
    this.client = conns.command
    this.scripts = new ScriptQueue(this.client, timeoutMs)
  }

  get ready (): boolean {
    return this.client.status === 'ready'
  }

  async acquire (slot: Slot, limit: number, evict: boolean): Promise<Acquired> {
    const result = await this.run(ACQUIRE, [this.keys.instances, this.keys.conns(slot.userId), this.keys.slots(this.instanceId)],
      [this.instanceId, slot.clientId, slot.connectedAt, limit, evict ? 'evict' : 'reject', userPart(slot.userId)]) as unknown[]
    if (result[0] === -1) return { unregistered: true }
    if (result[0] === 0) return { taken: false }
    return { taken: true, evict: result.slice(1).map(String) }
  }

  /**
   * Gives a slot back, within RELEASE_DELAY_MS: the slots released meanwhile go in one script
   * (a socket's close costs no round trip of its own under churn).
   */
  release (slot: Slot): void {
    this.releases.push(userPart(slot.userId), slot.clientId)
    if (this.releases.length >= 2 * MAX_RELEASES) this.flushReleases()
    else this.releaseTimer ??= setTimeout(this.flushReleases, RELEASE_DELAY_MS).unref()
  }

  /** Stops the timers; what waits fails (shutdown). */
  close (): void {
    this.dropReleases()
    this.scripts.close()
  }

  /** Forgets the releases not sent yet (shutdown: LEAVE removes every slot anyway). */
  dropReleases (): void {
    clearTimeout(this.releaseTimer)
    this.releaseTimer = undefined
    this.releases = []
  }

  private readonly flushReleases = (): void => {
    const args = this.releases
    this.dropReleases()
    if (args.length === 0) return
    this.run(RELEASE, [this.keys.instances, this.keys.slots(this.instanceId)], [this.instanceId, ...args]).catch(this.onError)
  }

  /**
   * Refreshes this instance's registration, and answers the revision of the revoked set;
   * `undefined` when the instance was gone (or counted dead): resync.
   */
  async heartbeat (): Promise<number | undefined> {
    const result = await this.run(HEARTBEAT, [this.keys.instances], [this.instanceId, this.instanceTtl, SWEEP_BUDGET])
    return result === -1 ? undefined : Number(result)
  }

  /**
   * Makes Redis hold exactly these slots for this instance, registers it alive, stores the
   * revocations it knows, and returns every revocation Redis holds (`loaded`, as of `revision`)
   * and those it had lost (`restored`: Redis lost its data, so other instances may not know them
   * either; the revision moves on, for them to load). Sent with EVAL, not EVALSHA: a NOSCRIPT
   * retry (after a restart) could let a release overtake it.
   */
  async resync (slots: Iterable<Slot>, revocations: RevocationEntry[]): Promise<Revocations & { restored: RevocationEntry[] }> {
    const args: Array<string | number> = [this.instanceId, this.instanceTtl]
    for (const s of slots) args.push(s.clientId, userPart(s.userId), s.connectedAt)
    const keys = [this.keys.instances, this.keys.slots(this.instanceId)]
    const pipeline = this.client.pipeline().eval(RESYNC.body, keys.length, ...keys, ...args)
    const now = Date.now()
    for (const entry of revocations) pipeline.zadd(this.keys.revoked, entry.expiresAt, revocationMember(entry))
    pipeline.zremrangebyscore(this.keys.revoked, '-inf', now)
    const { results, loaded, revision } = await this.read(pipeline, now)
    const restored = revocations.filter((_entry, i) => results[i + 1]?.[1] === 1)
    if (restored.length === 0) return { loaded, revision, restored }
    return { loaded, revision: await within(this.client.incr(this.keys.revision), this.timeoutMs), restored }
  }

  /** Every revocation Redis holds, with the revision of the set they are read at. */
  revocations (): Promise<Revocations> {
    return this.read(this.client.pipeline())
  }

  /**
   * Stores one revocation (pruning expired ones) and moves the revision on: the instances that
   * miss its message (pub/sub is fire-and-forget) load it at their next heartbeat.
   * Resolves with the new revision.
   */
  async revoke (entry: RevocationEntry): Promise<number> {
    const results = await this.exec(this.client.pipeline()
      .zadd(this.keys.revoked, entry.expiresAt, revocationMember(entry))
      .zremrangebyscore(this.keys.revoked, '-inf', Date.now())
      .incr(this.keys.revision))
    return Number(results.at(-1)![1])
  }

  /**
   * Ends a pipeline with the revision, then the live revocations: in this order, a revocation
   * stored in between is read with the older revision, and so read again at the next heartbeat.
   */
  private async read (pipeline: ChainableCommander, now = Date.now()): Promise<Revocations & { results: Array<[Error | null, unknown]> }> {
    const results = await this.exec(pipeline.get(this.keys.revision).zrangebyscore(this.keys.revoked, `(${now}`, '+inf'))
    return { results, loaded: parseEntries(results.at(-1)![1]), revision: Number(results.at(-2)![1]) }
  }

  private async exec (pipeline: ChainableCommander): Promise<Array<[Error | null, unknown]>> {
    const results = await within(pipeline.exec(), this.timeoutMs) ?? []
    for (const [err] of results) if (err) throw err
    return results
  }

  /** Stores a ticket's record for `ttl` ms. */
  async putTicket (key: string, record: string, ttl: number): Promise<void> {
    await within(this.client.set(this.keys.ticket(key), record, 'PX', ttl), this.timeoutMs)
  }

  /** Reads and deletes a ticket's record in one transaction (GETDEL, which Redis 5 lacks): one taker only. */
  async takeTicket (key: string): Promise<string | null> {
    const name = this.keys.ticket(key)
    const results = await within(this.client.multi().get(name).del(name).exec(), this.timeoutMs)
    // exec() answers null only for a transaction with a failed WATCH: this one has none.
    const [err, record] = results![0]
    if (err) throw err
    return record as string | null
  }

  /** Removes this instance and its slots (shutdown). */
  async leave (): Promise<void> {
    await this.run(LEAVE, [this.keys.instances, this.keys.slots(this.instanceId)], [this.instanceId])
  }

  /** Publishes on the commands channel; resolves with the number of subscribers reached. */
  publish (message: string): Promise<number> {
    return within(publish(this.conns, this.keys.commands, message), this.timeoutMs)
  }

  reply (to: string, message: string): Promise<number> {
    return within(publish(this.conns, this.keys.replies(to), message), this.timeoutMs)
  }

  /** Runs a script by its SHA1 (batched), sending its body once when Redis does not know it (after a restart). */
  private async run (script: Script, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await this.scripts.run(script, keys, args)
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err
      return within(this.client.eval(script.body, keys.length, ...keys, ...args), this.timeoutMs)
    }
  }
}

function parseEntries (members: unknown): RevocationEntry[] {
  if (!Array.isArray(members)) return []
  const entries: RevocationEntry[] = []
  for (const member of members) {
    let entry: RevocationEntry | undefined
    try {
      entry = revocationEntry(JSON.parse(String(member)))
    } catch {
      entry = undefined
    }
    if (entry !== undefined) entries.push(entry)
  }
  return entries
}

/** Slots this instance was granted and has not given back, by user, oldest first: the fallback count. */
export class LocalSlots {
  private readonly byUser = new Map<UserId, Map<string, Slot>>()

  add (slot: Slot): void {
    let slots = this.byUser.get(slot.userId)
    if (slots === undefined) {
      slots = new Map()
      this.byUser.set(slot.userId, slots)
    }
    slots.set(slot.clientId, slot)
  }

  remove (userId: UserId, clientId: string): void {
    const slots = this.byUser.get(userId)
    if (slots === undefined) return
    slots.delete(clientId)
    if (slots.size === 0) this.byUser.delete(userId)
  }

  /** One user's slots, oldest first. */
  of (userId: UserId): Slot[] {
    return [...this.byUser.get(userId)?.values() ?? []].sort((a, b) => a.connectedAt - b.connectedAt)
  }

  * all (): IterableIterator<Slot> {
    for (const slots of this.byUser.values()) yield * slots.values()
  }
}
