/**
 * Is this staple usable? The one answer, for every part that asks it: the
 * monitoring check, the status page, the daemon's retry cap, the embedded
 * stapler's handshake and the refresh decision (core/policy.ts).
 *
 * A staple is usable while all of these hold (RFC 6960 §4.2.2.1 and
 * §4.2.2.2, RFC 5019 §4):
 * - its certStatus is `good`;
 * - `now` is before its {@link usableUntil}: nextUpdate, capped by the
 *   notAfter of a delegated OCSP signing certificate (once the signer has
 *   expired, a client rejects the response whatever nextUpdate says);
 * - thisUpdate is not further in the future than the clock skew allowed;
 * - the certificate itself has not expired.
 *
 * Pure: every function takes `now` as an argument (docs/ARCHITECTURE.md).
 */
import type { ErrorCode } from './errors.js';
import {
  refreshPoint,
  usableUntil,
  type CertWindow,
  type RefreshPolicy,
  type StapleFacts,
  type StapleState,
} from './policy.js';

export { usableUntil };

/** The facts {@link usableAt} looks at. */
export interface UsableFacts {
  status: 'good' | 'revoked' | 'unknown';
  nextUpdate: Date;
  /** nextUpdate capped by a delegated signer's notAfter, when known. */
  usableUntil?: Date;
  /** Checked against `now + skewMs` when both are given. */
  thisUpdate?: Date;
}

/** Options of {@link usableAt}. */
export interface UsableOptions {
  /** The certificate: an expired certificate makes any staple for it unusable. */
  cert?: CertWindow;
  /** Reject a staple whose thisUpdate lies further than this in the future. */
  skewMs?: number;
}

/** True when a server may staple a response with these facts at `now`. */
export function usableAt(facts: UsableFacts, now: Date, options: UsableOptions = {}): boolean {
  if (facts.status !== 'good') return false;
  const t = now.getTime();
  if (usableUntil(facts).getTime() <= t) return false;
  if (options.skewMs !== undefined && facts.thisUpdate && facts.thisUpdate.getTime() > t + options.skewMs) {
    return false;
  }
  if (options.cert && options.cert.notAfter.getTime() <= t) return false;
  return true;
}

/**
 * The health of a staple. Stable strings (`staplekeeper check --json`).
 * - `good`: usable, before its refresh point, not close to expiry;
 * - `due`: usable but past its refresh point (renewal is failing);
 * - `expiring`: usable for less than the `expiringMs` threshold;
 * - `missing`: no staple;
 * - `invalid`: fails verification;
 * - `expired`: its nextUpdate (or its delegated signer) has passed;
 * - `revoked`, `unknown-status`: the responder's certStatus;
 * - `cert-expired`: the certificate itself expired.
 */
export type StapleHealth =
  'good' | 'due' | 'expiring' | 'missing' | 'invalid' | 'expired' | 'revoked' | 'unknown-status' | 'cert-expired';

/** What {@link classifyStaple} finds. */
export interface StapleUsability {
  health: StapleHealth;
  /** A server may staple it now. */
  usable: boolean;
  /** When it stops being usable (valid staples only). */
  usableUntil?: Date;
  /** ms until `usableUntil`, never negative (0 for a staple that is not usable; absent when there is no staple). */
  leftMs?: number;
  /** The policy's refresh point (good staples only). */
  refreshAt?: Date;
  /** Why a staple is invalid or expired. */
  error?: { code: ErrorCode; message: string };
}

/** Options of {@link classifyStaple}. */
export interface ClassifyOptions {
  /** A usable staple with this long or less left is `expiring` (default 0: never). */
  expiringMs?: number;
  /** A usable staple is `due` once more than this has passed since its refresh point (default: from the refresh point on). */
  dueGraceMs?: number;
}

/**
 * Classifies a judged staple (see pipeline/judge.ts `readStapleState`) for a
 * certificate at `now`, under the refresh `policy`. Pure; the order of the
 * rules is the order of the list on {@link StapleHealth}'s severity: the
 * certificate first, then the staple's presence, validity, status and time.
 */
export function classifyStaple(
  state: StapleState,
  cert: CertWindow,
  policy: RefreshPolicy,
  now: Date,
  options: ClassifyOptions = {},
): StapleUsability {
  const t = now.getTime();
  if (cert.notAfter.getTime() <= t) return { health: 'cert-expired', usable: false, leftMs: 0 };
  if (state.kind === 'missing') return { health: 'missing', usable: false, leftMs: 0 };
  if (state.kind === 'invalid') {
    const expired = state.error.code === 'OCSP_STALE';
    return { health: expired ? 'expired' : 'invalid', usable: false, leftMs: 0, error: state.error };
  }
  const facts: StapleFacts = state.facts;
  const until = usableUntil(facts);
  const base = { usableUntil: until };
  if (facts.status === 'revoked') return { ...base, health: 'revoked', usable: false, leftMs: 0 };
  if (facts.status === 'unknown') return { ...base, health: 'unknown-status', usable: false, leftMs: 0 };
  if (!usableAt(facts, now)) {
    const message = `the staple expired at ${until.toISOString()}`;
    return { ...base, health: 'expired', usable: false, leftMs: 0, error: { code: 'OCSP_STALE', message } };
  }
  const leftMs = until.getTime() - t;
  const refreshAt = refreshPoint(facts, cert, policy);
  const out = { ...base, usable: true, leftMs, refreshAt };
  if (leftMs <= (options.expiringMs ?? 0)) return { ...out, health: 'expiring' };
  // past the refresh point: what decideRefresh calls `due` for a usable staple
  if (t - refreshAt.getTime() > (options.dueGraceMs ?? -1)) return { ...out, health: 'due' };
  return { ...out, health: 'good' };
}
