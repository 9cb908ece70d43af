/**
 * One renewal run over a loaded configuration: the cron job. Every target is
 * processed with bounded concurrency (overall and per responder host); one
 * failing certificate never stops the others unless `stop_on_error`; the
 * staple folder is locked against overlapping runs; hooks run at the end.
 */
import { EXIT } from '../core/exit-codes.js';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Clock } from '../io/clock.js';
import type { LoadedConfig, Settings, TargetConfig } from '../config/types.js';
import { StapleError, toStapleError } from '../core/errors.js';
import type { RefreshPolicy } from '../core/policy.js';
import type { Fleet } from '../fleet/contract.js';
import { describeFsError } from '../io/files.js';
import { createHttpTransport, type HttpTransport } from '../io/http.js';
import { cleanStaleTemps, createFileStore, type StapleStore } from '../io/store.js';
import { USER_AGENT } from '../version.js';
import { IssuerResolver } from '../pipeline/issuer.js';
import { forEachLimited, limitOverall, limitPerHost } from '../pipeline/limit.js';
import { runBatchStep } from './step.js';
import { CRL_CACHE_DIR_NAME, CrlWatch } from '../revocation/crl-watch.js';
import type { EngineContext, Target, TargetOutcome } from '../pipeline/context.js';
import { PassMemo } from '../pipeline/pass-memo.js';
import { processTarget } from '../pipeline/process.js';
import type { SignatureVerifier } from '../pipeline/signature-verifier.js';
import type { VerdictCache } from '../pipeline/verdict-cache.js';

/** Options of one run. */
export interface RunOptions {
  force?: boolean;
  dryRun?: boolean;
  /** Only these target ids. */
  only?: string[];
  /** The clock (default the system clock); `now` is the older form and is used when both are given. */
  clock?: Clock;
  now?: () => Date;
  transport?: HttpTransport;
  store?: StapleStore;
  /** Called as each target finishes. */
  onOutcome?: (o: TargetOutcome, done: number, total: number) => void;
  /** Called for notices (lock waits, hook output). */
  onNotice?: (message: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Fleet mode: a fleet to use instead of opening the one of `fleet:` (tests). */
  fleet?: Fleet;
  /** A certificate without a responder fails with NO_OCSP_URL (the ocspbot drop-in); default: triaged and skipped. */
  strictOcsp?: boolean;
  /** Watch the CRLs of `crl` certificates (`run --crl`); default: `crl.watch` of the settings, else off. */
  crl?: boolean;
  /**
   * The verdict cache to use (pipeline/verdict-cache.ts; flushed at the end of
   * the run). Default none: nothing is written beside the staples. The CLI
   * passes one.
   */
  verdicts?: VerdictCache;
  /** The signature verifier to use (pipeline/signature-verifier.ts); default none. The CLI passes one with its thread. */
  signatures?: SignatureVerifier;
  /**
   * Certificate files this process read just before the run, path → content
   * hash (io/fingerprint.ts `contentHash`) of the bytes read: the ocsprenewer
   * drop-in's discovery (`RenewerDiscovery.certHashes`). The staple-folder
   * cache is looked up with them instead of reading and hashing each file
   * again (pipeline/pass-memo.ts). For this run's pass only, and ignored when
   * the run had to wait for another process's lock.
   */
  certHashes?: ReadonlyMap<string, string>;
  /**
   * Keep brief outcomes (see {@link briefOutcome}) in the report for the
   * certificates whose staple was kept without anything to tell (result
   * `unchanged` or `skipped`, no error, revocation, kept answer, failed
   * backup): the caller sees every outcome whole in `onOutcome`, and the
   * report keeps what the end of the run reads (counts, HAProxy, hooks,
   * revocation marks). At 100,000 certificates the whole outcomes are
   * ~100 MB. Default false: every outcome whole. The CLI sets it.
   */
  briefOutcomes?: boolean;
}

/**
 * The part of an outcome the end of a run reads, for {@link RunOptions.briefOutcomes}: the
 * outcome itself when it has anything to tell; else its identity, result and notices, its staple
 * when HAProxy is given the good ones (`keepStaple`), its CRL verdict (revocation marks), and the
 * decision of a dry run (what would be renewed).
 */
export function briefOutcome(o: TargetOutcome, options: { keepStaple: boolean; dryRun: boolean }): TargetOutcome {
  if (
    (o.result !== 'unchanged' && o.result !== 'skipped') ||
    o.error !== undefined ||
    o.revoked !== undefined ||
    o.kept !== undefined ||
    o.backupError !== undefined
  ) {
    return o;
  }
  const b: TargetOutcome = {
    id: o.id,
    certPath: o.certPath,
    staplePath: o.staplePath,
    result: o.result,
    notices: o.notices,
  };
  if (options.keepStaple && o.staple !== undefined) b.staple = o.staple;
  if (o.crl !== undefined) b.crl = o.crl;
  if (options.dryRun && o.decision !== undefined) b.decision = o.decision;
  return b;
}

/** The result of a run. */
export interface RunReport {
  outcomes: TargetOutcome[];
  updated: number;
  unchanged: number;
  failed: number;
  skipped: number;
  revoked: number;
  /** Hook failures (they make the run fail but never undo written staples). */
  hookErrors: Array<{ event: string; code: string; message: string }>;
  /** True when stop_on_error stopped the run early. */
  stopped: boolean;
  /** Fleet mode: how the fleet was at the end of the run. */
  fleet?: ReturnType<Fleet['health']>;
}

/** The refresh policy from the settings. */
export function policyOf(config: LoadedConfig): RefreshPolicy {
  const s = config.settings;
  const p: RefreshPolicy = { refreshAt: s.refreshAt };
  if (s.minimumValidityMs !== undefined) p.minimumValidityMs = s.minimumValidityMs;
  if (s.minimumValidityPercentage !== undefined) p.minimumValidityPercentage = s.minimumValidityPercentage;
  return p;
}

/** Turns a configured target into an engine target. */
export function toTarget(t: TargetConfig): Target {
  const target: Target = { id: t.id, certPath: t.certPath, staplePath: t.staplePath };
  if (t.chainPath) target.chainPath = t.chainPath;
  if (t.rootchainPath) target.rootchainPath = t.rootchainPath;
  if (t.responder === 'disabled') target.disabled = true;
  else if (t.responder !== 'certificate') target.responderUrls = [t.responder];
  return target;
}

/** Builds the engine context for a configuration. */
export function contextFor(
  config: LoadedConfig,
  transport: HttpTransport,
  store: StapleStore,
  now: () => Date,
): EngineContext {
  const s = config.settings;
  const ctx: EngineContext = {
    store,
    transport,
    resolver: new IssuerResolver({ caDirs: s.caDirs, transport }),
    now,
    policy: policyOf(config),
    method: s.http.method,
    makeBackups: s.makeBackups,
    onRevokedWrite: s.onRevokedWrite,
    urlOverrides: s.responderUrlOverrides,
    // each certificate gets 2 × http.timeout to obtain a staple over all its responder URLs
    fetchDeadlineMs: 2 * s.http.timeoutMs,
    // folders below the staple folder (a recursive scan's) are created; a missing ocsp_folder is not
    stapleRoot: s.ocspFolder,
  };
  if (s.overwriteNonOcsp) ctx.overwriteNonOcsp = true;
  if (s.backupsKeep !== undefined) ctx.backupKeep = s.backupsKeep;
  return ctx;
}

/** Creates the HTTP transport the settings ask for. */
export function transportFor(config: LoadedConfig): HttpTransport {
  const s = config.settings;
  const opts: Parameters<typeof createHttpTransport>[0] = {
    timeoutMs: s.http.timeoutMs,
    userAgent: s.http.userAgent ?? USER_AGENT,
    connections: Math.max(s.perHostConcurrency, 1),
  };
  if (s.http.proxy) opts.proxy = s.http.proxy;
  if (s.http.followRedirectsAcrossHosts) opts.followRedirectsAcrossHosts = true;
  return limitPerHost(createHttpTransport(opts), s.perHostConcurrency);
}

/**
 * Targets handled at once. Checking a staple is local work whose signature
 * checks run on another thread (check-thread.ts): with only `concurrency`
 * targets in flight, the main thread would wait for the check thread and
 * the check thread for the main thread. So up to {@link LOCAL_CONCURRENCY}
 * targets are in flight, while {@link limitOverall} keeps the requests to
 * `concurrency` (and the per-host limit to `per_host_concurrency`). With
 * `stop_on_error`, only `concurrency` targets start, so that few run on
 * after a failure.
 */
function localConcurrency(s: Settings): number {
  return s.stopOnError ? s.concurrency : Math.max(s.concurrency, LOCAL_CONCURRENCY);
}

/** See {@link localConcurrency} (measured on 2 cores: 128 beat 32, 64 and 256). */
const LOCAL_CONCURRENCY = 128;

/**
 * Don't create what the operator mistyped: the staple folder (`ocsp_folder`)
 * must exist; only subfolders below it (a recursive scan's) are created.
 * @throws StapleError `CONFIG_INVALID` naming the folder.
 */
export async function assertStapleFolder(dir: string): Promise<void> {
  let st;
  try {
    st = await stat(dir);
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR';
    throw new StapleError(
      'CONFIG_INVALID',
      missing
        ? `ocsp_folder: the staple folder ${dir} does not exist (create it, or correct the path); nothing was fetched or written`
        : `ocsp_folder: the staple folder ${dir} cannot be used: ${describeFsError(e)}`,
      { cause: e },
    );
  }
  if (!st.isDirectory()) {
    throw new StapleError('CONFIG_INVALID', `ocsp_folder: ${dir} is not a folder; nothing was fetched or written`);
  }
}

/**
 * Runs once over every target of `config`. Throws only for LOCK_TIMEOUT, a missing ocsp_folder (CONFIG_INVALID) or
 * an unwritable staple folder; per-target failures are in the report.
 */
export async function runOnce(config: LoadedConfig, options: RunOptions = {}): Promise<RunReport> {
  const s = config.settings;
  const clock = options.clock;
  const now = options.now ?? (clock ? () => clock.now() : () => new Date());
  let targets = config.targets;
  if (options.only && options.only.length > 0) {
    const wanted = new Set(options.only);
    const unknown = options.only.filter((id) => !targets.some((t) => t.id === id));
    if (unknown.length > 0) {
      throw new StapleError('BAD_ARGUMENTS', `--only: no such domain identifier: ${unknown.join(', ')}`);
    }
    targets = targets.filter((t) => wanted.has(t.id));
  }

  if (!options.dryRun) await assertStapleFolder(s.ocspFolder);
  else {
    await assertStapleFolder(s.ocspFolder).catch((e: unknown) =>
      options.onNotice?.(`warning: ${toStapleError(e).message}; a real run would stop here`),
    );
  }
  const ownTransport = options.transport ? undefined : transportFor(config);
  // `concurrency` bounds the requests in flight; more targets than that may be checked at once
  const transport = limitOverall(options.transport ?? (ownTransport as HttpTransport), s.concurrency);
  const report: RunReport = {
    outcomes: [],
    updated: 0,
    unchanged: 0,
    failed: 0,
    skipped: 0,
    revoked: 0,
    hookErrors: [],
    stopped: false,
  };
  const store = options.store ?? createFileStore();
  const notice = options.onNotice;
  try {
    report.outcomes = await runBatchStep({
      config,
      store,
      now,
      dryRun: options.dryRun ?? false,
      ...(options.env ? { env: options.env } : {}),
      ...(notice ? { onNotice: notice } : {}),
      onLockWait: (m) => notice?.(m),
      onHookRan: (event, _count, stdout) => {
        if (stdout) notice?.(`${event} hook: ${stdout}`);
      },
      // a failed push or hook fails the run (exit 255) but never undoes a written staple
      onFailure: (f) => report.hookErrors.push(f),
      // hashes read before a wait for the lock are not "just before the run"
      process: (lock) =>
        processAll(
          config,
          targets,
          lock?.waited ? { ...options, certHashes: undefined } : options,
          transport,
          store,
          now,
          report,
        ),
    });
  } finally {
    await ownTransport?.close();
  }

  for (const o of report.outcomes) {
    if (o.revoked) report.revoked++;
    if (o.result === 'updated') report.updated++;
    else if (o.result === 'failed') report.failed++;
    else if (o.result === 'skipped') report.skipped++;
    else report.unchanged++;
  }
  return report;
}

/** The work of a run's batch step: every target, with the fleet of `fleet:` open while they are processed. */
async function processAll(
  config: LoadedConfig,
  targets: readonly TargetConfig[],
  options: RunOptions,
  transport: HttpTransport,
  store: StapleStore,
  now: () => Date,
  report: RunReport,
): Promise<TargetOutcome[]> {
  const s = config.settings;
  let fleet: Fleet | undefined;
  try {
    if (!options.dryRun) {
      // stale temporary files of interrupted runs are removed from every staple folder
      for (const dir of new Set(targets.map((t) => dirname(t.staplePath)))) await cleanStaleTemps(dir);
    }
    const ctx = contextFor(config, transport, store, now);
    // one pass: chain files and responder certificates read and parsed once (pipeline/pass-memo.ts)
    ctx.pass = new PassMemo(options.certHashes ? { certHashes: options.certHashes } : {});
    if (options.verdicts) ctx.verdicts = options.verdicts;
    if (options.signatures) ctx.signatures = options.signatures;
    if (options.strictOcsp) ctx.strictOcsp = true;
    else if (options.crl ?? s.crl.watch === true) ctx.crl = crlWatchFor(config, transport, ctx.store, now);
    if (!options.dryRun) fleet = options.fleet ?? (await openRunFleet(config, options));
    if (fleet) {
      ctx.fleet = fleet;
      ctx.fleetWait = 'block';
    }
    const outcomes: TargetOutcome[] = new Array(targets.length);
    const brief = options.briefOutcomes
      ? { keepStaple: s.haproxy.length > 0, dryRun: options.dryRun ?? false }
      : undefined;
    let done = 0;
    await forEachLimited(
      targets,
      localConcurrency(s),
      async (t, i) => {
        const o = await processTarget(toTarget(t), ctx, {
          force: options.force ?? false,
          dryRun: options.dryRun ?? false,
        });
        done++;
        if (o.result === 'failed' && s.stopOnError) report.stopped = true;
        options.onOutcome?.(o, done, targets.length);
        outcomes[i] = brief ? briefOutcome(o, brief) : o;
      },
      () => report.stopped,
    );
    return outcomes.filter((o) => o !== undefined);
  } finally {
    // written while the staple folder's lock is held
    options.verdicts?.flush();
    if (fleet) report.fleet = fleet.health();
    if (fleet && !options.fleet) await fleet.close();
  }
}

/** Opens the fleet of `fleet:` (src/fleet) for one run; a store that is down is said once and the run goes on. */
async function openRunFleet(config: LoadedConfig, options: RunOptions): Promise<Fleet | undefined> {
  const f = config.settings.fleet;
  if (!f) return undefined;
  const { openFleet } = await import('../fleet/index.js');
  const fleet = await openFleet(f, { httpTimeoutMs: config.settings.http.timeoutMs });
  const h = fleet.health();
  if (!h.up) {
    options.onNotice?.(
      `fleet degraded: ${h.redis} cannot be reached (${h.lastError ?? 'no answer'}); ${
        f.fetch ? 'fetching directly' : 'fetch is false: keeping the staples on disk'
      }`,
    );
  }
  return fleet;
}

/** The folder of the CRL disk cache of a configuration. */
export function crlCacheDir(config: LoadedConfig): string {
  return join(config.settings.ocspFolder, CRL_CACHE_DIR_NAME);
}

/** A CRL watcher (revocation/crl-watch.ts) for a configuration, on its transport, caching in its ocsp_folder. */
export function crlWatchFor(
  config: LoadedConfig,
  transport: HttpTransport,
  store: StapleStore,
  now: () => Date,
  onNotice?: (message: string) => void,
): CrlWatch {
  const c = config.settings.crl;
  return new CrlWatch({
    transport,
    store,
    cacheDir: crlCacheDir(config),
    createBelow: config.settings.ocspFolder,
    maxBytes: c.maxBytes,
    timeoutMs: c.timeoutMs,
    now,
    ...(onNotice ? { onNotice } : {}),
  });
}

/** The ocspbot-compatible exit code of a run: failures 255, else the renewal count capped at 250. */
export function exitCodeOf(report: RunReport): number {
  // a revocation is never hidden: even when on_revoked_write stored the revoked response, the run fails
  if (report.failed > 0 || report.revoked > 0 || report.hookErrors.length > 0) return EXIT.RETRIEVAL;
  return Math.min(report.updated, EXIT.RENEWED_MAX);
}
