/**
 * What the daemon knows about one certificate, and how one attempt changes
 * it: {@link nextEntryState} is pure (no I/O, no clock, no timer; chance comes
 * from the `random` it is given), so every branch is a table test.
 *
 * The transition decides the certificate's next state, when it is looked at
 * again (pipeline/backoff.ts {@link planNextAttempt}: the refresh point,
 * the failure backoff, never after its staple expires) and the log lines that
 * say so. The daemon (daemon.ts) applies it: it assigns the state, sets or
 * clears the timer and writes the lines. Host health (host-health.ts) is not
 * part of it: the per-host backoff is kept by the transport wrapper.
 */
import type { TargetConfig } from '../config/types.js';
import { failureLine, shortUrl } from '../core/message.js';
import { jitter, planNextAttempt, type RandomSource } from '../pipeline/backoff.js';
import type { TargetOutcome } from '../pipeline/context.js';
import type { CertificateFacts } from '../status/snapshot.js';

/** Severity of a {@link LogEvent}; `debug` is shown with `-v` only. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * One thing that happened, for one log line. `msg` never repeats `id` or
 * `code`: the text formatter prefixes `[id]` and `error CODE:` itself, the
 * JSON formatter puts them in fields.
 */
export interface LogEvent {
  level: LogLevel;
  msg: string;
  /** The certificate (target id) the event is about. */
  id?: string;
  /** A stable error code ({@link ErrorCode}) for failures. */
  code?: string;
  /** Extra structured facts for JSON logs. */
  fields?: Record<string, unknown>;
}

/** Where the daemon sends its events. */
export type DaemonLogger = (event: LogEvent) => void;

/**
 * What the daemon knows about one certificate between attempts: what its
 * status shows (status/snapshot.ts), the hosts it uses, and how it was revoked.
 */
export interface EntryState extends CertificateFacts {
  target: TargetConfig;
  /** Responder hosts the last attempt talked to (for the per-host gate). */
  hosts: string[];
  /** The last answer (responder or CRL) said revoked, written or not. */
  revoked?: { time?: string; reason?: string; source?: 'ocsp' | 'crl' } | undefined;
}

/** A certificate the daemon has not looked at yet. */
export function newEntryState(target: TargetConfig): EntryState {
  return { target, consecutiveFailures: 0, hosts: [] };
}

/** What happened to one certificate. */
export type EntryOutcome =
  | {
      /** The pipeline ran (fetching, or only judging while its hosts are in backoff). */
      kind: 'attempt';
      outcome: TargetOutcome;
      /** Asked for by SIGUSR2 (`renewed (forced)`). */
      forced: boolean;
      /** The hosts the attempt talked to (or was refused); absent: none, the last ones stay. */
      hosts?: string[];
      /** The responder URL a request went to, when the outcome names none. */
      requestUrl?: string;
      /** CRL watch is on: a `crl` certificate is looked at again this often. */
      crlIntervalMs?: number;
    }
  | {
      /** Due, but every responder host it uses is in backoff: it waits for them (judged without fetching). */
      kind: 'host-backoff';
      judged: TargetOutcome;
      /** When the first of its hosts may be contacted again. */
      blockedUntil: Date;
      /** Its staple would expire meanwhile, but another certificate is probing the host: look again soon. */
      urgent: boolean;
    };

/** The result of {@link nextEntryState}. */
export interface EntryTransition {
  /** The whole next state (every key present, `undefined` where cleared). */
  state: EntryState;
  /** When the certificate is looked at again; `null`: not scheduled; absent: the timer is left as it is. */
  next?: Date | null;
  /** The lines to log, in order. */
  log: LogEvent[];
}

/** An urgent certificate whose host another one is probing looks again this soon. */
export const PROBE_WAIT_MS = 10_000;

/** The notes of an attempt (`-v`), except `said`: what another line says already. */
export function noteEvents(id: string, o: TargetOutcome, said: ReadonlySet<string> = new Set()): LogEvent[] {
  return o.notices.filter((n) => !said.has(n)).map((n) => ({ level: 'debug', id, msg: `note: ${n}` }));
}

/**
 * The next state of a certificate after `outcome`, at `now`. Pure: the same
 * arguments (and the same `random` answers) give the same transition.
 */
export function nextEntryState(
  entry: EntryState,
  outcome: EntryOutcome,
  now: Date,
  random: RandomSource,
): EntryTransition {
  const id = entry.target.id;
  const state: EntryState = { ...entry, hosts: [...entry.hosts] };
  if (outcome.kind === 'host-backoff') {
    const { judged, blockedUntil, urgent } = outcome;
    // urgent while another certificate probes the host: look again once the probe is answered
    const base = urgent ? Math.min(blockedUntil.getTime(), now.getTime() + PROBE_WAIT_MS) : blockedUntil.getTime();
    const until = new Date(base + Math.round(random() * 5_000));
    state.nextReason = 'backoff';
    return {
      state,
      next: until,
      log: [
        ...noteEvents(id, judged),
        {
          level: 'debug',
          id,
          msg: `due (${judged.decision?.reason ?? '?'}), but responder ${entry.hosts.join(', ')} is in backoff; next attempt at ${until.toISOString()}`,
        },
      ],
    };
  }

  const { outcome: o, forced } = outcome;
  const quietAgain = entry.lastResult === 'skipped' && o.result === 'skipped';
  state.lastAttempt = now;
  state.lastResult = o.result;
  // an attempt that failed before judging the staple on disk (certificate unreadable, no issuer) says nothing about it
  if (o.staple || o.decision) state.staple = o.staple;
  if (o.triage) state.triage = o.triage;
  if (o.crl) state.crl = o.crl;
  // a revocation stays until the certificate is replaced (the entry is then new) or an answer says good
  if (o.revoked) state.revoked = o.revoked;
  else if ((o.result === 'updated' && o.staple?.status === 'good') || o.crl?.status === 'good')
    state.revoked = undefined;
  if (outcome.hosts && outcome.hosts.length > 0) state.hosts = [...outcome.hosts];
  state.responderUrl = o.url ?? outcome.requestUrl ?? entry.responderUrl;

  // what a line below says is not repeated as a note (-v): the kept answer, the failed backup, the skip
  const said = new Set<string>();
  if (o.kept) said.add(o.kept.message);
  if (o.backupError) said.add(`warning: ${o.backupError}`);
  const log: LogEvent[] = [];
  const done = (next: Date | null): EntryTransition => {
    log.unshift(...noteEvents(id, o, said));
    return { state, next, log };
  };

  if (o.result === 'skipped') {
    state.consecutiveFailures = 0;
    state.lastCode = undefined;
    state.lastError = undefined;
    state.nextRefresh = undefined;
    state.nextReason = undefined;
    const noOcsp = o.triage !== undefined && o.triage.mechanism !== 'ocsp';
    const notice = noOcsp
      ? (o.notices.find((n) => n.startsWith('no OCSP responder')) ?? o.notices.at(-1))
      : o.notices.at(-1);
    if (notice !== undefined) said.add(notice);
    if (noOcsp && o.triage?.mechanism === 'crl' && outcome.crlIntervalMs !== undefined) {
      // the CRL is looked at again at crl.interval: a new CRL can appear long before the old one's nextUpdate
      const at = new Date(now.getTime() + Math.round(jitter(outcome.crlIntervalMs, random)));
      state.nextReason = 'crl';
      const crl = o.crl;
      const crlText =
        crl?.status === 'good'
          ? `CRL ${crl.url}: not revoked (CRL of ${crl.thisUpdate ?? '?'})`
          : `CRL not checked: ${crl?.error?.code ?? '?'}: ${crl?.error?.message ?? ''}`;
      log.push({
        level: crl?.status === 'unavailable' ? 'warn' : quietAgain ? 'debug' : 'info',
        id,
        msg: `${notice ?? 'nothing to staple'}; ${crlText}; next CRL check at ${at.toISOString()}`,
      });
      return done(at);
    }
    // one notice per certificate, not one per sweep
    log.push({
      level: quietAgain ? 'debug' : 'info',
      id,
      msg: `skipped: ${notice ?? 'nothing to do'}; not scheduled`,
    });
    return done(null);
  }

  const expiresAt = state.staple?.status === 'good' ? new Date(state.staple.usableUntil) : undefined;
  const expiry = expiresAt ? { expiresAt } : {};
  if (o.kept) {
    // The responder's answer was not better than the staple on disk, which was kept (core/compare.ts):
    // not an error, but not a renewal either; retried with the failure backoff (and before it expires).
    state.consecutiveFailures = entry.consecutiveFailures + 1;
    state.lastError = o.kept.message;
    state.nextRefresh = undefined;
    const plan = planNextAttempt(
      { ok: false, code: 'OCSP_STALE', failures: state.consecutiveFailures, ...expiry },
      now,
      random,
    );
    state.nextReason = plan.reason;
    log.push({
      level: 'warn',
      id,
      msg: `${o.kept.message}; retry at ${plan.at.toISOString()} (attempt ${state.consecutiveFailures}, ${plan.reason})`,
      fields: { kept: o.kept.reason, nextAttempt: plan.at.toISOString(), reason: plan.reason },
    });
    return done(plan.at);
  }

  if (o.result === 'updated' || o.result === 'unchanged') {
    state.consecutiveFailures = 0;
    state.lastCode = undefined;
    state.lastError = undefined;
    state.lastSuccess = now;
    state.nextRefresh = o.nextRefresh ? new Date(o.nextRefresh) : undefined;
    const refreshAt = state.nextRefresh ?? new Date(now.getTime());
    const plan = planNextAttempt({ ok: true, refreshAt, ...expiry }, now, random);
    state.nextReason = plan.reason;
    if (o.result === 'updated') {
      const s = o.staple;
      const from =
        o.fleet?.role === 'hit'
          ? (o.fleet.detail ?? 'from the fleet')
          : `${o.method ?? ''} ${o.url ? shortUrl(o.url) : ''}`;
      log.push({
        level: 'info',
        id,
        msg: `${forced ? 'renewed (forced)' : 'updated'} OCSP response: ${s?.status ?? '?'}, valid until ${s?.nextUpdate ?? '?'} (${from}); next refresh around ${plan.at.toISOString()}`,
        fields: {
          staplePath: o.staplePath,
          nextUpdate: s?.nextUpdate,
          nextAttempt: plan.at.toISOString(),
          reason: o.decision?.reason,
        },
      });
      if (o.backupError) log.push({ level: 'warn', id, msg: `warning: ${o.backupError}` });
    } else {
      log.push({
        level: 'debug',
        id,
        msg: `unchanged: ${o.decision?.detail ?? 'staple is fresh'}; next check at ${plan.at.toISOString()}`,
        fields: { nextAttempt: plan.at.toISOString() },
      });
    }
    return done(plan.at);
  }

  // failed
  state.consecutiveFailures = entry.consecutiveFailures + 1;
  const code = o.error?.code ?? 'INTERNAL';
  state.lastCode = code;
  state.lastError = o.error?.message ?? '';
  state.nextRefresh = undefined;
  const plan = planNextAttempt({ ok: false, code, failures: state.consecutiveFailures, ...expiry }, now, random);
  state.nextReason = plan.reason;
  const onDisk =
    expiresAt && expiresAt.getTime() > now.getTime()
      ? `the staple on disk stays valid until ${expiresAt.toISOString()}`
      : 'there is no valid staple on disk';
  const what = o.revoked
    ? `certificate REVOKED at ${o.revoked.time ?? '?'} (reason: ${o.revoked.reason ?? 'unspecified'})${o.crl ? ` according to its CRL ${o.crl.url}` : ''}`
    : (o.error?.message ?? 'failed');
  const line = failureLine({
    code,
    message: what,
    command: 'daemon',
    file: entry.target.certPath,
    after: [
      ...(o.revoked && o.staple ? ['the current staple was kept'] : []),
      onDisk,
      `retry at ${plan.at.toISOString()} (failure ${state.consecutiveFailures}, ${plan.reason})`,
    ],
  });
  log.push({
    level: 'error',
    id,
    code,
    msg: line.slice(`error ${code}: `.length),
    fields: {
      // the full message (URLs included) for --log-format json; the text line shortens them
      ...(o.error ? { error: o.error.message } : {}),
      consecutiveFailures: state.consecutiveFailures,
      nextAttempt: plan.at.toISOString(),
      reason: plan.reason,
    },
  });
  return done(plan.at);
}
