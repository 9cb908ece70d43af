/**
 * Applying an attempt to the daemon's certificates: one certificate's
 * attempt (attempt.ts) is run, its result turned into the entry's next state
 * (entry-state.ts `nextEntryState`), the hosts' health settled, the
 * certificate's timer set or cleared, the log lines written, the observers
 * told and the outcome recorded for the batch step. Also here: a new
 * entry, the entries as discovery sees them, and the state a revocation mark
 * of a previous run gives an entry.
 *
 * Contract: {@link attemptGuarded} never throws. It reads and changes only
 * what {@link ApplyContext} hands it: the entries (their state, in place),
 * the per-certificate timers, and the callbacks. An entry removed while its
 * attempt ran is left alone. A change asked for while the attempt ran
 * (`entry.again`) is queued again right after, unless the daemon is stopping.
 */
import { performance } from 'node:perf_hooks';
import type { TargetConfig } from '../config/types.js';
import { toStapleError } from '../core/errors.js';
import type { RandomSource } from '../pipeline/backoff.js';
import type { TargetOutcome } from '../pipeline/context.js';
import type { RevocationMark } from '../revocation/marks.js';
import type { AttemptEvent } from '../status/page.js';
import { newEntryState, nextEntryState, type DaemonLogger, type EntryState } from './entry-state.js';
import {
  attemptCertificate,
  shortestLife,
  wakeWaiting,
  type AttemptContext,
  type AttemptRun,
  type Timers,
} from './attempt.js';
import type { Queued } from './queue.js';
import type { CertificateSet } from './discovery.js';

/** A certificate in the daemon: its state (entry-state.ts) and its place in the queue. */
export interface Entry extends EntryState {
  inFlight: boolean;
  /** Asked for again while in flight (force wins). */
  again?: Queued | undefined;
}

/** A new entry for `target`: nothing known yet, not in flight. */
export function newEntry(target: TargetConfig): Entry {
  return { ...newEntryState(target), inFlight: false };
}

/**
 * The entries as discovery (discovery.ts) sees them: `queue.check` queues a
 * certificate, `queue.forget` takes a dropped one off the queue and the timer.
 */
export function certificateSet(
  entries: Map<string, Entry>,
  queue: { check(id: string, fleet: boolean): void; forget(id: string): void },
): CertificateSet {
  return {
    targetOf: (id) => entries.get(id)?.target,
    targets: () => [...entries.values()].map((e) => e.target),
    add: (t) => entries.set(t.id, newEntry(t)),
    replace: (t) => {
      const e = entries.get(t.id);
      if (e) e.target = t;
    },
    drop: (id) => {
      entries.delete(id);
      queue.forget(id);
    },
    check: (id, fleet = false) => queue.check(id, fleet),
    failing: (id) => (entries.get(id)?.consecutiveFailures ?? 0) > 0,
  };
}

/** The entry's `revoked` for a mark a previous run left (revocation/marks.ts). */
export function revokedByMark(m: RevocationMark): NonNullable<Entry['revoked']> {
  return {
    source: m.source,
    ...(m.time ? { time: m.time } : {}),
    ...(m.reason ? { reason: m.reason } : {}),
  };
}

/** What applying an attempt needs from the daemon. */
export interface ApplyContext {
  readonly entries: ReadonlyMap<string, Entry>;
  /** The per-certificate timers. */
  readonly timers: Timers & { delete(id: string): void };
  readonly random: RandomSource;
  readonly now: () => Date;
  readonly log: DaemonLogger;
  /** What an attempt needs, for the running configuration. */
  attempt(): AttemptContext;
  /** CRL watch: how often a `crl` certificate is looked at again (undefined when off). */
  crlIntervalMs(): number | undefined;
  stopping(): boolean;
  /** Queues the certificate again (a change asked for while it was in flight). */
  requeue(id: string, ask: Queued): void;
  /** Tells the observers of a finished attempt. */
  observe(event: AttemptEvent): void;
  /** Records the outcome for the running batch (hooks, HAProxy push). */
  record(outcome: TargetOutcome): void;
}

/** One attempt, guarded: an unexpected error is logged and the certificate looked at again in an hour. */
export async function attemptGuarded(c: ApplyContext, id: string, ask: Queued): Promise<void> {
  try {
    await processOne(c, id, ask.force, ask.fleet ?? false);
  } catch (e) {
    // processTarget never throws; this guards the bookkeeping around it
    const err = toStapleError(e);
    c.log({ level: 'error', id, code: err.code, msg: `internal error: ${err.message}` });
    if (c.entries.has(id)) c.timers.set(id, new Date(c.now().getTime() + 3_600_000));
  }
}

/** One attempt for one certificate (attempt.ts), applied to its entry and told to the observers. */
async function processOne(c: ApplyContext, id: string, force: boolean, fleet: boolean): Promise<void> {
  const entry = c.entries.get(id);
  if (!entry) return;
  entry.inFlight = true;
  const t0 = performance.now();
  let run: AttemptRun;
  try {
    run = await attemptCertificate(entry, { force, fleet }, c.attempt());
  } finally {
    entry.inFlight = false;
    requeueIfAsked(c, entry);
  }
  const seconds = (performance.now() - t0) / 1000;
  if (c.entries.get(id) !== entry) return; // removed meanwhile
  apply(c, entry, run);
  if (run.result.kind !== 'attempt') return;
  const outcome = run.result.outcome;
  // only attempts that sent a request to a responder count as fetches (not NO_OCSP_URL, NO_ISSUER, backoff, …)
  const fleetHit = outcome.fleet?.role === 'hit';
  const fetched = (outcome.result === 'updated' && !fleetHit) || (run.hosts?.contactedResponder() ?? false);
  c.observe({ id, outcome, fetched, seconds, fleetHit });
  c.record(outcome);
}

/** Applies an attempt (entry-state.ts): the entry's new state, the hosts' health, the timer, the log. */
function apply(c: ApplyContext, entry: Entry, { result, hosts }: AttemptRun): void {
  // CRL watch on: a `crl` certificate is looked at again every crl.interval
  const crlIntervalMs = c.crlIntervalMs();
  if (result.kind === 'attempt' && crlIntervalMs !== undefined) result.crlIntervalMs = crlIntervalMs;
  const now = c.now();
  const t = nextEntryState(entry, result, now, c.random);
  Object.assign(entry, t.state);
  hosts?.settle(result.kind === 'attempt' ? result.outcome.error?.code : undefined, {
    lifeOf: (host) => shortestLife(c.entries.values(), host, now),
    onRecovered: (host) => wakeWaiting(c.entries.values(), host, entry.target.id, c.timers, now, c.random),
  });
  const id = entry.target.id;
  if (t.next === null) c.timers.delete(id);
  else if (t.next) c.timers.set(id, t.next);
  for (const e of t.log) c.log(e);
}

/** A change that arrived while the certificate was in progress is handled right after. */
function requeueIfAsked(c: ApplyContext, entry: Entry): void {
  const again = entry.again;
  entry.again = undefined;
  if (again && !c.stopping() && c.entries.get(entry.target.id) === entry) {
    // after the current microtask, so that the outcome is recorded first
    queueMicrotask(() => c.requeue(entry.target.id, again));
  }
}
