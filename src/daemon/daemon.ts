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
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { LoadedConfig, TargetConfig } from '../config/types.js';
import { failureLine, shortUrl } from '../core/message.js';
import { StapleError, toStapleError, type ErrorCode } from '../core/errors.js';
import { systemClock, type Clock } from '../io/clock.js';
import { describeFsError } from '../io/files.js';
import type { Fleet, FleetHealth } from '../fleet/contract.js';
import type { HttpTransport } from '../io/http.js';
import { cleanStaleTemps, createFileStore, TEMP_MARKER, type StapleStore } from '../io/store.js';
import { VERSION } from '../version.js';
import type { HeldLock } from '../batch/lock.js';
import { contextFor, crlWatchFor, toTarget, transportFor } from '../batch/run.js';
import { runBatchStep } from '../batch/step.js';
import {
  EXPIRY_MARGIN_MS,
  HostBackoff,
  isHostFailure,
  jitter,
  planNextAttempt,
  Schedule,
  type NextAttemptReason,
  type RandomSource,
} from '../pipeline/backoff.js';
import { noOcspNotice, type Triage } from '../core/triage.js';
import { readMarks } from '../revocation/marks.js';
import type { EngineContext, StapleSummary, TargetOutcome } from '../pipeline/context.js';
import type { CrlVerdict } from '../pipeline/contracts.js';
import { PassMemo } from '../pipeline/pass-memo.js';
import { processTarget } from '../pipeline/process.js';
import { SignatureVerifier } from '../pipeline/signature-verifier.js';
import { VerdictCache } from '../pipeline/verdict-cache.js';
import {
  byUrgency,
  certificateState,
  type CertificateStatus,
  type DaemonObserver,
  type DaemonSnapshot,
} from '../status/page.js';
import { isInside, sourceFromConfig, type DaemonSource, type DiscoverResult, type DiscoveryProblem } from './watch.js';

export type {
  AttemptEvent,
  CertificateState,
  CertificateStatus,
  DaemonObserver,
  DaemonSnapshot,
} from '../status/page.js';
export type { DaemonSource, DiscoverResult, DiscoveryProblem, WatchDir } from './watch.js';
export { byUrgency, certificateState, sourceFromConfig };

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

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
// Folder checks
// ---------------------------------------------------------------------------

/**
 * Proves that the daemon can write in each folder by creating and removing a
 * file there, so that a read-only mount or a wrong owner is reported at start
 * and not as a failure hours later when the first staple is due. Missing
 * folders inside `createWithin` (the ocsp_folder) are created, as scan_keys
 * subfolders need; others must exist.
 *
 * @throws StapleError `FILE_WRITE` naming the folder and the reason.
 */
export async function proveWritable(dirs: Iterable<string>, createWithin?: string): Promise<void> {
  for (const dir of new Set(dirs)) {
    let st;
    try {
      st = await stat(dir);
    } catch (e) {
      // only subfolders below the staple folder are created, never the folder itself (a mistyped ocsp_folder)
      if (
        (e as NodeJS.ErrnoException).code === 'ENOENT' &&
        createWithin &&
        resolve(dir) !== resolve(createWithin) &&
        isInside(dir, createWithin)
      ) {
        try {
          await mkdir(dir, { recursive: true });
          st = await stat(dir);
        } catch (e2) {
          throw new StapleError(
            'FILE_WRITE',
            `staple folder ${dir} does not exist and cannot be created: ${describeFsError(e2)}`,
            { cause: e2 },
          );
        }
      } else {
        throw new StapleError(
          'FILE_WRITE',
          `staple folder ${dir} cannot be used: ${describeFsError(e)}; create it or fix the configuration`,
          { cause: e },
        );
      }
    }
    if (!st.isDirectory()) throw new StapleError('FILE_WRITE', `staple folder ${dir} is not a folder`);
    const probe = join(dir, `.staplekeeper-probe${TEMP_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      const fh = await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      await fh.close();
      await unlink(probe);
    } catch (e) {
      const uid = process.getuid?.();
      throw new StapleError(
        'FILE_WRITE',
        `staple folder ${dir} is not writable: ${describeFsError(e)}${uid === undefined ? '' : ` (running as uid ${uid})`}; fix its owner or mode (under systemd: ReadWritePaths=)`,
        { cause: e },
      );
    }
  }
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

interface Entry {
  target: TargetConfig;
  inFlight: boolean;
  /** Asked for again while in flight (force wins). */
  again?: Queued;
  lastAttempt?: Date;
  lastResult?: TargetOutcome['result'];
  lastCode?: ErrorCode;
  lastError?: string;
  lastSuccess?: Date;
  consecutiveFailures: number;
  staple?: StapleSummary;
  nextRefresh?: Date;
  nextReason?: NextAttemptReason;
  responderUrl?: string;
  /** Responder hosts the last attempt talked to (for the per-host gate). */
  hosts: string[];
  /** How revocation of the certificate is published (core/triage.ts), once known. */
  triage?: Triage;
  /** The last CRL verdict of a `crl` certificate. */
  crl?: CrlVerdict;
  /** The last answer (responder or CRL) said revoked, written or not. */
  revoked?: { time?: string; reason?: string; source?: 'ocsp' | 'crl' };
}

/** A queued attempt: forced (SIGUSR2), and whether a better staple from the fleet is taken even when not due. */
interface Queued {
  force: boolean;
  fleet?: boolean;
}

interface HostRecord {
  host: string;
  url: string;
  /** ok: the host answered (status < 500); failed: a host-level failure; blocked: not contacted (backoff). */
  kind: 'ok' | 'failed' | 'blocked';
  code?: ErrorCode;
  /** A caIssuers download (not a responder request). */
  issuer?: boolean;
}

const SWEEP_KEY = '\u0000sweep';
/** An urgent certificate whose host another one is probing looks again this soon. */
const PROBE_WAIT_MS = 10_000;
/** Pause between two lock-holding batches, longer than acquireLock's 200 ms poll, so a waiting `run` gets its turn. */
const LOCK_FAIRNESS_MS = 300;
/** Retry of a batch that could not get the lock. */
const LOCK_RETRY_MS = 60_000;

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** The responder base URL of a request (a GET URL ends with the encoded request, RFC 5019 §5). */
function baseUrlOf(method: 'GET' | 'POST', url: string): string {
  if (method !== 'GET') return url;
  const i = url.lastIndexOf('/');
  const scheme = url.indexOf('//');
  return i > scheme + 1 ? url.slice(0, i) : url;
}

/** A running daemon. Create with {@link StapleDaemon.start}. */
export class StapleDaemon {
  private source: DaemonSource;
  private readonly options: DaemonOptions;
  private readonly log: DaemonLogger;
  private readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly store: StapleStore;
  private readonly hostBackoff: HostBackoff;
  /** Hosts an urgent probe is talking to right now (at most one probe per host). */
  private readonly probing = new Set<string>();
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
    this.hostBackoff = new HostBackoff(this.random);
    this.schedule = new Schedule(this.clock, (ids) => this.onDue(ids));
    this.startedAt = this.clock.now();
    this.verdicts = options.store ? undefined : new VerdictCache({ env: options.env ?? process.env });
    this.pass = new PassMemo({ onIdle: () => this.verdicts?.flush() });
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
    return { target, inFlight: false, consecutiveFailures: 0, hosts: [] };
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
    ctx.onNotice = (id, message) => this.log({ level: 'debug', id, msg: `note: ${message}` });
    ctx.signatures = this.signatures;
    ctx.pass = this.pass;
    if (this.verdicts) ctx.verdicts = this.verdicts;
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

  private trackingTransport(records: HostRecord[], issuer = false, probe = false): HttpTransport {
    const base = this.transport;
    const tag = issuer ? { issuer } : {};
    return {
      send: async (req) => {
        const host = hostOf(req.url);
        const url = baseUrlOf(req.method, req.url);
        // an urgent probe goes through the backoff (processOne allows one per host at a time)
        const until = probe ? undefined : this.hostBackoff.blockedUntil(host, this.clock.now());
        if (until) {
          records.push({ host, url, kind: 'blocked', ...tag });
          throw new StapleError(
            'HTTP_NETWORK',
            `${url}: not contacting ${host} before ${until.toISOString()}: it failed ${this.hostBackoff.failuresOf(host)} time(s) in a row (per-host backoff)`,
          );
        }
        try {
          const res = await base.send(req);
          records.push(
            res.status >= 500
              ? { host, url, kind: 'failed', code: 'HTTP_STATUS', ...tag }
              : { host, url, kind: 'ok', ...tag },
          );
          return res;
        } catch (e) {
          const err = toStapleError(e);
          records.push({ host, url, kind: isHostFailure(err.code) ? 'failed' : 'ok', code: err.code, ...tag });
          throw e;
        }
      },
      close: async () => undefined,
    };
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
    const records: HostRecord[] = [];
    const t0 = performance.now();
    let outcome: TargetOutcome;
    let probing: string[] = [];
    try {
      const blockedUntil = force ? undefined : this.hostsBlockedUntil(entry);
      // A staple that would expire while its hosts wait out their backoff gets an
      // attempt anyway: one probe per host at a time; the others look again soon.
      const urgent = blockedUntil !== undefined && this.isUrgent(entry, blockedUntil);
      if (urgent && entry.hosts.every((h) => !this.probing.has(h))) {
        probing = [...entry.hosts];
        for (const h of probing) this.probing.add(h);
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
        const judged =
          fromFleet?.result === 'updated'
            ? fromFleet
            : await processTarget(toTarget(entry.target), this.ctx, { dryRun: true });
        if (judged !== fromFleet && judged.decision?.action === 'renew') {
          // urgent while another certificate probes the host: look again once the probe is answered
          const base = urgent
            ? Math.min(blockedUntil.getTime(), this.clock.now().getTime() + PROBE_WAIT_MS)
            : blockedUntil.getTime();
          const until = new Date(base + Math.round(this.random() * 5_000));
          if (this.entries.get(id) === entry) this.schedule.set(id, until);
          entry.nextReason = 'backoff';
          this.log({
            level: 'debug',
            id,
            msg: `due (${judged.decision.reason}), but responder ${entry.hosts.join(', ')} is in backoff; next attempt at ${until.toISOString()}`,
          });
          return;
        }
        outcome = judged;
      } else {
        // caIssuers downloads go through the per-host backoff too
        const probe = probing.length > 0;
        const ctx: EngineContext = {
          ...this.ctx,
          transport: this.trackingTransport(records, false, probe),
          resolver: this.ctx.resolver.withTransport(this.trackingTransport(records, true, probe)),
        };
        outcome = await processTarget(toTarget(entry.target), ctx, { force, fleetApply: fleet });
      }
    } finally {
      for (const h of probing) this.probing.delete(h);
      entry.inFlight = false;
      this.requeueIfAsked(entry);
    }
    const seconds = (performance.now() - t0) / 1000;
    if (this.entries.get(id) !== entry) return; // removed meanwhile
    this.record(entry, outcome, records, force);
    // only attempts that sent a request to a responder count as fetches (not NO_OCSP_URL, NO_ISSUER, backoff, …)
    const fleetHit = outcome.fleet?.role === 'hit';
    const fetched =
      (outcome.result === 'updated' && !fleetHit) || records.some((r) => r.kind !== 'blocked' && !r.issuer);
    for (const o of this.observers) {
      try {
        o.onAttempt?.({ id, outcome, fetched, seconds, fleetHit });
      } catch {
        // an observer never breaks the loop
      }
    }
    this.batchOutcomes.push(outcome);
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
  private shortestLifeFor(host: string, now: Date): number | undefined {
    let min: number | undefined;
    for (const e of this.entries.values()) {
      if (e.staple?.status !== 'good' || !e.hosts.includes(host)) continue;
      const left = new Date(e.staple.usableUntil).getTime() - now.getTime();
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

  /** The end of the backoff of the certificate's responder hosts, when all of them are in backoff. */
  private hostsBlockedUntil(entry: Entry): Date | undefined {
    if (entry.hosts.length === 0) return undefined;
    const now = this.clock.now();
    const blocks = entry.hosts.map((h) => this.hostBackoff.blockedUntil(h, now));
    if (blocks.some((b) => b === undefined)) return undefined;
    return new Date(Math.min(...blocks.map((b) => (b as Date).getTime())));
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

  private record(entry: Entry, o: TargetOutcome, records: HostRecord[], forced: boolean): void {
    const now = this.clock.now();
    const id = entry.target.id;
    const quietAgain = entry.lastResult === 'skipped' && o.result === 'skipped';
    entry.lastAttempt = now;
    entry.lastResult = o.result;
    // an attempt that failed before judging the staple on disk (certificate unreadable, no issuer) says nothing about it
    if (o.staple || o.decision) entry.staple = o.staple;
    if (o.triage) entry.triage = o.triage;
    if (o.crl) entry.crl = o.crl;
    // a revocation stays until the certificate is replaced (the entry is then new) or an answer says good
    if (o.revoked) entry.revoked = o.revoked;
    else if ((o.result === 'updated' && o.staple?.status === 'good') || o.crl?.status === 'good')
      entry.revoked = undefined;
    const contacted = records.filter((r) => r.kind !== 'blocked');
    if (contacted.length > 0) entry.hosts = [...new Set(contacted.map((r) => r.host))];
    else if (records.length > 0) entry.hosts = [...new Set(records.map((r) => r.host))];
    entry.responderUrl = o.url ?? records.find((r) => !r.issuer)?.url ?? entry.responderUrl;

    // per-host health: a 200 carrying tryLater or internalError is still the host failing
    const hostLevel = o.error && (o.error.code === 'OCSP_TRY_LATER' || o.error.code === 'OCSP_INTERNAL_ERROR');
    for (const r of contacted) {
      const failure =
        r.kind === 'failed' ? (r.code ?? 'HTTP_NETWORK') : hostLevel && !r.issuer ? o.error?.code : undefined;
      if (failure) {
        // one step per outage, capped by the shortest remaining life of the host's staples (scheduler.ts)
        const life = this.hostBackoff.blockedUntil(r.host, now) ? undefined : this.shortestLifeFor(r.host, now);
        this.hostBackoff.recordFailure(r.host, now, failure, life === undefined ? {} : { shortestLifeMs: life });
      } else {
        const wasDown = this.hostBackoff.failuresOf(r.host) > 0;
        this.hostBackoff.recordSuccess(r.host);
        if (wasDown) this.wakeWaitingOn(r.host, id);
      }
    }

    if (o.result === 'skipped') {
      const again = quietAgain;
      entry.consecutiveFailures = 0;
      entry.lastCode = undefined;
      entry.lastError = undefined;
      entry.nextRefresh = undefined;
      entry.nextReason = undefined;
      const noOcsp = o.triage !== undefined && o.triage.mechanism !== 'ocsp';
      const notice = noOcsp
        ? (o.notices.find((n) => n.startsWith('no OCSP responder')) ?? o.notices.at(-1))
        : o.notices.at(-1);
      if (noOcsp && o.triage?.mechanism === 'crl' && this.ctx.crl) {
        // the CRL is looked at again at crl.interval: a new CRL can appear long before the old one's nextUpdate
        const at = new Date(now.getTime() + Math.round(jitter(this.crlIntervalMs, this.random)));
        entry.nextReason = 'crl';
        this.schedule.set(id, at);
        const crl = o.crl;
        const crlText =
          crl?.status === 'good'
            ? `CRL ${crl.url}: not revoked (CRL of ${crl.thisUpdate ?? '?'})`
            : `CRL not checked: ${crl?.error?.code ?? '?'}: ${crl?.error?.message ?? ''}`;
        const level = crl?.status === 'unavailable' ? 'warn' : again ? 'debug' : 'info';
        this.log({
          level,
          id,
          msg: `${notice ?? 'nothing to staple'}; ${crlText}; next CRL check at ${at.toISOString()}`,
        });
        return;
      }
      this.schedule.delete(id);
      // one notice per certificate, not one per sweep
      this.log({ level: again ? 'debug' : 'info', id, msg: `skipped: ${notice ?? 'nothing to do'}; not scheduled` });
      return;
    }

    const expiresAt = entry.staple?.status === 'good' ? new Date(entry.staple.usableUntil) : undefined;
    if (o.kept) {
      // The responder's answer was not better than the staple on disk, which was kept (core/compare.ts):
      // not an error, but not a renewal either; retried with the failure backoff (and before it expires).
      entry.consecutiveFailures++;
      entry.lastError = o.kept.message;
      entry.nextRefresh = undefined;
      const plan = planNextAttempt(
        { ok: false, code: 'OCSP_STALE', failures: entry.consecutiveFailures, ...(expiresAt ? { expiresAt } : {}) },
        now,
        this.random,
      );
      entry.nextReason = plan.reason;
      this.schedule.set(id, plan.at);
      this.log({
        level: 'warn',
        id,
        msg: `${o.kept.message}; retry at ${plan.at.toISOString()} (attempt ${entry.consecutiveFailures}, ${plan.reason})`,
        fields: { kept: o.kept.reason, nextAttempt: plan.at.toISOString(), reason: plan.reason },
      });
      return;
    }
    if (o.result === 'updated' || o.result === 'unchanged') {
      entry.consecutiveFailures = 0;
      entry.lastCode = undefined;
      entry.lastError = undefined;
      entry.lastSuccess = now;
      entry.nextRefresh = o.nextRefresh ? new Date(o.nextRefresh) : undefined;
      const refreshAt = entry.nextRefresh ?? new Date(now.getTime());
      const plan = planNextAttempt({ ok: true, refreshAt, ...(expiresAt ? { expiresAt } : {}) }, now, this.random);
      entry.nextReason = plan.reason;
      this.schedule.set(id, plan.at);
      if (o.result === 'updated') {
        const s = o.staple;
        this.log({
          level: 'info',
          id,
          msg: `${forced ? 'renewed (forced)' : 'updated'} OCSP response: ${s?.status ?? '?'}, valid until ${s?.nextUpdate ?? '?'} (${o.fleet?.role === 'hit' ? (o.fleet.detail ?? 'from the fleet') : `${o.method ?? ''} ${o.url ? shortUrl(o.url) : ''}`}); next refresh around ${plan.at.toISOString()}`,
          fields: {
            staplePath: o.staplePath,
            nextUpdate: s?.nextUpdate,
            nextAttempt: plan.at.toISOString(),
            reason: o.decision?.reason,
          },
        });
        if (o.backupError) this.log({ level: 'warn', id, msg: `warning: ${o.backupError}` });
      } else {
        this.log({
          level: 'debug',
          id,
          msg: `unchanged: ${o.decision?.detail ?? 'staple is fresh'}; next check at ${plan.at.toISOString()}`,
          fields: { nextAttempt: plan.at.toISOString() },
        });
      }
      return;
    }

    // failed
    entry.consecutiveFailures++;
    const code = o.error?.code ?? 'INTERNAL';
    entry.lastCode = code;
    entry.lastError = o.error?.message ?? '';
    entry.nextRefresh = undefined;
    const plan = planNextAttempt(
      { ok: false, code, failures: entry.consecutiveFailures, ...(expiresAt ? { expiresAt } : {}) },
      now,
      this.random,
    );
    entry.nextReason = plan.reason;
    this.schedule.set(id, plan.at);
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
        `retry at ${plan.at.toISOString()} (failure ${entry.consecutiveFailures}, ${plan.reason})`,
      ],
    });
    this.log({
      level: 'error',
      id,
      code,
      msg: line.slice(`error ${code}: `.length),
      fields: {
        // the full message (URLs included) for --log-format json; the text line shortens them
        ...(o.error ? { error: o.error.message } : {}),
        consecutiveFailures: entry.consecutiveFailures,
        nextAttempt: plan.at.toISOString(),
        reason: plan.reason,
      },
    });
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
    this.hostBackoff.clear();
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
    this.verdicts?.flush();
    await bounded(this.signatures.close(), 1_000);
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
    const now = this.clock.now();
    const certificates = [...this.entries.values()].map((e) => this.statusOf(e, now)).sort(byUrgency);
    const wake = this.schedule.armedFor();
    return {
      version: VERSION,
      pid: process.pid,
      source: this.source.describe,
      startedAt: this.startedAt.toISOString(),
      now: now.toISOString(),
      alive: this.isAlive(),
      nextWake: wake ? wake.toISOString() : null,
      inProgress: this.active,
      queued: this.queue.size,
      hostsInBackoff: this.hostBackoff.size,
      backoff: this.hostBackoff
        .list(now)
        .map((h) => ({ host: h.host, until: h.until.toISOString(), failures: h.failures })),
      ...(this.fleet ? { fleet: this.fleet.health() } : {}),
      certificates,
    };
  }

  private statusOf(e: Entry, now: Date): CertificateStatus {
    const s = e.staple;
    const tri = e.triage;
    const noOcsp =
      tri !== undefined && tri.mechanism !== 'ocsp' && !tri.mustStaple && e.target.responder !== 'disabled';
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
    const state = certificateState(facts, now);
    let note: string | null = null;
    if (noOcsp && tri) {
      note = noOcspNotice(tri);
      if (e.crl?.status === 'good') note += `; CRL checked: not revoked (CRL of ${e.crl.thisUpdate ?? '?'})`;
      else if (e.crl?.status === 'unavailable')
        note += `; CRL not checked: ${e.crl.error?.code ?? ''}: ${e.crl.error?.message ?? ''}`;
    }
    const next = this.schedule.get(e.target.id);
    return {
      id: e.target.id,
      certPath: e.target.certPath,
      staplePath: e.target.staplePath,
      state,
      status: s?.status ?? null,
      thisUpdate: s?.thisUpdate ?? null,
      nextUpdate: s?.nextUpdate ?? null,
      usableUntil: s?.usableUntil ?? null,
      nextRefresh: e.nextRefresh?.toISOString() ?? null,
      nextAttempt: next?.toISOString() ?? null,
      nextAttemptReason: next ? (e.nextReason ?? null) : null,
      lastAttempt: e.lastAttempt?.toISOString() ?? null,
      lastResult: e.lastResult ?? null,
      lastCode: e.lastCode ?? null,
      lastError: e.lastError ?? null,
      lastSuccess: e.lastSuccess?.toISOString() ?? null,
      consecutiveFailures: e.consecutiveFailures,
      responderUrl: e.responderUrl ?? null,
      inProgress: e.inFlight,
      mechanism: tri?.mechanism ?? null,
      mustStaple: tri?.mustStaple ?? false,
      crlUrls: tri?.crlUrls ?? [],
      crlStatus: e.crl?.status ?? null,
      revocationTime: e.revoked?.time ?? null,
      revocationReason: e.revoked?.reason ?? null,
      note,
    };
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
