/**
 * The daemon's two optional services, each loaded only when asked for: the
 * status service (status/server.ts: `/`, `/status`, `/metrics`, `/healthz`;
 * node:http and prom-client are not loaded without it) and the watcher of
 * the certificate folders (watch.ts; chokidar is not loaded without it).
 */
import type { Clock } from '../io/clock.js';
import type { StatusProvider } from '../status/server.js';
import type { DaemonLogger } from './entry-state.js';
import type { DaemonSource, FileEvent, FolderWatcher } from './watch.js';

/** A status service that listens. */
export interface OpenStatusService {
  url: string;
  /** The address it was asked to listen on (a reload compares it). */
  listen: string;
  close(): Promise<void>;
}

/**
 * Opens the status service on `listen` (none without it).
 * @throws StapleError `CONFIG_INVALID` for an unusable address.
 */
export async function openStatusService(
  listen: string | undefined,
  provider: StatusProvider,
  log: DaemonLogger,
): Promise<OpenStatusService | undefined> {
  if (!listen) return undefined;
  const { startStatusServer } = await import('../status/server.js');
  const server = await startStatusServer({ listen, provider });
  log({
    level: 'info',
    msg: `status service listening on ${server.url} (/, /status, /metrics, /healthz)`,
    fields: { url: server.url },
  });
  return { ...server, listen };
}

/** Watches the folders of `source` (none when it has none), delivering debounced bursts of changes. */
export async function openFolderWatcher(
  source: DaemonSource,
  o: { clock: Clock; debounceMs: number; log: DaemonLogger; onEvents: (events: FileEvent[]) => void },
): Promise<FolderWatcher | undefined> {
  const dirs = source.watchDirs();
  if (dirs.length === 0) return undefined;
  const { watchFolders } = await import('./watch.js');
  return await watchFolders(dirs, o.onEvents, {
    clock: o.clock,
    debounceMs: o.debounceMs,
    onError: (e) => o.log({ level: 'warn', msg: `watching folders: ${e.message}` }),
  });
}
