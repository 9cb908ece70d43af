/**
 * The long-running renewer (`staplekeeper daemon`, `ocsprenewer -persist`):
 * its lifecycle (start, reload, stop) and its queue. Every certificate goes
 * through the same pipeline as `run` (pipeline/process.ts, with a context
 * from batch/run.ts), in batches that hold the staple-folder lock only while
 * they run (batch/step.ts), so the daemon writes exactly what `run` would.
 * What it adds is time, in these parts:
 *
 * - entry-state.ts: what it knows of each certificate, and the pure
 *   transition after an attempt (next state, next attempt, log lines);
 * - queue.ts: the work queue and its batches; attempt.ts: one attempt behind
 *   the per-host gate of host-health.ts (a transport wrapper); apply.ts: its
 *   result applied to the entry (state, timer, log lines, observers);
 * - discovery.ts and watch.ts: the certificates of the source, kept in line
 *   by the folder watcher and the periodic sweep; writable.ts: folders
 *   proved writable at start;
 * - engine.ts: the transport and the engine context with the daemon's
 *   caches; fleet-link.ts: the fleet; services.ts: the status service and
 *   the folder watcher; observe.ts: the observers and the facts of the
 *   snapshot, which status/snapshot.ts renders for `/status`.
 *
 * Errors in one certificate never stop the loop. The daemon knows nothing of
 * signals or log formats: the CLI maps SIGUSR1/SIGUSR2/SIGHUP/SIGTERM to
 * {@link StapleDaemon.checkNow}, {@link StapleDaemon.renewAll},
 * {@link StapleDaemon.reload} and {@link StapleDaemon.stop}, and formats
 * {@link LogEvent}s.
 */
import { dirname } from 'node:path';
import type { LoadedConfig } from '../config/types.js';
import { toStapleError } from '../core/errors.js';
import { systemClock, type Clock } from '../io/clock.js';
import type { Fleet, FleetHealth } from '../fleet/contract.js';
import { cleanStaleTemps, createFileStore, type StapleStore } from '../io/store.js';
import { VERSION } from '../version.js';
import type { HeldLock } from '../batch/lock.js';
import { runBatchStep } from '../batch/step.js';
import { jitter, Schedule, type RandomSource } from '../pipeline/backoff.js';
import { readMarks } from '../revocation/marks.js';
import type { TargetOutcome } from '../pipeline/context.js';
import { byUrgency, certificateState, type DaemonObserver, type DaemonSnapshot } from '../status/page.js';
import type { DaemonLogger } from './entry-state.js';
import { attemptGuarded, certificateSet, newEntry, revokedByMark, type ApplyContext, type Entry } from './apply.js';
import { daemonSnapshot, Observers } from './observe.js';
import { handleFileChanges, ProblemLog, proveStapleFolders, recheckAll, type DiscoveryContext } from './discovery.js';
import { DaemonEngine } from './engine.js';
import { FleetLink } from './fleet-link.js';
import { DaemonServices } from './services.js';
import { batchLog, mergeAsks, WorkQueue } from './queue.js';
import { HostHealth } from './host-health.js';
import type { DaemonOptions } from './options.js';
import { sourceFromConfig, type DaemonSource, type DiscoverResult } from './watch.js';

export type {
  AttemptEvent,
  CertificateState,
  CertificateStatus,
  DaemonObserver,
  DaemonSnapshot,
} from '../status/page.js';
export type { DaemonSource, DiscoverResult, DiscoveryProblem, WatchDir } from './watch.js';
export type { DaemonLogger, LogEvent, LogLevel } from './entry-state.js';
export type { DaemonOptions } from './options.js';
export { byUrgency, certificateState, sourceFromConfig };

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

const SWEEP_KEY = '\u0000sweep';
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
  private readonly work: WorkQueue;
  private readonly observers = new Observers();
  private readonly applier: ApplyContext;
  private readonly engine: DaemonEngine;
  private readonly services: DaemonServices;
  private readonly startedAt: Date;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private batchOutcomes: TargetOutcome[] = [];
  private reloading: Promise<boolean> | undefined;
  private readonly fleetLink: FleetLink;
  private readonly problems: ProblemLog;
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
    this.work = new WorkQueue({
      concurrency: () => this.settings.concurrency,
      stopping: () => this.stopping,
      work: (id, ask) => attemptGuarded(this.applier, id, ask),
      batch: (drain) => this.runBatch(drain),
    });
    this.engine = new DaemonEngine({
      transport: options.transport,
      store: this.store,
      ownStore: options.store !== undefined,
      env: options.env ?? process.env,
      now: () => this.clock.now(),
      log: this.log,
    });
    this.applier = this.applyContext();
    this.problems = new ProblemLog(this.log);
    this.services = new DaemonServices({
      listen: () => this.options.listen ?? this.settings.daemon.statusListen, // read again after a reload
      watch: () => this.options.watch ?? this.settings.daemon.watch,
      source: () => this.source,
      provider: this,
      clock: this.clock,
      debounceMs: this.options.debounceMs ?? 500,
      log: this.log,
      onEvents: (events) => {
        if (!this.stopping) void handleFileChanges(this.discovery(), events);
      },
    });
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
    await this.fleetLink.follow(this.settings);
    this.engine.use(this.source.config, this.fleet, true);
    // temporary files left by an interrupted process, as `run` does
    for (const dir of new Set(found.targets.map((t) => dirname(t.staplePath)))) await cleanStaleTemps(dir);
    await this.services.open();
    this.problems.report(found.problems);
    for (const t of found.targets) this.entries.set(t.id, newEntry(t));
    this.log({
      level: 'info',
      msg: `staplekeeper ${VERSION} daemon started: ${found.targets.length} certificate(s) from ${this.source.describe}; ${this.services.watching ? 'watching their folders' : 'not watching folders'}; sweep every ${Math.round(this.settings.daemon.sweepIntervalMs / 60_000)} min`,
      fields: { certificates: found.targets.length, pid: process.pid },
    });
    this.scheduleSweep();
    const force = this.options.initialForce ?? false;
    // A certificate a previous run found revoked shows revoked from the start, and its
    // responder is asked again at once: the answer confirms the mark or clears it.
    const marks = readMarks(this.settings.ocspFolder);
    for (const [id, e] of this.entries) {
      const m = marks[id];
      if (m) e.revoked = revokedByMark(m);
      this.enqueue(id, force || m !== undefined, true);
    }
  }

  /** Fleet mode: how the fleet is (null without one). */
  fleetHealth(): FleetHealth | null {
    return this.fleet?.health() ?? null;
  }

  /** Fleet mode (src/fleet, docs/fleet.md): the open fleet, if any. */
  private get fleet(): Fleet | undefined {
    return this.fleetLink.current;
  }

  // ------------------------------------------------- status service, watcher

  /** The status service's base URL, when one is listening. */
  get statusUrl(): string | undefined {
    return this.services.statusUrl;
  }

  /** How discovery (discovery.ts) sees and changes the certificates of this daemon. */
  private discovery(): DiscoveryContext {
    return {
      source: this.source,
      problems: this.problems,
      log: this.log,
      certificates: certificateSet(this.entries, {
        check: (id, fleet) => this.enqueue(id, false, fleet),
        forget: (id) => {
          this.work.delete(id);
          this.schedule.delete(id);
        },
      }),
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

  /** The periodic sweep (discovery.ts {@link recheckAll}); CA folders are read again first. */
  private async sweep(): Promise<void> {
    if (this.stopping) return;
    try {
      this.log({ level: 'debug', msg: 'periodic sweep: re-scanning folders and re-checking every certificate' });
      this.engine.ctx.resolver.refresh();
      await recheckAll(this.discovery(), 'sweep', this.fleet !== undefined);
    } catch (e) {
      const err = toStapleError(e);
      this.log({ level: 'error', code: err.code, msg: `periodic sweep failed: ${err.message}` });
    }
  }

  /** Queues one certificate for the next batch (or the running one). */
  private enqueue(id: string, force: boolean, fleet = false): void {
    if (this.stopping) return;
    const e = this.entries.get(id);
    if (!e) return;
    if (e.inFlight) {
      e.again = mergeAsks(e.again, { force, fleet });
      return;
    }
    this.schedule.delete(id);
    this.work.add(id, { force, fleet });
  }

  /**
   * One batch (batch/step.ts, queue.ts): take the lock, run workers until the
   * queue is empty, release, push and run hooks. A lock that cannot be taken
   * puts the queued certificates back on the timer for a minute later.
   */
  private async runBatch(drain: (lock: HeldLock) => Promise<void>): Promise<boolean> {
    let locked = false;
    this.batchOutcomes = [];
    try {
      await runBatchStep({
        config: this.source.config,
        store: this.store,
        now: () => this.clock.now(),
        ...(this.options.env ? { env: this.options.env } : {}),
        ...batchLog(this.log),
        process: async (lock) => {
          locked = true;
          if (lock) await drain(lock);
          return this.batchOutcomes;
        },
      });
    } catch (e) {
      const err = toStapleError(e);
      if (!locked) {
        const retry = new Date(this.clock.now().getTime() + Math.round(jitter(LOCK_RETRY_MS, this.random)));
        const ids = this.work.takeAll();
        this.log({
          level: 'error',
          code: err.code,
          msg: `${err.message}; ${ids.length} certificate(s) will be retried at ${retry.toISOString()}`,
        });
        for (const id of ids) this.schedule.set(id, retry);
        return false;
      }
      // drain never throws; this guards the bookkeeping around it
      this.log({ level: 'error', code: err.code, msg: `internal error in a batch: ${err.message}` });
    }
    this.batchOutcomes = [];
    this.closeRetiredTransports();
    return true;
  }

  /** How applying an attempt (apply.ts) sees this daemon. */
  private applyContext(): ApplyContext {
    return {
      entries: this.entries,
      timers: this.schedule,
      random: this.random,
      now: () => this.clock.now(),
      log: this.log,
      attempt: () => ({
        ctx: this.engine.ctx,
        transport: this.engine.transport,
        health: this.health,
        now: () => this.clock.now(),
        log: this.log,
      }),
      crlIntervalMs: () => this.engine.crlIntervalMs,
      stopping: () => this.stopping,
      requeue: (id, ask) => this.enqueue(id, ask.force, ask.fleet ?? false),
      observe: (event) => this.observers.attempt(event),
      record: (outcome) => this.batchOutcomes.push(outcome),
    };
  }

  private closeRetiredTransports(): void {
    if (!this.work.holding) this.engine.closeRetired();
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
    const listenBefore = this.services.address();
    this.source = next;
    await this.fleetLink.follow(this.settings);
    this.engine.use(next.config, this.fleet, next !== old);
    await this.services.follow(listenBefore);
    this.scheduleSweep();
    await recheckAll(this.discovery(), 'reload');
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
    this.work.takeAll();
    const grace = this.options.stopGraceMs ?? 7_000;
    const bounded = async (p: Promise<unknown> | undefined, ms: number): Promise<void> => {
      if (!p) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([p.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    };
    await bounded(this.services.closeWatcher(), 1_000);
    await bounded(this.work.running, grace);
    await bounded(this.engine.finish(), 1_000);
    await this.work.releaseLock();
    await bounded(this.services.closeServer(), 1_000);
    await bounded(this.fleetLink.close(), 1_000);
    await bounded(this.engine.closeTransports(), 1_000);
  }

  /** True once {@link stop} was called. */
  get isStopping(): boolean {
    return this.stopping;
  }

  // ---------------------------------------------------------- observation

  /** Subscribes an observer; returns the unsubscribe function. */
  addObserver(o: DaemonObserver): () => void {
    return this.observers.add(o);
  }

  /**
   * The loop is alive when its timer is armed or work is queued or in
   * progress (`/healthz`). A stopped daemon is not alive.
   */
  isAlive(): boolean {
    if (this.stopping) return false;
    return this.schedule.isArmed() || this.work.busy;
  }

  /** Resolves when no work is queued or in progress (tests, `ocsprenewer -now` reporting). */
  whenIdle(): Promise<void> {
    return this.work.whenIdle();
  }

  /** The status of every certificate, most urgent first. */
  snapshot(): DaemonSnapshot {
    const { source, startedAt, schedule, work, health, fleet, entries } = this;
    const view = { source: source.describe, startedAt, alive: this.isAlive(), schedule, work, health, fleet };
    return daemonSnapshot({ ...view, entries: entries.values() }, this.clock.now());
  }
}
