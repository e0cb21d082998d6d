import { MAX_DELAY, clock, type Cancel } from '../protocol/clock.ts'

/** Something with a deadline: called once it has passed (a little after, never before). */
export interface Timed {
  /** The slot the wheel filed it under, or `undefined`; the wheel's own bookkeeping. */
  deadlineSlot: number | undefined
  onDeadline (now: number): void
}

/**
 * One timer for the deadlines of every session (expiry warning, expiry, lifetime): deadlines are
 * filed in slots of `resolution` ms, and a single timer wakes for the earliest slot. A session
 * costs a set entry, not a timer of its own, and a deadline fires within `resolution` ms after it
 * is due. Deadlines of any length work: the timer steps towards slots beyond 2^31-1 ms.
 */
export class Deadlines {
  private readonly slots = new Map<number, Set<Timed>>()
  /** Slots count from here, so that they stay small integers (no heap number per session). */
  private readonly origin = clock.now()
  private cancelTimer: Cancel | undefined = undefined
  private armedFor = Infinity

  constructor (private readonly resolution: number) {}

  /** Files `item` for `at` (ms since the epoch), replacing any deadline it had. */
  set (item: Timed, at: number): void {
    this.delete(item)
    const slot = Math.ceil((at - this.origin) / this.resolution)
    let items = this.slots.get(slot)
    if (items === undefined) {
      items = new Set()
      this.slots.set(slot, items)
    }
    items.add(item)
    item.deadlineSlot = slot
    if (slot < this.armedFor) this.arm(slot)
  }

  delete (item: Timed): void {
    const slot = item.deadlineSlot
    if (slot === undefined) return
    item.deadlineSlot = undefined
    const items = this.slots.get(slot)
    if (items === undefined) return
    items.delete(item)
    if (items.size === 0) this.slots.delete(slot)
  }

  /** Stops the timer; filed items stay filed but will not fire. */
  stop (): void {
    this.cancelTimer?.()
    this.cancelTimer = undefined
    this.armedFor = Infinity
  }

  private arm (slot: number): void {
    this.cancelTimer?.()
    this.armedFor = slot
    const delay = Math.min(Math.max(this.origin + slot * this.resolution - clock.now(), 0), MAX_DELAY)
    this.cancelTimer = clock.after(delay, () => this.fire(), true)
  }

  private fire (): void {
    this.cancelTimer = undefined
    this.armedFor = Infinity
    const now = clock.now()
    const due = Math.floor((now - this.origin) / this.resolution)
    for (const [slot, items] of [...this.slots]) {
      if (slot > due) continue
      this.slots.delete(slot)
      for (const item of items) {
        item.deadlineSlot = undefined
        item.onDeadline(now)
      }
    }
    let next = Infinity
    for (const slot of this.slots.keys()) if (slot < next) next = slot
    if (next !== Infinity && next < this.armedFor) this.arm(next)
  }
}
