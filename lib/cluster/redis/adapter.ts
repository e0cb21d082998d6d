import { InvalidOptionError } from '../../errors.ts'
import { Health } from './health.ts'
import { parseEnvelope, parseReply, Requests, revocationEntry, revocationMember, type Envelope, type Internal, type ListQuery, type Reply } from './messages.ts'
import type { RedisConfig } from './options.ts'
import { Keyspace } from './scripts.ts'
import { LocalSlots, Store } from './store.ts'
import { sumStats } from './stats.ts'
import { quit, subscribe, waitFor, within, type Client, type Connections, type Listener } from './connections.ts'
import type { AcquireResult, ClusterAdapter, ClusterCommand, ClusterConnectionInfo, ClusterNode, ClusterStats, ClusterSubscriberInfo, RevocationEntry, Slot, UserId, WsAuthStats } from '../../types.ts'

/**
 * The Redis cluster adapter (see docs/cluster.md): connection slots in Redis under one Lua
 * script each, registry calls over pub/sub with replies, revocations in a sorted set, and the
 * outage behaviour of `onRedisError`. Every wait on Redis is bounded by `requestTimeout`.
 */
export class RedisAdapter implements ClusterAdapter {
  private node: ClusterNode | undefined
  private conns: Connections | undefined
  private store: Store | undefined
  private health: Health | undefined
  private readonly keys: Keyspace
  private readonly requests = new Requests(() => this.node?.fanoutTimedOut?.())
  private readonly local = new LocalSlots()
  /** Revocations this instance knows (by member), re-stored after Redis lost them. */
  private readonly known = new Map<string, RevocationEntry>()
  /** The revision of Redis's revoked set this instance has loaded (or seen its own change). */
  private revision: number | undefined
  /** Revocations made while Redis was unreachable: published when it returns. */
  private readonly unpublished: RevocationEntry[] = []
  private syncing: Promise<boolean> | undefined
  /** Whether the subscriber is subscribed (its connection up): fan-out replies can arrive. */
  private listening = false
  /** A resync was asked for while one ran: run another once it ends (it may have missed a change). */
  private again = false
  /** Counts resync snapshots: a slot taken while one was in flight may be missing from Redis. */
  private generation = 0
  private beating = false
  private timer: NodeJS.Timeout | undefined
  private closing = false
  private readonly listeners: Array<[Client, string, Listener]> = []

  constructor (private readonly config: RedisConfig, private readonly connect: () => Connections) {
    this.keys = new Keyspace(config.namespace, config.clustered)
  }

  async start (node: ClusterNode): Promise<void> {
    if (this.node !== undefined) throw new InvalidOptionError('adapter', 'is already in use by another app: create one redisAdapter() per app')
    this.node = node
    const conns = this.conns = this.connect()
    const store = this.store = new Store(conns, this.keys, node.instanceId, this.config.instanceTtl, this.config.requestTimeout, this.onError)
    this.health = new Health(node.log, this.config.onRedisError)
    const { command, subscriber } = conns
    this.listen(command, 'close', () => this.lost(new Error('Redis connection closed')))
    if (conns.ownsCommand) this.listen(command, 'error', (err: Error) => this.lost(err))
    this.listen(subscriber, 'error', (err: Error) => this.lost(err))
    this.listen(subscriber, 'close', () => {
      this.listening = false
      this.lost(new Error('Redis subscriber connection closed'))
    })
    this.listen(subscriber, conns.sharded ? 'smessage' : 'message', (channel: string, message: string) => this.receive(channel, message))

    // Wait (bounded) for both connections, or for the first error: Redis being down never fails the start.
    const waits = [waitFor(command, 'ready'), waitFor(command, 'error'), waitFor(subscriber, 'error')]
    const channels = [this.keys.commands, this.keys.replies(node.instanceId)]
    const subscribed = subscribe(conns, channels)
    // A failure is logged (a Redis without sharded Pub/Sub answers "unknown command 'ssubscribe'").
    subscribed.then(() => { this.listening = true }, this.onError)
    const connected = Promise.all([store.ready ? undefined : waits[0].promise, subscribed])
    if (command.status === 'wait') command.connect().catch(() => {})
    await within(Promise.race([connected, waits[1].promise, waits[2].promise]), this.config.requestTimeout).catch(() => {})
    for (const wait of waits) wait.cancel()
    // From now on every reconnection resyncs (registered here so that the first one runs once).
    this.listen(command, 'ready', () => { this.resync() })
    this.listen(subscriber, 'ready', () => {
      // A Cluster's sharded subscriber is ready again once the Cluster is: ioredis subscribes
      // its shards again itself (and again whenever slots move).
      const again = conns.sharded ? Promise.resolve() : subscribe(conns, channels)
      again.then(() => {
        this.listening = true
        if (store.ready) this.resync()
      }, this.onError)
    })
    if (store.ready) await this.resync()
    else this.lost(new Error(`Redis not ready within ${this.config.requestTimeout} ms of start`))
    this.timer = setInterval(() => { this.beat() }, Math.floor(this.config.instanceTtl / 3)).unref()
  }

  async close (): Promise<void> {
    if (this.closing || this.conns === undefined) return
    this.closing = true
    clearInterval(this.timer)
    this.requests.finishAll()
    const { command, subscriber, ownsCommand } = this.conns
    const ms = this.config.requestTimeout
    this.store!.dropReleases()
    if (this.store!.ready) await this.store!.leave().catch(() => {})
    this.store!.close()
    for (const [emitter, event, listener] of this.listeners) emitter.removeListener(event, listener)
    await Promise.all([quit(subscriber, ms), ownsCommand ? quit(command, ms) : undefined])
  }

  async acquire (slot: Slot, limit: number, mode: 'reject' | 'evict-oldest'): Promise<AcquireResult> {
    const deadline = Date.now() + this.config.requestTimeout
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.syncing !== undefined) await this.synced(deadline)
      if (!this.usable) break
      let result
      const generation = this.generation
      try {
        const started = performance.now()
        result = await this.store!.acquire(slot, limit, mode === 'evict-oldest')
        this.node?.clusterRequest?.('acquire', (performance.now() - started) / 1000)
      } catch (err) {
        this.lost(err)
        break
      }
      if ('unregistered' in result) {
        this.resync()
        continue
      }
      if (!result.taken) return { ok: false }
      const granted = this.granted(slot, result.evict)
      // A resync sent while the script ran replaced this instance's slots without this one.
      if (this.generation !== generation) this.resync()
      return granted
    }
    return this.fallback(slot, limit, mode)
  }

  release (slot: Slot): void {
    this.local.remove(slot.userId, slot.clientId)
    const store = this.store
    if (store === undefined || !store.ready || this.health!.isDown) {
      // Not sent: the next resync replaces this instance's slots with the ones it holds; a
      // resync under way may have taken this one in its snapshot, so another one follows it.
      if (this.syncing !== undefined) this.again = true
      return
    }
    store.release(slot)
  }

  async publish (command: ClusterCommand): Promise<number> {
    const local = this.execute(command)
    const replies = await this.fanOut(command)
    return replies.reduce((sum, r) => sum + (r.count ?? 0), local)
  }

  async revoke (entry: RevocationEntry): Promise<number> {
    const local = this.execute({ op: 'revoke', entry })
    try {
      if (this.syncing !== undefined) await this.synced(Date.now() + this.config.requestTimeout)
      if (!this.usable) throw new Error('Redis not ready')
      const revision = await this.store!.revoke(entry)
      // Only this one changed the set since it was loaded here: no need to load it again.
      if (revision === this.revision! + 1) this.revision = revision
    } catch (err) {
      this.lost(err)
      this.health!.degraded('fanout')
      this.unpublished.push(entry)
      return local
    }
    const replies = await this.fanOut({ op: 'revoke', entry })
    return replies.reduce((sum, r) => sum + (r.count ?? 0), local)
  }

  connections (userId?: UserId): Promise<ClusterConnectionInfo[]> {
    return this.listed({ op: 'connections', userId })
  }

  subscribers (topic: string): Promise<ClusterSubscriberInfo[]> {
    return this.listed({ op: 'subscribers', topic })
  }

  putTicket (key: string, record: string, ttl: number): Promise<void> {
    return this.ticketStore(store => store.putTicket(key, record, ttl))
  }

  takeTicket (key: string): Promise<string | null> {
    return this.ticketStore(store => store.takeTicket(key))
  }

  /** Tickets live in Redis only (any instance redeems them): without it, issuing and redeeming fail. */
  private async ticketStore<T> (call: (store: Store) => Promise<T>): Promise<T> {
    const node = this.started()
    if (!this.usable) throw new Error('Redis not ready')
    const started = performance.now()
    const result = await call(this.store!)
    node.clusterRequest?.('ticket', (performance.now() - started) / 1000)
    return result
  }

  /** A list query: this instance's entries, then those of the instances that answered in time. */
  private async listed<T> (query: ListQuery): Promise<T[]> {
    const own = this.listedHere(this.started(), query) as T[]
    const replies = await this.fanOut(query)
    return own.concat(...replies.map(r => Array.isArray(r.data) ? r.data as T[] : []))
  }

  /** This instance's entries for a list query, each naming the instance. */
  private listedHere (node: ClusterNode, query: ListQuery): unknown[] {
    const entries = query.op === 'connections' ? node.connections(query.userId) : node.subscribers(String(query.topic))
    return entries.map(entry => ({ ...entry, instanceId: node.instanceId }))
  }

  async stats (): Promise<ClusterStats> {
    const node = this.started()
    const instances: Record<string, WsAuthStats> = { [node.instanceId]: node.stats() }
    for (const reply of await this.fanOut({ op: 'stats' })) {
      if (reply.data !== null && typeof reply.data === 'object') instances[reply.from] = reply.data as WsAuthStats
    }
    return sumStats(instances)
  }

  private started (): ClusterNode {
    if (this.node === undefined) throw new Error('fastify-ws-auth: the Redis adapter is not started yet (await app.ready() first)')
    return this.node
  }

  /** Runs a command here; remembers a revocation. */
  private execute (command: ClusterCommand): number {
    if (command.op === 'revoke') this.known.set(revocationMember(command.entry), command.entry)
    return this.started().execute(command)
  }

  /** Whether Redis can be used now. */
  private get usable (): boolean {
    return this.store !== undefined && this.store.ready && !this.health!.isDown && !this.closing
  }

  /** Waits (until `deadline`) for the resync under way: a reconnection is not usable before it. */
  private async synced (deadline: number): Promise<void> {
    if (this.syncing !== undefined) await within(this.syncing, Math.max(deadline - Date.now(), 1)).catch(() => {})
  }

  private granted (slot: Slot, evict: string[]): AcquireResult {
    this.local.add(slot)
    for (const clientId of evict) this.local.remove(slot.userId, clientId)
    return evict.length > 0 ? { ok: true, evict } : { ok: true }
  }

  /** The limit without Redis: `onRedisError` decides. */
  private fallback (slot: Slot, limit: number, mode: 'reject' | 'evict-oldest'): AcquireResult {
    this.health!.degraded('limits')
    if (this.config.onRedisError === 'fail-closed') return { ok: false, unavailable: true }
    const held = this.local.of(slot.userId)
    if (held.length < limit) return this.granted(slot, [])
    if (mode === 'reject') return { ok: false }
    return this.granted(slot, held.slice(0, held.length - limit + 1).map(s => s.clientId))
  }

  /** Sends a command or query to the other instances; resolves with the replies that came in time. */
  private async fanOut (command: ClusterCommand | Internal): Promise<Reply[]> {
    const node = this.started()
    if (this.syncing !== undefined) await this.synced(Date.now() + this.config.requestTimeout)
    if (!this.usable) {
      this.health!.degraded('fanout')
      return []
    }
    const started = performance.now()
    const { id, done } = this.requests.open(this.config.requestTimeout)
    const envelope: Envelope = { id, from: node.instanceId, command }
    try {
      this.requests.expect(id, await this.store!.publish(JSON.stringify(envelope)))
    } catch (err) {
      this.lost(err)
      this.health!.degraded('fanout')
      this.requests.finish(id)
      return done
    }
    const replies = await done
    node.clusterRequest?.('fanout', (performance.now() - started) / 1000)
    return replies
  }

  /** Whether Redis is reachable now (the `cluster_up` metric). */
  isUp (): boolean {
    return this.usable
  }

  private receive (channel: string, message: string): void {
    if (channel === this.keys.commands) this.answer(message)
    else if (channel === this.keys.replies(this.node!.instanceId)) {
      const reply = parseReply(message)
      if (reply !== undefined) this.requests.reply(reply)
    }
  }

  /** Runs a command or answers a query from another instance, and replies to it. */
  private answer (message: string): void {
    const envelope = parseEnvelope(message)
    const node = this.node
    if (envelope === undefined || node === undefined || this.closing) return
    if (envelope.from === node.instanceId) return this.requests.echo(envelope.id)
    const reply: Reply = { id: envelope.id, from: node.instanceId }
    try {
      const command = envelope.command
      if (command.op === 'stats') reply.data = node.stats()
      else if (command.op === 'connections' || command.op === 'subscribers') reply.data = this.listedHere(node, command)
      else if (command.op === 'revoke') {
        const entry = revocationEntry(command.entry)
        reply.count = entry === undefined ? 0 : this.execute({ op: 'revoke', entry })
      } else if (command.op === 'revocations') {
        this.learn(Array.isArray(command.entries) ? command.entries : [])
        reply.count = 0
      } else reply.count = node.execute(command)
    } catch (err) {
      node.log.error({ err, op: envelope.command.op }, 'fastify-ws-auth: a cluster command failed on this instance')
      reply.count = 0
    }
    if (this.store!.ready) this.store!.reply(envelope.from, JSON.stringify(reply)).catch(this.onError)
  }

  /**
   * Makes Redis hold exactly what this instance holds (slots, registration, known revocations),
   * loads the revocations others stored, and publishes those made during an outage. Runs at
   * start, on every reconnection, and when a heartbeat finds this instance unregistered.
   */
  private resync (): Promise<boolean> {
    /* c8 ignore start: two triggers overlapping (both connections ready again at once, or a
       heartbeat during a reconnection's resync): a race real connections do not let a test
       arrange; the outage tests reach it when it happens */
    if (this.syncing !== undefined) {
      this.again = true
      return this.syncing
    }
    /* c8 ignore stop */
    this.syncing = this.resyncLoop().finally(() => { this.syncing = undefined })
    return this.syncing
  }

  private async resyncLoop (): Promise<boolean> {
    let ok = false
    for (let round = 0; round < 3; round++) {
      this.again = false
      ok = await this.doResync()
      if (!ok || !this.again) break
    }
    return ok
  }

  private async doResync (): Promise<boolean> {
    const node = this.node!
    const slots = new Map<string, Slot>()
    // The adapter's own grants too: a slot taken while this resync was being prepared.
    for (const slot of [...node.slots(), ...this.local.all()]) slots.set(slot.clientId, slot)
    this.pruneKnown()
    let synced: Awaited<ReturnType<Store['resync']>>
    this.generation++
    try {
      synced = await this.store!.resync(slots.values(), [...this.known.values()])
    } catch (err) {
      this.lost(err)
      return false
    }
    this.learn(synced.loaded)
    this.revision = synced.revision
    // Not back until replies can arrive: the subscriber's own resync declares it, once subscribed.
    // (Reached when the command connection is back before the subscriber: most Redis restarts,
    // not all, so not counted for coverage; the stop/restart test in outage.test.ts runs it.)
    /* c8 ignore next */
    if (!this.listening) return false
    const outage = this.unpublished.splice(0)
    this.health!.up({ slots: slots.size, revocations: this.known.size })
    // Made during an outage: close the sockets they cover everywhere.
    for (const entry of outage) this.fanOut({ op: 'revoke', entry }).catch(() => {})
    // Lost by Redis and re-stored here: instances started meanwhile may not know them.
    for (let i = 0; i < synced.restored.length; i += 1000) {
      this.fanOut({ op: 'revocations', entries: synced.restored.slice(i, i + 1000) }).catch(() => {})
    }
    return true
  }

  /**
   * Takes in revocations read from Redis or passed on by another instance. Each one new here is
   * applied like a published revoke, closing the sockets it covers (a revocation this instance
   * missed while cut off still closes them when it resyncs); with no session open (at start)
   * they are only stored, in one go.
   */
  private learn (values: unknown[]): void {
    const node = this.node!
    const fresh: RevocationEntry[] = []
    for (const value of values) {
      const entry = revocationEntry(value)
      if (entry !== undefined && !this.known.has(revocationMember(entry))) fresh.push(entry)
    }
    if (node.stats().active > 0) {
      for (const entry of fresh) this.execute({ op: 'revoke', entry })
      return
    }
    for (const entry of fresh) this.known.set(revocationMember(entry), entry)
    node.addRevocations(fresh)
  }

  private async beat (): Promise<void> {
    const store = this.store!
    if (this.beating || this.closing || !store.ready) return
    this.beating = true
    try {
      const revision = this.health!.isDown ? undefined : await store.heartbeat()
      if (revision === undefined) await this.resync()
      // Revocations stored since this instance loaded them, whose messages may not have reached
      // it (pub/sub is fire-and-forget): a PUBLISH lost after its ZADD, a shard of the Cluster down.
      else if (revision !== this.revision) await this.reload()
    } catch (err) {
      this.lost(err)
    } finally {
      this.beating = false
    }
    this.pruneKnown()
  }

  private async reload (): Promise<void> {
    const { loaded, revision } = await this.store!.revocations()
    this.learn(loaded)
    this.revision = revision
  }

  private pruneKnown (): void {
    const now = Date.now()
    for (const [member, entry] of this.known) if (entry.expiresAt <= now) this.known.delete(member)
  }

  private readonly onError = (err: unknown): void => this.lost(err)

  private lost (err: unknown): void {
    if (!this.closing) this.health?.down(err)
  }

  private listen (emitter: Client, event: string, listener: Listener): void {
    emitter.on(event, listener)
    this.listeners.push([emitter, event, listener])
  }
}
