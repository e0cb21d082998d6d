import type { Client } from './connections.ts'
import type { Script } from './scripts.ts'

interface Queued {
  script: Script
  keys: string[]
  args: Array<string | number>
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
}

/**
 * Sends scripts (EVALSHA) in batches, one batch in flight at a time: when Redis is idle a script
 * leaves at the end of this turn of the event loop; while a batch is out, the next scripts wait
 * for its answers and leave together, in one write. Under a burst of handshakes that is one
 * syscall and one read for many slots, with no fixed delay when there is no burst.
 *
 * One watchdog timer bounds every wait (instead of a timer per script): a batch unanswered after
 * `timeoutMs` fails, with every script queued behind it, within `timeoutMs * 1.25`.
 */
export class ScriptQueue {
  private queue: Queued[] = []
  private inFlight: Queued[] | null = null
  private sentAt = 0
  private readonly watchdog: NodeJS.Timeout

  constructor (private readonly client: Client, private readonly timeoutMs: number) {
    this.watchdog = setInterval(this.check, Math.max(Math.floor(timeoutMs / 4), 5)).unref()
  }

  run (script: Script, keys: string[], args: Array<string | number>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ script, keys, args, resolve, reject })
      if (this.queue.length === 1 && this.inFlight === null) setImmediate(this.flush)
    })
  }

  /** Stops the watchdog and fails what is still waiting (shutdown). */
  close (): void {
    clearInterval(this.watchdog)
    this.fail(new Error('Redis adapter closed'))
  }

  private readonly flush = (): void => {
    if (this.inFlight !== null || this.queue.length === 0) return
    const batch = this.inFlight = this.queue
    this.queue = []
    this.sentAt = Date.now()
    let pending = batch.length
    const answered = () => {
      if (--pending > 0 || this.inFlight !== batch) return
      this.inFlight = null
      this.flush()
    }
    if (batch.length === 1) {
      const [q] = batch
      this.client.evalsha(q.script.sha, q.keys.length, ...q.keys, ...q.args).then(q.resolve, q.reject).finally(answered)
      return
    }
    const pipeline = this.client.pipeline()
    for (const q of batch) {
      pipeline.evalsha(q.script.sha, q.keys.length, ...q.keys, ...q.args, (err: Error | null | undefined, result: unknown) => {
        if (err) q.reject(err)
        else q.resolve(result)
        answered()
      })
    }
    // Each script's callback settles its own promise; exec's summary is not needed.
    pipeline.exec().catch(() => {})
  }

  private readonly check = (): void => {
    if (this.inFlight !== null && Date.now() - this.sentAt >= this.timeoutMs) {
      this.fail(Object.assign(new Error(`Redis did not answer within ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' }))
    }
  }

  /** Fails the batch in flight and every script queued (settled promises ignore it). */
  private fail (err: Error): void {
    const waiting = [...this.inFlight ?? [], ...this.queue]
    this.inFlight = null
    this.queue = []
    for (const q of waiting) q.reject(err)
  }
}
