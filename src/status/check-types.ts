/**
 * The public shapes of the monitoring check (status/check.ts): the plugin
 * states, the judgement of one certificate, the report, the options, and the
 * context of `checkTarget`.
 */
import type { RefreshPolicy } from '../core/policy.js';
import type { Clock } from '../io/clock.js';
import type { HttpTransport } from '../io/http.js';
import type { StapleStore } from '../io/store.js';
import type { CrlChecker } from '../pipeline/contracts.js';
import type { IssuerResolver } from '../pipeline/issuer.js';
import type { Marks } from '../revocation/marks.js';
import type { PassMemo } from '../pipeline/pass-memo.js';
import type { SignatureVerifier } from '../pipeline/signature-verifier.js';

/** A Nagios plugin state. */
export type CheckLevel = 'ok' | 'warning' | 'critical' | 'unknown';

/** Why a certificate got its state. Stable strings, for `--json` consumers. */
export type CheckState =
  | 'good' // valid, before its refresh point, not close to expiry
  | 'due' // valid but past its refresh point: renewal is failing
  | 'expiring' // valid for less than the warning or critical threshold
  | 'missing' // no staple file
  | 'invalid' // fails verification (damaged, for another certificate, badly signed, …)
  | 'expired' // nextUpdate has passed
  | 'revoked' // the responder says revoked
  | 'unknown-status' // the responder says unknown
  | 'cert-expired' // the certificate itself expired
  | 'no-ocsp' // no responder (triage crl or none): nothing to staple, not a failure
  | 'must-staple-no-responder' // must-staple, but no responder: the server cannot staple
  | 'crl-unavailable' // a crl certificate whose CRL could not be fetched or verified (WARNING)
  | 'cert-expiring' // the certificate itself expires within the certificate thresholds (14 d / 3 d)
  | 'unjudgeable'; // the certificate or its issuer could not be loaded

/** The judgement of one certificate's staple. */
export interface CertCheck {
  id: string;
  certPath: string;
  staplePath: string;
  level: CheckLevel;
  state: CheckState;
  /** One short phrase for the status line, e.g. `expires in 20h`. */
  reason: string;
  /** The error code behind an invalid or unjudgeable staple. */
  code?: string;
  status?: 'good' | 'revoked' | 'unknown';
  thisUpdate?: string;
  nextUpdate?: string;
  producedAt?: string;
  /** When the staple stops being usable (nextUpdate, capped by a delegated signer). */
  usableUntil?: string;
  /** The thresholds applied to this staple (seconds of remaining usability). */
  warnSeconds?: number;
  critSeconds?: number;
  /** Seconds until `usableUntil` (0 for missing, invalid or revoked staples; absent when unjudgeable). */
  expiresInSeconds?: number;
  /** The refresh point under the configured policy. */
  refreshAt?: string;
  revocationTime?: string;
  revocationReason?: string;
  responder?: string;
  /** How revocation of the certificate is published (core/triage.ts). */
  mechanism?: 'ocsp' | 'crl' | 'none';
  mustStaple?: boolean;
  /** The certificate's CRL distribution points, when it has any. */
  crlUrls?: string[];
  /** The certificate's notAfter (absent when it could not be loaded). */
  certNotAfter?: string;
  /** CRL watch: the distribution point asked, its verdict and the CRL's times. */
  crlUrl?: string;
  crlStatus?: 'good' | 'revoked' | 'unavailable';
  crlThisUpdate?: string;
  crlNextUpdate?: string;
}

/** The result of a check. */
export interface CheckReport {
  level: CheckLevel;
  exitCode: 0 | 1 | 2 | 3;
  checkedAt: string;
  /** `relative`: per staple from its validity window (the default); `absolute`: --warn/--crit. */
  thresholds: 'relative' | 'absolute';
  /** The absolute thresholds; with relative ones, those of the staple that stops being usable first (absent when none was judged). */
  warnSeconds?: number;
  critSeconds?: number;
  certs: CertCheck[];
  /** `noOcsp`: certificates without a responder (nothing to staple); they are not counted as staples. */
  counts: { certs: number; ok: number; warning: number; critical: number; unknown: number; noOcsp: number };
  /** The smallest `expiresInSeconds` among judged certificates; absent when none was judged. */
  expiryMinSeconds?: number;
  /** The plugin output line: `STAPLEKEEPER STATE - text | perfdata`. */
  line: string;
}

/** What `checkStaples` needs. */
export interface CheckOptions {
  /** WARNING below this many ms of remaining validity (default: relative, see `relativeThresholds`). */
  warnMs?: number;
  /** CRITICAL below this many ms (default: relative). */
  critMs?: number;
  /** The time the staples are judged at (default: `clock`, else the system clock). */
  now?: Date;
  clock?: Clock;
  store?: StapleStore;
  /** Default: issuers from the files and `ca_dirs` only, with no HTTP transport. */
  resolver?: IssuerResolver;
  /**
   * Watch the CRLs of `crl` certificates (the only thing a check downloads;
   * conditional GETs against the disk cache). Default: on unless
   * `crl.watch: false`.
   */
  crl?: boolean;
  /** The transport for CRL downloads (default: one built from the settings). */
  transport?: HttpTransport;
  /** Certificate-expiry thresholds (default 14 days and 3 days). */
  certWarnMs?: number;
  certCritMs?: number;
  /** The signature verifier to use (pipeline/signature-verifier.ts); default none. The CLI passes one with its thread. */
  signatures?: SignatureVerifier;
}

/** The thresholds for one staple, in ms of remaining usability, and the grace past its refresh point. */
export interface Thresholds {
  warnMs: number;
  critMs: number;
  graceMs: number;
}

/** What `checkTarget` works with. */
export interface CheckTargetContext {
  store: StapleStore;
  resolver: IssuerResolver;
  policy: RefreshPolicy;
  now: Date;
  warnMs?: number;
  critMs?: number;
  urlOverrides?: Record<string, string>;
  marks?: Marks;
  crl?: CrlChecker;
  /** WARNING when the certificate itself expires within this many ms (default 14 days). */
  certWarnMs?: number;
  /** CRITICAL when it expires within this many ms (default 3 days). */
  certCritMs?: number;
  /** The check's signature verifier and pass memo (optional: the answers are the same without). */
  signatures?: SignatureVerifier;
  pass?: PassMemo;
}
