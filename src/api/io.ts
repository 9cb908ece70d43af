/**
 * The `io` namespace of the library: the outside world behind small
 * interfaces (docs/ARCHITECTURE.md "Seams"): the clock, the HTTP transport,
 * the staple store and the staple-folder lock.
 */
export { type Clock, systemClock, fixedClock } from '../io/clock.js';
export {
  createHttpTransport,
  assertHttpUrl,
  DEFAULT_MAX_BYTES,
  type HttpTransport,
  type HttpRequest,
  type HttpResult,
  type HttpOptions,
} from '../io/http.js';
export {
  createFileStore,
  cleanStaleTemps,
  type StapleStore,
  type WriteOptions,
  type WriteResult,
} from '../io/store.js';
export { acquireLock, type HeldLock } from '../batch/lock.js';
