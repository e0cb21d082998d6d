// Child processes of the harness: pinned to a core with taskset, with room for file descriptors
// through prlimit, spoken to over IPC with request/response messages that all time out.
import { spawn, execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { once } from 'node:events'

function hasCommand (name) {
  try {
    execFileSync(name, ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const TASKSET = hasCommand('taskset')
const PRLIMIT = hasCommand('prlimit')

/** The soft and hard limits on open files of this process. */
export function fileLimits () {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
  const [soft, hard] = line.trim().split(/\s+/).slice(3, 5).map((v) => (v === 'unlimited' ? Infinity : Number(v)))
  return { soft, hard }
}

const USER_HZ = 100 // jiffies per second in /proc/stat on Linux (getconf CLK_TCK)

/** Busy CPU time (µs) per core since boot, from /proc/stat; `null` where it cannot be read. */
export function coreBusyUs () {
  try {
    return readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d/.test(l)).map((line) => {
      const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number)
      return ((user + nice + system + irq + softirq + steal) * 1e6) / USER_HZ
    })
  } catch {
    return null
  }
}

/** utime + stime of process `pid` (µs), from /proc/<pid>/stat; 0 once it is gone. */
export function processCpuUs (pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / USER_HZ
  } catch {
    return 0
  }
}

/** Whether child processes can be pinned to cores. */
export const canPin = TASKSET

export class Child {
  /**
   * @param {string} script  the .mjs file to run
   * @param {object} opts    cpu (core to pin to), nofile (open files wanted), env, nodeArgs, name
   */
  constructor (script, { cpu, nofile, env = {}, nodeArgs = [], name }) {
    const argv = []
    const limits = fileLimits()
    if (nofile && nofile > limits.soft && PRLIMIT) argv.push('prlimit', `--nofile=${nofile}:${Math.max(nofile, limits.hard)}`)
    if (cpu !== undefined && TASKSET) argv.push('taskset', '-c', String(cpu))
    argv.push(process.execPath, ...nodeArgs, script)
    this.name = name
    this.nextId = 1
    this.pending = new Map()
    this.proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } })
    this.exited = once(this.proc, 'exit')
    this.proc.on('message', (msg) => this.receive(msg))
    this.proc.on('exit', (code, signal) => {
      for (const { reject } of this.pending.values()) reject(new Error(`${name} exited (${signal ?? code})`))
      this.pending.clear()
    })
  }

  receive (msg) {
    this.pending.get(msg.id ?? 'startup')?.resolve(msg)
  }

  wait (key, timeoutMs, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key)
        reject(new Error(`${this.name}: no answer to ${what} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(key, {
        resolve: (msg) => { clearTimeout(timer); this.pending.delete(key); resolve(msg) },
        reject: (err) => { clearTimeout(timer); this.pending.delete(key); reject(err) }
      })
    })
  }

  /** Waits for the child's `ready` (or `error`) message. */
  async ready (timeoutMs = 15_000) {
    const msg = await this.wait('startup', timeoutMs, 'startup')
    if (msg.type === 'error') throw new Error(msg.message)
    return msg
  }

  /** Sends a command and waits for its answer. */
  request (cmd, fields = {}, timeoutMs = 60_000) {
    const id = this.nextId++
    const answer = this.wait(id, timeoutMs, cmd)
    // With a callback, a send on a closed channel (the child exiting) rejects this request
    // instead of emitting an unhandled 'error' on the child.
    this.proc.send({ id, cmd, ...fields }, (err) => { if (err) this.pending.get(id)?.reject(err) })
    return answer
  }

  /** Asks the child to exit; kills it (by its own pid) if it does not within `timeoutMs`. */
  async stop (timeoutMs = 5000) {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    this.request('exit', {}, timeoutMs).catch(() => {})
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs)
    await this.exited
    clearTimeout(timer)
  }
}
