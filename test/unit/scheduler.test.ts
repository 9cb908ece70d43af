import { describe, expect, it } from 'vitest';
import type { Clock } from '../../src/io/clock.js';
import {
  BACKOFF_MAX_MS,
  EXPIRY_MARGIN_MS,
  HostBackoff,
  MIN_DELAY_MS,
  PAST_REFRESH_DELAY_MS,
  TRY_LATER_MIN_MS,
  backoffDelay,
  isHostFailure,
  jitter,
  planNextAttempt,
  Schedule,
} from '../../src/pipeline/backoff.js';

const MIN = 60_000;
const H = 60 * MIN;
const D = 24 * H;
const t0 = new Date('2026-11-20T00:00:00Z');
const at = (ms: number): Date => new Date(t0.getTime() + ms);

/** A clock whose time moves only when the test says so; timers fire in time order. */
class FakeClock implements Clock {
  private t = t0.getTime();
  private seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  now(): Date {
    return new Date(this.t);
  }
  setTimer(ms: number, fn: () => void): () => void {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return () => this.timers.delete(id);
  }
  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

const low = (): number => 0; // jitter -10 %
const high = (): number => 0.999999; // jitter +10 %
const mid = (): number => 0.5; // no jitter

describe('jitter', () => {
  it('stays within ±10 % of the wait', () => {
    expect(jitter(1000, low)).toBe(900);
    expect(jitter(1000, mid)).toBe(1000);
    expect(jitter(1000, high)).toBeCloseTo(1100, 3);
    for (let i = 0; i < 1000; i++) {
      const j = jitter(H, Math.random);
      expect(j).toBeGreaterThanOrEqual(0.9 * H);
      expect(j).toBeLessThanOrEqual(1.1 * H);
    }
  });
});

describe('planNextAttempt after a success', () => {
  it('plans the refresh point with ±10 % of the remaining wait', () => {
    const refreshAt = at(2 * D);
    expect(planNextAttempt({ ok: true, refreshAt, expiresAt: at(4 * D) }, t0, mid)).toEqual({
      at: refreshAt,
      reason: 'refresh',
    });
    expect(planNextAttempt({ ok: true, refreshAt, expiresAt: at(4 * D) }, t0, low).at).toEqual(at(1.8 * D));
    const late = planNextAttempt({ ok: true, refreshAt, expiresAt: at(4 * D) }, t0, high).at.getTime();
    expect(late).toBeLessThanOrEqual(at(2.2 * D).getTime());
    expect(late).toBeGreaterThan(at(2.19 * D).getTime());
  });
  it('jitter bounds hold for any random value', () => {
    for (let i = 0; i < 500; i++) {
      const r = planNextAttempt(
        { ok: true, refreshAt: at(10 * H), expiresAt: at(40 * H) },
        t0,
        Math.random,
      ).at.getTime();
      expect(r).toBeGreaterThanOrEqual(at(9 * H).getTime());
      expect(r).toBeLessThanOrEqual(at(11 * H).getTime());
    }
  });
  it('looks again hourly when already past the refresh point', () => {
    const p = planNextAttempt({ ok: true, refreshAt: at(-H), expiresAt: at(3 * D) }, t0, mid);
    expect(p).toEqual({ at: at(PAST_REFRESH_DELAY_MS), reason: 'past-refresh' });
  });
  it('never plans past the expiry margin, and never sooner than the minimum delay', () => {
    // refresh point 1 min before expiry (minimum_validity close to the whole window): +10 % jitter would overshoot
    const p = planNextAttempt({ ok: true, refreshAt: at(10 * H), expiresAt: at(10 * H + 2 * MIN) }, t0, high);
    expect(p).toEqual({ at: at(10 * H + 2 * MIN - EXPIRY_MARGIN_MS), reason: 'expiring' });
    const soon = planNextAttempt({ ok: true, refreshAt: at(10 * 1000), expiresAt: at(20 * 1000) }, t0, mid);
    expect(soon.at).toEqual(at(MIN_DELAY_MS));
  });
});

describe('planNextAttempt after a failure', () => {
  it('backs off 1, 2, 4, 8, 16, 32 min, then hourly', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 20, 1000].map((n) => backoffDelay(n))).toEqual([
      1 * MIN,
      2 * MIN,
      4 * MIN,
      8 * MIN,
      16 * MIN,
      32 * MIN,
      H,
      H,
      H,
      H,
    ]);
    const plans = [1, 2, 3, 4, 5, 6, 7, 8].map((n) =>
      planNextAttempt({ ok: false, code: 'HTTP_NETWORK', failures: n }, t0, mid),
    );
    expect(plans.map((p) => p.at.getTime() - t0.getTime())).toEqual([1, 2, 4, 8, 16, 32, 60, 60].map((m) => m * MIN));
    expect(plans.every((p) => p.reason === 'backoff')).toBe(true);
  });
  it('jitters the backoff by ±10 % but never below one minute', () => {
    for (let n = 1; n <= 10; n++) {
      const base = backoffDelay(n);
      for (const r of [low, high, Math.random]) {
        const d = planNextAttempt({ ok: false, code: 'HTTP_TIMEOUT', failures: n }, t0, r).at.getTime() - t0.getTime();
        expect(d).toBeGreaterThanOrEqual(Math.max(0.9 * base, MIN_DELAY_MS));
        expect(d).toBeLessThanOrEqual(1.1 * base + 1);
      }
    }
  });
  it('waits at least 30 minutes after tryLater', () => {
    for (const r of [low, mid, high]) {
      const p = planNextAttempt({ ok: false, code: 'OCSP_TRY_LATER', failures: 1 }, t0, r);
      expect(p.reason).toBe('try-later');
      expect(p.at.getTime() - t0.getTime()).toBeGreaterThanOrEqual(TRY_LATER_MIN_MS);
      expect(p.at.getTime() - t0.getTime()).toBeLessThanOrEqual(1.1 * TRY_LATER_MIN_MS + 1);
    }
    // after many failures the hourly backoff is longer than 30 min and wins
    expect(planNextAttempt({ ok: false, code: 'OCSP_TRY_LATER', failures: 9 }, t0, mid).at).toEqual(at(H));
    // the responder asked us to stay away: tryLater is not pulled in by an expiring staple
    const expiring = planNextAttempt(
      { ok: false, code: 'OCSP_TRY_LATER', failures: 1, expiresAt: at(10 * MIN) },
      t0,
      mid,
    );
    expect(expiring.at.getTime() - t0.getTime()).toBeGreaterThanOrEqual(TRY_LATER_MIN_MS);
  });
  it('retries before a staple that is about to expire', () => {
    // sixth failure: the backoff says 32 min, but the staple on disk expires in 20 min
    const p = planNextAttempt({ ok: false, code: 'HTTP_NETWORK', failures: 6, expiresAt: at(20 * MIN) }, t0, mid);
    expect(p).toEqual({ at: at(20 * MIN - EXPIRY_MARGIN_MS), reason: 'expiring' });
    // inside the margin: every minute until it expires (never a busy loop)
    const last = planNextAttempt({ ok: false, code: 'HTTP_NETWORK', failures: 7, expiresAt: at(3 * MIN) }, t0, mid);
    expect(last).toEqual({ at: at(MIN_DELAY_MS), reason: 'expiring' });
    // once expired there is nothing left to save: plain backoff
    const gone = planNextAttempt({ ok: false, code: 'HTTP_NETWORK', failures: 7, expiresAt: at(-MIN) }, t0, mid);
    expect(gone).toEqual({ at: at(H), reason: 'backoff' });
  });
  it('retries failures only the operator can fix hourly', () => {
    const p = planNextAttempt({ ok: false, code: 'NO_ISSUER', failures: 1 }, t0, mid);
    expect(p).toEqual({ at: at(BACKOFF_MAX_MS), reason: 'permanent' });
  });
});

describe('HostBackoff', () => {
  it('counts network failures, timeouts, 5xx and tryLater as host failures, not 4xx or bad signatures', () => {
    expect(isHostFailure('HTTP_NETWORK')).toBe(true);
    expect(isHostFailure('HTTP_TIMEOUT')).toBe(true);
    expect(isHostFailure('HTTP_STATUS', 503)).toBe(true);
    expect(isHostFailure('HTTP_STATUS', 404)).toBe(false);
    expect(isHostFailure('OCSP_TRY_LATER')).toBe(true);
    expect(isHostFailure('OCSP_BAD_SIGNATURE')).toBe(false);
  });
  it('blocks a failing host for its backoff, doubling, and forgets it after a success', () => {
    const hb = new HostBackoff(mid);
    const host = 'ocsp.example.test';
    expect(hb.blockedUntil(host, t0)).toBeUndefined();
    expect(hb.recordFailure(host, t0, 'HTTP_NETWORK')).toEqual(at(MIN));
    expect(hb.blockedUntil(host, at(30_000))).toEqual(at(MIN));
    expect(hb.blockedUntil(host, at(MIN))).toBeUndefined();
    expect(hb.recordFailure(host, at(MIN), 'HTTP_TIMEOUT')).toEqual(at(3 * MIN));
    expect(hb.recordFailure(host, at(3 * MIN), 'HTTP_STATUS')).toEqual(at(7 * MIN));
    expect(hb.failuresOf(host)).toBe(3);
    expect(hb.blockedUntil('other.test', at(4 * MIN))).toBeUndefined();
    hb.recordSuccess(host);
    expect(hb.blockedUntil(host, at(4 * MIN))).toBeUndefined();
    expect(hb.size).toBe(0);
  });
  it('keeps a host that said tryLater away for at least 30 minutes', () => {
    const hb = new HostBackoff(low);
    const until = hb.recordFailure('busy.test', t0, 'OCSP_TRY_LATER');
    expect(until.getTime() - t0.getTime()).toBeGreaterThanOrEqual(TRY_LATER_MIN_MS);
  });
  it('never shortens a running backoff', () => {
    const hb = new HostBackoff(mid);
    hb.recordFailure('h', t0, 'OCSP_TRY_LATER'); // 30 min
    expect(hb.recordFailure('h', at(MIN), 'HTTP_NETWORK')).toEqual(at(TRY_LATER_MIN_MS));
  });
  it('counts outages, not requests: failures during a running backoff add no step (docs/SECURITY.md)', () => {
    const hb = new HostBackoff(mid);
    // a batch of 20 requests in flight fails at once: one step
    for (let i = 0; i < 20; i++) expect(hb.recordFailure('h', at(i * 10), 'HTTP_STATUS')).toEqual(at(MIN));
    expect(hb.failuresOf('h')).toBe(1);
    // the probe after the backoff fails: the second step
    expect(hb.recordFailure('h', at(MIN), 'HTTP_STATUS')).toEqual(at(3 * MIN));
    expect(hb.failuresOf('h')).toBe(2);
  });
  it('stays at most a quarter of the shortest remaining staple life, and at least 10 s', () => {
    const hb = new HostBackoff(mid);
    for (let i = 0; i < 6; i++) hb.recordFailure('h', at(i * H), 'HTTP_NETWORK');
    // the seventh outage would mean 1 h; staples with 7 min left cap it at 105 s
    expect(hb.recordFailure('h', at(6 * H), 'HTTP_NETWORK', { shortestLifeMs: 7 * MIN })).toEqual(at(6 * H + 105_000));
    expect(hb.recordFailure('h2', t0, 'OCSP_TRY_LATER', { shortestLifeMs: 1000 })).toEqual(at(10_000));
  });
});

describe('Schedule', () => {
  it('arms exactly one timer, for the earliest entry, and fires entries in time order', () => {
    const clock = new FakeClock();
    const fired: string[][] = [];
    const s = new Schedule(clock, (ids) => fired.push(ids), { batchWindowMs: 0 });
    s.set('c', at(3 * H));
    s.set('a', at(1 * H));
    s.set('b', at(2 * H));
    expect(clock.timers.size).toBe(1);
    expect(s.armedFor()).toEqual(at(H));
    clock.advance(H - 1);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual([['a']]);
    expect(s.has('a')).toBe(false);
    expect(clock.timers.size).toBe(1);
    clock.advance(2 * H);
    expect(fired).toEqual([['a'], ['b'], ['c']]);
    expect(s.isArmed()).toBe(false);
    expect(clock.timers.size).toBe(0);
  });
  it('re-arms when an earlier entry arrives and batches neighbours within the window', () => {
    const clock = new FakeClock();
    const fired: string[][] = [];
    const s = new Schedule(clock, (ids) => fired.push(ids), { batchWindowMs: 1000 });
    s.set('late', at(H));
    s.set('early', at(MIN));
    s.set('early2', at(MIN + 500));
    expect(clock.timers.size).toBe(1);
    expect(s.armedFor()).toEqual(at(MIN));
    clock.advance(MIN);
    expect(fired).toEqual([['early', 'early2']]);
  });
  it('moves and deletes entries; stale heap entries never fire', () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    const s = new Schedule(clock, (ids) => fired.push(...ids), { batchWindowMs: 0 });
    s.set('x', at(MIN));
    s.set('x', at(5 * MIN)); // moved later
    s.set('y', at(2 * MIN));
    s.delete('y');
    clock.advance(10 * MIN);
    expect(fired).toEqual(['x']);
  });
  it('keeps memory proportional to the keys however often they move', () => {
    const clock = new FakeClock();
    const s = new Schedule(clock, () => undefined);
    for (let i = 0; i < 100_000; i++) s.set(`k${i % 10}`, at(H + i));
    expect(s.size).toBe(10);
    expect((s as unknown as { heap: unknown[] }).heap.length).toBeLessThan(100);
    expect(s.peek()?.id).toBe('k0');
  });
  it('stop() cancels the timer and ignores later entries', () => {
    const clock = new FakeClock();
    const s = new Schedule(clock, () => expect.unreachable());
    s.set('a', at(MIN));
    s.stop();
    s.set('b', at(MIN));
    expect(clock.timers.size).toBe(0);
    clock.advance(H);
  });
  it('drives a retry sequence with a fake clock: backoff, recovery, refresh', () => {
    const clock = new FakeClock();
    const attempts: Date[] = [];
    let failures = 0;
    const results = ['fail', 'fail', 'fail', 'ok'];
    const s: Schedule = new Schedule(clock, (ids) => {
      for (const id of ids) {
        attempts.push(clock.now());
        const r = results.shift() ?? 'ok';
        const plan =
          r === 'fail'
            ? planNextAttempt({ ok: false, code: 'HTTP_NETWORK', failures: ++failures }, clock.now(), mid)
            : planNextAttempt({ ok: true, refreshAt: new Date(clock.now().getTime() + 2 * D) }, clock.now(), mid);
        if (r === 'ok') failures = 0;
        s.set(id, plan.at);
      }
    });
    s.set('cert', t0);
    clock.advance(3 * D);
    const gaps = attempts.slice(1).map((d, i) => d.getTime() - (attempts[i] as Date).getTime());
    // first try at t0, then 1, 2, 4 min of backoff, then the refresh point two days later
    expect(gaps.slice(0, 4)).toEqual([MIN, 2 * MIN, 4 * MIN, 2 * D]);
  });
});
