/**
 * One batch step, the same for `run` and the daemon: lock the staple folder →
 * process the targets → record the revocation marks → release the lock →
 * deliver the batch to the outputs (HAProxy's runtime API, then the hooks).
 *
 * Contract:
 * - The staple-folder lock ({@link acquireLock}) is held while the targets are
 *   processed and the marks recorded, and released (even when processing
 *   throws) before anything is delivered: a slow hook never holds up a
 *   `staplekeeper run` waiting for the folder.
 * - Only a lock that cannot be taken, or a `process` that throws, makes the
 *   step throw; a failed push, hook or marks file is reported to the caller's
 *   callbacks and never undoes a written staple.
 * - A dry run takes no lock, records nothing and delivers nothing.
 * - Deliveries see only the outcomes of this batch: HAProxy gets the good
 *   staples whose bytes it has not had (outputs/haproxy.ts), `on_change` the
 *   updated certificates, `on_failure` the failed ones and `on_revoked` those
 *   an answer said revoked, each hook once with all its items.
 */
import { configFolder } from '../config/index.js';
import type { LoadedConfig } from '../config/types.js';
import { toStapleError } from '../core/errors.js';
import type { StapleStore } from '../io/store.js';
import { runHook, type HookItem } from '../outputs/hooks.js';
import type { TargetOutcome } from '../pipeline/context.js';
import { markChanges, marksPath, updateMarks } from '../revocation/marks.js';
import { acquireLock, describeHolder, type HeldLock } from './lock.js';

/** The event of a hook. */
export type HookEvent = Parameters<typeof runHook>[0];

/** A delivery that failed: a HAProxy push (`event: 'haproxy'`, code `PUSH_FAILED`) or a hook. */
export interface DeliveryFailure {
  event: HookEvent | 'haproxy';
  code: string;
  message: string;
}

/** Where a batch is delivered, and who hears about it. */
export interface DeliverOptions {
  config: LoadedConfig;
  /** The store the staples were written with (HAProxy's push reads them back through it). */
  store: StapleStore;
  /** The environment hooks run with (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Notices of the HAProxy push (each staple pushed or held back). */
  onNotice?: (message: string) => void;
  /** A hook ran for `count` certificates and printed `stdout` (trimmed, maybe empty). */
  onHookRan?: (event: HookEvent, count: number, stdout: string) => void;
  /** A push or a hook failed. */
  onFailure: (failure: DeliveryFailure) => void;
}

/** Options of {@link runBatchStep}. */
export interface BatchStepOptions extends DeliverOptions {
  /** The clock of the revocation marks. */
  now: () => Date;
  /** No lock, no marks, no deliveries. */
  dryRun?: boolean;
  /** Another process holds the lock and the step waits for it (up to `lock_timeout`): the line to show. */
  onLockWait?: (message: string) => void;
  /** The revocation marks could not be recorded (default: {@link DeliverOptions.onNotice}). */
  onMarksFailure?: (message: string) => void;
  /**
   * Processes the targets with the lock held (`undefined` in a dry run) and
   * returns their outcomes. What it opens (a fleet, a transport) it closes
   * itself; the lock is released after it and the marks.
   */
  process: (lock: HeldLock | undefined) => Promise<TargetOutcome[]>;
}

/**
 * Runs one batch (see the module comment). Resolves to the outcomes `process`
 * returned, after the deliveries.
 * @throws what {@link acquireLock} throws (`LOCK_TIMEOUT`, …) and what `process` throws.
 */
export async function runBatchStep(options: BatchStepOptions): Promise<TargetOutcome[]> {
  const { config, dryRun = false } = options;
  const folder = config.settings.ocspFolder;
  const lock = dryRun
    ? undefined
    : await acquireLock(folder, config.settings.lockTimeoutMs, (pid) =>
        options.onLockWait?.(`waiting for ${describeHolder(pid)} to finish with ${folder}`),
      );
  let outcomes: TargetOutcome[];
  try {
    outcomes = await options.process(lock);
    if (!dryRun) {
      await recordMarks(config, outcomes, options.store, options.now(), options.onMarksFailure ?? options.onNotice);
    }
  } finally {
    // a lock file that cannot be removed never hides this batch's outcomes
    await lock?.release().catch(() => undefined);
  }
  if (!dryRun) await deliverBatch(outcomes, options);
  return outcomes;
}

/** Hands a batch to the outputs: HAProxy's runtime API first (docs/servers.md), then the hooks. Never throws. */
export async function deliverBatch(outcomes: readonly TargetOutcome[], options: DeliverOptions): Promise<void> {
  const s = options.config.settings;
  if (s.haproxy.length > 0 && outcomes.length > 0) {
    // loaded only when HAProxy is configured; a failed push counts like a failed hook and is retried next batch
    const { pushToHaproxy } = await import('../outputs/haproxy.js');
    const pushed = await pushToHaproxy(s.haproxy, outcomes, {
      stateDir: s.ocspFolder,
      store: options.store,
      ...(options.onNotice ? { onNotice: options.onNotice } : {}),
    });
    for (const f of pushed.failed) options.onFailure({ event: 'haproxy', code: 'PUSH_FAILED', message: f.message });
  }
  const hooks = s.hooks;
  const runs: Array<[HookEvent, typeof hooks.onChange, TargetOutcome[]]> = [
    ['on_change', hooks.onChange, outcomes.filter((o) => o.result === 'updated')],
    ['on_failure', hooks.onFailure, outcomes.filter((o) => o.result === 'failed')],
    ['on_revoked', hooks.onRevoked, outcomes.filter((o) => o.revoked)],
  ];
  for (const [event, hook, items] of runs) {
    if (!hook || items.length === 0) continue;
    try {
      const r = await runHook(event, hook, items.map(hookItem), {
        env: options.env ?? process.env,
        cwd: configFolder(options.config),
      });
      options.onHookRan?.(event, items.length, r.stdout.trim());
    } catch (e) {
      const err = toStapleError(e);
      options.onFailure({ event, code: err.code, message: err.message });
    }
  }
}

/** What a hook is told about one certificate. */
export function hookItem(o: TargetOutcome): HookItem {
  const item: HookItem = { id: o.id, certPath: o.certPath, staplePath: o.staplePath, result: o.result };
  if (o.error) item.error = o.error;
  if (o.revoked) item.revoked = o.revoked;
  if (o.staple) item.nextUpdate = o.staple.nextUpdate;
  return item;
}

/**
 * Records revoked answers (and good ones that clear an earlier mark) in the
 * revocation marks of the configuration (revocation/marks.ts), so that
 * `check`, `list` and the daemon know them even when nothing was written
 * over the staple. Called with the lock held; a failure is a notice.
 */
export async function recordMarks(
  config: LoadedConfig,
  outcomes: readonly TargetOutcome[],
  store: StapleStore,
  now: Date,
  onNotice?: (message: string) => void,
): Promise<void> {
  const changes = markChanges(outcomes, now);
  if (changes.length === 0) return;
  try {
    await updateMarks(config.settings.ocspFolder, changes, store);
  } catch (e) {
    onNotice?.(`cannot record revocations in ${marksPath(config.settings.ocspFolder)}: ${toStapleError(e).message}`);
  }
}
