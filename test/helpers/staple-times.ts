/**
 * One staple and one certificate on a fixed timeline, for the tests of the
 * refresh policy and of usability (core/policy.ts, core/usability.ts).
 */
import type { StapleFacts } from '../../src/core/policy.js';

export const H = 3600_000;
export const D = 24 * H;
export const t0 = new Date('2026-11-20T00:00:00Z');
/** `t0` plus `ms`. */
export const at = (ms: number): Date => new Date(t0.getTime() + ms);
/** A certificate valid from 30 days before `t0` to 60 days after. */
export const cert = { notBefore: at(-30 * D), notAfter: at(60 * D) };
/** A good staple produced at `t0`, valid for four days. */
export const facts: StapleFacts = { status: 'good', thisUpdate: t0, producedAt: t0, nextUpdate: at(4 * D) };
