/**
 * The long-running renewer (`staplekeeper daemon`, `ocsprenewer -persist`):
 * one schedule for every certificate, retries with backoff, watching for new
 * and renewed certificates, and a status service on request.
 *
 * It is built from the same pieces as `run`: every certificate goes through
 * {@link processTarget} with a context from {@link contextFor}, so the daemon
 * writes exactly what `run` would write, verified the same way
 * (RFC 6960 §3.2 and §4.2.2), atomically (io/store.ts). What it adds is time:
 *
 * - At start: the configuration is already validated (loadConfig); every
 *   staple folder is proved writable by creating and removing a file in it
 *   (ocsprenewer does the same for its output directory, §6); every
 *   certificate is checked once; then each gets its next attempt from
 *   {@link planNextAttempt} and the daemon sleeps on one timer
 *   ({@link Schedule}).
 * - Work happens in batches that hold the staple-folder lock
 *   ({@link acquireLock}) only while they run, so a `staplekeeper run`
 *   started meanwhile waits for the batch and then proceeds (or gives up
 *   after `lock_timeout` with a message naming the daemon's PID).
 * - Errors in one certificate never stop the loop: processTarget never
 *   throws, and everything around it is caught and logged.
 * - A responder host that fails is left alone for its backoff
 *   ({@link HostBackoff}), on top of the per-host concurrency limit of the
 *   transport.
 *
 * The engine knows nothing about signals or log formats: the CLI maps
 * SIGUSR1/SIGUSR2/SIGHUP/SIGTERM to {@link StapleDaemon.checkNow},
 * {@link StapleDaemon.renewAll}, {@link StapleDaemon.reload} and
 * {@link StapleDaemon.stop}, and formats {@link LogEvent}s.
 */
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { LoadedConfig, TargetConfig } from '../config/types.js';
import { toStapleError } from '../core/errors.js';
import { systemClock, type Clock } from '../io/clock.js';
import type { Fleet, FleetHealth } from '../fleet/contract.js';
import type { HttpTransport } from '../io/http.js';
import { cleanStaleTemps, createFileStore, type StapleStore } from '../io/store.js';
import { VERSION } from '../version.js';
import type { HeldLock } from '../batch/lock.js';
import { contextFor, crlWatchFor, toTarget, transportFor } from '../batch/run.js';
import { runBatchStep } from '../batch/step.js';
import { EXPIRY_MARGIN_MS, jitter, Schedule, type RandomSource } from '../pipeline/backoff.js';
import { readMarks } from '../revocation/marks.js';
import type { EngineContext, TargetOutcome } from '../pipeline/context.js';
import { processTarget } from '../pipeline/process.js';
import { byUrgency, certificateState, type DaemonObserver, type DaemonSnapshot } from '../status/page.js';
import { snapshotOf } from '../status/snapshot.js';
import {
  newEntryState,
  nextEntryState,
  noteEvents,
  type DaemonLogger,
  type EntryOutcome,
  type EntryState,
} from './entry-state.js';
import { HostHealth, type HostAttempt } from './host-health.js';
import { sourceFromConfig, type DaemonSource, type DiscoverResult, type DiscoveryProblem } from './watch.js';
import { proveWritable } from './writable.js';

export type {
  AttemptEvent,
  CertificateState,
  CertificateStatus,
  DaemonObserver,
  DaemonSnapshot,
} from '../status/page.js';
export type { DaemonSource, DiscoverResult, DiscoveryProblem, WatchDir } from './watch.js';
export type { DaemonLogger, LogEvent, LogLevel } from './entry-state.js';
export { byUrgency, certificateState, sourceFromConfig };

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/** Options of {@link StapleDaemon.start}. */
export interface DaemonOptions {
  source: DaemonSource;
  /** Re-reads the source for SIGHUP; without it a reload only re-discovers. */
  reload?: () => Promise<DaemonSource>;
  log: DaemonLogger;
  clock?: Clock;
  random?: RandomSource;
  /** Replaces the HTTP transport built from the settings (tests). */
  transport?: HttpTransport;
  store?: StapleStore;
  /** `HOST:PORT` or `PORT` for the status service; overrides `daemon.status.listen`. */
  listen?: string;
  /** Overrides `daemon.watch`. */
  watch?: boolean;
  /** Renew everything in the initial check instead of checking it (ocsprenewer `-now`). */
  initialForce?: boolean;
  /** How long {@link StapleDaemon.stop} waits for work in progress (default 7 s, inside systemd's and our 10 s). */
  stopGraceMs?: number;
  /** Quiet time before a burst of file changes is acted on (default 500 ms). */
  debounceMs?: number;
  /** Fleet mode: use this fleet instead of opening the one of `fleet:` (tests). */
  fleet?: Fleet;
  /** The environment hooks run with (default `process.env`), as `runOnce` takes it. */
  env?: NodeJS.ProcessEnv;
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

/** A certificate in the daemon: its state (entry-state.ts) and its place in the queue. */
interface Entry extends EntryState {
  inFlight: boolean;
  /** Asked for again while in flight (force wins). */
  again?: Queued | undefined;
}

/** A queued attempt: forced (SIGUSR2), and whether a better staple from the fleet is taken even when not due. */
interface Queued {
  force: boolean;
  fleet?: boolean;
}

const SWEEP_KEY = '\u0000sweep';
/** Pause between two lock-holding batches, longer than acquireLock's 200 ms poll, so a waiting `run` gets its turn. */
const LOCK_FAIRNESS_MS = 300;
/** Retry of a batch that could not get the lock. */
const LOCK_RETRY_MS = 60_000;

/** A running daemon. Create with {@link StapleDaemon.start}. */
export class StapleDaemon {
  private source: DaemonSource;
  private readonly options: DaemonOptions;
  private readonly log: DaemonLogger;
  private readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly store: StapleStore;
  private readonly health: HostHealth;
  private readonly schedule: Schedule;
  private readonly entries = new Map<string, Entry>();
  private readonly queue = new Map<string, Queued>();
  private readonly observers = new Set<DaemonObserver>();
  private readonly reportedProblems = new Set<string>();
  private transport!: HttpTransport;
  private retiredTransports: HttpTransport[] = [];
  private ctx!: EngineContext;
  /** How often the CRL of a `crl` certificate is looked at again (settings `crl.interval`). */
  private crlIntervalMs = 3_600_000;
  private watcher: { close(): Promise<void> } | undefined;
  private server: { close(): Promise<void>; url: string; listen: string } | undefined;
  private readonly startedAt: Date;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private lock: HeldLock | undefined;
  private active = 0;
  private pumping: Promise<void> | undefined;
  private onDrained: (() => void) | undefined;
  private batchOutcomes: TargetOutcome[] = [];
  private idleWaiters: Array<() => void> = [];
  private reloading: Promise<boolean> | undefined;
  /** Fleet mode (src/fleet, docs/fleet.md). */
  private fleet: Fleet | undefined;
  private fleetKey: string | undefined;
  private unsubscribeFleet: (() => void) | undefined;

  private constructor(options: DaemonOptions) {
    this.options = options;
    this.source = options.source;
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.store = options.store ?? createFileStore();
    this.health = new HostHealth(() => this.clock.now(), this.random);
    this.schedule = new Schedule(this.clock, (ids) => this.onDue(ids));
    this.startedAt = this.clock.now();
  }

  /**
   * Starts the daemon: discovers the certificates, proves the staple folders
   * writable, opens the status service and the watchers, queues the initial
   * check of every certificate and arms the timer. Resolves once all that is
   * set up (the initial check runs on).
   *
   * @throws StapleError `FILE_WRITE` for an unwritable folder, `CONFIG_INVALID`
   *   for an unusable listen address; nothing is left running then.
   */
  static async start(options: DaemonOptions): Promise<StapleDaemon> {
    const d = new StapleDaemon(options);
    try {
      await d.setUp();
    } catch (e) {
      await d.stop().catch(() => undefined);
      throw e;
    }
    return d;
  }

  private get settings(): LoadedConfig['settings'] {
    return this.source.config.settings;
  }

  private async setUp(): Promise<void> {
    const found = await this.source.discover();
    await this.checkFolders(this.source, found.targets);
    this.transport = this.options.transport ?? transportFor(this.source.config);
    await this.openFleet();
    this.ctx = this.makeContext(this.source.config);
    // temporary files left by an interrupted process, as `run` does
    for (const dir of new Set(found.targets.map((t) => dirname(t.staplePath)))) await cleanStaleTemps(dir);
    await this.openStatusServer();
    await this.openWatcher();
    this.reportProblems(found.problems);
    for (const t of found.targets) this.entries.set(t.id, this.newEntry(t));
    this.log({
      level: 'info',
      msg: `staplekeeper ${VERSION} daemon started: ${found.targets.length} certificate(s) from ${this.source.describe}; ${this.watcher ? 'watching their folders' : 'not watching folders'}; sweep every ${Math.round(this.settings.daemon.sweepIntervalMs / 60_000)} min`,
      fields: { certificates: found.targets.length, pid: process.pid },
    });
    this.scheduleSweep();
    const force = this.options.initialForce ?? false;
    // A certificate a previous run found revoked shows revoked from the start, and its
    // responder is asked again at once: the answer confirms the mark or clears it.
    const marks = readMarks(this.settings.ocspFolder);
    for (const [id, e] of this.entries) {
      const m = marks[id];
      if (m)
        e.revoked = {
          source: m.source,
          ...(m.time ? { time: m.time } : {}),
          ...(m.reason ? { reason: m.reason } : {}),
        };
      this.enqueue(id, force || m !== undefined, true);
    }
  }

  private newEntry(target: TargetConfig): Entry {
    return { ...newEntryState(target), inFlight: false };
  }

  private makeContext(config: LoadedConfig): EngineContext {
    const ctx = contextFor(config, this.transport, this.store, () => this.clock.now());
    // CRL watch is on in the daemon unless `crl.watch: false`; each CRL is looked at again every crl.interval
    this.crlIntervalMs = config.settings.crl.intervalMs;
    if (config.settings.crl.watch !== false) {
      ctx.crl = crlWatchFor(
        config,
        this.transport,
        this.store,
        () => this.clock.now(),
        (m) => this.log({ level: 'warn', msg: m }),
      );
    }
    if (this.fleet) {
      ctx.fleet = this.fleet;
      ctx.fleetWait = 'defer';
    }
    return ctx;
  }

  // ------------------------------------------------------------------ fleet

  /**
   * Fleet mode: connects to the fleet of `fleet:` (a store that is down is
   * logged, not fatal), and subscribes: a publication for a certificate this
   * daemon manages queues it at once to take the staple; a reconnection after
   * the store was down reconciles everything (publications missed meanwhile).
   * Called at start and by a reload that changes the section.
   */
  private async openFleet(): Promise<void> {
    const settings = this.settings.fleet;
    const key = settings ? JSON.stringify(settings) : undefined;
    if (key === this.fleetKey && (this.fleet !== undefined || key === undefined)) return;
    await this.closeFleet();
    this.fleetKey = key;
    if (!settings) return;
    const degraded = (redis: string, detail: string): string =>
      `fleet degraded: ${redis} cannot be reached (${detail}); ${settings.fetch ? 'fetching directly after a bounded wait' : 'fetch is false: keeping the staples on disk'}`;
    let fleet = this.options.fleet;
    if (!fleet) {
      const { openFleet } = await import('../fleet/index.js');
      fleet = await openFleet(settings, {
        httpTimeoutMs: this.settings.http.timeoutMs,
        onHealth: (up, detail) => {
          const redis = fleet?.health().redis ?? 'Redis';
          if (up) this.log({ level: 'info', msg: `fleet: ${redis} answers again` });
          else this.log({ level: 'warn', code: 'FLEET_UNAVAILABLE', msg: degraded(redis, detail) });
        },
      });
    }
    this.fleet = fleet;
    const h = fleet.health();
    if (h.up) {
      this.log({
        level: 'info',
        msg: `fleet: ${h.redis} (prefix ${h.prefix}; ${h.fetch ? 'fetching when due' : 'fetch is false: taking staples from the fleet only'})`,
      });
    } else {
      this.log({ level: 'warn', code: 'FLEET_UNAVAILABLE', msg: degraded(h.redis, h.lastError ?? 'no answer') });
    }
    this.unsubscribeFleet = fleet.subscribe({
      onStaple: (ids) => {
        for (const id of ids) this.enqueue(id, false, true);
      },
      onReconnect: () => {
        this.log({ level: 'info', msg: 'fleet: reconciling every certificate with the fleet' });
        for (const id of this.entries.keys()) this.enqueue(id, false, true);
      },
      onDown: () => undefined, // logged by onHealth
    });
  }

  private async closeFleet(): Promise<void> {
    this.unsubscribeFleet?.();
    this.unsubscribeFleet = undefined;
    const f = this.fleet;
    this.fleet = undefined;
    if (f && f !== this.options.fleet) await f.close().catch(() => undefined);
  }

  /** Fleet mode: how the fleet is (null without one). */
  fleetHealth(): FleetHealth | null {
    return this.fleet?.health() ?? null;
  }

  private async checkFolders(source: DaemonSource, targets: TargetConfig[]): Promise<void> {
    const folder = source.config.settings.ocspFolder;
    await proveWritable([folder, ...targets.map((t) => dirname(t.staplePath))], folder);
  }

  private reportProblems(problems: DiscoveryProblem[]): void {
    const now = new Set<string>();
    for (const p of problems) {
      const key = `${p.code}\u0000${p.message}`;
      now.add(key);
      if (this.reportedProblems.has(key)) continue;
      this.reportedProblems.add(key);
      this.log({ level: 'error', code: p.code, msg: p.message, fields: p.path ? { path: p.path } : {} });
    }
    for (const key of this.reportedProblems) if (!now.has(key)) this.reportedProblems.delete(key);
  }

  // ----------------------------------------------------------- status server

  private effectiveListen(): string | undefined {
    return this.options.listen ?? this.settings.daemon.statusListen;
  }

  private async openStatusServer(): Promise<void> {
    const listen = this.effectiveListen();
    if (!listen) return;
    // node:http and prom-client are loaded only when a status service is asked for
    const { startStatusServer } = await import('../status/server.js');
    const server = await startStatusServer({ listen, provider: this });
    this.server = { ...server, listen };
    this.log({
      level: 'info',
      msg: `status service listening on ${server.url} (/, /status, /metrics, /healthz)`,
      fields: { url: server.url },
    });
  }

  /** The status service's base URL, when one is listening. */
  get statusUrl(): string | undefined {
    return this.server?.url;
  }

  // ------------------------------------------------------------------ watch

  private async openWatcher(): Promise<void> {
    const enabled = this.options.watch ?? this.settings.daemon.watch;
    if (!enabled) return;
    const dirs = this.source.watchDirs();
    if (dirs.length === 0) return;
    const { watchFolders } = await import('./watch.js');
    this.watcher = await watchFolders(dirs, (events) => this.onFileEvents(events), {
      clock: this.clock,
      debounceMs: this.options.debounceMs ?? 500,
      onError: (e) => this.log({ level: 'warn', msg: `watching folders: ${e.message}` }),
    });
  }

  private onFileEvents(events: Array<{ path: string; kind: 'add' | 'change' | 'unlink' }>): void {
    if (this.stopping) return;
    void this.handleFileEvents(events).catch((e) => {
      const err = toStapleError(e);
      this.log({ level: 'error', code: err.code, msg: `handling file changes: ${err.message}` });
    });
  }

  private async handleFileEvents(events: Array<{ path: string; kind: 'add' | 'change' | 'unlink' }>): Promise<void> {
    const changed = new Set<string>();
    let rediscover = false;
    const byStaple = new Map([...this.entries.values()].map((e) => [e.target.staplePath, e]));
    for (const ev of events) {
      const staple = byStaple.get(ev.path);
      if (staple) {
        // our own writes are changes; only a staple removed behind our back needs action
        if (ev.kind === 'unlink') {
          this.log({
            level: 'warn',
            id: staple.target.id,
            msg: `the staple ${ev.path} was removed; fetching a new one now`,
          });
          this.enqueue(staple.target.id, false);
        }
        continue;
      }
      if (!this.source.isRelevant(ev.path)) continue;
      changed.add(ev.path);
      rediscover = true;
    }
    if (!rediscover) return;
    const touched = await this.rediscover('change');
    for (const e of this.entries.values()) {
      const t = e.target;
      if (touched.has(t.id)) continue;
      if ([t.certPath, t.chainPath, t.rootchainPath].some((p) => p !== undefined && changed.has(p))) {
        this.log({ level: 'info', id: t.id, msg: `certificate changed: ${t.certPath}; checking its staple now` });
        this.enqueue(t.id, false);
      }
    }
  }

  /**
   * Re-runs discovery and brings the set of certificates in line: new ones
   * are added and checked at once, changed definitions are checked at once,
   * vanished ones are dropped from the schedule. Returns the ids it queued.
   */
  private async rediscover(why: 'change' | 'sweep' | 'reload'): Promise<Set<string>> {
    const found = await this.source.discover();
    this.reportProblems(found.problems);
    const queued = new Set<string>();
    const ids = new Set(found.targets.map((t) => t.id));
    const folder = this.settings.ocspFolder;
    for (const t of found.targets) {
      const e = this.entries.get(t.id);
      if (!e || !sameTarget(e.target, t)) {
        // a certificate in a new scan subfolder gets a new staple subfolder, as at start
        await proveWritable([dirname(t.staplePath)], folder).catch((err: unknown) => {
          const x = toStapleError(err);
          this.log({ level: 'error', id: t.id, code: x.code, msg: x.message });
        });
      }
      if (!e) {
        this.entries.set(t.id, this.newEntry(t));
        this.log({
          level: 'info',
          id: t.id,
          msg: `new certificate ${t.certPath}; fetching its staple now`,
          fields: { certPath: t.certPath, staplePath: t.staplePath },
        });
        this.enqueue(t.id, false);
        queued.add(t.id);
      } else if (!sameTarget(e.target, t)) {
        e.target = t;
        this.log({
          level: 'info',
          id: t.id,
          msg: `certificate definition changed (${t.certPath} → ${t.staplePath}); checking now`,
        });
        this.enqueue(t.id, false);
        queued.add(t.id);
      }
    }
    for (const [id, e] of this.entries) {
      if (ids.has(id)) continue;
      this.entries.delete(id);
      this.queue.delete(id);
      this.schedule.delete(id);
      this.log({
        level: 'info',
        id,
        msg: `certificate ${e.target.certPath} is gone${why === 'reload' ? ' from the configuration' : ''}; no longer scheduled`,
      });
    }
    return queued;
  }

  // ------------------------------------------------------------- scheduling

  private scheduleSweep(): void {
    const interval = this.settings.daemon.sweepIntervalMs;
    this.schedule.set(
      SWEEP_KEY,
      new Date(this.clock.now().getTime() + Math.round(jitter(interval, this.random, 0.02))),
    );
  }

  private onDue(ids: string[]): void {
    for (const id of ids) {
      if (id === SWEEP_KEY) {
        this.scheduleSweep();
        void this.sweep();
      } else {
        this.enqueue(id, false);
      }
    }
  }

  /**
   * The periodic sweep (`daemon.sweep_interval`): re-discovers the
   * certificates and re-checks every one that is not in failure backoff
   * (fresh staples cost a file read and a signature check, no network). It
   * catches what the watcher missed: events lost on network file systems,
   * staples changed behind our back, a clock that jumped.
   */
  private async sweep(): Promise<void> {
    if (this.stopping) return;
    try {
      this.log({ level: 'debug', msg: 'periodic sweep: re-scanning folders and re-checking every certificate' });
      // CA folders are read again, so that an issuer added since is found
      this.ctx.resolver.refresh();
      const queued = await this.rediscover('sweep');
      // with a fleet, the sweep also reconciles: a publication missed meanwhile is taken now
      for (const [id, e] of this.entries)
        if (!queued.has(id) && e.consecutiveFailures === 0) this.enqueue(id, false, this.fleet !== undefined);
    } catch (e) {
      const err = toStapleError(e);
      this.log({ level: 'error', code: err.code, msg: `periodic sweep failed: ${err.message}` });
    }
  }

  /** Queues one certificate for the next batch. */
  private enqueue(id: string, force: boolean, fleet = false): void {
    if (this.stopping) return;
    const e = this.entries.get(id);
    if (!e) return;
    const merge = (q: Queued | undefined): Queued => ({
      force: (q?.force ?? false) || force,
      fleet: (q?.fleet ?? false) || fleet,
    });
    if (e.inFlight) {
      e.again = merge(e.again);
      return;
    }
    this.queue.set(id, merge(this.queue.get(id)));
    this.schedule.delete(id);
    this.kick();
  }

  private kick(): void {
    if (this.lock && this.onDrained) this.spawnWorkers();
    else if (!this.pumping) {
      this.pumping = this.pump().finally(() => {
        this.pumping = undefined;
        this.notifyIdle();
      });
    }
  }

  /** Batches (batch/step.ts): take the lock, run workers until the queue is empty, release, push and run hooks. */
  private async pump(): Promise<void> {
    while (this.queue.size > 0 && !this.stopping) {
      let locked = false;
      this.batchOutcomes = [];
      try {
        await runBatchStep({
          config: this.source.config,
          store: this.store,
          now: () => this.clock.now(),
          ...(this.options.env ? { env: this.options.env } : {}),
          onLockWait: (m) => this.log({ level: 'info', msg: m }),
          onMarksFailure: (m) => this.log({ level: 'error', code: 'FILE_WRITE', msg: m }),
          onNotice: (m) => this.log({ level: 'info', msg: m }),
          onHookRan: (event, count, stdout) =>
            this.log({
              level: 'info',
              msg: `${event} hook ran for ${count} certificate(s)${stdout ? `: ${stdout}` : ''}`,
            }),
          onFailure: (f) =>
            this.log({
              level: 'error',
              code: f.code,
              msg: f.event === 'haproxy' ? f.message : `${f.event} hook: ${f.message}`,
            }),
          process: async (lock) => {
            locked = true;
            try {
              if (lock && !this.stopping) await this.drain(lock);
            } finally {
              this.lock = undefined;
              this.onDrained = undefined;
            }
            return this.batchOutcomes;
          },
        });
      } catch (e) {
        const err = toStapleError(e);
        if (locked) {
          // drain never throws; this guards the bookkeeping around it
          this.log({ level: 'error', code: err.code, msg: `internal error in a batch: ${err.message}` });
        } else {
          const retry = new Date(this.clock.now().getTime() + Math.round(jitter(LOCK_RETRY_MS, this.random)));
          this.log({
            level: 'error',
            code: err.code,
            msg: `${err.message}; ${this.queue.size} certificate(s) will be retried at ${retry.toISOString()}`,
          });
          for (const id of this.queue.keys()) this.schedule.set(id, retry);
          this.queue.clear();
          return;
        }
      }
      this.batchOutcomes = [];
      this.closeRetiredTransports();
      if (this.queue.size > 0 && !this.stopping) await new Promise((r) => setTimeout(r, LOCK_FAIRNESS_MS));
    }
  }

  private drain(lock: HeldLock): Promise<void> {
    return new Promise((resolve) => {
      this.lock = lock;
      this.onDrained = () => {
        // no new worker may start once the batch is closing
        this.lock = undefined;
        this.onDrained = undefined;
        resolve();
      };
      this.spawnWorkers();
      if (this.active === 0) this.onDrained?.();
    });
  }

  private spawnWorkers(): void {
    const limit = Math.max(1, this.settings.concurrency);
    while (this.lock && !this.stopping && this.active < limit && this.queue.size > 0) {
      this.active++;
      void this.worker().finally(() => {
        this.active--;
        if (this.active === 0 && (this.queue.size === 0 || this.stopping)) this.onDrained?.();
      });
    }
  }

  private async worker(): Promise<void> {
    while (!this.stopping && this.lock) {
      const next = this.queue.entries().next();
      if (next.done) return;
      const [id, { force, fleet }] = next.value;
      this.queue.delete(id);
      try {
        await this.processOne(id, force, fleet ?? false);
      } catch (e) {
        // processTarget never throws; this guards the bookkeeping around it
        const err = toStapleError(e);
        this.log({ level: 'error', id, code: err.code, msg: `internal error: ${err.message}` });
        if (this.entries.has(id)) this.schedule.set(id, new Date(this.clock.now().getTime() + 3_600_000));
      }
    }
  }

  /**
   * One attempt for one certificate. When every responder host it used last
   * time is in backoff, it is first only judged (no fetch): a staple that is
   * still fresh, or a replaced certificate that needs nothing, is handled at
   * once; only a renewal waits for the host.
   */
  private async processOne(id: string, force: boolean, fleet = false): Promise<void> {
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.inFlight = true;
    const t0 = performance.now();
    let result: EntryOutcome;
    let attempt: HostAttempt | undefined;
    let probing: string[] = [];
    try {
      const blockedUntil = force ? undefined : this.health.allBlockedUntil(entry.hosts);
      // A staple that would expire while its hosts wait out their backoff gets an
      // attempt anyway: one probe per host at a time; the others look again soon.
      const urgent = blockedUntil !== undefined && this.isUrgent(entry, blockedUntil);
      if (urgent && this.health.startProbe(entry.hosts)) {
        probing = [...entry.hosts];
        this.log({
          level: 'info',
          id,
          msg: `the staple expires soon; probing responder ${entry.hosts.join(', ')} despite its backoff`,
        });
      }
      if (blockedUntil && probing.length === 0) {
        // fleet mode: another node may hold the staple this one cannot fetch now
        const fromFleet = this.fleet
          ? await processTarget(toTarget(entry.target), this.ctx, { fleetOnly: true })
          : undefined;
        if (fromFleet && fromFleet.result !== 'updated') for (const e of noteEvents(id, fromFleet)) this.log(e);
        const judged =
          fromFleet?.result === 'updated'
            ? fromFleet
            : await processTarget(toTarget(entry.target), this.ctx, { dryRun: true });
        result =
          judged !== fromFleet && judged.decision?.action === 'renew'
            ? { kind: 'host-backoff', judged, blockedUntil, urgent }
            : { kind: 'attempt', outcome: judged, forced: force };
      } else {
        // caIssuers downloads go through the per-host backoff too
        attempt = this.health.attempt(this.transport, { probe: probing.length > 0 });
        const ctx: EngineContext = {
          ...this.ctx,
          transport: attempt.transport,
          resolver: this.ctx.resolver.withTransport(attempt.issuerTransport),
        };
        const outcome = await processTarget(toTarget(entry.target), ctx, { force, fleetApply: fleet });
        result = { kind: 'attempt', outcome, forced: force, hosts: attempt.hosts() };
        const url = attempt.requestUrl();
        if (url !== undefined) result.requestUrl = url;
      }
    } finally {
      this.health.endProbe(probing);
      entry.inFlight = false;
      this.requeueIfAsked(entry);
    }
    const seconds = (performance.now() - t0) / 1000;
    if (this.entries.get(id) !== entry) return; // removed meanwhile
    this.apply(entry, result, attempt);
    if (result.kind !== 'attempt') return;
    const outcome = result.outcome;
    // only attempts that sent a request to a responder count as fetches (not NO_OCSP_URL, NO_ISSUER, backoff, …)
    const fleetHit = outcome.fleet?.role === 'hit';
    const fetched = (outcome.result === 'updated' && !fleetHit) || (attempt?.contactedResponder() ?? false);
    for (const o of this.observers) {
      try {
        o.onAttempt?.({ id, outcome, fetched, seconds, fleetHit });
      } catch {
        // an observer never breaks the loop
      }
    }
    this.batchOutcomes.push(outcome);
  }

  /** Applies an attempt (entry-state.ts): the entry's new state, the hosts' health, the timer, the log. */
  private apply(entry: Entry, result: EntryOutcome, attempt: HostAttempt | undefined): void {
    // CRL watch on: a `crl` certificate is looked at again every crl.interval
    if (result.kind === 'attempt' && this.ctx.crl) result.crlIntervalMs = this.crlIntervalMs;
    const t = nextEntryState(entry, result, this.clock.now(), this.random);
    Object.assign(entry, t.state);
    attempt?.settle(result.kind === 'attempt' ? result.outcome.error?.code : undefined, {
      lifeOf: (host) => this.shortestLifeFor(host),
      onRecovered: (host) => this.wakeWaitingOn(host, entry.target.id),
    });
    const id = entry.target.id;
    if (t.next === null) this.schedule.delete(id);
    else if (t.next) this.schedule.set(id, t.next);
    for (const e of t.log) this.log(e);
  }

  /**
   * True when the certificate's usable staple would be within
   * {@link EXPIRY_MARGIN_MS} of expiring by the time its hosts' backoff ends.
   */
  private isUrgent(entry: Entry, blockedUntil: Date): boolean {
    if (entry.staple?.status !== 'good') return false;
    const expires = new Date(entry.staple.usableUntil).getTime();
    return expires > this.clock.now().getTime() && expires - EXPIRY_MARGIN_MS <= blockedUntil.getTime();
  }

  /** The shortest remaining life (ms) of a usable staple served by `host`, if any. */
  private shortestLifeFor(host: string): number | undefined {
    const now = this.clock.now().getTime();
    let min: number | undefined;
    for (const e of this.entries.values()) {
      if (e.staple?.status !== 'good' || !e.hosts.includes(host)) continue;
      const left = new Date(e.staple.usableUntil).getTime() - now;
      if (left > 0 && (min === undefined || left < min)) min = left;
    }
    return min;
  }

  /** A host answered again after an outage: the certificates waiting for it try again within seconds. */
  private wakeWaitingOn(host: string, except: string): void {
    const now = this.clock.now().getTime();
    for (const [id, e] of this.entries) {
      if (id === except || e.inFlight || !e.hosts.includes(host) || !this.schedule.has(id)) continue;
      if (e.nextReason !== 'backoff' && e.nextReason !== 'expiring' && e.lastResult !== 'failed') continue;
      const at = now + Math.round(this.random() * 5_000);
      if ((this.schedule.get(id)?.getTime() ?? 0) > at) this.schedule.set(id, new Date(at));
    }
  }

  /** A change that arrived while the certificate was in progress is handled right after. */
  private requeueIfAsked(entry: Entry): void {
    const again = entry.again;
    entry.again = undefined;
    if (again && !this.stopping && this.entries.get(entry.target.id) === entry) {
      // after the current microtask, so that the outcome is recorded first
      queueMicrotask(() => this.enqueue(entry.target.id, again.force, again.fleet ?? false));
    }
  }

  private closeRetiredTransports(): void {
    if (this.active > 0 || this.lock) return;
    const old = this.retiredTransports;
    this.retiredTransports = [];
    for (const t of old) void t.close().catch(() => undefined);
  }

  private notifyIdle(): void {
    if (this.pumping || this.queue.size > 0 || this.active > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  // ------------------------------------------------------- operator actions

  /**
   * SIGUSR1: checks every certificate now against the refresh policy, as
   * `run` would: due staples are renewed, fresh ones only re-read. Failing
   * certificates are tried too (the operator may just have fixed something);
   * responder hosts in backoff are still spared.
   */
  checkNow(): void {
    if (this.stopping) return;
    this.log({ level: 'debug', msg: `checking all ${this.entries.size} certificate(s) now` });
    for (const id of this.entries.keys()) this.enqueue(id, false);
  }

  /** SIGUSR2: renews every staple now, ignoring timers and host backoff (`run --force`). */
  renewAll(): void {
    if (this.stopping) return;
    this.log({ level: 'debug', msg: `renewing all ${this.entries.size} staple(s) now` });
    this.health.clear();
    for (const id of this.entries.keys()) this.enqueue(id, true);
  }

  /**
   * SIGHUP: reloads the source. A new source that fails to load, or whose
   * staple folders are not writable, is reported and the old one kept.
   * Otherwise the settings, watchers and status service follow the new
   * configuration, new and changed certificates are checked at once, removed
   * ones dropped, and the rest re-checked under the new policy. Resolves to
   * whether the new configuration was taken.
   */
  reload(): Promise<boolean> {
    this.reloading ??= this.doReload().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async doReload(): Promise<boolean> {
    if (this.stopping) return false;
    let next: DaemonSource;
    let found: DiscoverResult;
    try {
      next = this.options.reload ? await this.options.reload() : this.source;
      found = await next.discover();
      await this.checkFolders(next, found.targets);
    } catch (e) {
      const err = toStapleError(e, 'CONFIG_INVALID');
      this.log({
        level: 'error',
        code: err.code,
        msg: `reload failed, keeping the running configuration: ${err.message}`,
      });
      return false;
    }
    if (this.stopping) return false;
    const old = this.source;
    const listenBefore = this.effectiveListen();
    this.source = next;
    if (next !== old && !this.options.transport) {
      this.retiredTransports.push(this.transport);
      this.transport = transportFor(next.config);
    }
    await this.openFleet();
    this.ctx = this.makeContext(next.config);
    if (this.watcher) {
      await this.watcher.close().catch(() => undefined);
      this.watcher = undefined;
    }
    try {
      await this.openWatcher();
    } catch (e) {
      this.log({ level: 'warn', msg: `watching folders: ${toStapleError(e).message}` });
    }
    if (this.effectiveListen() !== listenBefore) {
      await this.server?.close().catch(() => undefined);
      this.server = undefined;
      try {
        await this.openStatusServer();
      } catch (e) {
        const err = toStapleError(e);
        this.log({ level: 'error', code: err.code, msg: `status service: ${err.message}` });
      }
    }
    this.scheduleSweep();
    const queued = await this.rediscover('reload');
    for (const [id, e] of this.entries) if (!queued.has(id) && e.consecutiveFailures === 0) this.enqueue(id, false);
    this.closeRetiredTransports();
    this.log({
      level: 'info',
      msg: `configuration reloaded from ${next.describe}: ${this.entries.size} certificate(s)`,
    });
    return true;
  }

  /**
   * SIGTERM/SIGINT: takes no new work, lets the certificates in progress
   * finish (their writes are atomic either way) for up to `stopGraceMs`,
   * releases the lock, closes the watchers, the status service and the HTTP
   * connections. Idempotent.
   */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    this.schedule.stop();
    this.queue.clear();
    const grace = this.options.stopGraceMs ?? 7_000;
    const bounded = async (p: Promise<unknown> | undefined, ms: number): Promise<void> => {
      if (!p) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([p.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    };
    await bounded(this.watcher?.close(), 1_000);
    this.watcher = undefined;
    await bounded(this.pumping, grace);
    if (this.lock) await this.lock.release().catch(() => undefined);
    await bounded(this.server?.close(), 1_000);
    this.server = undefined;
    await bounded(this.closeFleet(), 1_000);
    const transports = [
      ...this.retiredTransports,
      ...(this.transport && !this.options.transport ? [this.transport] : []),
    ];
    this.retiredTransports = [];
    await bounded(Promise.all(transports.map((t) => t.close())), 1_000);
  }

  /** True once {@link stop} was called. */
  get isStopping(): boolean {
    return this.stopping;
  }

  // ---------------------------------------------------------- observation

  /** Subscribes an observer; returns the unsubscribe function. */
  addObserver(o: DaemonObserver): () => void {
    this.observers.add(o);
    return () => this.observers.delete(o);
  }

  /**
   * The loop is alive when its timer is armed or work is queued or in
   * progress (`/healthz`). A stopped daemon is not alive.
   */
  isAlive(): boolean {
    if (this.stopping) return false;
    return this.schedule.isArmed() || this.active > 0 || this.pumping !== undefined || this.queue.size > 0;
  }

  /** Resolves when no work is queued or in progress (tests, `ocsprenewer -now` reporting). */
  whenIdle(): Promise<void> {
    if (!this.pumping && this.queue.size === 0 && this.active === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** The status of every certificate, most urgent first. */
  snapshot(): DaemonSnapshot {
    const facts = {
      source: this.source.describe,
      startedAt: this.startedAt,
      alive: this.isAlive(),
      nextWake: this.schedule.armedFor(),
      inProgress: this.active,
      queued: this.queue.size,
      hostsFailing: this.health.size,
      backoff: this.health.list(),
      fleet: this.fleet?.health(),
      certificates: [...this.entries.values()].map((e) => ({
        facts: e,
        nextAttempt: this.schedule.get(e.target.id),
        inProgress: e.inFlight,
      })),
    };
    return snapshotOf(facts, this.clock.now(), process.pid);
  }
}

function sameTarget(a: TargetConfig, b: TargetConfig): boolean {
  return (
    a.certPath === b.certPath &&
    a.staplePath === b.staplePath &&
    a.chainPath === b.chainPath &&
    a.rootchainPath === b.rootchainPath &&
    a.responder === b.responder
  );
}
