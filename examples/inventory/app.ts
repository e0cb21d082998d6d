// Inventory: `/ws/inventory` for the staff of a warehouse. A client authenticates with its first
// message, `{"type":"auth","token":"..."}` (what a socket.io client sends as its `auth` object), or
// with `?token=`. Only existing, active users get in. Then:
//   - `inventory:update` goes to everyone when a quantity changes (`broadcast`),
//   - `inventory:lowStock` only to the roles that manage stock (`broadcast` with `roles`),
//   - `inventory:reserved` / `inventory:adjusted` to every open session of the user who asked
//     (`sendToUser`: all their tabs agree), errors only to the socket that asked.
// Only stock managers may send `inventory:adjust`: a `messages` policy refuses it to anyone else
// (`{"type":"refused","of":"inventory:adjust","code":4003,...}`) before the handler sees it.
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import jwt from '@fastify/jwt'
import wsAuth from 'fastify-ws-auth'
import type { WebSocket } from 'ws'
import { DEMO_USERS, Inventory, STOCK_MANAGERS, type InventoryUser, type Item } from './store.ts'

export const INVENTORY_PATH = '/ws/inventory'

export interface BuildOptions {
  /** HS256 secret. @default a random secret */
  secret?: string
  users?: readonly InventoryUser[]
  inventory?: Inventory
  /** How long a client has to send its auth message, in ms. @default 5000 */
  authTimeoutMs?: number
  logger?: FastifyServerOptions['logger']
}

interface Request { type: string, data: { sku?: unknown, quantity?: unknown, delta?: unknown } }

export async function build (opts: BuildOptions = {}): Promise<FastifyInstance> {
  const users = new Map((opts.users ?? DEMO_USERS).map(u => [u.id, u]))
  const inventory = opts.inventory ?? new Inventory()
  const app = Fastify({ logger: opts.logger ?? false })

  await app.register(jwt, { secret: opts.secret ?? randomBytes(32).toString('base64url') })
  await app.register(wsAuth, {
    // A token in the URL is used when present; otherwise the first message must carry it.
    sources: ['query', 'message'],
    authTimeout: opts.authTimeoutMs ?? 5000,
    loadUser (claims) {
      const user = users.get(String(claims.sub))
      return user?.active === true ? user : null
    }
  })

  /** Tells everyone about the new quantity, and the stock managers when it is low. */
  function announce (item: Item, by: string): void {
    app.wsAuth.broadcast({ type: 'inventory:update', data: { sku: item.sku, quantity: item.quantity, by } })
    if (item.quantity <= item.threshold) {
      app.wsAuth.broadcast({ type: 'inventory:lowStock', data: { sku: item.sku, name: item.name, quantity: item.quantity, threshold: item.threshold } },
        { roles: STOCK_MANAGERS })
    }
  }

  function handle (socket: WebSocket, user: InventoryUser, request: Request): void {
    const { sku, quantity, delta } = request.data
    if (typeof sku !== 'string') return sendError(socket, 'data.sku must be a string')
    if (request.type === 'inventory:reserve') {
      if (!isWhole(quantity) || quantity <= 0) return sendError(socket, 'data.quantity must be a positive whole number')
      const item = inventory.change(sku, -quantity)
      announce(item, user.username)
      app.wsAuth.sendToUser(user.id, { type: 'inventory:reserved', data: { sku, quantity, remaining: item.quantity } })
      return
    }
    if (request.type === 'inventory:adjust') {
      if (!isWhole(delta) || delta === 0) return sendError(socket, 'data.delta must be a non-zero whole number')
      const item = inventory.change(sku, delta)
      announce(item, user.username)
      app.wsAuth.sendToUser(user.id, { type: 'inventory:adjusted', data: { sku, delta, quantity: item.quantity } })
      return
    }
    sendError(socket, `Unknown message type: ${request.type}`)
  }

  app.get(INVENTORY_PATH, {
    websocket: true,
    wsAuth: { messages: { 'inventory:adjust': { roles: STOCK_MANAGERS } } }
  }, (socket, req) => {
    const user = socket.user as InventoryUser
    socket.send(JSON.stringify({ type: 'inventory:snapshot', data: { items: inventory.snapshot() } }))
    socket.on('message', (raw) => {
      const request = parseRequest(raw.toString())
      if (request === undefined) return sendError(socket, 'Messages are {"type":"...","data":{...}}')
      try {
        handle(socket, user, request)
      } catch (err) {
        if (err instanceof RangeError) return sendError(socket, err.message)
        req.log.error({ err, type: request.type }, 'inventory request failed')
        sendError(socket, 'Internal error')
      }
    })
  })

  return app
}

function sendError (socket: WebSocket, message: string): void {
  socket.send(JSON.stringify({ type: 'error', data: { message } }))
}

function isWhole (value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value)
}

function parseRequest (text: string): Request | undefined {
  try {
    const message = JSON.parse(text) as Partial<Request> | null
    if (typeof message?.type !== 'string' || message.data === null || typeof message.data !== 'object') return undefined
    return message as Request
  } catch {
    return undefined
  }
}
