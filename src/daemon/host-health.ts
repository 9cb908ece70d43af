/**
 * Per-host health of responder hosts (and caIssuers hosts), as a transport
 * wrapper: the daemon sends every request of an attempt, the issuer
 * resolver's downloads included, through {@link HostAttempt.transport} or
 * {@link HostAttempt.issuerTransport}. The wrapper
 *
 * - refuses a request to a host in backoff at once, with `HTTP_NETWORK` naming
 *   the host and the time it is left alone until, without contacting it
 *   (an urgent probe, one per host at a time, goes through);
 * - records what each host did: answered (a status below 500), failed at the
 *   host level (network, timeout, 5xx: {@link isHostFailure}) or was refused.
 *
 * When the attempt is over, {@link HostAttempt.settle} turns the records into
 * the per-host backoff ({@link HostBackoff}: one step per outage, capped by
 * the shortest remaining life of the host's staples): a host that failed is
 * left alone, a host that answered is healthy again. A 200 that carries
 * `tryLater` or `internalError` (RFC 6960 §4.2.1) is the host failing too,
 * which only the outcome knows, so settling waits for it.
 */
import { StapleError, toStapleError, type ErrorCode } from '../core/errors.js';
import type { HttpTransport } from '../io/http.js';
import { HostBackoff, isHostFailure, type RandomSource } from '../pipeline/backoff.js';

/** What one request did at its host. */
export interface HostRecord {
  host: string;
  /** The responder base URL (a GET's encoded request left out) or the download URL. */
  url: string;
  /** ok: the host answered (status < 500); failed: a host-level failure; blocked: not contacted (backoff). */
  kind: 'ok' | 'failed' | 'blocked';
  code?: ErrorCode;
  /** A caIssuers download (not a responder request). */
  issuer?: boolean;
}

/** What {@link HostAttempt.settle} needs from the daemon. */
export interface SettleHooks {
  /** The shortest remaining life (ms) of a usable staple served by `host`, if any. */
  lifeOf(host: string): number | undefined;
  /** `host` answered after failing before: the certificates waiting for it may try again. */
  onRecovered(host: string): void;
}

export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** The responder base URL of a request (a GET URL ends with the encoded request, RFC 5019 §5). */
export function baseUrlOf(method: 'GET' | 'POST', url: string): string {
  if (method !== 'GET') return url;
  const i = url.lastIndexOf('/');
  const scheme = url.indexOf('//');
  return i > scheme + 1 ? url.slice(0, i) : url;
}

/** The health of every host the daemon talks to. */
export class HostHealth {
  private readonly backoff: HostBackoff;
  /** Hosts an urgent probe is talking to right now (at most one probe per host). */
  private readonly probing = new Set<string>();

  constructor(
    private readonly now: () => Date,
    random: RandomSource = Math.random,
  ) {
    this.backoff = new HostBackoff(random);
  }

  /**
   * The transports of one attempt over `base`. With `probe`, hosts in backoff
   * are contacted anyway (the caller holds them with {@link startProbe}).
   */
  attempt(base: HttpTransport, options: { probe?: boolean } = {}): HostAttempt {
    return new HostAttempt(this, base, options.probe ?? false);
  }

  /** The end of the host's backoff, while it lasts. */
  blockedUntil(host: string): Date | undefined {
    return this.backoff.blockedUntil(host, this.now());
  }

  /** The end of the backoff of `hosts` when every one of them is in backoff (the earliest), else undefined. */
  allBlockedUntil(hosts: readonly string[]): Date | undefined {
    if (hosts.length === 0) return undefined;
    const now = this.now();
    const blocks = hosts.map((h) => this.backoff.blockedUntil(h, now));
    if (blocks.some((b) => b === undefined)) return undefined;
    return new Date(Math.min(...blocks.map((b) => (b as Date).getTime())));
  }

  failuresOf(host: string): number {
    return this.backoff.failuresOf(host);
  }

  /** Claims `hosts` for an urgent probe: false (nothing claimed) when one of them is being probed already. */
  startProbe(hosts: readonly string[]): boolean {
    if (hosts.some((h) => this.probing.has(h))) return false;
    for (const h of hosts) this.probing.add(h);
    return true;
  }

  endProbe(hosts: readonly string[]): void {
    for (const h of hosts) this.probing.delete(h);
  }

  /** Forgets every host (SIGUSR2: the operator asked for everything now). */
  clear(): void {
    this.backoff.clear();
  }

  /** The hosts in backoff now, soonest release first. */
  list(): Array<{ host: string; until: Date; failures: number }> {
    return this.backoff.list(this.now());
  }

  /** Hosts currently known to be failing. */
  get size(): number {
    return this.backoff.size;
  }

  /** @internal Used by {@link HostAttempt.settle}. */
  record(r: HostRecord, failure: ErrorCode | undefined, hooks: SettleHooks): void {
    const now = this.now();
    if (failure) {
      // one step per outage, capped by the shortest remaining life of the host's staples (backoff.ts)
      const life = this.backoff.blockedUntil(r.host, now) ? undefined : hooks.lifeOf(r.host);
      this.backoff.recordFailure(r.host, now, failure, life === undefined ? {} : { shortestLifeMs: life });
    } else {
      const wasDown = this.backoff.failuresOf(r.host) > 0;
      this.backoff.recordSuccess(r.host);
      if (wasDown) hooks.onRecovered(r.host);
    }
  }
}

/** The transports of one attempt, and what they saw. */
export class HostAttempt {
  readonly records: HostRecord[] = [];
  /** For responder requests. */
  readonly transport: HttpTransport;
  /** For caIssuers downloads (the issuer resolver's transport). */
  readonly issuerTransport: HttpTransport;

  constructor(
    private readonly health: HostHealth,
    base: HttpTransport,
    probe: boolean,
  ) {
    this.transport = this.wrap(base, false, probe);
    this.issuerTransport = this.wrap(base, true, probe);
  }

  private wrap(base: HttpTransport, issuer: boolean, probe: boolean): HttpTransport {
    const tag = issuer ? { issuer } : {};
    return {
      send: async (req) => {
        const host = hostOf(req.url);
        const url = baseUrlOf(req.method, req.url);
        const until = probe ? undefined : this.health.blockedUntil(host);
        if (until) {
          this.records.push({ host, url, kind: 'blocked', ...tag });
          throw new StapleError(
            'HTTP_NETWORK',
            `${url}: not contacting ${host} before ${until.toISOString()}: it failed ${this.health.failuresOf(host)} time(s) in a row (per-host backoff)`,
          );
        }
        try {
          const res = await base.send(req);
          this.records.push(
            res.status >= 500
              ? { host, url, kind: 'failed', code: 'HTTP_STATUS', ...tag }
              : { host, url, kind: 'ok', ...tag },
          );
          return res;
        } catch (e) {
          const err = toStapleError(e);
          this.records.push({ host, url, kind: isHostFailure(err.code) ? 'failed' : 'ok', code: err.code, ...tag });
          throw e;
        }
      },
      // the base transport belongs to the daemon
      close: async () => undefined,
    };
  }

  /** The hosts it talked to; when it talked to none, the ones it was refused; else none. */
  hosts(): string[] {
    const contacted = this.records.filter((r) => r.kind !== 'blocked');
    return [...new Set((contacted.length > 0 ? contacted : this.records).map((r) => r.host))];
  }

  /** The first responder URL a request went to (or was refused). */
  requestUrl(): string | undefined {
    return this.records.find((r) => !r.issuer)?.url;
  }

  /** True when a request reached a responder (not a caIssuers host, not refused). */
  contactedResponder(): boolean {
    return this.records.some((r) => r.kind !== 'blocked' && !r.issuer);
  }

  /**
   * Records the attempt in the hosts' health, once its outcome is known
   * (`outcomeCode`: the error code of the outcome, if it failed).
   */
  settle(outcomeCode: ErrorCode | undefined, hooks: SettleHooks): void {
    // per-host health: a 200 carrying tryLater or internalError is still the host failing
    const hostLevel = outcomeCode === 'OCSP_TRY_LATER' || outcomeCode === 'OCSP_INTERNAL_ERROR';
    for (const r of this.records) {
      if (r.kind === 'blocked') continue;
      const failure =
        r.kind === 'failed' ? (r.code ?? 'HTTP_NETWORK') : hostLevel && !r.issuer ? outcomeCode : undefined;
      this.health.record(r, failure, hooks);
    }
  }
}
