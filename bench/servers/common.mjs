// What every bench server shares, so that they differ only in what is being measured.

/** The first message of the servers without the plugin (the plugin sends `connection_established`). */
export const HELLO = JSON.stringify({ type: 'hello' })

/** The echo handler of every WebSocket server; `this` is the socket (no closure per connection). */
export function echo (data, isBinary) {
  this.send(data, { binary: isBinary })
}

/** `@fastify/jwt` options: the key for `config.alg`, the verify cache when `config.cache`. */
export function jwtOptions (config, verify = {}) {
  return { secret: config.secret, verify: config.cache ? { ...verify, cache: true } : verify }
}

/** The listen options of every server: loopback, an ephemeral port, room for bursts. */
export const LISTEN = { host: '127.0.0.1', port: 0, backlog: 4096 }

/** Fastify's options: no logger, or (`config.logged`) pino at `info` writing to /dev/null. */
export function fastifyOptions (config) {
  return { logger: config.logged ? { level: 'info', file: '/dev/null' } : false }
}
