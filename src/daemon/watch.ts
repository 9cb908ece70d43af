/**
 * What the daemon watches, and the watching itself.
 *
 * A {@link DaemonSource} says where certificates come from: a staplekeeper
 * configuration ({@link sourceFromConfig}: its `domains` and `scan_keys`) or
 * ocsprenewer's folders and naming rules (discovery/ocsprenewer.ts). It can
 * re-discover its certificates at any time, and names the folders whose
 * changes may alter them.
 *
 * {@link watchFolders} watches those folders (inotify on Linux, one watch per
 * folder: folder-watch.ts; no polling). This is what ocsprenewer's README
 * lists as missing ("a notify-watch on a directory to automatically pick up
 * new certs … also replaced (renewed) certs"). ACME clients write
 * certificates in several ways: in place (a truncate and a write), by
 * writing a temporary file and renaming it over the old one (lego, acme.sh),
 * or by swapping a symbolic link (certbot's `live/`, whose links point into
 * `archive/`). Every burst of events is debounced: the daemon hears about a
 * set of paths only after `debounceMs` of quiet (default 500 ms), so it
 * never reads a half-written file in the middle of a burst, and at most
 * `maxWaitMs` after the first event, so a folder that never stops changing
 * still gets looked at. What each path's event is (`add`, `change`,
 * `unlink`) is decided then, from what is on disk.
 *
 * Our own temporary files and the lock file are ignored. Whatever a watcher
 * misses (network file systems do not deliver inotify events) is caught by
 * the daemon's periodic sweep.
 */
import { stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, relative } from 'node:path';
import type { RawKind } from './folder-watch.js';
import { scanTargets } from '../config/index.js';
import type { LoadedConfig, TargetConfig } from '../config/types.js';
import { toStapleError, type ErrorCode } from '../core/errors.js';
import { systemClock, type Clock } from '../io/clock.js';
import { TEMP_MARKER } from '../io/store.js';
import { LOCK_NAME } from '../batch/lock.js';

/** A folder to watch for certificate changes. */
export interface WatchDir {
  path: string;
  /** Watch subfolders too. */
  recursive: boolean;
}

/** A problem found while discovering certificates (logged, does not stop the daemon). */
export interface DiscoveryProblem {
  path?: string;
  code: ErrorCode;
  message: string;
}

/** The certificates a source currently describes. */
export interface DiscoverResult {
  targets: TargetConfig[];
  problems: DiscoveryProblem[];
}

/**
 * Where the daemon's certificates come from: a staplekeeper configuration
 * ({@link sourceFromConfig}) or ocsprenewer's directories and naming rules
 * (discovery/ocsprenewer.ts). `config` supplies the settings (policy,
 * concurrency, HTTP, lock folder, `daemon` section); `discover` is run at
 * start, after watched changes, at every sweep and after a reload.
 */
export interface DaemonSource {
  config: LoadedConfig;
  /** Names the source in logs (the configuration file, or the ocsprenewer arguments). */
  describe: string;
  discover(): Promise<DiscoverResult>;
  /** Folders whose changes may add, replace or remove certificates. */
  watchDirs(): WatchDir[];
  /** Cheap filter: may a change of this file alter what {@link discover} returns? */
  isRelevant(path: string): boolean;
}

// ---------------------------------------------------------------------------
// Where certificates come from
// ---------------------------------------------------------------------------

/** True when `child` is `parent` or lies below it. */
export function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The daemon source of a staplekeeper configuration: the `domains` as
 * configured (while their certificate file exists) plus whatever the
 * `scan_keys` folders hold now (re-scanned with `scanTargets`, which names
 * staples exactly as loadConfig did and keeps the `responders:` overrides by
 * id).
 */
export function sourceFromConfig(config: LoadedConfig): DaemonSource {
  const scanOrigins = new Set(config.scans.map((s) => s.origin));
  const fixed = config.targets.filter((t) => !scanOrigins.has(t.origin));
  const inputs = new Set<string>();
  for (const t of fixed) for (const p of [t.certPath, t.chainPath, t.rootchainPath]) if (p) inputs.add(p);
  return {
    config,
    describe: config.file ?? 'the configuration given in code',
    async discover() {
      const targets: TargetConfig[] = [];
      const problems: DiscoveryProblem[] = [];
      const seen = new Map<string, TargetConfig>();
      const add = (t: TargetConfig): void => {
        const first = seen.get(t.id);
        if (first) {
          problems.push({
            path: t.certPath,
            code: 'CONFIG_INVALID',
            message: `${t.certPath}: the identifier ${JSON.stringify(t.id)} is already used by ${first.certPath}; ignored`,
          });
          return;
        }
        seen.set(t.id, t);
        targets.push(t);
      };
      for (const t of fixed) {
        if (await exists(t.certPath)) add(t);
        else {
          // one missing certificate never stops the others: reported, picked up when it appears
          problems.push({
            path: t.certPath,
            code: 'FILE_UNREADABLE',
            message: `certificate file not found: ${t.certPath} (domain ${t.id}); its staple is maintained once the file appears`,
          });
        }
      }
      for (const scan of config.scans) {
        try {
          for (const t of await scanTargets(scan, config.settings.ocspFolder, {
            responderOverrides: config.settings.responderIdOverrides,
          })) {
            add(t);
          }
        } catch (e) {
          const err = toStapleError(e, 'CONFIG_INVALID');
          problems.push({ path: scan.folder, code: err.code, message: err.message });
        }
      }
      return { targets, problems };
    },
    watchDirs() {
      const dirs: WatchDir[] = config.scans.map((s) => ({ path: s.folder, recursive: s.recursive }));
      const covered = (p: string): boolean => dirs.some((d) => (d.recursive ? isInside(p, d.path) : d.path === p));
      for (const input of inputs) {
        const d = dirname(input);
        if (!covered(d)) dirs.push({ path: d, recursive: false });
      }
      return dirs;
    },
    isRelevant(path) {
      if (inputs.has(path)) return true;
      return config.scans.some((s) => (s.recursive ? isInside(path, s.folder) : dirname(path) === s.folder));
    },
  };
}

/** One change of a file. */
export interface FileEvent {
  path: string;
  kind: 'add' | 'change' | 'unlink';
}

/** Options of {@link watchFolders}. */
export interface WatchOptions {
  clock?: Clock;
  /** Quiet time before a burst is delivered (default 500 ms). */
  debounceMs?: number;
  /** Longest delay after the first event of a burst (default 5 s). */
  maxWaitMs?: number;
  onError?: (e: Error) => void;
}

/** A running watcher. */
export interface FolderWatcher {
  close(): Promise<void>;
}

/** Files we create ourselves and must not react to. */
export function isOwnFile(path: string): boolean {
  const name = basename(path);
  return name === LOCK_NAME || name.includes(TEMP_MARKER);
}

/**
 * Watches `dirs` and calls `onEvents` with the debounced file events (the
 * last state of each path). Resolves once every folder is watched, so that
 * every change after the call is seen.
 *
 * One `fs.watch` per folder (folder-watch.ts, loaded only here): the kind of
 * each event is decided by a `stat` once the burst is over. A name that
 * appears — created, or renamed over an old file or link — is `add`; a
 * write to a file (or to the file a link points at) is `change`; a name
 * that went is `unlink`. Folders are not reported, except a watched folder
 * (or a subfolder of a recursive one) that goes, as `unlink`.
 */
export async function watchFolders(
  dirs: readonly WatchDir[],
  onEvents: (events: FileEvent[]) => void,
  options: WatchOptions = {},
): Promise<FolderWatcher> {
  const clock = options.clock ?? systemClock;
  const debounceMs = options.debounceMs ?? 500;
  const maxWaitMs = options.maxWaitMs ?? 5_000;
  const onError = (e: unknown): void => options.onError?.(e instanceof Error ? e : new Error(String(e)));
  /** The paths reported in this burst, with their raw kind (`rename` wins: a name that appeared, then was written). */
  let pending = new Map<string, RawKind>();
  let cancel: (() => void) | undefined;
  let firstAt: number | undefined;
  let closed = false;
  // deliveries one after the other, in order
  let delivering: Promise<void> = Promise.resolve();

  const { DirWatcher } = await import('./folder-watch.js');
  const deliver = async (batch: ReadonlyMap<string, RawKind>): Promise<void> => {
    const events = await watcher.resolve(batch);
    if (!closed && events.length > 0) onEvents(events);
  };
  const flush = (): void => {
    cancel = undefined;
    firstAt = undefined;
    if (closed || (pending.size === 0 && !watcher.hasSuspects)) return;
    const batch = pending;
    pending = new Map();
    delivering = delivering.then(() => deliver(batch)).catch(onError);
  };
  const arm = (): void => {
    if (closed) return;
    const now = clock.now().getTime();
    firstAt ??= now;
    cancel?.();
    cancel = clock.setTimer(Math.min(debounceMs, Math.max(0, firstAt + maxWaitMs - now)), flush);
  };
  const watcher = new DirWatcher(dirs, {
    note(path, raw) {
      if (closed || isOwnFile(path)) return;
      if (raw === 'rename' || pending.get(path) !== 'rename') pending.set(path, raw);
      arm();
    },
    wake: arm,
    ignored: isOwnFile,
    warn: onError,
  });
  await watcher.start();
  return {
    async close() {
      closed = true;
      cancel?.();
      pending.clear();
      watcher.close();
      await delivering;
    },
  };
}
