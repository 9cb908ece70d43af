/**
 * When to refresh a staple: decisions as data (`{ action, reason, at }`),
 * taking `now` as an argument (cert-manager, lego habits).
 *
 * Two formulas are implemented (OCSP-REFERENCE §4):
 * - ocspbot: `end = min(cert.notAfter, nextUpdate)`,
 *   `start = max(cert.notBefore, thisUpdate)`; refresh at the earliest of
 *   `end - minimum_validity` and `start + (end - start) * (1 - P/100)`.
 * - ocsprenewer: refresh at `producedAt + (nextUpdate - producedAt) * T1`.
 * With neither ocspbot key set, T1 = `refreshAt` (default 0.5: the halfway
 * point that Sleevi's recommendations and certmagic use).
 */

/** The facts about a stored staple that a decision needs. */
export interface StapleFacts {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: Date;
  nextUpdate: Date;
  producedAt: Date;
  /** nextUpdate capped by a delegated signer's notAfter. */
  usableUntil?: Date;
  /** A responder `Cache-Control: max-age` deadline, which may only bring the refresh earlier (RFC 5019 §6.2). */
  cacheUntil?: Date;
}

/** The refresh policy. */
export interface RefreshPolicy {
  /** ocspbot `minimum_validity` in ms. */
  minimumValidityMs?: number;
  /** ocspbot `minimum_validity_percentage` (0–100). */
  minimumValidityPercentage?: number;
  /** ocsprenewer T1 (0.1–0.95); used when neither ocspbot key is set. */
  refreshAt?: number;
}

/** The default: refresh at 50 % of the validity window. */
export const DEFAULT_POLICY: RefreshPolicy = { refreshAt: 0.5 };

/** Why a decision was taken. Stable strings, shown in `--dry-run` and `/status`. */
export type RefreshReason =
  | 'missing' // no staple on disk
  | 'invalid' // the staple on disk fails verification
  | 'not-good' // the staple says revoked or unknown
  | 'expired' // nextUpdate has passed
  | 'due' // past the refresh point
  | 'forced' // the operator asked (--force, SIGUSR2)
  | 'fresh' // nothing to do until `at`
  | 'cert-expired'; // the certificate itself expired: nothing to staple

/** A refresh decision. */
export interface RefreshDecision {
  action: 'renew' | 'keep' | 'skip';
  reason: RefreshReason;
  /** When the staple is due (for `keep`: the future refresh point; for `renew`: now or the past point). */
  at: Date;
  /** Human-readable explanation. */
  detail: string;
}

/** The certificate facts a decision needs. */
export interface CertWindow {
  notBefore: Date;
  notAfter: Date;
}

/** What is known about the current staple. */
export type StapleState =
  { kind: 'missing' } | { kind: 'invalid'; error: string } | { kind: 'valid'; facts: StapleFacts };

/** Computes the refresh point of a valid staple under `policy`. */
export function refreshPoint(facts: StapleFacts, cert: CertWindow, policy: RefreshPolicy = DEFAULT_POLICY): Date {
  const nextUpdate = Math.min(facts.nextUpdate.getTime(), facts.usableUntil?.getTime() ?? Infinity);
  let at: number;
  if (policy.minimumValidityMs !== undefined || policy.minimumValidityPercentage !== undefined) {
    const end = Math.min(cert.notAfter.getTime(), nextUpdate);
    const start = Math.max(cert.notBefore.getTime(), facts.thisUpdate.getTime());
    const candidates: number[] = [];
    if (policy.minimumValidityMs !== undefined) candidates.push(end - policy.minimumValidityMs);
    if (policy.minimumValidityPercentage !== undefined) {
      candidates.push(start + (end - start) * (1 - policy.minimumValidityPercentage / 100));
    }
    at = Math.min(...candidates);
  } else {
    const t1 = policy.refreshAt ?? 0.5;
    const produced = facts.producedAt.getTime();
    at = produced + (nextUpdate - produced) * t1;
  }
  if (facts.cacheUntil) at = Math.min(at, facts.cacheUntil.getTime());
  return new Date(Math.floor(at));
}

/**
 * Decides whether the staple for a certificate must be renewed at `now`.
 * Pure: the same inputs always give the same decision.
 */
export function decideRefresh(
  staple: StapleState,
  cert: CertWindow,
  policy: RefreshPolicy,
  now: Date,
  options: { force?: boolean } = {},
): RefreshDecision {
  const nowMs = now.getTime();
  if (cert.notAfter.getTime() <= nowMs) {
    return {
      action: 'skip',
      reason: 'cert-expired',
      at: cert.notAfter,
      detail: `the certificate expired at ${cert.notAfter.toISOString()}; renew the certificate`,
    };
  }
  if (options.force) return { action: 'renew', reason: 'forced', at: now, detail: 'renewal forced' };
  if (staple.kind === 'missing') return { action: 'renew', reason: 'missing', at: now, detail: 'no staple on disk' };
  if (staple.kind === 'invalid') {
    return { action: 'renew', reason: 'invalid', at: now, detail: `the staple on disk is not usable: ${staple.error}` };
  }
  const f = staple.facts;
  if (f.status !== 'good') {
    return { action: 'renew', reason: 'not-good', at: now, detail: `the staple on disk says ${f.status}` };
  }
  const end = Math.min(f.nextUpdate.getTime(), f.usableUntil?.getTime() ?? Infinity);
  if (end <= nowMs) {
    return {
      action: 'renew',
      reason: 'expired',
      at: new Date(end),
      detail: `the staple expired at ${new Date(end).toISOString()}`,
    };
  }
  const at = refreshPoint(f, cert, policy);
  if (at.getTime() <= nowMs) {
    return {
      action: 'renew',
      reason: 'due',
      at,
      detail: `past the refresh point ${at.toISOString()}; valid until ${new Date(end).toISOString()}`,
    };
  }
  return {
    action: 'keep',
    reason: 'fresh',
    at,
    detail: `fresh until ${at.toISOString()}; valid until ${new Date(end).toISOString()}`,
  };
}

/**
 * The deadline set by a responder's `Cache-Control: max-age` (RFC 5019 §6.2),
 * clamped into the response's own window: a max-age beyond usable-until (or
 * an absurd one, 10^20 seconds) only means "until the response expires", and
 * never makes an invalid date. A negative or non-numeric one is ignored.
 */
export function cacheDeadline(fetchedAt: Date, maxAgeMs: number, usableUntil: Date): Date | undefined {
  if (Number.isNaN(maxAgeMs) || maxAgeMs < 0) return undefined;
  const end = usableUntil.getTime();
  const at = fetchedAt.getTime() + maxAgeMs;
  return new Date(Number.isFinite(at) && at < end ? at : end);
}
