/**
 * One attempt of the daemon for one certificate, through the pipeline
 * (pipeline/process.ts `processTarget`) with the per-host gate in front:
 *
 * - When every responder host the certificate used last time is in backoff
 *   (host-health.ts), it is only judged (no request): a staple that is still
 *   fresh, or a replaced certificate that needs nothing, is handled at once;
 *   a renewal waits for the hosts (`host-backoff`, entry-state.ts). In fleet
 *   mode another node may hold the staple this one cannot fetch now, so the
 *   fleet is asked first.
 * - A staple that would expire while its hosts wait out their backoff gets an
 *   attempt anyway (an urgent probe), one probe per host at a time.
 * - Otherwise the pipeline runs with the attempt's transports: responder
 *   requests and caIssuers downloads alike go through the per-host gate.
 *
 * The helpers below it ({@link shortestLife}, {@link wakeWaiting}) are what
 * settling an attempt asks of the daemon's other certificates.
 */
import type { EngineContext } from '../pipeline/context.js';
import { EXPIRY_MARGIN_MS, type RandomSource } from '../pipeline/backoff.js';
import { processTarget } from '../pipeline/process.js';
import { toTarget } from '../batch/run.js';
import { noteEvents, type DaemonLogger, type EntryOutcome, type EntryState } from './entry-state.js';
import type { HostAttempt, HostHealth } from './host-health.js';
import type { HttpTransport } from '../io/http.js';

/** What an attempt needs from the daemon. */
export interface AttemptContext {
  /** The engine context of the running configuration. */
  ctx: EngineContext;
  /** The daemon's transport (the attempt wraps it). */
  transport: HttpTransport;
  health: HostHealth;
  now: () => Date;
  log: DaemonLogger;
}

/** What was asked: forced (SIGUSR2), and whether a better staple from the fleet is taken even when not due. */
export interface AttemptRequest {
  force: boolean;
  fleet: boolean;
}

/** What an attempt did, for {@link nextEntryState} and the host health. */
export interface AttemptRun {
  result: EntryOutcome;
  /** The transports' records, when requests could be sent. */
  hosts?: HostAttempt;
}

/** Runs one attempt for `entry` (see the module comment). Never throws for the certificate's own failures. */
export async function attemptCertificate(
  entry: EntryState,
  ask: AttemptRequest,
  c: AttemptContext,
): Promise<AttemptRun> {
  const id = entry.target.id;
  const blockedUntil = ask.force ? undefined : c.health.allBlockedUntil(entry.hosts);
  const urgent = blockedUntil !== undefined && isUrgent(entry, blockedUntil, c.now());
  const probing = urgent && c.health.startProbe(entry.hosts) ? [...entry.hosts] : [];
  try {
    if (probing.length > 0) {
      c.log({
        level: 'info',
        id,
        msg: `the staple expires soon; probing responder ${entry.hosts.join(', ')} despite its backoff`,
      });
    }
    if (blockedUntil && probing.length === 0) {
      const fromFleet = c.ctx.fleet
        ? await processTarget(toTarget(entry.target), c.ctx, { fleetOnly: true })
        : undefined;
      if (fromFleet && fromFleet.result !== 'updated') for (const e of noteEvents(id, fromFleet)) c.log(e);
      const judged =
        fromFleet?.result === 'updated'
          ? fromFleet
          : await processTarget(toTarget(entry.target), c.ctx, { dryRun: true });
      return {
        result:
          judged !== fromFleet && judged.decision?.action === 'renew'
            ? { kind: 'host-backoff', judged, blockedUntil, urgent }
            : { kind: 'attempt', outcome: judged, forced: ask.force },
      };
    }
    const hosts = c.health.attempt(c.transport, { probe: probing.length > 0 });
    const ctx: EngineContext = {
      ...c.ctx,
      transport: hosts.transport,
      resolver: c.ctx.resolver.withTransport(hosts.issuerTransport),
    };
    const outcome = await processTarget(toTarget(entry.target), ctx, { force: ask.force, fleetApply: ask.fleet });
    const result: EntryOutcome = { kind: 'attempt', outcome, forced: ask.force, hosts: hosts.hosts() };
    const url = hosts.requestUrl();
    if (url !== undefined) result.requestUrl = url;
    return { result, hosts };
  } finally {
    c.health.endProbe(probing);
  }
}

/**
 * True when the certificate's usable staple would be within
 * {@link EXPIRY_MARGIN_MS} of expiring by the time its hosts' backoff ends.
 */
export function isUrgent(entry: EntryState, blockedUntil: Date, now: Date): boolean {
  if (entry.staple?.status !== 'good') return false;
  const expires = new Date(entry.staple.usableUntil).getTime();
  return expires > now.getTime() && expires - EXPIRY_MARGIN_MS <= blockedUntil.getTime();
}

/** The shortest remaining life (ms) of a usable staple served by `host`, if any. */
export function shortestLife(entries: Iterable<EntryState>, host: string, now: Date): number | undefined {
  let min: number | undefined;
  for (const e of entries) {
    if (e.staple?.status !== 'good' || !e.hosts.includes(host)) continue;
    const left = new Date(e.staple.usableUntil).getTime() - now.getTime();
    if (left > 0 && (min === undefined || left < min)) min = left;
  }
  return min;
}

/** The timer of each certificate, as {@link wakeWaiting} moves it. */
export interface Timers {
  has(id: string): boolean;
  get(id: string): Date | undefined;
  set(id: string, at: Date): void;
}

/**
 * A host answered again after an outage: the certificates waiting for it
 * (in backoff, expiring or failing, not in progress) try again within 5 s.
 */
export function wakeWaiting(
  entries: Iterable<EntryState & { inFlight: boolean }>,
  host: string,
  except: string,
  timers: Timers,
  now: Date,
  random: RandomSource,
): void {
  for (const e of entries) {
    const id = e.target.id;
    if (id === except || e.inFlight || !e.hosts.includes(host) || !timers.has(id)) continue;
    if (e.nextReason !== 'backoff' && e.nextReason !== 'expiring' && e.lastResult !== 'failed') continue;
    const at = now.getTime() + Math.round(random() * 5_000);
    if ((timers.get(id)?.getTime() ?? 0) > at) timers.set(id, new Date(at));
  }
}
