/**
 * The public shapes of the embedded stapler (`attachStapling` in
 * embed/stapling.ts): its options, its events, the state it reports and its
 * handle.
 */
import type { RefreshPolicy } from '../core/policy.js';
import type { StapleError } from '../core/errors.js';
import type { CertIdHash } from '../core/request.js';
import type { Clock } from '../io/clock.js';
import type { HttpTransport } from '../io/http.js';
import type { StapleStore } from '../io/store.js';
import type { MethodChoice } from '../pipeline/responder.js';

/** Options of `attachStapling`. */
export interface StaplingOptions {
  /**
   * A folder for a disk copy of each staple (`<sha256 of the certificate>.ocsp`),
   * written atomically through the {@link StapleStore}; after a restart the
   * first handshake is stapled from it without waiting for a responder.
   */
  cacheDir?: string;
  /** Where the cache files live (default: the file store). */
  store?: StapleStore;
  /** HTTP transport (default: a new one, closed by `close()`). */
  transport?: HttpTransport;
  /** Whole-exchange timeout of the default transport (default 10 s). */
  timeoutMs?: number;
  /** When to refresh (default: halfway through the validity, as certmagic). */
  policy?: RefreshPolicy;
  /** Responder URLs to use instead of each certificate's AIA, tried in order. */
  responderUrls?: string[];
  /**
   * Issuer certificates (PEM text or DER) for certificates whose issuer the
   * server context does not carry. Node passes the issuer it found in the
   * context's chain (`cert` bundle or `ca`) with each event; the AIA
   * caIssuers URL is the last resort.
   */
  issuers?: Array<string | Buffer>;
  /** Folders of CA certificates searched for issuers. */
  caDirs?: string[];
  method?: MethodChoice;
  hash?: CertIdHash;
  /** Clock-skew tolerance (default 5 min). */
  skewMs?: number;
  /**
   * Retry after failures: `initialMs` (1 min) doubling up to `maxMs` (1 h), ± `jitter` (0.1); the
   * backoff of the daemon (pipeline/backoff.ts), so `tryLater` waits at least 30 min and a failure
   * only the operator can fix (no issuer, no responder URL, revoked) retries every `maxMs`.
   */
  backoff?: { initialMs?: number; maxMs?: number; jitter?: number };
  /** The clock: its time, and its timers (unref'd: they never keep the process alive). Default: the system's. */
  clock?: Clock;
  /** The older form of `clock` (tests); used when both are given. */
  now?: () => Date;
  /** Told about fetches, failures, cache loads and forgotten certificates. */
  onEvent?: (event: StaplingEvent) => void;
}

/** Something worth logging. */
export type StaplingEvent =
  | {
      type: 'fetched';
      key: string;
      subject: string;
      url: string;
      thisUpdate: Date;
      nextUpdate: Date;
      nextRefresh: Date;
    }
  | { type: 'cache-loaded'; key: string; subject: string; path: string; nextUpdate: Date }
  | { type: 'cache-error'; key: string; subject: string; path: string; error: StapleError }
  | { type: 'error'; key: string; subject: string; error: StapleError; failures: number; retryAt: Date }
  /** The responder's verified answer was not better than the current staple, which is kept (core/compare.ts). */
  | { type: 'kept'; key: string; subject: string; message: string; failures: number; retryAt: Date }
  | { type: 'revoked'; key: string; subject: string; revocationTime?: Date; revocationReason?: string }
  | { type: 'forgotten'; key: string; subject: string; reason: string };

/** The state of one certificate, for logs and health endpoints. */
export interface StaplingStatus {
  /** SHA-256 of the certificate DER, hex. */
  key: string;
  subject: string;
  serialHex: string;
  /** True when a handshake now would get a staple. */
  servable: boolean;
  staple?: { status: string; thisUpdate: string; nextUpdate: string; producedAt: string; usableUntil: string };
  nextRefresh?: string;
  fetching: boolean;
  failures: number;
  lastError?: { code: string; message: string };
}

/** What `attachStapling` returns. */
export interface StaplingHandle {
  /** Stops every timer and detaches from the server (also done when the server emits `close`). */
  close(): Promise<void>;
  /** Fetches a new staple for every known certificate now, ignoring the refresh point and the backoff. */
  refresh(): Promise<void>;
  /** The state of each known certificate. */
  status(): StaplingStatus[];
  /** Resolves when no fetch or cache read is running. */
  idle(): Promise<void>;
  /**
   * Starts looking after a certificate before any handshake (PEM bundle or
   * DER; the issuer may follow the leaf in the bundle), so that the first
   * client already gets a staple. Such a certificate is never forgotten.
   * Resolves when its first staple is there or the first attempt failed.
   */
  add(certificate: string | Buffer): Promise<void>;
}
