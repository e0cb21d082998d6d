// The inventory and its people, in memory. A real app keeps both in its database.

export type InventoryUser = {
  id: string
  username: string
  roles: string[]
  permissions: string[]
  /** Former staff keep their account, inactive: their tokens no longer open a socket. */
  active: boolean
}

export interface Item {
  sku: string
  name: string
  quantity: number
  /** At or below this quantity the item is low on stock. */
  threshold: number
}

/** The roles that manage stock: they may adjust it and are told when it runs low. */
export const STOCK_MANAGERS = ['admin', 'inventory_manager'] as const

export const DEMO_USERS: readonly InventoryUser[] = [
  { id: 'u-admin', username: 'amy', roles: ['admin'], permissions: [], active: true },
  { id: 'u-manager', username: 'max', roles: ['inventory_manager'], permissions: [], active: true },
  { id: 'u-sales', username: 'sal', roles: ['sales'], permissions: [], active: true },
  { id: 'u-sales-2', username: 'sue', roles: ['sales'], permissions: [], active: true },
  { id: 'u-former', username: 'fred', roles: ['sales'], permissions: [], active: false }
]

export const DEMO_ITEMS: readonly Item[] = [
  { sku: 'WIDGET-1', name: 'Blue widget', quantity: 12, threshold: 5 },
  { sku: 'GADGET-7', name: 'Gadget, large', quantity: 40, threshold: 10 },
  { sku: 'BOLT-M6', name: 'Bolt M6 (box of 100)', quantity: 3, threshold: 4 }
]

export class Inventory {
  private readonly items: Map<string, Item>

  constructor (items: readonly Item[] = DEMO_ITEMS) {
    this.items = new Map(items.map(i => [i.sku, { ...i }]))
  }

  snapshot (): Item[] {
    return [...this.items.values()].map(i => ({ ...i }))
  }

  /** Changes the quantity by `delta`; throws a message for the client when that is not possible. */
  change (sku: string, delta: number): Item {
    const item = this.items.get(sku)
    if (item === undefined) throw new RangeError(`Unknown SKU: ${sku}`)
    if (item.quantity + delta < 0) throw new RangeError(`Only ${item.quantity} of ${sku} in stock`)
    item.quantity += delta
    return { ...item }
  }
}
