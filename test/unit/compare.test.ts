/** The one monotonic rule (src/core/compare.ts): a staple only gets better. */
import { describe, expect, it } from 'vitest';
import { compareStaples, isBetterStaple, keptMessage, rankOfBytes, type RankedStaple } from '../../src/core/compare.js';
import { cacheDeadline } from '../../src/core/policy.js';
import {
  buildTestPki,
  certIdFor,
  goodResponseFor,
  mintCert,
  mintOcspResponse,
  OID,
  sharedKey,
} from '../helpers/mint.js';

const T = Date.UTC(2026, 5, 1);
const H = 3_600_000;
const at = (h: number): Date => new Date(T + h * H);
const good = (tu: number, nu: number, extra: Partial<RankedStaple> = {}): RankedStaple => ({
  status: 'good',
  thisUpdate: at(tu),
  nextUpdate: at(nu),
  ...extra,
});

describe('compareStaples', () => {
  it('anything verified replaces nothing', () => {
    expect(compareStaples(undefined, good(0, 1))).toEqual({ better: true, reason: 'no-current' });
  });

  it('a later usable-until is better; an earlier one is not, whatever thisUpdate says', () => {
    expect(compareStaples(good(0, 168), good(1, 169)).reason).toBe('longer');
    expect(compareStaples(good(0, 168), good(100, 100.04))).toEqual({ better: false, reason: 'shorter' });
  });

  it('the same usable-until: a later thisUpdate is better, the same or older is not', () => {
    expect(compareStaples(good(0, 168), good(1, 168)).reason).toBe('newer');
    expect(compareStaples(good(0, 168), good(0, 168))).toEqual({ better: false, reason: 'not-newer' });
    expect(compareStaples(good(0, 168), good(-1, 168))).toEqual({ better: false, reason: 'not-newer' });
  });

  it('usable-until is nextUpdate capped by the delegated signer', () => {
    // newer and the same nextUpdate, but its signer expires in an hour
    expect(compareStaples(good(0, 168), good(1, 168, { usableUntil: at(2) })).reason).toBe('shorter');
    // the staple on disk is the one capped: a fresh answer with an ordinary signer is better
    expect(compareStaples(good(0, 168, { usableUntil: at(2) }), good(1, 100)).reason).toBe('longer');
  });

  it('a multi-answer response never replaces a single-answer staple; one answer replaces several', () => {
    expect(compareStaples(good(0, 168), good(1, 999, { answers: 2 }))).toEqual({
      better: false,
      reason: 'multi-answer',
    });
    expect(compareStaples(good(0, 168, { answers: 3 }), good(0, 168)).reason).toBe('single-answer');
    expect(compareStaples(good(0, 168, { answers: 3 }), good(1, 169, { answers: 3 })).reason).toBe('longer');
  });

  it('revocation is a status change: revoked replaces good; good replaces revoked only when newer', () => {
    const revoked = (tu: number, nu: number): RankedStaple => ({ ...good(tu, nu), status: 'revoked' });
    expect(compareStaples(good(0, 168), revoked(1, 2))).toEqual({ better: true, reason: 'status-change' });
    expect(compareStaples(revoked(5, 168), good(1, 999))).toEqual({ better: false, reason: 'older-status' });
    expect(compareStaples(revoked(5, 168), good(6, 7)).reason).toBe('status-change');
    expect(compareStaples(revoked(5, 168), revoked(4, 168)).better).toBe(false);
  });

  it('an unknown answer replaces nothing; an unknown staple is no bar', () => {
    expect(isBetterStaple(undefined, { ...good(0, 1), status: 'unknown' })).toBe(false);
    expect(isBetterStaple({ ...good(0, 168), status: 'unknown' }, good(-5, 1))).toBe(true);
  });

  it('says what was kept and why', () => {
    expect(keptMessage(good(0, 168), good(1, 1), 'shorter')).toBe(
      `kept: the responder's answer (valid until ${at(1).toISOString()}) is shorter than the staple on disk (valid until ${at(168).toISOString()})`,
    );
    expect(keptMessage(good(0, 168), good(-1, 168), 'not-newer')).toContain('is older than the staple on disk');
    expect(keptMessage(good(0, 168), good(0, 168), 'not-newer')).toContain('is no newer than the staple on disk');
    expect(keptMessage(good(0, 168), good(1, 999, { answers: 2 }), 'multi-answer')).toContain('holds 2 answers');
  });
});

describe('rankOfBytes', () => {
  it('reads the first answer, caps usable-until by the included delegated signer, counts the answers', () => {
    const pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: new Date(T) });
    const short = mintCert({
      subjectCN: 'short responder',
      issuer: pki.root,
      key: sharedKey('ec-p256', 'responder-short'),
      notBefore: at(-24),
      notAfter: at(1),
      eku: [OID.kpOcspSigning],
      keyUsage: ['digitalSignature'],
    });
    const der = goodResponseFor(pki, pki.leaves[0]!, new Date(T), { signer: short, includeSignerCert: true });
    const r = rankOfBytes(der)!;
    expect(r.usableUntil?.getTime()).toBe(at(1).getTime());
    expect(r.answers).toBe(1);
    expect(r.certId).toContain(pki.leaves[0]!.serial.toString('hex'));
    const multi = mintOcspResponse({
      signer: pki.signer,
      producedAt: new Date(T),
      singles: pki.leaves.map((l) => ({
        certId: certIdFor(l.der, pki.root.der),
        status: 'good' as const,
        thisUpdate: new Date(T),
        nextUpdate: at(168),
      })),
    });
    expect(rankOfBytes(multi)?.answers).toBe(3);
    expect(rankOfBytes(Buffer.from('junk'))).toBeUndefined();
  });
});

describe('cacheDeadline (Cache-Control max-age)', () => {
  it('is clamped into the response window and is always a valid date', () => {
    expect(cacheDeadline(at(0), 60_000, at(168))).toEqual(new Date(T + 60_000));
    expect(cacheDeadline(at(0), 1e23, at(168))).toEqual(at(168));
    expect(cacheDeadline(at(0), Infinity, at(168))).toEqual(at(168));
    expect(cacheDeadline(at(0), Number.NaN, at(168))).toBeUndefined();
    expect(cacheDeadline(at(0), -5, at(168))).toBeUndefined();
  });
});
