import { describe, expect, it } from 'vitest';
import type { StapleFacts, StapleState } from '../../src/core/policy.js';
import { classifyStaple, usableAt, usableUntil } from '../../src/core/usability.js';
import type { VerifiedResponse } from '../../src/core/verify.js';
import { summarize } from '../../src/pipeline/context.js';
import { certificateState } from '../../src/status/page.js';
import { D, H, at, cert, facts, t0 } from '../helpers/staple-times.js';

/** A staple signed by a delegated responder whose certificate expires a day before nextUpdate. */
const delegated: StapleFacts = { ...facts, usableUntil: at(3 * D) };
const valid = (f: StapleFacts): StapleState => ({ kind: 'valid', facts: f });

describe('usableUntil', () => {
  it('is nextUpdate, capped by a delegated signer', () => {
    expect(usableUntil(facts)).toEqual(at(4 * D));
    expect(usableUntil(delegated)).toEqual(at(3 * D));
    expect(usableUntil({ ...facts, usableUntil: at(9 * D) })).toEqual(at(4 * D));
  });
});

describe('usableAt', () => {
  it('accepts a good staple before its end and refuses it from the end on', () => {
    expect(usableAt(facts, at(4 * D - 1))).toBe(true);
    expect(usableAt(facts, at(4 * D))).toBe(false);
  });
  it('refuses a staple whose delegated signer has expired, even before nextUpdate', () => {
    expect(usableAt(delegated, at(3 * D + H))).toBe(false);
  });
  it('refuses revoked and unknown staples', () => {
    expect(usableAt({ ...facts, status: 'revoked' }, at(H))).toBe(false);
    expect(usableAt({ ...facts, status: 'unknown' }, at(H))).toBe(false);
  });
  it('refuses a thisUpdate beyond the skew and an expired certificate, when asked', () => {
    const future = { ...facts, thisUpdate: at(10 * 60_000) };
    expect(usableAt(future, t0)).toBe(true);
    expect(usableAt(future, t0, { skewMs: 5 * 60_000 })).toBe(false);
    expect(usableAt(facts, at(H), { cert: { notBefore: at(-D), notAfter: at(H) } })).toBe(false);
  });
});

describe('classifyStaple', () => {
  it('names each health in order', () => {
    const c = (s: StapleState, now: Date, expiringMs = 0) => classifyStaple(s, cert, {}, now, { expiringMs }).health;
    expect(c({ kind: 'missing' }, t0)).toBe('missing');
    expect(c({ kind: 'missing' }, at(61 * D))).toBe('cert-expired');
    expect(c({ kind: 'invalid', error: { code: 'OCSP_BAD_SIGNATURE', message: 'x' } }, t0)).toBe('invalid');
    expect(c({ kind: 'invalid', error: { code: 'OCSP_STALE', message: 'x' } }, t0)).toBe('expired');
    expect(c(valid({ ...facts, status: 'revoked' }), at(H))).toBe('revoked');
    expect(c(valid({ ...facts, status: 'unknown' }), at(H))).toBe('unknown-status');
    expect(c(valid(facts), at(H))).toBe('good');
    expect(c(valid(facts), at(3 * D))).toBe('due');
    expect(c(valid(facts), at(3 * D), 2 * D)).toBe('expiring');
    expect(c(valid(delegated), at(3 * D + H))).toBe('expired');
  });
  it('is due from the refresh point on, or once past a grace', () => {
    const c = (now: Date, dueGraceMs?: number) =>
      classifyStaple(valid(facts), cert, {}, now, dueGraceMs === undefined ? {} : { dueGraceMs }).health;
    expect(c(at(2 * D - 1))).toBe('good');
    expect(c(at(2 * D))).toBe('due');
    expect(c(at(2 * D + H), H)).toBe('good');
    expect(c(at(2 * D + H + 1), H)).toBe('due');
  });
  it('reports the usable end, the time left and the refresh point', () => {
    const u = classifyStaple(valid(delegated), cert, {}, at(H));
    expect(u).toMatchObject({ health: 'good', usable: true, usableUntil: at(3 * D), leftMs: 3 * D - H });
    expect(u.refreshAt).toEqual(at(1.5 * D));
    const bad = classifyStaple({ kind: 'invalid', error: { code: 'OCSP_MALFORMED', message: 'm' } }, cert, {}, t0);
    expect(bad).toMatchObject({ usable: false, leftMs: 0, error: { code: 'OCSP_MALFORMED', message: 'm' } });
  });
});

describe('the status page and the staple summary use the same end', () => {
  it('summarize carries usableUntil', () => {
    const v = { ...delegated, responder: 'CN=r', delegated: true, warnings: [], der: Buffer.alloc(0) };
    const s = summarize(v as VerifiedResponse);
    expect(s.usableUntil).toBe(at(3 * D).toISOString());
    expect(s.nextUpdate).toBe(at(4 * D).toISOString());
  });
  it('a staple past its delegated signer but before nextUpdate is expired, not good', () => {
    const staple = {
      status: 'good' as const,
      nextUpdate: at(4 * D).toISOString(),
      usableUntil: at(3 * D).toISOString(),
    };
    const f = { disabled: false, attempted: true, consecutiveFailures: 0, staple, nextRefresh: at(10 * D) };
    expect(certificateState(f, at(2 * D))).toBe('good');
    expect(certificateState(f, at(3 * D + H))).toBe('expired');
  });
});
