/**
 * The options of the daemon (daemon.ts `StapleDaemon.start`), apart so that
 * its parts and the CLI can name them without the lifecycle.
 */
import type { Fleet } from '../fleet/contract.js';
import type { Clock } from '../io/clock.js';
import type { HttpTransport } from '../io/http.js';
import type { StapleStore } from '../io/store.js';
import type { RandomSource } from '../pipeline/backoff.js';
import type { DaemonLogger } from './entry-state.js';
import type { DaemonSource } from './watch.js';

/** Options of {@link StapleDaemon.start}. */
export interface DaemonOptions {
  source: DaemonSource;
  /** Re-reads the source for SIGHUP; without it a reload only re-discovers. */
  reload?: () => Promise<DaemonSource>;
  log: DaemonLogger;
  clock?: Clock;
  random?: RandomSource;
  /** Replaces the HTTP transport built from the settings (tests). */
  transport?: HttpTransport;
  store?: StapleStore;
  /** `HOST:PORT` or `PORT` for the status service; overrides `daemon.status.listen`. */
  listen?: string;
  /** Overrides `daemon.watch`. */
  watch?: boolean;
  /** Renew everything in the initial check instead of checking it (ocsprenewer `-now`). */
  initialForce?: boolean;
  /** How long {@link StapleDaemon.stop} waits for work in progress (default 7 s, inside systemd's and our 10 s). */
  stopGraceMs?: number;
  /** Quiet time before a burst of file changes is acted on (default 500 ms). */
  debounceMs?: number;
  /** Fleet mode: use this fleet instead of opening the one of `fleet:` (tests). */
  fleet?: Fleet;
  /** The environment hooks run with (default `process.env`), as `runOnce` takes it. */
  env?: NodeJS.ProcessEnv;
}
