// Minimal WebSocket framing for the lean load generator (RFC 6455 §5): just enough to read the
// server's frames and to write masked client frames. No fragmentation, no extensions.

// ws skips unmasking for an all-zero key (receiver.js), which would make the server look cheaper
// than with a real client: use a fixed non-zero key and mask every payload once, up front.
const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d])

export const OP_TEXT = 0x1
export const OP_BINARY = 0x2
export const OP_CLOSE = 0x8
export const OP_PING = 0x9
export const OP_PONG = 0xa

/** A complete, masked client frame (FIN set) carrying `payload`. */
export function clientFrame (opcode, payload) {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload
  const len = data.length
  const extra = len < 126 ? 0 : len < 65536 ? 2 : 8
  const frame = Buffer.alloc(6 + extra + len)
  frame[0] = 0x80 | opcode
  if (extra === 0) {
    frame[1] = 0x80 | len
  } else if (extra === 2) {
    frame[1] = 0x80 | 126
    frame.writeUInt16BE(len, 2)
  } else {
    frame[1] = 0x80 | 127
    frame.writeBigUInt64BE(BigInt(len), 2)
  }
  MASK.copy(frame, 2 + extra)
  const offset = 6 + extra
  for (let i = 0; i < len; i++) frame[offset + i] = data[i] ^ MASK[i & 3]
  return frame
}

/** A masked close frame with a status code and no reason. */
export function closeFrame (code = 1000) {
  const body = Buffer.alloc(2)
  body.writeUInt16BE(code)
  return clientFrame(OP_CLOSE, body)
}

/**
 * Splits server frames off the front of `buf`. Calls `onFrame(opcode, payload)` for each complete
 * frame and returns the unconsumed tail (possibly empty).
 */
export function readFrames (buf, onFrame) {
  let pos = 0
  while (buf.length - pos >= 2) {
    const opcode = buf[pos] & 0x0f
    let len = buf[pos + 1] & 0x7f
    let head = 2
    if (len === 126) {
      if (buf.length - pos < 4) break
      len = buf.readUInt16BE(pos + 2)
      head = 4
    } else if (len === 127) {
      if (buf.length - pos < 10) break
      len = Number(buf.readBigUInt64BE(pos + 2))
      head = 10
    }
    if (buf.length - pos < head + len) break
    onFrame(opcode, buf.subarray(pos + head, pos + head + len))
    pos += head + len
  }
  return pos === 0 ? buf : buf.subarray(pos)
}
