import { describe, expect, it } from 'vitest';
import { decideRefresh, refreshPoint } from '../../src/core/policy.js';
import { D, H, at, cert, facts, t0 } from '../helpers/staple-times.js';

describe('refreshPoint', () => {
  it('defaults to the halfway point of producedAt..nextUpdate', () => {
    expect(refreshPoint(facts, cert, {})).toEqual(at(2 * D));
  });
  it('uses the ocsprenewer T1 ratio', () => {
    expect(refreshPoint(facts, cert, { refreshAt: 0.75 })).toEqual(at(3 * D));
    expect(refreshPoint({ ...facts, producedAt: at(D) }, cert, { refreshAt: 0.5 })).toEqual(at(2.5 * D));
  });
  it('uses ocspbot minimum_validity: end - minimum', () => {
    expect(refreshPoint(facts, cert, { minimumValidityMs: 3 * D })).toEqual(at(D));
  });
  it('uses ocspbot percentage: start + (end-start)*(1-P/100)', () => {
    expect(refreshPoint(facts, cert, { minimumValidityPercentage: 25 })).toEqual(at(3 * D));
  });
  it('takes the earlier of both ocspbot candidates and ignores refreshAt', () => {
    expect(
      refreshPoint(facts, cert, { minimumValidityMs: 0.5 * D, minimumValidityPercentage: 50, refreshAt: 0.9 }),
    ).toEqual(at(2 * D));
    expect(refreshPoint(facts, cert, { minimumValidityMs: 3.5 * D, minimumValidityPercentage: 50 })).toEqual(
      at(0.5 * D),
    );
  });
  it('caps the window at the certificate notAfter and notBefore (ocspbot)', () => {
    const shortCert = { notBefore: at(D), notAfter: at(3 * D) };
    // start = max(notBefore, thisUpdate) = 1d, end = min(notAfter, nextUpdate) = 3d
    expect(refreshPoint(facts, shortCert, { minimumValidityPercentage: 50 })).toEqual(at(2 * D));
    expect(refreshPoint(facts, shortCert, { minimumValidityMs: D })).toEqual(at(2 * D));
  });
  it('caps at a delegated signer expiry and a Cache-Control deadline (earlier only)', () => {
    expect(refreshPoint({ ...facts, usableUntil: at(2 * D) }, cert, {})).toEqual(at(D));
    expect(refreshPoint({ ...facts, cacheUntil: at(H) }, cert, {})).toEqual(at(H));
    expect(refreshPoint({ ...facts, cacheUntil: at(10 * D) }, cert, {})).toEqual(at(2 * D));
  });
});

describe('refreshPoint sanity (docs/SECURITY.md "Sanity on times")', () => {
  it('never schedules later than thisUpdate + 4 days, whatever the window', () => {
    const long = { ...facts, nextUpdate: at(3650 * D) };
    expect(refreshPoint(long, cert, {})).toEqual(at(4 * D));
    expect(refreshPoint(long, cert, { minimumValidityPercentage: 10 })).toEqual(at(4 * D));
  });
  it('never later than usableUntil minus a margin, never earlier than thisUpdate', () => {
    // producedAt far in the future: the ocsprenewer formula would point past nextUpdate
    expect(refreshPoint({ ...facts, producedAt: at(1000 * D) }, cert, {}).getTime()).toBeLessThanOrEqual(
      at(4 * D - H).getTime(),
    );
    // producedAt long before thisUpdate is taken as thisUpdate
    expect(refreshPoint({ ...facts, producedAt: at(-10000 * D) }, cert, {})).toEqual(at(2 * D));
    // minimum_validity longer than the window: due at thisUpdate, not before it
    expect(refreshPoint(facts, cert, { minimumValidityMs: 30 * D })).toEqual(t0);
    // a short window keeps a tenth of it as margin
    const short = { ...facts, nextUpdate: at(10 * 60_000) };
    expect(refreshPoint(short, cert, { refreshAt: 0.95 })).toEqual(at(9 * 60_000));
  });
});

describe('decideRefresh', () => {
  const valid = { kind: 'valid', facts } as const;
  it('renews a missing staple now', () => {
    const d = decideRefresh({ kind: 'missing' }, cert, {}, t0);
    expect(d).toMatchObject({ action: 'renew', reason: 'missing', at: t0 });
  });
  it('renews an invalid staple and says why', () => {
    const d = decideRefresh({ kind: 'invalid', error: { code: 'OCSP_BAD_SIGNATURE', message: 'x' } }, cert, {}, t0);
    expect(d.action).toBe('renew');
    expect(d.reason).toBe('invalid');
    expect(d.detail).toContain('OCSP_BAD_SIGNATURE: x');
  });
  it('keeps a fresh staple until the refresh point', () => {
    const d = decideRefresh(valid, cert, {}, at(H));
    expect(d).toMatchObject({ action: 'keep', reason: 'fresh', at: at(2 * D) });
  });
  it('renews exactly at the refresh point', () => {
    expect(decideRefresh(valid, cert, {}, at(2 * D)).reason).toBe('due');
    expect(decideRefresh(valid, cert, {}, at(2 * D - 1)).reason).toBe('fresh');
  });
  it('renews an expired staple with reason expired', () => {
    expect(decideRefresh(valid, cert, {}, at(4 * D)).reason).toBe('expired');
  });
  it('renews a staple that is not good', () => {
    expect(decideRefresh({ kind: 'valid', facts: { ...facts, status: 'revoked' } }, cert, {}, at(H)).reason).toBe(
      'not-good',
    );
  });
  it('forces renewal on request', () => {
    expect(decideRefresh(valid, cert, {}, at(H), { force: true })).toMatchObject({ action: 'renew', reason: 'forced' });
  });
  it('skips an expired certificate, even when forced', () => {
    const old = { notBefore: at(-90 * D), notAfter: at(-D) };
    expect(decideRefresh(valid, old, {}, t0, { force: true })).toMatchObject({
      action: 'skip',
      reason: 'cert-expired',
    });
  });
});
