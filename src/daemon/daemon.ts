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
import { contextFor, crlWatchFor, transportFor } from '../batch/run.js';
import { runBatchStep } from '../batch/step.js';
import { jitter, Schedule, type RandomSource } from '../pipeline/backoff.js';
import { readMarks } from '../revocation/marks.js';
import type { EngineContext, TargetOutcome } from '../pipeline/context.js';
import { PassMemo } from '../pipeline/pass-memo.js';
import { SignatureVerifier } from '../pipeline/signature-verifier.js';
import { VerdictCache } from '../pipeline/verdict-cache.js';
import { byUrgency, certificateState, type DaemonObserver, type DaemonSnapshot } from '../status/page.js';
import { snapshotOf } from '../status/snapshot.js';
import { newEntryState, nextEntryState, type DaemonLogger, type EntryState } from './entry-state.js';
import { handleFileChanges, ProblemLog, proveStapleFolders, rediscover, type DiscoveryContext } from './discovery.js';
import { attemptCertificate, shortestLife, wakeWaiting, type AttemptRun } from './attempt.js';
import { FleetLink } from './fleet-link.js';
import { HostHealth } from './host-health.js';
import { sourceFromConfig, type DaemonSource, type DiscoverResult, type FileEvent } from './watch.js';

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
  private readonly fleetLink: FleetLink;
  private readonly problems: ProblemLog;
  /** The verdict cache beside the staples (none for a caller's own store): written when idle and at stop. */
  private readonly verdicts: VerdictCache | undefined;
  /** Signature checks remembered and made ahead on a thread, for the daemon's lifetime. */
  private readonly signatures = new SignatureVerifier({ thread: true });
  /** What a burst of work shares; dropped when the daemon goes idle (pipeline/pass-memo.ts). */
  private readonly pass: PassMemo;

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
    this.verdicts = options.store ? undefined : new VerdictCache({ env: options.env ?? process.env });
    this.pass = new PassMemo({ onIdle: () => this.verdicts?.flush() });
    this.problems = new ProblemLog(this.log);
    this.fleetLink = new FleetLink(
      this.log,
      {
        onStaple: (ids) => {
          for (const id of ids) this.enqueue(id, false, true);
        },
        onReconnect: () => {
          for (const id of this.entries.keys()) this.enqueue(id, false, true);
        },
      },
      options.fleet,
    );
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
    await proveStapleFolders(this.source, found.targets);
    this.transport = this.options.transport ?? transportFor(this.source.config);
    await this.fleetLink.follow(this.settings);
    this.ctx = this.makeContext(this.source.config);
    // temporary files left by an interrupted process, as `run` does
    for (const dir of new Set(found.targets.map((t) => dirname(t.staplePath)))) await cleanStaleTemps(dir);
    await this.openStatusServer();
    await this.openWatcher();
    this.problems.report(found.problems);
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
    ctx.signatures = this.signatures;
    ctx.pass = this.pass;
    if (this.verdicts) ctx.verdicts = this.verdicts;
    if (this.fleet) {
      ctx.fleet = this.fleet;
      ctx.fleetWait = 'defer';
    }
    return ctx;
  }

  /** Fleet mode: how the fleet is (null without one). */
  fleetHealth(): FleetHealth | null {
    return this.fleet?.health() ?? null;
  }

  /** Fleet mode (src/fleet, docs/fleet.md): the open fleet, if any. */
  private get fleet(): Fleet | undefined {
    return this.fleetLink.current;
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

  private onFileEvents(events: FileEvent[]): void {
    if (this.stopping) return;
    void handleFileChanges(this.discovery(), events).catch((e) => {
      const err = toStapleError(e);
      this.log({ level: 'error', code: err.code, msg: `handling file changes: ${err.message}` });
    });
  }

  /** How discovery (discovery.ts) sees and changes the certificates of this daemon. */
  private discovery(): DiscoveryContext {
    return {
      source: this.source,
      problems: this.problems,
      log: this.log,
      certificates: {
        targetOf: (id) => this.entries.get(id)?.target,
        targets: () => [...this.entries.values()].map((e) => e.target),
        add: (t) => this.entries.set(t.id, this.newEntry(t)),
        replace: (t) => {
          const e = this.entries.get(t.id);
          if (e) e.target = t;
        },
        drop: (id) => {
          this.entries.delete(id);
          this.queue.delete(id);
          this.schedule.delete(id);
        },
        check: (id) => this.enqueue(id, false),
      },
    };
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
      const queued = await rediscover(this.discovery(), 'sweep');
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

  /** One attempt for one certificate (attempt.ts), applied to its entry and told to the observers. */
  private async processOne(id: string, force: boolean, fleet = false): Promise<void> {
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.inFlight = true;
    const t0 = performance.now();
    let run: AttemptRun;
    try {
      run = await attemptCertificate(
        entry,
        { force, fleet },
        { ctx: this.ctx, transport: this.transport, health: this.health, now: () => this.clock.now(), log: this.log },
      );
    } finally {
      entry.inFlight = false;
      this.requeueIfAsked(entry);
    }
    const seconds = (performance.now() - t0) / 1000;
    if (this.entries.get(id) !== entry) return; // removed meanwhile
    this.apply(entry, run);
    if (run.result.kind !== 'attempt') return;
    const outcome = run.result.outcome;
    // only attempts that sent a request to a responder count as fetches (not NO_OCSP_URL, NO_ISSUER, backoff, …)
    const fleetHit = outcome.fleet?.role === 'hit';
    const fetched = (outcome.result === 'updated' && !fleetHit) || (run.hosts?.contactedResponder() ?? false);
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
  private apply(entry: Entry, { result, hosts }: AttemptRun): void {
    // CRL watch on: a `crl` certificate is looked at again every crl.interval
    if (result.kind === 'attempt' && this.ctx.crl) result.crlIntervalMs = this.crlIntervalMs;
    const now = this.clock.now();
    const t = nextEntryState(entry, result, now, this.random);
    Object.assign(entry, t.state);
    hosts?.settle(result.kind === 'attempt' ? result.outcome.error?.code : undefined, {
      lifeOf: (host) => shortestLife(this.entries.values(), host, now),
      onRecovered: (host) => wakeWaiting(this.entries.values(), host, entry.target.id, this.schedule, now, this.random),
    });
    const id = entry.target.id;
    if (t.next === null) this.schedule.delete(id);
    else if (t.next) this.schedule.set(id, t.next);
    for (const e of t.log) this.log(e);
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
      await proveStapleFolders(next, found.targets);
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
    await this.fleetLink.follow(this.settings);
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
    const queued = await rediscover(this.discovery(), 'reload');
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
    this.verdicts?.flush();
    await bounded(this.signatures.close(), 1_000);
    if (this.lock) await this.lock.release().catch(() => undefined);
    await bounded(this.server?.close(), 1_000);
    this.server = undefined;
    await bounded(this.fleetLink.close(), 1_000);
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
