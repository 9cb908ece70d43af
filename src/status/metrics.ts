/**
 * Prometheus metrics of the daemon (prom-client, loaded only when the status
 * service is enabled).
 *
 * The point of the metrics is promise 8 of docs/ARCHITECTURE.md: when a staple will
 * expire before a good replacement arrives, the operator must hear about it
 * from their alerting, not from a browser's "revoked?" page. The useful
 * alert is `staplekeeper_staple_expiry_timestamp_seconds - time() < 86400`:
 * it fires while the old staple still works (a staple is refreshed at half its
 * validity by default, so the alert has days of warning).
 *
 * Per-certificate gauges are computed from a fresh snapshot at each scrape,
 * so a removed certificate disappears from the output and memory does not
 * grow with certificates that came and went. Counters and the histogram are
 * bounded too: `result` is `success` or an error code (a fixed set).
 *
 * Metrics:
 * - `staplekeeper_staple_expiry_timestamp_seconds{id}`: nextUpdate of the staple on disk.
 * - `staplekeeper_staple_next_refresh_timestamp_seconds{id}`: when the daemon will next look at it (the scheduled attempt; while one is queued or running, its refresh point).
 * - `staplekeeper_last_success_timestamp_seconds{id}`: last attempt that ended with a good staple on disk.
 * - `staplekeeper_consecutive_failures{id}`.
 * - `staplekeeper_certificate_revoked{id}`: 1 when the responder or the CRL says revoked (written or not), else 0.
 * - `staplekeeper_certificate_state{id,state,mechanism,must_staple}`: 1, the state with the triage (core/triage.ts).
 * - `staplekeeper_certificates{state}`: one series per state of status-page.ts `STATES`
 *   (revoked, expired, never-fetched, failing, due, good, no-ocsp-url, disabled).
 * - `staplekeeper_fetch_total{result}`: attempts that sent a request to a responder (an
 *   attempt that stopped before, e.g. NO_OCSP_URL, NO_ISSUER or a host in backoff, is not counted).
 * - `staplekeeper_fetch_duration_seconds`: their duration (histogram).
 * - Fleet mode (docs/fleet.md): `staplekeeper_fleet_up{redis}` (1 up, 0 degraded; absent
 *   without a fleet) and `staplekeeper_fleet_staples_total{source}`: staples renewed from the
 *   fleet (`source="fleet"`, no request) and from a responder (`source="responder"`).
 * - `staplekeeper_responder_hosts_in_backoff`, `staplekeeper_info{version}`,
 *   `process_resident_memory_bytes`, `nodejs_heap_size_used_bytes`.
 */
import { CERTIFICATE_STATES, type CertificateState, type DaemonObserver, type DaemonSnapshot } from './page.js';

/** What the metrics read from the daemon. */
export interface MetricsProvider {
  snapshot(): DaemonSnapshot;
  addObserver(o: DaemonObserver): () => void;
}

/** A metrics registry bound to one daemon. */
export interface DaemonMetrics {
  /** The Content-Type of {@link DaemonMetrics.render}'s output. */
  contentType: string;
  /** The Prometheus text exposition of the current state. */
  render(): Promise<string>;
  /** Unsubscribes from the daemon. */
  close(): void;
}

const STATES: readonly CertificateState[] = CERTIFICATE_STATES;

const seconds = (iso: string | null): number | undefined => (iso === null ? undefined : Date.parse(iso) / 1000);

/** Creates the registry and subscribes to the daemon's attempts. */
export async function createMetrics(provider: MetricsProvider): Promise<DaemonMetrics> {
  const prom = await import('prom-client');
  const registry = new prom.Registry();
  let snap: DaemonSnapshot | undefined;
  const current = (): DaemonSnapshot => (snap ??= provider.snapshot());

  const perCert = (
    name: string,
    help: string,
    value: (c: DaemonSnapshot['certificates'][number]) => number | undefined,
  ): void => {
    new prom.Gauge({
      name,
      help,
      labelNames: ['id'],
      registers: [registry],
      collect() {
        this.reset();
        for (const c of current().certificates) {
          const v = value(c);
          if (v !== undefined && Number.isFinite(v)) this.set({ id: c.id }, v);
        }
      },
    });
  };
  perCert(
    'staplekeeper_staple_expiry_timestamp_seconds',
    'nextUpdate of the staple on disk (Unix time); alert when it comes close',
    (c) => seconds(c.nextUpdate),
  );
  perCert(
    'staplekeeper_staple_next_refresh_timestamp_seconds',
    'When the daemon next looks at the staple (Unix time): the scheduled attempt, else the refresh point',
    (c) => seconds(c.nextAttempt) ?? seconds(c.nextRefresh),
  );
  perCert(
    'staplekeeper_last_success_timestamp_seconds',
    'Last attempt that ended with a good staple on disk (Unix time)',
    (c) => seconds(c.lastSuccess),
  );
  perCert('staplekeeper_consecutive_failures', 'Failed attempts in a row', (c) => c.consecutiveFailures);
  perCert(
    'staplekeeper_certificate_revoked',
    'The responder or the CRL says the certificate is revoked (1), whether or not the answer was written',
    (c) => (c.state === 'revoked' ? 1 : 0),
  );
  new prom.Gauge({
    name: 'staplekeeper_certificate_state',
    help: 'The state of each certificate (always 1), with its revocation mechanism (ocsp, crl, none) and must-staple flag',
    labelNames: ['id', 'state', 'mechanism', 'must_staple'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of current().certificates) {
        this.set(
          {
            id: c.id,
            state: c.state,
            mechanism: c.mechanism ?? 'unknown',
            must_staple: c.mustStaple ? 'true' : 'false',
          },
          1,
        );
      }
    },
  });

  new prom.Gauge({
    name: 'staplekeeper_certificates',
    help: `Certificates by state: ${STATES.join(', ')}`,
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const counts = new Map<string, number>(STATES.map((s) => [s, 0]));
      for (const c of current().certificates) counts.set(c.state, (counts.get(c.state) ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  new prom.Gauge({
    name: 'staplekeeper_responder_hosts_in_backoff',
    help: 'Responder hosts currently left alone after failures',
    registers: [registry],
    collect() {
      this.set(current().hostsInBackoff);
    },
  });
  new prom.Gauge({
    name: 'staplekeeper_info',
    help: 'Version of the running staplekeeper',
    labelNames: ['version'],
    registers: [registry],
    collect() {
      this.reset();
      this.set({ version: current().version }, 1);
    },
  });
  new prom.Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes',
    registers: [registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new prom.Gauge({
    name: 'nodejs_heap_size_used_bytes',
    help: 'Process heap size used from Node.js in bytes',
    registers: [registry],
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });

  const fetches = new prom.Counter({
    name: 'staplekeeper_fetch_total',
    help: 'Attempts that sent a request to a responder, by result: success or the error code',
    labelNames: ['result'],
    registers: [registry],
  });
  fetches.inc({ result: 'success' }, 0);
  const durations = new prom.Histogram({
    name: 'staplekeeper_fetch_duration_seconds',
    help: 'Duration of attempts that sent a request to a responder (fetch and verify)',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  // fleet mode: is the fleet up, and how many staples came from it rather than a responder
  new prom.Gauge({
    name: 'staplekeeper_fleet_up',
    help: 'Fleet mode: 1 when the fleet store (Redis) answers, 0 when the fleet is degraded',
    labelNames: ['redis'],
    registers: [registry],
    collect() {
      this.reset();
      const f = current().fleet;
      if (f) this.set({ redis: f.redis }, f.up ? 1 : 0);
    },
  });
  const fleetStaples = new prom.Counter({
    name: 'staplekeeper_fleet_staples_total',
    help: 'Fleet mode: staples renewed by source: fleet (taken from the fleet, no request) or responder (fetched here)',
    labelNames: ['source'],
    registers: [registry],
  });
  const unsubscribe = provider.addObserver({
    onAttempt(ev) {
      if (ev.fleetHit) fleetStaples.inc({ source: 'fleet' });
      else if (ev.outcome.fleet && ev.fetched && ev.outcome.result === 'updated')
        fleetStaples.inc({ source: 'responder' });
      if (!ev.fetched) return;
      const result = ev.outcome.result === 'updated' ? 'success' : (ev.outcome.error?.code ?? 'INTERNAL');
      fetches.inc({ result });
      durations.observe(ev.seconds);
    },
  });

  return {
    contentType: registry.contentType,
    async render() {
      snap = undefined;
      try {
        return await registry.metrics();
      } finally {
        snap = undefined;
      }
    },
    close: unsubscribe,
  };
}
