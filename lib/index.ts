/**
 * The package entry (`fastify-ws-auth`): the plugin, and the public API around it. The layers
 * are described in docs/architecture.md: protocol/ (what server and client share), types.ts,
 * server/ (the plugin), cluster/ (registry, revocation, adapters), client/.
 */
import { fastifyWsAuth } from './server/plugin.ts'

export { fastifyWsAuth }
export default fastifyWsAuth
export { closeCodes, mergeCloseCodes, entryForCode, MAX_REASON_BYTES } from './protocol/close-codes.ts'
export type { CloseCodeEntry, CloseCodeOverrides, CloseCodeTable, FailureClass, RetryAdvice } from './protocol/close-codes.ts'
export {
  InvalidOptionError, InvalidRouteOptionError, InvalidArgumentError, NoVerifierError, CookiePluginMissingError,
  UnguardedRouteError, InvalidTokenError, TokenExpiredError, KeySourceUnavailableError
} from './errors.ts'
export { defaultLoadUser } from './server/options.ts'
export { tokenShapeProblem, claimsProblem } from './server/token-shape.ts'
export type * from './types.ts'
