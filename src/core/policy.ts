/**
 * When to refresh a staple: decisions as data (`{ action, reason, at }`),
 * taking `now` as an argument (cert-manager, lego habits).
 *
 * Two formulas are implemented (docs/ARCHITECTURE.md, refresh point):
 * - ocspbot: `end = min(cert.notAfter, nextUpdate)`,
 *   `start = max(cert.notBefore, thisUpdate)`; refresh at the earliest of
 *   `end - minimum_validity` and `start + (end - start) * (1 - P/100)`.
 * - ocsprenewer: refresh at `producedAt + (nextUpdate - producedAt) * T1`
 *   (producedAt taken no earlier than thisUpdate).
 * With neither ocspbot key set, T1 = `refreshAt` (default 0.5: the halfway
 * point that Sleevi's recommendations and certmagic use).
 *
 * Whatever the formula and the response say, the refresh point is then
 * bounded (docs/SECURITY.md, "Sanity on times"):
 * - never later than `thisUpdate + MAX_REFRESH_INTERVAL_MS` (4 days, the
 *   CA/Browser Forum's longest update interval for OCSP responses): a
 *   response valid for ten years is still refreshed every few days;
 * - never later than `usableUntil - margin` (a tenth of the window, at most
 *   an hour): a staple is always refreshed before it stops being usable;
 * - never earlier than `thisUpdate`: a producedAt far in the past or future
 *   cannot push the point out of the response's own window.
 */

import type { ErrorCode } from './errors.js';

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
  | { kind: 'missing' }
  | { kind: 'invalid'; error: { code: ErrorCode; message: string } }
  | { kind: 'valid'; facts: StapleFacts };

/**
 * When a staple stops being usable: nextUpdate, capped by a delegated
 * signer's notAfter (RFC 6960 §4.2.2.2). The one definition; the rest of the
 * usability rules are in core/usability.ts.
 */
export function usableUntil(facts: { nextUpdate: Date; usableUntil?: Date | undefined }): Date {
  const cap = facts.usableUntil;
  return cap !== undefined && cap.getTime() < facts.nextUpdate.getTime() ? cap : facts.nextUpdate;
}

/** The longest time between thisUpdate and the refresh point, whatever the response says: 4 days. */
export const MAX_REFRESH_INTERVAL_MS = 4 * 24 * 3600_000;

/** The most the refresh point keeps before usableUntil: a tenth of the window, at most 1 hour. */
export const MAX_REFRESH_MARGIN_MS = 3600_000;

/** Computes the refresh point of a valid staple under `policy`. */
export function refreshPoint(facts: StapleFacts, cert: CertWindow, policy: RefreshPolicy = DEFAULT_POLICY): Date {
  const nextUpdate = usableUntil(facts).getTime();
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
    // producedAt is when the responder signed, never before thisUpdate in a sane response
    const produced = Math.max(facts.producedAt.getTime(), facts.thisUpdate.getTime());
    at = produced + (nextUpdate - produced) * t1;
  }
  if (facts.cacheUntil) at = Math.min(at, facts.cacheUntil.getTime());
  // Sanity: whatever producedAt, max-age or the formula say, the point lies in
  // [thisUpdate, usableUntil - margin] and at most MAX_REFRESH_INTERVAL_MS after thisUpdate.
  const start = facts.thisUpdate.getTime();
  const margin = Math.min(MAX_REFRESH_MARGIN_MS, Math.max(0, nextUpdate - start) / 10);
  if (!Number.isFinite(at)) at = start; // NaN (an invalid date) or ±Infinity: refresh now
  at = Math.min(at, nextUpdate - margin, start + MAX_REFRESH_INTERVAL_MS);
  at = Math.max(at, start);
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
    return {
      action: 'renew',
      reason: 'invalid',
      at: now,
      detail: `the staple on disk is not usable: ${staple.error.code}: ${staple.error.message}`,
    };
  }
  const f = staple.facts;
  if (f.status !== 'good') {
    return { action: 'renew', reason: 'not-good', at: now, detail: `the staple on disk says ${f.status}` };
  }
  const end = usableUntil(f).getTime();
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
