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
import type { CacheRecord } from './verdict-cache.js';

/**
 * True when every time-dependent rule of core/verify.ts `verifyResponse` holds at
 * `now` for a cached verdict (the others were proved when it was recorded):
 * a delegated signer valid (RFC 6960 §4.2.2.2), thisUpdate not in the
 * future beyond the skew nor older than a year, producedAt not in the
 * future, nextUpdate ahead (RFC 5019 §4), the certificate
 * not expired. When one fails, the staple is verified from scratch, so the
 * error reported is the ordinary one.
 */
export function isRecordValidAt(r: CacheRecord, now: Date, skewMs: number = DEFAULT_SKEW_MS): boolean {
  const t = now.getTime();
  if (r.dlg === 1 && ((r.sna as number) <= t || (r.snb as number) > t + skewMs)) return false;
  if (r.tu > t + skewMs) return false;
  if (r.tu < t - MAX_THIS_UPDATE_AGE_MS) return false;
  if (r.pa > t + skewMs) return false;
  if (r.nu <= t) return false;
  if (r.na <= t) return false;
  return true;
}

/**
 * A window inside which a delegated signer is valid: the intersection over
 * every included certificate that could be it (same subject as the one
 * named). Being conservative only sends a staple to full verification earlier.
 */
function signerWindow(decoded: DecodedResponse, responder: string): { snb: number; sna: number } | undefined {
  let snb = -Infinity;
  let sna = Infinity;
  let found = false;
  for (const der of decoded.basic?.certs ?? []) {
    const c = parseIncluded(der);
    if (!c || c.subject !== responder) continue;
    found = true;
    snb = Math.max(snb, c.notBefore.getTime());
    sna = Math.min(sna, c.notAfter.getTime());
  }
  return found ? { snb, sna } : undefined;
}

/** The cache record for a verified staple, or undefined when it cannot be described safely. */
export function recordFor(
  key: string,
  stapleHash: string,
  cert: Certificate,
  v: VerifiedResponse,
  decoded: DecodedResponse,
): Omit<CacheRecord, 'seen'> | undefined {
  const r: Omit<CacheRecord, 'seen'> = {
    c: key,
    s: stapleHash,
    nb: cert.notBefore.getTime(),
    na: cert.notAfter.getTime(),
    subj: cert.subject,
    st: v.status,
    tu: v.thisUpdate.getTime(),
    nu: v.nextUpdate.getTime(),
    pa: v.producedAt.getTime(),
    uu: v.usableUntil.getTime(),
    rsp: v.responder,
    dlg: v.delegated ? 1 : 0,
    w: [...v.warnings],
  };
  if (v.delegated) {
    const w = signerWindow(decoded, v.responder);
    if (!w) return undefined;
    r.snb = w.snb;
    r.sna = w.sna;
  }
  if (v.revocationTime) r.rt = v.revocationTime.getTime();
  if (v.revocationReason !== undefined) r.rr = v.revocationReason;
  if (cert.ocspUrls.length > 0) r.ou = [...cert.ocspUrls];
  if (cert.crlUrls.length > 0) r.du = [...cert.crlUrls];
  if (cert.mustStaple) r.ms = 1;
  if (cert.noRevAvail) r.nra = 1;
  return r;
}

export function recordFacts(r: CacheRecord): StapleFacts {
  return {
    status: r.st,
    thisUpdate: new Date(r.tu),
    nextUpdate: new Date(r.nu),
    producedAt: new Date(r.pa),
    usableUntil: new Date(r.uu),
  };
}

export function recordSummary(r: CacheRecord): StapleSummary {
  return {
    status: r.st,
    thisUpdate: new Date(r.tu).toISOString(),
    nextUpdate: new Date(r.nu).toISOString(),
    producedAt: new Date(r.pa).toISOString(),
    usableUntil: new Date(r.uu).toISOString(),
    responder: r.rsp,
  };
}
