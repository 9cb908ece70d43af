/**
 * Verdict-cache records (pipeline/verdict-cache.ts): building one from a
 * verification, and using one at `now`. A record holds what a verification
 * proved about a staple that does not depend on time; every time-dependent
 * rule is applied again at `now` ({@link isRecordValidAt}), so a record
 * never changes a decision.
 */
import type { Certificate } from '../core/certs.js';
import type { StapleFacts } from '../core/policy.js';
import type { DecodedResponse } from '../core/response.js';
import { DEFAULT_SKEW_MS, MAX_THIS_UPDATE_AGE_MS, type VerifiedResponse } from '../core/verify.js';
import { parseIncluded } from './check-ahead.js';
import type { StapleSummary } from './context.js';
import type { PassMemo } from './pass-memo.js';
import type { VerdictRecord } from './verdict-cache.js';

/**
 * True when every time-dependent rule of core/verify.ts `verifyResponse` holds at
 * `now` for a cached verdict (the others were proved when it was recorded):
 * a delegated signer valid (RFC 6960 §4.2.2.2), thisUpdate not in the
 * future beyond the skew nor older than a year, producedAt not in the
 * future, nextUpdate ahead (RFC 5019 §4), the certificate
 * not expired. When one fails, the staple is verified from scratch, so the
 * error reported is the ordinary one.
 */
export function isRecordValidAt(r: VerdictRecord, now: Date, skewMs: number = DEFAULT_SKEW_MS): boolean {
  const t = now.getTime();
  if (r.delegated && ((r.signerNotAfter as number) <= t || (r.signerNotBefore as number) > t + skewMs)) return false;
  if (r.thisUpdate > t + skewMs) return false;
  if (r.thisUpdate < t - MAX_THIS_UPDATE_AGE_MS) return false;
  if (r.producedAt > t + skewMs) return false;
  if (r.nextUpdate <= t) return false;
  if (r.certNotAfter <= t) return false;
  return true;
}

/**
 * A window inside which a delegated signer is valid: the intersection over
 * every included certificate that could be it (same subject as the one
 * named). Being conservative only sends a staple to full verification earlier.
 */
function signerWindow(
  decoded: DecodedResponse,
  responder: string,
  pass: PassMemo | undefined,
): { notBefore: number; notAfter: number } | undefined {
  let notBefore = -Infinity;
  let notAfter = Infinity;
  let found = false;
  for (const der of decoded.basic?.certs ?? []) {
    const c = parseIncluded(der, pass);
    if (!c || c.subject !== responder) continue;
    found = true;
    notBefore = Math.max(notBefore, c.notBefore.getTime());
    notAfter = Math.min(notAfter, c.notAfter.getTime());
  }
  return found ? { notBefore, notAfter } : undefined;
}

/** The cache record for a verified staple, or undefined when it cannot be described safely. */
export function recordFor(
  sourcesKey: string,
  stapleHash: string,
  cert: Certificate,
  v: VerifiedResponse,
  decoded: DecodedResponse,
  pass: PassMemo | undefined,
): Omit<VerdictRecord, 'seenDay'> | undefined {
  const r: Omit<VerdictRecord, 'seenDay'> = {
    sourcesKey,
    stapleHash,
    certNotBefore: cert.notBefore.getTime(),
    certNotAfter: cert.notAfter.getTime(),
    subject: cert.subject,
    status: v.status,
    thisUpdate: v.thisUpdate.getTime(),
    nextUpdate: v.nextUpdate.getTime(),
    producedAt: v.producedAt.getTime(),
    usableUntil: v.usableUntil.getTime(),
    responder: v.responder,
    delegated: v.delegated,
    warnings: [...v.warnings],
  };
  if (v.delegated) {
    const w = signerWindow(decoded, v.responder, pass);
    if (!w) return undefined;
    r.signerNotBefore = w.notBefore;
    r.signerNotAfter = w.notAfter;
  }
  if (v.revocationTime) r.revocationTime = v.revocationTime.getTime();
  if (v.revocationReason !== undefined) r.revocationReason = v.revocationReason;
  if (cert.ocspUrls.length > 0) r.ocspUrls = [...cert.ocspUrls];
  if (cert.crlUrls.length > 0) r.crlUrls = [...cert.crlUrls];
  if (cert.mustStaple) r.mustStaple = true;
  if (cert.noRevAvail) r.noRevAvail = true;
  return r;
}

/** The staple facts of a record, as a decision takes them. */
export function recordFacts(r: VerdictRecord): StapleFacts {
  return {
    status: r.status,
    thisUpdate: new Date(r.thisUpdate),
    nextUpdate: new Date(r.nextUpdate),
    producedAt: new Date(r.producedAt),
    usableUntil: new Date(r.usableUntil),
  };
}

/** The staple summary of a record, for output. */
export function recordSummary(r: VerdictRecord): StapleSummary {
  return {
    status: r.status,
    thisUpdate: new Date(r.thisUpdate).toISOString(),
    nextUpdate: new Date(r.nextUpdate).toISOString(),
    producedAt: new Date(r.producedAt).toISOString(),
    usableUntil: new Date(r.usableUntil).toISOString(),
    responder: r.responder,
  };
}
