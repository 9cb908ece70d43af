/**
 * The daemon's state transitions (daemon/entry-state.ts), pure: one attempt's
 * outcome → the certificate's next state, when it is looked at again, and the
 * lines that say so. Chance is fixed (random() = 0.5 moves no jitter).
 */
import { describe, expect, it } from 'vitest';
import type { TargetConfig } from '../../src/config/types.js';
import type { Triage } from '../../src/core/triage.js';
import {
  newEntryState,
  nextEntryState,
  PROBE_WAIT_MS,
  type EntryOutcome,
  type EntryState,
  type LogEvent,
} from '../../src/daemon/entry-state.js';
import type { StapleSummary, TargetOutcome } from '../../src/pipeline/context.js';

/** Chance in the middle: no jitter moves a time. */
const mid = (): number => 0.5;
const NOW = new Date('2026-06-01T12:00:00.000Z');
const MIN = 60_000;
const HOUR = 60 * MIN;

function at(ms: number): Date {
  return new Date(NOW.getTime() + ms);
}

const target: TargetConfig = {
  id: 'site',
  certPath: '/certs/site.pem',
  staplePath: '/ocsp/site.der',
  responder: 'certificate',
} as TargetConfig;

function staple(usableInMs: number, status: StapleSummary['status'] = 'good'): StapleSummary {
  const end = at(usableInMs).toISOString();
  return {
    status,
    thisUpdate: at(-HOUR).toISOString(),
    nextUpdate: end,
    producedAt: at(-HOUR).toISOString(),
    usableUntil: end,
    responder: 'http://ocsp.test',
  };
}

function outcome(result: TargetOutcome['result'], extra: Partial<TargetOutcome> = {}): TargetOutcome {
  return { id: 'site', certPath: target.certPath, staplePath: target.staplePath, result, notices: [], ...extra };
}

const attempt = (o: TargetOutcome, more: Partial<Extract<EntryOutcome, { kind: 'attempt' }>> = {}): EntryOutcome => ({
  kind: 'attempt',
  outcome: o,
  forced: false,
  ...more,
});

const crlTriage: Triage = {
  mechanism: 'crl',
  mustStaple: false,
  shortLived: false,
  noRevAvail: false,
  ocspUrls: [],
  crlUrls: ['http://crl.test/ca.crl'],
};

/** Due (`reason`), while the certificate's hosts are in backoff for 20 more minutes. */
function waitForHosts(reason: 'due' | 'expired', urgent: boolean): EntryOutcome {
  const decision = { action: 'renew' as const, reason, at: NOW, detail: reason };
  return { kind: 'host-backoff', judged: outcome('unchanged', { decision }), blockedUntil: at(20 * MIN), urgent };
}

const lines = (log: LogEvent[]): string[] => log.map((e) => `${e.level}: ${e.msg}`);

describe('nextEntryState', () => {
  interface Row {
    name: string;
    entry?: Partial<EntryState>;
    outcome: EntryOutcome;
    failures: number;
    reason: EntryState['nextReason'];
    /** Expected next attempt (ms from now), null: not scheduled. */
    next: number | null;
    /** Every log line, `level: text` matched by these patterns in order. */
    log: RegExp[];
  }
  const rows: Row[] = [
    {
      name: 'a renewal: next at the refresh point, failures cleared',
      entry: { consecutiveFailures: 3, lastCode: 'HTTP_TIMEOUT', lastError: 'no answer' },
      outcome: attempt(
        outcome('updated', {
          staple: staple(4 * 24 * HOUR),
          nextRefresh: at(2 * 24 * HOUR).toISOString(),
          url: 'http://ocsp.test/',
          method: 'GET',
        }),
      ),
      failures: 0,
      reason: 'refresh',
      next: 2 * 24 * HOUR,
      log: [/^info: updated OCSP response: good, valid until \S+ \(GET http:\/\/ocsp\.test\/?\); next refresh around /],
    },
    {
      name: 'a forced renewal says so',
      outcome: attempt(outcome('updated', { staple: staple(4 * 24 * HOUR), nextRefresh: at(HOUR).toISOString() }), {
        forced: true,
      }),
      failures: 0,
      reason: 'refresh',
      next: HOUR,
      log: [/^info: renewed \(forced\) OCSP response/],
    },
    {
      name: 'a fresh staple: a debug line, next at its refresh point',
      outcome: attempt(
        outcome('unchanged', { staple: staple(4 * 24 * HOUR), nextRefresh: at(6 * HOUR).toISOString() }),
      ),
      failures: 0,
      reason: 'refresh',
      next: 6 * HOUR,
      log: [/^debug: unchanged: staple is fresh; next check at /],
    },
    {
      name: 'past its refresh point already: an hour',
      outcome: attempt(outcome('unchanged', { staple: staple(4 * 24 * HOUR), nextRefresh: at(-MIN).toISOString() })),
      failures: 0,
      reason: 'past-refresh',
      next: HOUR,
      log: [/^debug: unchanged/],
    },
    {
      name: 'a first failure without a staple: backoff of 1 min',
      outcome: attempt(outcome('failed', { error: { code: 'HTTP_TIMEOUT', message: 'http://ocsp.test/: no answer' } })),
      failures: 1,
      reason: 'backoff',
      next: MIN,
      log: [/^error: .*no answer.*there is no valid staple on disk; retry at \S+ \(failure 1, backoff\)/],
    },
    {
      name: 'the fourth failure: 8 min',
      entry: { consecutiveFailures: 3 },
      outcome: attempt(outcome('failed', { error: { code: 'HTTP_NETWORK', message: 'refused' } })),
      failures: 4,
      reason: 'backoff',
      next: 8 * MIN,
      log: [/^error: .*\(failure 4, backoff\)/],
    },
    {
      name: 'retry cap: a failure never waits past the staple on disk (5 min before it expires)',
      entry: { consecutiveFailures: 6, staple: staple(20 * MIN) },
      outcome: attempt(outcome('failed', { error: { code: 'HTTP_TIMEOUT', message: 'no answer' } })),
      failures: 7,
      reason: 'expiring',
      next: 15 * MIN,
      log: [/^error: .*the staple on disk stays valid until \S+; retry at \S+ \(failure 7, expiring\)/],
    },
    {
      name: 'tryLater: at least 30 min, even past the staple on disk',
      entry: { staple: staple(20 * MIN) },
      outcome: attempt(outcome('failed', { error: { code: 'OCSP_TRY_LATER', message: 'tryLater' } })),
      failures: 1,
      reason: 'try-later',
      next: 31.5 * MIN, // the 30 min floor gets only upward jitter
      log: [/^error: .*\(failure 1, try-later\)/],
    },
    {
      name: 'a permanent failure: hourly',
      outcome: attempt(outcome('failed', { error: { code: 'CERT_EXPIRED', message: 'expired' } })),
      failures: 1,
      reason: 'permanent',
      next: HOUR,
      log: [/^error: /],
    },
    {
      name: 'a kept answer: one warning (no note repeating it), the failure backoff, the staple on disk as the cap',
      entry: { consecutiveFailures: 1 },
      outcome: attempt(
        outcome('unchanged', {
          staple: staple(10 * 24 * HOUR),
          nextRefresh: at(-HOUR).toISOString(),
          kept: { reason: 'shorter', message: "kept: the responder's answer is shorter than the staple on disk" },
          notices: [
            'http://ocsp.test: answered after a redirect',
            "kept: the responder's answer is shorter than the staple on disk",
          ],
        }),
      ),
      failures: 2,
      reason: 'backoff',
      next: 2 * MIN,
      log: [
        /^debug: note: http:\/\/ocsp\.test: answered after a redirect$/,
        /^warn: kept: the responder's answer is shorter than the staple on disk; retry at \S+ \(attempt 2, backoff\)$/,
      ],
    },
    {
      name: 'disabled: not scheduled, said once at info',
      outcome: attempt(outcome('skipped', { notices: ['OCSP is disabled for this certificate'] })),
      failures: 0,
      reason: undefined,
      next: null,
      log: [/^info: skipped: OCSP is disabled for this certificate; not scheduled$/],
    },
    {
      name: 'skipped again: the same line at debug only',
      entry: { lastResult: 'skipped' },
      outcome: attempt(outcome('skipped', { notices: ['OCSP is disabled for this certificate'] })),
      failures: 0,
      reason: undefined,
      next: null,
      log: [/^debug: skipped: OCSP is disabled/],
    },
    {
      name: 'a crl certificate with CRL watch on: its CRL again at crl.interval',
      outcome: attempt(
        outcome('skipped', {
          triage: crlTriage,
          notices: ['no OCSP responder: nothing to staple'],
          crl: { status: 'good', url: 'http://crl.test/ca.crl', thisUpdate: '2026-06-01T00:00:00Z' },
        } as Partial<TargetOutcome>),
        { crlIntervalMs: 2 * HOUR },
      ),
      failures: 0,
      reason: 'crl',
      next: 2 * HOUR,
      log: [
        /^info: no OCSP responder: nothing to staple; CRL http:\/\/crl\.test\/ca\.crl: not revoked .*; next CRL check at /,
      ],
    },
    {
      name: 'a crl certificate with CRL watch off: not scheduled',
      outcome: attempt(outcome('skipped', { triage: crlTriage, notices: ['no OCSP responder: nothing to staple'] })),
      failures: 0,
      reason: undefined,
      next: null,
      log: [/^info: skipped: no OCSP responder: nothing to staple; not scheduled$/],
    },
    {
      name: 'host backoff: due, but its hosts wait; next when they are free (+ up to 5 s)',
      entry: { hosts: ['ocsp.test'] },
      outcome: waitForHosts('due', false),
      failures: 0,
      reason: 'backoff',
      next: 20 * MIN + 2_500,
      log: [/^debug: due \(due\), but responder ocsp\.test is in backoff; next attempt at /],
    },
    {
      name: 'host backoff while another certificate probes the host: look again soon',
      entry: { hosts: ['ocsp.test'] },
      outcome: waitForHosts('expired', true),
      failures: 0,
      reason: 'backoff',
      next: PROBE_WAIT_MS + 2_500,
      log: [/^debug: due \(expired\)/],
    },
  ];

  for (const row of rows) {
    it(row.name, () => {
      const entry: EntryState = { ...newEntryState(target), ...row.entry };
      const before = structuredClone(entry);
      const t = nextEntryState(entry, row.outcome, NOW, mid);
      expect(entry).toEqual(before); // pure: the input is not touched
      expect(t.state.consecutiveFailures).toBe(row.failures);
      expect(t.state.nextReason).toBe(row.reason);
      if (row.next === null) expect(t.next).toBeNull();
      else expect(t.next?.getTime()).toBe(NOW.getTime() + row.next);
      const got = lines(t.log);
      expect(got).toHaveLength(row.log.length);
      row.log.forEach((re, i) => expect(got[i]).toMatch(re));
      // the same arguments give the same transition
      expect(nextEntryState(entry, row.outcome, NOW, mid)).toEqual(t);
    });
  }

  it('records the attempt: time, result, hosts, responder URL, triage', () => {
    const t = nextEntryState(
      newEntryState(target),
      attempt(outcome('unchanged', { staple: staple(HOUR * 50), triage: { ...crlTriage, mechanism: 'ocsp' } }), {
        hosts: ['a.test', 'b.test'],
        requestUrl: 'http://a.test/ocsp',
      }),
      NOW,
      mid,
    );
    expect(t.state).toMatchObject({
      lastAttempt: NOW,
      lastResult: 'unchanged',
      lastSuccess: NOW,
      hosts: ['a.test', 'b.test'],
      responderUrl: 'http://a.test/ocsp',
    });
    expect(t.state.triage?.mechanism).toBe('ocsp');
  });

  it('an attempt that failed before judging the staple on disk keeps what was known of it, and the hosts', () => {
    const entry: EntryState = { ...newEntryState(target), staple: staple(HOUR * 30), hosts: ['ocsp.test'] };
    const t = nextEntryState(
      entry,
      attempt(outcome('failed', { error: { code: 'NO_ISSUER', message: 'no issuer' } })),
      NOW,
      mid,
    );
    expect(t.state.staple).toEqual(entry.staple);
    expect(t.state.hosts).toEqual(['ocsp.test']);
    expect(t.state.lastCode).toBe('NO_ISSUER');
  });

  it('a revocation stays until an answer says good', () => {
    const revoked = nextEntryState(
      newEntryState(target),
      attempt(
        outcome('failed', {
          error: { code: 'OCSP_REVOKED', message: 'revoked' },
          revoked: { source: 'ocsp', time: '2026-05-01T00:00:00Z', reason: 'keyCompromise' },
          staple: staple(HOUR * 30),
        }),
      ),
      NOW,
      mid,
    );
    expect(revoked.state.revoked?.reason).toBe('keyCompromise');
    expect(lines(revoked.log)[0]).toMatch(
      /^error: certificate REVOKED at 2026-05-01T00:00:00Z \(reason: keyCompromise\).*the current staple was kept/,
    );
    const failedAgain = nextEntryState(
      revoked.state,
      attempt(outcome('failed', { error: { code: 'HTTP_TIMEOUT', message: 'x' } })),
      NOW,
      mid,
    );
    expect(failedAgain.state.revoked).toBeDefined();
    const good = nextEntryState(
      failedAgain.state,
      attempt(outcome('updated', { staple: staple(HOUR * 30), nextRefresh: at(HOUR).toISOString() })),
      NOW,
      mid,
    );
    expect(good.state.revoked).toBeUndefined();
  });

  it('a failed backup after a write is one warning, not a note too', () => {
    const t = nextEntryState(
      newEntryState(target),
      attempt(
        outcome('updated', {
          staple: staple(HOUR * 30),
          nextRefresh: at(HOUR).toISOString(),
          backupError: 'the backup failed',
          notices: ['warning: the backup failed'],
        }),
      ),
      NOW,
      mid,
    );
    expect(lines(t.log).filter((l) => l.includes('the backup failed'))).toEqual(['warn: warning: the backup failed']);
  });
});
