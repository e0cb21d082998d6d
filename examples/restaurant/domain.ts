// The restaurant group's operations, in memory: staff, restaurants and their tables, kitchen
// stations, order queues and sales metrics. Changes are events the WebSocket layer publishes.
import { EventEmitter } from 'node:events'

export type StaffUser = {
  id: string
  username: string
  roles: string[]
  permissions: string[]
  /** Restaurants this person works at; `'*'` for all of them. */
  restaurants: string[]
  active: boolean
}

/** What each role may do beyond its name: the plugin's `rolePermissions`. */
export const ROLE_PERMISSIONS: Readonly<Record<string, readonly string[]>> = {
  admin: ['analytics.view_dashboard', 'analytics.view_sales_reports'],
  manager: ['analytics.view_dashboard', 'analytics.view_sales_reports'],
  analytics_viewer: ['analytics.view_dashboard']
}

export const DEMO_STAFF: readonly StaffUser[] = [
  { id: 'u-admin', username: 'ana', roles: ['admin'], permissions: [], restaurants: ['*'], active: true },
  { id: 'u-manager', username: 'mia', roles: ['manager'], permissions: [], restaurants: ['r-downtown'], active: true },
  { id: 'u-analyst', username: 'abe', roles: ['analytics_viewer'], permissions: [], restaurants: [], active: true },
  { id: 'u-chef', username: 'cal', roles: ['chef'], permissions: [], restaurants: ['r-downtown'], active: true },
  { id: 'u-host', username: 'hal', roles: ['host'], permissions: [], restaurants: ['r-harbor'], active: true },
  { id: 'u-server', username: 'sid', roles: ['server'], permissions: [], restaurants: ['r-downtown'], active: true },
  { id: 'u-cashier', username: 'cat', roles: ['cashier'], permissions: [], restaurants: ['r-downtown'], active: true },
  { id: 'u-former', username: 'fay', roles: ['server'], permissions: [], restaurants: ['r-downtown'], active: false }
]

export const METRICS = ['sales', 'orders', 'covers', 'avg_ticket'] as const
export type MetricName = typeof METRICS[number]
export const STATIONS = ['grill', 'fryer', 'salad', 'expo'] as const
/** Order queues, each of one restaurant: queue id -> restaurant id. */
export const QUEUES: Readonly<Record<string, string>> = {
  'downtown-dine_in': 'r-downtown',
  'downtown-takeout': 'r-downtown',
  'downtown-delivery': 'r-downtown',
  'harbor-dine_in': 'r-harbor',
  'harbor-takeout': 'r-harbor'
}

export interface Order {
  id: string
  restaurant_id: string
  station_id: string
  queue_id: string
  items: string[]
  total: number
  created_at: string
}

export type TableStatus = 'free' | 'seated' | 'reserved' | 'cleaning'

export interface Table {
  id: string
  restaurant_id: string
  seats: number
  status: TableStatus
}

export interface MetricValue {
  metric: MetricName
  value: number
  timestamp: string
}

export const isMetric = (name: string): name is MetricName => (METRICS as readonly string[]).includes(name)
export const isStation = (id: string): boolean => (STATIONS as readonly string[]).includes(id)
/** The restaurant a queue belongs to; `undefined` for no such queue. */
export const restaurantOfQueue = (id: string): string | undefined => Object.hasOwn(QUEUES, id) ? QUEUES[id] : undefined
/** Whether someone works at a restaurant (`'*'`: at all of them). */
export const worksAt = (user: StaffUser, restaurant: string): boolean => user.restaurants.includes('*') || user.restaurants.includes(restaurant)

export class Operations extends EventEmitter<{ order: [Order], table: [Table], metric: [MetricValue] }> {
  private readonly orders: Order[] = []
  private readonly tables = new Map<string, Table[]>([
    ['r-downtown', [1, 2, 3, 4].map(n => ({ id: `T${n}`, restaurant_id: 'r-downtown', seats: n % 2 === 0 ? 4 : 2, status: 'free' as const }))],
    ['r-harbor', [1, 2, 3].map(n => ({ id: `H${n}`, restaurant_id: 'r-harbor', seats: 6, status: 'free' as const }))]
  ])

  private readonly values: Record<MetricName, number> = { sales: 0, orders: 0, covers: 0, avg_ticket: 0 }
  private sequence = 0

  hasRestaurant (id: string): boolean {
    return this.tables.has(id)
  }

  tablesOf (restaurantId: string): Table[] {
    return (this.tables.get(restaurantId) ?? []).map(t => ({ ...t }))
  }

  ordersAt (station: string): Order[] {
    return this.orders.filter(o => o.station_id === station)
  }

  ordersIn (queue: string): Order[] {
    return this.orders.filter(o => o.queue_id === queue)
  }

  metric (name: MetricName): MetricValue {
    return { metric: name, value: this.values[name], timestamp: new Date().toISOString() }
  }

  placeOrder (input: Omit<Order, 'id' | 'created_at'>): Order {
    const order: Order = { ...input, id: `o-${++this.sequence}`, created_at: new Date().toISOString() }
    this.orders.push(order)
    this.emit('order', order)
    this.values.sales = round(this.values.sales + order.total)
    this.values.orders++
    this.values.avg_ticket = round(this.values.sales / this.values.orders)
    for (const name of ['sales', 'orders', 'avg_ticket'] as const) this.emit('metric', this.metric(name))
    return order
  }

  setTable (restaurantId: string, tableId: string, status: TableStatus, covers = 0): Table {
    const table = this.tables.get(restaurantId)?.find(t => t.id === tableId)
    if (table === undefined) throw new RangeError(`Unknown table ${restaurantId}/${tableId}`)
    table.status = status
    this.emit('table', { ...table })
    if (covers > 0) {
      this.values.covers += covers
      this.emit('metric', this.metric('covers'))
    }
    return { ...table }
  }
}

function round (n: number): number {
  return Math.round(n * 100) / 100
}
