/**
 * The daemon at one moment, as `/status`, the page and the metrics read it:
 * {@link snapshotOf} turns what the daemon knows (its certificates, its
 * queue and timer, the hosts in backoff, the fleet) into a
 * {@link DaemonSnapshot}, each certificate with its state at a glance
 * ({@link certificateState}), most urgent first. Pure: the daemon hands in
 * the facts and the time.
 */
import type { TargetConfig } from '../config/types.js';
import type { ErrorCode } from '../core/errors.js';
import { noOcspNotice, type Triage } from '../core/triage.js';
import type { FleetHealth } from '../fleet/contract.js';
import type { NextAttemptReason } from '../pipeline/backoff.js';
import type { StapleSummary, TargetOutcome } from '../pipeline/context.js';
import type { CrlVerdict } from '../pipeline/contracts.js';
import { VERSION } from '../version.js';
import { byUrgency, certificateState, type CertificateStatus, type DaemonSnapshot } from './page.js';

/** What the status reads of one certificate (the daemon's entry state, daemon/entry-state.ts, is one). */
export interface CertificateFacts {
  target: Pick<TargetConfig, 'id' | 'certPath' | 'staplePath' | 'responder'>;
  lastAttempt?: Date | undefined;
  lastResult?: TargetOutcome['result'] | undefined;
  lastCode?: ErrorCode | undefined;
  lastError?: string | undefined;
  lastSuccess?: Date | undefined;
  consecutiveFailures: number;
  staple?: StapleSummary | undefined;
  nextRefresh?: Date | undefined;
  nextReason?: NextAttemptReason | undefined;
  responderUrl?: string | undefined;
  triage?: Triage | undefined;
  crl?: CrlVerdict | undefined;
  revoked?: { time?: string; reason?: string } | undefined;
}

/** What the daemon knows at one moment. */
export interface DaemonFacts {
  source: string;
  startedAt: Date;
  alive: boolean;
  /** When the timer fires next. */
  nextWake: Date | undefined;
  inProgress: number;
  queued: number;
  /** Hosts known to be failing. */
  hostsFailing: number;
  /** Those still in backoff, soonest release first. */
  backoff: ReadonlyArray<{ host: string; until: Date; failures: number }>;
  fleet?: FleetHealth | undefined;
  certificates: Iterable<{ facts: CertificateFacts; nextAttempt: Date | undefined; inProgress: boolean }>;
}

/** The snapshot of `d` at `now`, certificates most urgent first. */
export function snapshotOf(d: DaemonFacts, now: Date, pid: number): DaemonSnapshot {
  const certificates: CertificateStatus[] = [];
  for (const c of d.certificates) certificates.push(certificateStatus(c.facts, now, c.nextAttempt, c.inProgress));
  certificates.sort(byUrgency);
  return {
    version: VERSION,
    pid,
    source: d.source,
    startedAt: d.startedAt.toISOString(),
    now: now.toISOString(),
    alive: d.alive,
    nextWake: d.nextWake ? d.nextWake.toISOString() : null,
    inProgress: d.inProgress,
    queued: d.queued,
    hostsInBackoff: d.hostsFailing,
    backoff: d.backoff.map((h) => ({ host: h.host, until: h.until.toISOString(), failures: h.failures })),
    ...(d.fleet ? { fleet: d.fleet } : {}),
    certificates,
  };
}

/** The `/status` entry of one certificate at `now`. */
export function certificateStatus(
  e: CertificateFacts,
  now: Date,
  nextAttempt: Date | undefined,
  inProgress: boolean,
): CertificateStatus {
  const s = e.staple;
  const tri = e.triage;
  const noOcsp = tri !== undefined && tri.mechanism !== 'ocsp' && !tri.mustStaple && e.target.responder !== 'disabled';
  const facts: Parameters<typeof certificateState>[0] = {
    disabled: e.lastResult === 'skipped' && !noOcsp,
    noOcsp,
    attempted: e.lastAttempt !== undefined,
    consecutiveFailures: e.consecutiveFailures,
  };
  if (s) facts.staple = s;
  if (e.nextRefresh) facts.nextRefresh = e.nextRefresh;
  if (e.lastCode) facts.lastCode = e.lastCode;
  if (e.revoked) facts.revoked = true;
  let note: string | null = null;
  if (noOcsp && tri) {
    note = noOcspNotice(tri);
    if (e.crl?.status === 'good') note += `; CRL checked: not revoked (CRL of ${e.crl.thisUpdate ?? '?'})`;
    else if (e.crl?.status === 'unavailable')
      note += `; CRL not checked: ${e.crl.error?.code ?? ''}: ${e.crl.error?.message ?? ''}`;
  }
  return {
    id: e.target.id,
    certPath: e.target.certPath,
    staplePath: e.target.staplePath,
    state: certificateState(facts, now),
    status: s?.status ?? null,
    thisUpdate: s?.thisUpdate ?? null,
    nextUpdate: s?.nextUpdate ?? null,
    usableUntil: s?.usableUntil ?? null,
    nextRefresh: e.nextRefresh?.toISOString() ?? null,
    nextAttempt: nextAttempt?.toISOString() ?? null,
    nextAttemptReason: nextAttempt ? (e.nextReason ?? null) : null,
    lastAttempt: e.lastAttempt?.toISOString() ?? null,
    lastResult: e.lastResult ?? null,
    lastCode: e.lastCode ?? null,
    lastError: e.lastError ?? null,
    lastSuccess: e.lastSuccess?.toISOString() ?? null,
    consecutiveFailures: e.consecutiveFailures,
    responderUrl: e.responderUrl ?? null,
    inProgress,
    mechanism: tri?.mechanism ?? null,
    mustStaple: tri?.mustStaple ?? false,
    crlUrls: tri?.crlUrls ?? [],
    crlStatus: e.crl?.status ?? null,
    revocationTime: e.revoked?.time ?? null,
    revocationReason: e.revoked?.reason ?? null,
    note,
  };
}
