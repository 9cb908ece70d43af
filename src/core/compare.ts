/**
 * A staple only ever gets better (docs/SECURITY.md, "Monotonic staples").
 *
 * One rule, used by every path that replaces a staple: `run`, `fetch --out`,
 * the daemon (all through pipeline/process.ts), the embedded stapler
 * (embed/stapling.ts) and the HAProxy push (outputs/haproxy.ts). A verified
 * answer replaces the current valid staple only when it is better:
 *
 * 1. a later usable-until (nextUpdate, capped by a delegated signer's
 *    notAfter), or
 * 2. the same usable-until and a later thisUpdate, or
 * 3. the same usable-until and thisUpdate, and one answer where the current
 *    staple carries several.
 *
 * A response with answers for other certificates too never replaces a
 * single-answer staple (HAProxy refuses such staples: "contains multiple
 * single responses"). A change of status is not a regression: a `revoked`
 * answer replaces a `good` staple (whether it is written at all is the
 * revocation rule's business, `on_revoked_write`); a `good` answer replaces a
 * `revoked` staple only when it is newer (thisUpdate), so a replayed answer
 * from before the revocation cannot hide it.
 *
 * Pure: no clock, no I/O. The caller has established that `current` is valid
 * now (a staple that is missing, expired or fails verification is not
 * compared: anything verified replaces it).
 */
import { keyHashSha1, parseCertificate } from './certs.js';
import { decodeResponse } from './response.js';

/** What the comparison needs to know about a staple or an answer. */
export interface RankedStaple {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: Date;
  nextUpdate: Date;
  /** nextUpdate capped by a delegated signer's notAfter; nextUpdate when absent. */
  usableUntil?: Date;
  /** Number of SingleResponses in the response (default 1). */
  answers?: number;
}

/** Why an answer is, or is not, better. Stable strings. */
export type ComparisonReason =
  | 'no-current' // nothing usable to compare with
  | 'status-change' // revoked over good, or a newer good over revoked
  | 'longer' // later usable-until
  | 'newer' // same usable-until, later thisUpdate
  | 'single-answer' // same window, one answer instead of several
  | 'shorter' // earlier usable-until
  | 'not-newer' // same usable-until, thisUpdate not later
  | 'multi-answer' // answers for other certificates too, over a single-answer staple
  | 'older-status' // a good answer not newer than a revoked staple
  | 'not-good'; // an `unknown` answer never replaces anything

/** The verdict of {@link compareStaples}. */
export interface StapleComparison {
  better: boolean;
  reason: ComparisonReason;
}

/** nextUpdate capped by a delegated signer's notAfter. */
export function usableUntilOf(s: Pick<RankedStaple, 'nextUpdate' | 'usableUntil'>): Date {
  const u = s.usableUntil;
  return u !== undefined && u.getTime() < s.nextUpdate.getTime() ? u : s.nextUpdate;
}

/** Compares an answer with the current valid staple (undefined: there is none). */
export function compareStaples(current: RankedStaple | undefined, candidate: RankedStaple): StapleComparison {
  if (candidate.status === 'unknown') return { better: false, reason: 'not-good' };
  if (current === undefined || current.status === 'unknown') return { better: true, reason: 'no-current' };
  if (current.status !== candidate.status) {
    if (candidate.status === 'revoked') return { better: true, reason: 'status-change' };
    // good over revoked: only newer information may lift a revocation (certificateHold released)
    return candidate.thisUpdate.getTime() > current.thisUpdate.getTime()
      ? { better: true, reason: 'status-change' }
      : { better: false, reason: 'older-status' };
  }
  const curAnswers = current.answers ?? 1;
  const candAnswers = candidate.answers ?? 1;
  if (curAnswers <= 1 && candAnswers > 1) return { better: false, reason: 'multi-answer' };
  const cu = usableUntilOf(current).getTime();
  const nu = usableUntilOf(candidate).getTime();
  if (nu > cu) return { better: true, reason: 'longer' };
  if (nu < cu) return { better: false, reason: 'shorter' };
  const ct = current.thisUpdate.getTime();
  const nt = candidate.thisUpdate.getTime();
  if (nt > ct) return { better: true, reason: 'newer' };
  if (nt === ct && curAnswers > 1 && candAnswers <= 1) return { better: true, reason: 'single-answer' };
  return { better: false, reason: 'not-newer' };
}

/** True when `candidate` may replace `current` (see the module comment). */
export function isBetterStaple(current: RankedStaple | undefined, candidate: RankedStaple): boolean {
  return compareStaples(current, candidate).better;
}

/**
 * The operator-facing line for an answer that was not better:
 * `kept: the responder's answer (valid until …) is shorter than the staple on disk (valid until …)`.
 * `what` names the current staple ("the staple on disk", "the staple HAProxy has").
 */
export function keptMessage(
  current: RankedStaple,
  candidate: RankedStaple,
  reason: ComparisonReason,
  what = 'the staple on disk',
): string {
  const cu = usableUntilOf(current).toISOString();
  const nu = usableUntilOf(candidate).toISOString();
  switch (reason) {
    case 'multi-answer':
      return `kept: the responder's answer (valid until ${nu}) holds ${candidate.answers ?? 1} answers, which HAProxy refuses ("multiple single responses"); ${what} (valid until ${cu}) holds one`;
    case 'older-status':
      return `kept: the responder's good answer (thisUpdate ${candidate.thisUpdate.toISOString()}) is not newer than the REVOKED staple on disk (thisUpdate ${current.thisUpdate.toISOString()})`;
    case 'not-newer': {
      const older = candidate.thisUpdate.getTime() < current.thisUpdate.getTime() ? 'older than' : 'no newer than';
      return `kept: the responder's answer (valid until ${nu}, thisUpdate ${candidate.thisUpdate.toISOString()}) is ${older} ${what} (valid until ${cu}, thisUpdate ${current.thisUpdate.toISOString()})`;
    }
    case 'not-good':
      return `kept: the responder's answer says ${candidate.status}`;
    default:
      return `kept: the responder's answer (valid until ${nu}) is shorter than ${what} (valid until ${cu})`;
  }
}

/** A verified response, ranked for {@link compareStaples} (its answers counted from its DER). */
export function rankOfVerified(v: {
  status: RankedStaple['status'];
  thisUpdate: Date;
  nextUpdate: Date;
  usableUntil: Date;
  der: Buffer;
}): RankedStaple {
  let answers = 1;
  try {
    answers = decodeResponse(v.der).basic?.singles.length ?? 1;
  } catch {
    // verified from these bytes: cannot happen
  }
  return { status: v.status, thisUpdate: v.thisUpdate, nextUpdate: v.nextUpdate, usableUntil: v.usableUntil, answers };
}

/** A staple's rank from its bytes alone, and the certificate it answers for (serial and issuer key hash). */
export interface StapleBytesRank extends RankedStaple {
  /** `<hash OID>:<issuer key hash hex>:<serial hex>` of its first answer. */
  certId: string;
}

/**
 * Ranks staple bytes without the certificate (the HAProxy push compares what
 * it pushed before with what it is about to push): the first answer's times,
 * usable-until capped by the notAfter of an included certificate named by
 * the responder ID (the delegated signer). Undefined when the bytes are not
 * a successful response or have no nextUpdate.
 */
export function rankOfBytes(der: Buffer): StapleBytesRank | undefined {
  let decoded;
  try {
    decoded = decodeResponse(der);
  } catch {
    return undefined;
  }
  const basic = decoded.basic;
  const first = basic?.singles[0];
  if (!basic || !first?.nextUpdate) return undefined;
  let usableUntil = first.nextUpdate;
  const rid = basic.responderId;
  for (const c of basic.certs) {
    let cert;
    try {
      cert = parseCertificate(c);
    } catch {
      continue;
    }
    const named = 'byName' in rid ? cert.subjectDer.equals(rid.byName) : keyHashSha1(cert).equals(rid.byKey);
    if (named && cert.notAfter.getTime() < usableUntil.getTime()) usableUntil = cert.notAfter;
  }
  return {
    status: first.status,
    thisUpdate: first.thisUpdate,
    nextUpdate: first.nextUpdate,
    usableUntil,
    answers: basic.singles.length,
    certId: `${first.hashAlgorithm}:${first.issuerKeyHash.toString('hex')}:${first.serial.toString('hex')}`,
  };
}
