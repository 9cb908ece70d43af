/**
 * When the daemon next looks at each certificate: decisions as data, and one
 * timer for all of them.
 *
 * Two halves, both free of `Date.now()` (time comes from a {@link Clock}, chance
 * from an injected {@link RandomSource}), so the unit tests drive them with a
 * fake clock:
 *
 * - {@link planNextAttempt} (pure) turns the result of an attempt into the
 *   time of the next one, with a {@link NextAttemptReason}. The rules gather
 *   what the refresh rules list (docs/ARCHITECTURE.md): the refresh point of the policy jittered by
 *   ±10 % of the remaining wait (ocsprenewer); failures back off
 *   exponentially from 1 min, doubling up to 1 h, then hourly (HAProxy's
 *   60 s × 2^n, capped); `tryLater` (RFC 6960 §4.2.1, responseStatus 3) waits
 *   at least 30 min (ocsprenewer); and nothing is ever planned later than a
 *   margin before the current staple expires (HAProxy keeps 60 s; we keep
 *   {@link EXPIRY_MARGIN_MS}), so a failing responder gets its last tries
 *   while the staple on disk still works.
 * - {@link Schedule} holds the next attempt time of every certificate in a
 *   min-heap and arms exactly one timer, for the earliest. There is no
 *   polling loop: an idle daemon is a process blocked in the kernel until
 *   that timer fires (Sleevi's "never a busy retry loop", promise 5 of docs/ARCHITECTURE.md).
 * - {@link HostBackoff} remembers responder hosts that failed at the network
 *   level (connection errors, timeouts, HTTP 5xx, tryLater) so that one dead
 *   CA responder is not hit again by every certificate it serves before its
 *   own backoff has passed.
 */
import type { ErrorCode } from '../core/errors.js';
import type { Clock } from '../io/clock.js';

/** A source of uniform random numbers in [0, 1), like `Math.random` (injected in tests). */
export type RandomSource = () => number;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Jitter: ±10 % of a wait (ocsprenewer, docs/ARCHITECTURE.md, refresh point). */
export const JITTER_FRACTION = 0.1;
/** The first retry after a failure (HAProxy's 60 s). */
export const BACKOFF_BASE_MS = MINUTE;
/** The longest retry interval; failures beyond it retry hourly. */
export const BACKOFF_MAX_MS = HOUR;
/** The least wait after a responder said `tryLater` (ocsprenewer's 30 min). */
export const TRY_LATER_MIN_MS = 30 * MINUTE;
/** Never plan an attempt later than this before the staple on disk expires. */
export const EXPIRY_MARGIN_MS = 5 * MINUTE;
/** The least wait between two attempts for one certificate: never a busy loop. */
export const MIN_DELAY_MS = MINUTE;
/** After a success that is already past its refresh point (a responder serving old responses), look again hourly (ocsprenewer). */
export const PAST_REFRESH_DELAY_MS = HOUR;

/**
 * Failures that a quick retry cannot fix: the operator has to change a file
 * or the configuration (and the watcher or SIGHUP brings the certificate back
 * at once when that happens). They retry at the hourly cap straight away.
 */
export const PERMANENT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'CERT_EXPIRED',
  'CERT_NOT_YET_VALID',
  'NO_OCSP_URL',
  'NO_ISSUER',
  'ISSUER_MISMATCH',
  'NOT_A_CERTIFICATE',
  'OCSP_REVOKED',
  'CRL_REVOKED',
  'MUST_STAPLE_NO_RESPONDER',
  'OCSP_SIG_REQUIRED',
  'HTTP_BAD_URL',
]);

/**
 * Failures that say the responder host itself is in trouble, so other
 * certificates served by it should wait too (promise 5 of docs/ARCHITECTURE.md). An HTTP
 * 4xx or a badly signed answer is about our request or that one response, not
 * the host's health.
 */
export function isHostFailure(code: ErrorCode, httpStatus?: number): boolean {
  if (
    code === 'HTTP_NETWORK' ||
    code === 'HTTP_TIMEOUT' ||
    code === 'OCSP_TRY_LATER' ||
    code === 'OCSP_INTERNAL_ERROR'
  ) {
    return true;
  }
  return code === 'HTTP_STATUS' && (httpStatus === undefined || httpStatus >= 500);
}

/** `ms` moved by up to ±`fraction` of itself, uniformly. */
export function jitter(ms: number, random: RandomSource, fraction = JITTER_FRACTION): number {
  return ms * (1 + fraction * (2 * random() - 1));
}

/**
 * The shape of the backoff, for a caller that sets its own (the embedded
 * stapler's `backoff` option); every field defaults to the daemon's.
 */
export interface BackoffShape {
  /** The first retry after a failure (default {@link BACKOFF_BASE_MS}). */
  baseMs?: number;
  /** The longest retry interval (default {@link BACKOFF_MAX_MS}). */
  maxMs?: number;
  /** ± this fraction of each wait (default {@link JITTER_FRACTION}). */
  jitter?: number;
}

/**
 * The un-jittered wait after `failures` consecutive failures (1 = the first):
 * 1, 2, 4, 8, 16, 32 min, then 1 h for good (or from `shape`'s base, doubling up to its cap).
 */
export function backoffDelay(failures: number, shape: BackoffShape = {}): number {
  const n = Math.max(1, Math.floor(failures));
  // 2^(n-1) overflows nothing: beyond n = 7 the cap applies anyway
  return Math.min((shape.baseMs ?? BACKOFF_BASE_MS) * 2 ** Math.min(n - 1, 30), shape.maxMs ?? BACKOFF_MAX_MS);
}

/** Why the next attempt is when it is. Stable strings (shown in `/status` and debug logs). */
export type NextAttemptReason =
  | 'refresh' // the policy's refresh point, jittered
  | 'past-refresh' // renewed or kept, but already past the refresh point: hourly
  | 'backoff' // a failure: exponential backoff
  | 'try-later' // the responder said tryLater: at least 30 min
  | 'permanent' // a failure only the operator can fix: hourly
  | 'crl' // a certificate without a responder: its CRL is looked at again at crl.interval
  | 'expiring'; // pulled in so that the staple on disk is renewed before it expires

/** The result of an attempt, as far as planning the next one is concerned. */
export type AttemptSummary =
  | {
      ok: true;
      /** The policy's refresh point of the staple now on disk. */
      refreshAt: Date;
      /** When the staple now on disk stops being usable (nextUpdate). */
      expiresAt?: Date;
    }
  | {
      ok: false;
      code: ErrorCode;
      /** Consecutive failures including this one (≥ 1). */
      failures: number;
      /** When the staple still on disk expires, if there is a usable one. */
      expiresAt?: Date;
    };

/** A planned attempt. */
export interface PlannedAttempt {
  at: Date;
  reason: NextAttemptReason;
}

/**
 * Plans the next attempt after `attempt`, at `now`. Pure.
 *
 * - Success: the refresh point, moved by ±10 % of the time left until it
 *   (so a thousand certificates renewed together drift apart); if the point
 *   has already passed (a responder that serves old responses, or a
 *   `Cache-Control: max-age` of zero), one hour.
 * - Failure: {@link backoffDelay} ±10 %; `tryLater` at least 30 min; a
 *   {@link PERMANENT_CODES} failure one hour.
 * - Either way, never later than {@link EXPIRY_MARGIN_MS} before the staple on
 *   disk expires (except after `tryLater`: the responder asked us to stay
 *   away, and asking again sooner only adds load), and never sooner than
 *   {@link MIN_DELAY_MS}.
 * - `shape` changes the backoff's base, cap and jitter (the embedded
 *   stapler's `backoff` option); the daemon uses the defaults.
 */
export function planNextAttempt(
  attempt: AttemptSummary,
  now: Date,
  random: RandomSource,
  shape: BackoffShape = {},
): PlannedAttempt {
  const t = now.getTime();
  const fraction = shape.jitter ?? JITTER_FRACTION;
  const spread = (ms: number): number => jitter(ms, random, fraction);
  let delay: number;
  let reason: NextAttemptReason;
  if (attempt.ok) {
    const left = attempt.refreshAt.getTime() - t;
    if (left > 0) {
      delay = spread(left);
      reason = 'refresh';
    } else {
      delay = spread(PAST_REFRESH_DELAY_MS);
      reason = 'past-refresh';
    }
  } else if (attempt.code === 'OCSP_TRY_LATER') {
    // at least 30 min: only upward jitter on the floor
    delay = Math.max(spread(backoffDelay(attempt.failures, shape)), TRY_LATER_MIN_MS * (1 + fraction * random()));
    reason = 'try-later';
  } else if (PERMANENT_CODES.has(attempt.code)) {
    delay = spread(shape.maxMs ?? BACKOFF_MAX_MS);
    reason = 'permanent';
  } else {
    delay = spread(backoffDelay(attempt.failures, shape));
    reason = 'backoff';
  }
  const tryLater = !attempt.ok && attempt.code === 'OCSP_TRY_LATER';
  if (attempt.expiresAt && !tryLater) {
    const latest = attempt.expiresAt.getTime() - EXPIRY_MARGIN_MS - t;
    if (attempt.expiresAt.getTime() > t && latest < delay) {
      delay = latest;
      reason = 'expiring';
    }
  }
  // never sooner than a minute (or than a shorter base the caller chose)
  delay = Math.max(delay, Math.min(MIN_DELAY_MS, shape.baseMs ?? MIN_DELAY_MS));
  return { at: new Date(t + Math.round(delay)), reason };
}

// ---------------------------------------------------------------------------
// Per-host backoff
// ---------------------------------------------------------------------------

interface HostState {
  failures: number;
  until: number;
}

/** The shortest per-host backoff, whatever the staples' remaining lives: 10 s. */
export const HOST_BACKOFF_MIN_MS = 10_000;
/** A host's backoff is at most this fraction of the shortest remaining life of the staples it serves. */
export const HOST_BACKOFF_LIFE_FRACTION = 0.25;

/** Options of {@link HostBackoff.recordFailure}. */
export interface HostFailureOptions {
  /**
   * The shortest remaining life (ms) of a usable staple served by this host:
   * the backoff stays at most a quarter of it (at least
   * {@link HOST_BACKOFF_MIN_MS}), so a blip never outlasts the staples.
   */
  shortestLifeMs?: number;
}

/**
 * Responder hosts in backoff. A host that failed at the network level
 * ({@link isHostFailure}) is left alone for {@link backoffDelay} of its
 * consecutive *outages* (±10 %; at least 30 min after `tryLater`); one
 * success forgets it. Bounded memory: one entry per failing host.
 *
 * Outages, not requests: a failure reported while the host is already in
 * backoff came from a request sent before (a batch in flight, or an urgent
 * probe) and is part of the same outage; it never adds a step. The backoff
 * grows only when the first request after it (the probe) fails again. And it
 * is capped at a quarter of the shortest remaining life of the host's
 * staples, so the staples always get their attempts before they expire.
 */
export class HostBackoff {
  private readonly hosts = new Map<string, HostState>();

  constructor(private readonly random: RandomSource = Math.random) {}

  /** Records a host-level failure at `now`; returns the time until which the host is left alone. */
  recordFailure(host: string, now: Date, code: ErrorCode, options: HostFailureOptions = {}): Date {
    const prev = this.hosts.get(host);
    // the same outage: a request sent before the backoff began (or an urgent probe) failed too
    if (prev && prev.until > now.getTime()) return new Date(prev.until);
    const failures = (prev?.failures ?? 0) + 1;
    let delay = jitter(backoffDelay(failures), this.random);
    if (code === 'OCSP_TRY_LATER') delay = Math.max(delay, TRY_LATER_MIN_MS);
    if (options.shortestLifeMs !== undefined) {
      delay = Math.min(delay, Math.max(HOST_BACKOFF_MIN_MS, options.shortestLifeMs * HOST_BACKOFF_LIFE_FRACTION));
    }
    const until = now.getTime() + Math.round(delay);
    this.hosts.set(host, { failures, until });
    return new Date(until);
  }

  /** A good exchange with the host ends its backoff. */
  recordSuccess(host: string): void {
    this.hosts.delete(host);
  }

  /** The end of the host's backoff if it is still running at `now`. */
  blockedUntil(host: string, now: Date): Date | undefined {
    const s = this.hosts.get(host);
    if (!s || s.until <= now.getTime()) return undefined;
    return new Date(s.until);
  }

  /** Consecutive failures of a host (0 when healthy). */
  failuresOf(host: string): number {
    return this.hosts.get(host)?.failures ?? 0;
  }

  /** Forgets every host (SIGUSR2: the operator asked for everything now). */
  clear(): void {
    this.hosts.clear();
  }

  /** The hosts still in backoff at `now`, soonest release first. */
  list(now: Date): Array<{ host: string; until: Date; failures: number }> {
    const out: Array<{ host: string; until: Date; failures: number }> = [];
    for (const [host, s] of this.hosts) {
      if (s.until > now.getTime()) out.push({ host, until: new Date(s.until), failures: s.failures });
    }
    return out.sort((a, b) => a.until.getTime() - b.until.getTime() || (a.host < b.host ? -1 : 1));
  }

  /** Hosts currently known to be failing. */
  get size(): number {
    return this.hosts.size;
  }
}

// ---------------------------------------------------------------------------
// The schedule: a min-heap and one timer
// ---------------------------------------------------------------------------

interface HeapEntry {
  at: number;
  id: string;
  /** Matches {@link Slot.seq} while the entry is current; stale entries are skipped. */
  seq: number;
}

interface Slot {
  at: number;
  seq: number;
}

/** Options of a {@link Schedule}. */
export interface ScheduleOptions {
  /**
   * Entries due within this many ms of the earliest are handed over in the
   * same batch (default 1000), so jittered neighbours share one wake-up.
   */
  batchWindowMs?: number;
}

/**
 * The next attempt time of every key, and one timer armed for the earliest.
 *
 * `set` and `delete` are O(log n) (a binary min-heap with lazy deletion,
 * compacted when stale entries outnumber live ones, so memory stays
 * proportional to the number of keys however often they are rescheduled).
 * When the timer fires, every key due by then is removed from the schedule
 * and passed to `onDue` in time order; the owner sets the key again once it
 * knows the next time. The timer is re-armed only when the earliest time
 * changes.
 */
export class Schedule {
  private readonly slots = new Map<string, Slot>();
  private heap: HeapEntry[] = [];
  private seq = 0;
  private cancelTimer: (() => void) | undefined;
  private armedAt: number | undefined;
  private stopped = false;
  private readonly batchWindowMs: number;

  constructor(
    private readonly clock: Clock,
    private readonly onDue: (ids: string[]) => void,
    options: ScheduleOptions = {},
  ) {
    this.batchWindowMs = options.batchWindowMs ?? 1000;
  }

  /** Sets (or moves) the next attempt of `id`. */
  set(id: string, at: Date): void {
    if (this.stopped) return;
    const t = at.getTime();
    const seq = ++this.seq;
    this.slots.set(id, { at: t, seq });
    this.push({ at: t, id, seq });
    if (this.heap.length > 2 * this.slots.size + 32) this.compact();
    this.arm();
  }

  /** Removes `id` from the schedule. */
  delete(id: string): void {
    if (this.slots.delete(id) && this.slots.size === 0) this.disarm();
  }

  /** The next attempt of `id`, if scheduled. */
  get(id: string): Date | undefined {
    const s = this.slots.get(id);
    return s ? new Date(s.at) : undefined;
  }

  has(id: string): boolean {
    return this.slots.has(id);
  }

  /** Number of scheduled keys. */
  get size(): number {
    return this.slots.size;
  }

  /** The earliest scheduled attempt. */
  peek(): { id: string; at: Date } | undefined {
    this.dropStale();
    const top = this.heap[0];
    return top ? { id: top.id, at: new Date(top.at) } : undefined;
  }

  /** True while a timer is armed (the loop is alive and waiting). */
  isArmed(): boolean {
    return this.cancelTimer !== undefined;
  }

  /** When the armed timer fires. */
  armedFor(): Date | undefined {
    return this.armedAt === undefined ? undefined : new Date(this.armedAt);
  }

  /** Cancels the timer for good; later `set` calls are ignored. */
  stop(): void {
    this.stopped = true;
    this.disarm();
  }

  private push(e: HeapEntry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i] as HeapEntry, h[p] as HeapEntry)) break;
      [h[i], h[p]] = [h[p] as HeapEntry, h[i] as HeapEntry];
      i = p;
    }
  }

  private pop(): HeapEntry | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l] as HeapEntry, h[m] as HeapEntry)) m = l;
        if (r < h.length && this.less(h[r] as HeapEntry, h[m] as HeapEntry)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m] as HeapEntry, h[i] as HeapEntry];
        i = m;
      }
    }
    return top;
  }

  private less(a: HeapEntry, b: HeapEntry): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private isCurrent(e: HeapEntry): boolean {
    return this.slots.get(e.id)?.seq === e.seq;
  }

  private dropStale(): void {
    while (this.heap.length > 0 && !this.isCurrent(this.heap[0] as HeapEntry)) this.pop();
  }

  private compact(): void {
    const live = this.heap.filter((e) => this.isCurrent(e));
    this.heap = [];
    for (const e of live) this.push(e);
  }

  private disarm(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.armedAt = undefined;
  }

  private arm(): void {
    if (this.stopped) return;
    this.dropStale();
    const top = this.heap[0];
    if (!top) {
      this.disarm();
      return;
    }
    if (this.armedAt !== undefined && this.armedAt <= top.at && this.cancelTimer) return;
    this.disarm();
    const delay = Math.max(0, top.at - this.clock.now().getTime());
    this.armedAt = top.at;
    this.cancelTimer = this.clock.setTimer(delay, () => this.fire());
  }

  private fire(): void {
    this.cancelTimer = undefined;
    this.armedAt = undefined;
    if (this.stopped) return;
    const limit = this.clock.now().getTime() + this.batchWindowMs;
    const due: string[] = [];
    for (;;) {
      this.dropStale();
      const top = this.heap[0];
      if (!top || top.at > limit) break;
      this.pop();
      this.slots.delete(top.id);
      due.push(top.id);
    }
    this.arm();
    if (due.length > 0) this.onDue(due);
  }
}
