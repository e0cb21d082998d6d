// The three kinds of bench connection, one interface:
//   new Kind(prepared, index, onReady(err, latencyMs)); .onMessage; .onClose; .sendEcho(); .close()
// - LeanConn: a raw net.Socket speaking the upgrade and minimal framing (the server-limited figures);
// - WsConn: the `ws` client (cross-check);
// - SioConn: socket.io-client (cross-check for socket.io; its handshake ends at `connect`).
// A handshake ends when the server's first message has arrived and contains `target.expect`;
// anything else (an HTTP error, a close frame, a wrong first message) is an error, never a success.
import net from 'node:net'
import WebSocket from 'ws'
import { io } from 'socket.io-client'
import { clientFrame, closeFrame, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, readFrames } from './frame.mjs'

const CLOSE_GRACE_MS = 2000
const MAX_HEAD_BYTES = 16 * 1024
const EMPTY = Buffer.alloc(0)
const CLOSE_1000 = closeFrame(1000)
const EIO_PONG = clientFrame(OP_TEXT, '3')
const EIO_PATH = '/socket.io/?EIO=4&transport=websocket'

/** The message every client echoes: JSON with a `type`, as an application message would be. */
export const ECHO_BODY = { type: 'message', seq: 1, body: 'the quick brown fox jumps over' }

function upgradeRequest (target, token) {
  let path = target.protocol === 'eio' ? EIO_PATH : target.path
  const headers = [`Host: 127.0.0.1:${target.port}`, 'Upgrade: websocket', 'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13']
  if (target.auth === 'query') path += `?token=${token}`
  if (target.auth === 'ticket') path += `?ticket=${token}`
  if (target.auth === 'header') headers.push(`Authorization: Bearer ${token}`)
  if (target.auth === 'protocol') headers.push(`Sec-WebSocket-Protocol: bearer.${token}, bearer`)
  return Buffer.from(`GET ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1')
}

function authFrame (target, token) {
  if (target.auth === 'message') return clientFrame(OP_TEXT, JSON.stringify({ type: 'auth', token }))
  if (target.auth === 'eio') return clientFrame(OP_TEXT, '40' + JSON.stringify({ token }))
  return null
}

/** Everything the lean client can build once per target (requests and frames, pre-masked). */
export function prepareLean (target) {
  const tokens = target.tokens.length > 0 ? target.tokens : ['']
  const eio = target.protocol === 'eio'
  return {
    port: target.port,
    eio,
    // With `target.spread`, connection i comes from 127.0.0.(spreadFrom + i % spread), spreadFrom
    // 1 unless set: 10,000 connections and more without running out of ephemeral ports on one
    // source address (several load generators take ranges of their own).
    spread: target.spread ?? 0,
    spreadFrom: target.spreadFrom ?? 1,
    requests: tokens.map((token) => upgradeRequest(target, token)),
    authFrames: tokens.map((token) => authFrame(target, token)),
    expect: Buffer.from(target.expect),
    echoFrame: clientFrame(OP_TEXT, eio ? '42' + JSON.stringify(['echo', ECHO_BODY]) : JSON.stringify(ECHO_BODY))
  }
}

export class LeanConn {
  constructor (prep, index, onReady) {
    this.prep = prep
    this.auth = prep.authFrames[index % prep.authFrames.length]
    this.onReady = onReady
    this.onMessage = null
    this.onClose = null
    this.ready = false
    this.failed = false
    this.upgraded = false
    this.buf = EMPTY
    this.t0 = performance.now()
    this.socket = prep.spread > 0
      ? net.connect({ port: prep.port, host: '127.0.0.1', localAddress: `127.0.0.${prep.spreadFrom + (index % prep.spread)}` })
      : net.connect(prep.port, '127.0.0.1')
    this.socket.setNoDelay(true)
    this.socket.on('connect', () => this.socket.write(prep.requests[index % prep.requests.length]))
    this.socket.on('data', (chunk) => this.data(chunk))
    this.socket.on('error', (err) => this.fail(err.code ?? err.message))
    this.socket.on('close', () => {
      this.fail('connection closed before the first message')
      this.onClose?.()
    })
  }

  data (chunk) {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    if (!this.upgraded && !this.head()) return
    // Everything answered to one read goes out in one write, as a busy client would send it.
    this.socket.cork()
    this.buf = readFrames(this.buf, (opcode, payload) => this.frame(opcode, payload))
    this.socket.uncork()
  }

  head () {
    const end = this.buf.indexOf('\r\n\r\n')
    if (end === -1) {
      if (this.buf.length > MAX_HEAD_BYTES) this.fail('response head too large')
      return false
    }
    if (this.buf.latin1Slice(0, 12) !== 'HTTP/1.1 101') {
      this.fail(this.buf.latin1Slice(0, this.buf.indexOf('\r\n')))
      return false
    }
    this.upgraded = true
    this.buf = this.buf.subarray(end + 4)
    if (this.auth !== null && !this.prep.eio) this.socket.write(this.auth)
    return true
  }

  frame (opcode, payload) {
    if (opcode === OP_PING) return this.socket.write(clientFrame(OP_PONG, payload))
    if (opcode === OP_CLOSE) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
      return this.fail(`closed ${code} ${payload.subarray(2).toString()}`)
    }
    if (this.ready) return this.message(payload)
    if (this.prep.eio && payload[0] === 0x30 && payload[1] === 0x7b) return this.socket.write(this.auth) // engine.io OPEN
    if (payload.indexOf(this.prep.expect) === -1) return this.fail(`unexpected first message ${payload.toString().slice(0, 100)}`)
    this.ready = true
    this.onReady(null, performance.now() - this.t0)
  }

  message (payload) {
    if (this.prep.eio && payload.length === 1 && payload[0] === 0x32) return this.socket.write(EIO_PONG) // engine.io PING
    this.onMessage?.(payload)
  }

  fail (why) {
    if (this.ready || this.failed) return
    this.failed = true
    this.socket.destroy()
    this.onReady(new Error(why))
  }

  sendEcho () {
    this.socket.write(this.prep.echoFrame)
  }

  /** Sends a close frame and lets the server close the TCP connection (TIME_WAIT stays server-side). */
  close () {
    if (this.socket.destroyed) return
    if (this.upgraded) this.socket.write(CLOSE_1000)
    else this.socket.destroy()
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref()
  }
}

export class WsConn {
  constructor (target, index, onReady) {
    const token = target.tokens[index % target.tokens.length]
    const query = target.auth === 'query' ? `?token=${token}` : target.auth === 'ticket' ? `?ticket=${token}` : ''
    const protocols = target.auth === 'protocol' ? [`bearer.${token}`, 'bearer'] : undefined
    const headers = target.auth === 'header' ? { authorization: `Bearer ${token}` } : {}
    this.echoData = JSON.stringify(ECHO_BODY)
    this.onMessage = null
    this.onClose = null
    this.settled = false
    this.t0 = performance.now()
    this.ws = new WebSocket(`ws://127.0.0.1:${target.port}${target.path}${query}`, protocols, { headers, perMessageDeflate: false })
    this.ws.on('open', () => { if (target.auth === 'message') this.ws.send(JSON.stringify({ type: 'auth', token })) })
    this.ws.on('message', (data) => {
      if (this.settled) return this.onMessage?.(data)
      if (!data.toString().includes(target.expect)) return this.settle(onReady, `unexpected first message ${data.toString().slice(0, 100)}`)
      this.settle(onReady, null)
    })
    this.ws.on('unexpected-response', (req, res) => {
      this.settle(onReady, `HTTP ${res.statusCode}`)
      req.destroy()
    })
    this.ws.on('error', (err) => this.settle(onReady, err.message))
    this.ws.on('close', (code, reason) => {
      this.settle(onReady, `closed ${code} ${reason}`)
      this.onClose?.()
    })
  }

  settle (onReady, why) {
    if (this.settled) return
    this.settled = true
    if (why === null) return onReady(null, performance.now() - this.t0)
    this.ws.terminate()
    onReady(new Error(why))
  }

  sendEcho () {
    this.ws.send(this.echoData)
  }

  close () {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000)
  }
}

export class SioConn {
  constructor (target, index, onReady) {
    this.onMessage = null
    this.onClose = null
    this.settled = false
    this.isClosed = false
    this.t0 = performance.now()
    this.socket = io(`http://127.0.0.1:${target.port}`, {
      transports: ['websocket'], auth: { token: target.tokens[index % target.tokens.length] }, reconnection: false, forceNew: true, timeout: 10_000
    })
    this.socket.on('connect', () => this.settle(onReady, null))
    this.socket.on('connect_error', (err) => this.settle(onReady, err.message))
    this.socket.on('echo', (message) => this.onMessage?.(message))
    this.socket.on('disconnect', () => {
      this.settle(onReady, 'disconnected')
      this.closed()
    })
  }

  settle (onReady, why) {
    if (this.settled) return
    this.settled = true
    if (why === null) return onReady(null, performance.now() - this.t0)
    this.socket.close()
    onReady(new Error(why))
    this.closed()
  }

  closed () {
    if (this.isClosed) return
    this.isClosed = true
    this.onClose?.()
  }

  sendEcho () {
    this.socket.emit('echo', ECHO_BODY)
  }

  close () {
    this.socket.disconnect()
  }
}
