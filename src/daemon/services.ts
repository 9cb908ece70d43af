/**
 * The daemon's two optional services, each loaded only when asked for: the
 * status service (status/server.ts: `/`, `/status`, `/metrics`, `/healthz`;
 * node:http and prom-client are not loaded without it) and the watcher of
 * the certificate folders (watch.ts and folder-watch.ts, not loaded without it).
 * {@link DaemonServices} holds the open ones for the daemon's lifecycle.
 */
import { toStapleError } from '../core/errors.js';
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

/** What {@link DaemonServices} reads of the daemon; read again at each open, so a reload is followed. */
export interface ServiceSettings {
  /** The address of the status service (none: no service). */
  listen(): string | undefined;
  /** Whether the folders are watched. */
  watch(): boolean;
  source(): DaemonSource;
  provider: StatusProvider;
  clock: Clock;
  debounceMs: number;
  log: DaemonLogger;
  onEvents(events: FileEvent[]): void;
}

/**
 * The daemon's open services. Contract: {@link open} throws as
 * {@link openStatusService} does (the caller stops the daemon then);
 * {@link follow} never throws (failures are logged, the daemon runs on
 * without that service); the close methods are safe to call at any time.
 */
export class DaemonServices {
  private watcher: FolderWatcher | undefined;
  private server: OpenStatusService | undefined;

  constructor(private readonly s: ServiceSettings) {}

  /** The status service's base URL, when one is listening. */
  get statusUrl(): string | undefined {
    return this.server?.url;
  }

  /** The address the status service should listen on now. */
  address(): string | undefined {
    return this.s.listen();
  }

  get watching(): boolean {
    return this.watcher !== undefined;
  }

  /** Opens the status service, then the watcher. */
  async open(): Promise<void> {
    await this.openStatusServer();
    await this.openWatcher();
  }

  /**
   * After a reload: the watcher is opened again on the new source; the status
   * service is re-opened when its address is no longer `listenBefore`.
   */
  async follow(listenBefore: string | undefined): Promise<void> {
    await this.closeWatcher();
    try {
      await this.openWatcher();
    } catch (e) {
      this.s.log({ level: 'warn', msg: `watching folders: ${toStapleError(e).message}` });
    }
    if (this.s.listen() !== listenBefore) {
      await this.closeServer();
      try {
        await this.openStatusServer();
      } catch (e) {
        const err = toStapleError(e);
        this.s.log({ level: 'error', code: err.code, msg: `status service: ${err.message}` });
      }
    }
  }

  closeWatcher(): Promise<void> {
    const w = this.watcher;
    this.watcher = undefined;
    return w ? w.close().catch(() => undefined) : Promise.resolve();
  }

  closeServer(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    return s ? s.close().catch(() => undefined) : Promise.resolve();
  }

  private async openStatusServer(): Promise<void> {
    this.server = await openStatusService(this.s.listen(), this.s.provider, this.s.log);
  }

  private async openWatcher(): Promise<void> {
    if (!this.s.watch()) return;
    this.watcher = await openFolderWatcher(this.s.source(), this.s);
  }
}
