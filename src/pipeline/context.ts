/**
 * What the pipeline works on and with: a {@link Target} (one certificate and
 * its staple), the {@link EngineContext} (the seams of pipeline/contracts.ts
 * plus the settings of one run or daemon), the options of one call and the
 * {@link TargetOutcome} it reports, with the small helpers that build an
 * outcome.
 */
import { type Certificate, fingerprint } from '../core/certs.js';
import type { ComparisonReason } from '../core/compare.js';
import type { ErrorCode } from '../core/errors.js';
import type { RefreshDecision, RefreshPolicy } from '../core/policy.js';
import type { CertIdHash } from '../core/request.js';
import type { Triage } from '../core/triage.js';
import type { VerifiedResponse } from '../core/verify.js';
import type { Fleet } from '../fleet/contract.js';
import type { HttpTransport } from '../io/http.js';
import type { StapleStore } from '../io/store.js';
import type { CrlChecker, CrlVerdict } from './contracts.js';
import type { IssuerResolver } from './issuer.js';
import type { PassMemo } from './pass-memo.js';
import type { MethodChoice } from './responder.js';
import type { SignatureVerifier } from './signature-verifier.js';
import type { VerdictCache } from './verdict-cache.js';

/** What staplekeeper needs to know about one staple it maintains. */
export interface Target {
  id: string;
  certPath: string;
  staplePath: string;
  issuerPath?: string;
  chainPath?: string;
  rootchainPath?: string;
  /** Responder URLs overriding the AIA (tried in order). */
  responderUrls?: string[];
  /** Do not maintain this staple. */
  disabled?: boolean;
  /**
   * The certificate, already parsed (the embedded stapler has it from the TLS
   * handshake): nothing is read for it, `certPath` only names it, and its
   * issuer is looked for in `bundle`, then `chain`, then the resolver's CA
   * folders and caIssuers URL. Such a target never uses the staple-folder cache.
   */
  certificate?: { leaf: Certificate; bundle?: Certificate[]; chain?: Certificate[] };
}

/** Shared dependencies of the engine. */
export interface EngineContext {
  store: StapleStore;
  transport: HttpTransport;
  resolver: IssuerResolver;
  now: () => Date;
  policy: RefreshPolicy;
  method?: MethodChoice;
  hash?: CertIdHash;
  nonce?: boolean;
  skewMs?: number;
  makeBackups?: boolean;
  backupKeep?: number;
  /** Write a verified revoked response over the staple (default false; see docs/SECURITY.md). */
  onRevokedWrite?: boolean;
  /** Maps an AIA URL to an override URL or 'disabled'. */
  urlOverrides?: Record<string, string>;
  /** How messages name the current staple (default "the staple on disk"; the embedded stapler: "the staple in use"). */
  stapleName?: string;
  /** Overall time to obtain a staple for one certificate (default 2 × the default HTTP timeout; pipeline/responder.ts). */
  fetchDeadlineMs?: number;
  /**
   * The staple folder (`ocsp_folder`): missing folders below it are created
   * for a staple (a recursive scan's subfolders); any other missing folder is
   * an error naming it. Without it, a staple's folder must exist.
   */
  stapleRoot?: string;
  /** Replace an existing non-empty file that is not an OCSP response (`overwrite_non_ocsp`; default false). */
  overwriteNonOcsp?: boolean;
  /**
   * A certificate without a responder is a failure (`NO_OCSP_URL`), as in
   * ocspbot. Default false: it is triaged (core/triage.ts) and, unless it is
   * must-staple, skipped with one notice.
   */
  strictOcsp?: boolean;
  /**
   * Checks the CRL of a `crl` certificate (engine/crl-watch.ts); absent: CRLs
   * are not watched (the default of `run`).
   */
  crl?: CrlChecker;
  onNotice?: (targetId: string, message: string) => void;
  /**
   * The verdict cache (pipeline/verdict-cache.ts): a staple whose bytes,
   * certificate and issuer files are unchanged since it was verified is not
   * parsed or verified again; the time-dependent rules still apply at `now`,
   * so it never changes a decision. Absent (a library caller's default): no
   * verdict cache, nothing written beside the staples. `run` (the CLI) and
   * the daemon create one.
   */
  verdicts?: VerdictCache;
  /**
   * The signature verifier (pipeline/signature-verifier.ts): checks made once
   * and remembered, optionally ahead on a thread. Absent: every signature is
   * checked where it is needed.
   */
  signatures?: SignatureVerifier;
  /**
   * What one pass shares (pipeline/pass-memo.ts): chain files read and parsed
   * once, included responder certificates parsed once. `run` makes one per
   * run, the daemon one per burst of work. Absent: each certificate reads and
   * parses its own files.
   */
  pass?: PassMemo;
  /**
   * Fleet mode (src/fleet, docs/fleet.md): asked before the responder, told
   * after a fetch. Absent: no fleet.
   */
  fleet?: Fleet;
  /** With a fleet: wait for another node's publication here ('block', `run`) or report it pending ('defer', the daemon). */
  fleetWait?: 'block' | 'defer';
}

/** The memos of a context the load and judge steps use (both optional: the answers are the same without). */
export type EngineMemos = Pick<EngineContext, 'signatures' | 'pass'>;

/** Options of one {@link processTarget} call. */
export interface ProcessOptions {
  /** Renew whatever the policy says. */
  force?: boolean;
  /** Decide only; fetch and write nothing. */
  dryRun?: boolean;
  /** Fleet mode: take a better staple from the fleet even when this one is not due (publications, sweeps). */
  fleetApply?: boolean;
  /** Fleet mode: only take a better staple from the fleet; never fetch (the responder is in backoff). */
  fleetOnly?: boolean;
}

/** The facts of a staple for output (`--json`, `/status`). */
export interface StapleSummary {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: string;
  nextUpdate: string;
  producedAt: string;
  /** When it stops being usable: nextUpdate, capped by a delegated signer's notAfter (core/usability.ts). */
  usableUntil: string;
  responder: string;
}

/** What happened to one target. */
export interface TargetOutcome {
  id: string;
  certPath: string;
  staplePath: string;
  /** updated: a new staple was written; unchanged: kept; failed: an error; skipped: disabled or nothing to do. */
  result: 'updated' | 'unchanged' | 'failed' | 'skipped';
  decision?: RefreshDecision;
  /** The staple now on disk (after this run), if valid. */
  staple?: StapleSummary;
  error?: { code: ErrorCode; message: string };
  /** Set when the responder says the certificate is revoked. */
  revoked?: RevokedInfo;
  url?: string;
  method?: 'GET' | 'POST';
  backupPath?: string;
  /** When the staple should next be looked at (the refresh point), ISO. */
  nextRefresh?: string;
  /**
   * Set when the responder's verified answer was not better than the valid
   * staple on disk (core/compare.ts), which was kept byte-for-byte: the result
   * is `unchanged`, nothing is counted as renewed, and the daemon retries
   * with its failure backoff.
   */
  kept?: { reason: ComparisonReason; message: string };
  /** The staple was written, but keeping its backup failed (a warning: the write is what counts). */
  backupError?: string;
  /** Notices gathered while processing. */
  notices: string[];
  /**
   * Fleet mode: `hit` the staple came from the fleet (no request); `published`
   * fetched here and published; `pending` another node is fetching it;
   * `direct` fetched without the fleet (down or silent); `kept` fetch is false
   * and the fleet had nothing better.
   */
  fleet?: { role: 'hit' | 'published' | 'pending' | 'direct' | 'kept'; detail?: string };
  /** How revocation of the certificate is published (absent when the certificate could not be loaded). */
  triage?: Triage;
  /** The result of the CRL check of a `crl` certificate, when CRLs are watched. */
  crl?: CrlVerdict;
}

/** A revoked answer (responder or CRL), written or not. */
export interface RevokedInfo {
  /** revocationTime, ISO. */
  time?: string;
  /** CRLReason name. */
  reason?: string;
  /** Where the answer came from. */
  source?: 'ocsp' | 'crl';
  /** The responder or CRL URL. */
  url?: string;
  /** SHA-256 of the certificate DER (hex): revocation marks (revocation/marks.ts) name certificates by it. */
  certificate?: string;
}

/** A certificate with everything needed to talk about its staple. */
export interface LoadedCert {
  cert: Certificate;
  issuer: Certificate;
}

/** SHA-256 of a certificate's DER, lower-case hex. */
export function certFingerprint(cert: Certificate): string {
  return fingerprint(cert);
}

/** Summarises a verified response for output. */
export function summarize(v: VerifiedResponse): StapleSummary {
  return {
    status: v.status,
    thisUpdate: v.thisUpdate.toISOString(),
    nextUpdate: v.nextUpdate.toISOString(),
    producedAt: v.producedAt.toISOString(),
    usableUntil: v.usableUntil.toISOString(),
    responder: v.responder,
  };
}

/** The responder URLs for a certificate, after overrides. Empty when disabled. */
export function responderUrls(
  target: Target,
  cert: Pick<Certificate, 'ocspUrls'>,
  overrides: Record<string, string> = {},
): string[] {
  if (target.responderUrls && target.responderUrls.length > 0) return target.responderUrls;
  const urls: string[] = [];
  for (const u of cert.ocspUrls) {
    const o = Object.hasOwn(overrides, u) ? overrides[u] : undefined; // names are keys: never Object.prototype
    if (o === 'disabled') continue;
    urls.push(o ?? u);
  }
  return urls;
}
