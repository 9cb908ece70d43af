/**
 * The daemon's work queue: certificates asked for (due, changed, signalled)
 * wait here and are worked on in batches. A batch holds the staple-folder
 * lock while its workers run (batch/step.ts), with at most `concurrency`
 * certificates in progress; what is asked for during a batch joins it. When
 * the queue is empty the batch ends (the lock is released, the outputs get
 * the batch); what arrives after that starts the next batch, a short pause
 * later so that a `staplekeeper run` waiting for the lock gets its turn.
 */
import type { HeldLock } from '../batch/lock.js';
import type { BatchStepOptions } from '../batch/step.js';
import type { DaemonLogger } from './entry-state.js';

/** A queued attempt: forced (SIGUSR2), and whether a better staple from the fleet is taken even when not due. */
export interface Queued {
  force: boolean;
  fleet?: boolean;
}

/** Both asks in one (force wins, fleet wins). */
export function mergeAsks(a: Queued | undefined, b: Queued): Queued {
  return { force: (a?.force ?? false) || b.force, fleet: (a?.fleet ?? false) || (b.fleet ?? false) };
}

/** What the queue asks of the daemon. */
export interface WorkQueueHooks {
  /** Certificates worked on at once (settings `concurrency`, at least 1). */
  concurrency(): number;
  /** True once the daemon stops: no new batch, no new worker. */
  stopping(): boolean;
  /** Works on one certificate; must not throw. */
  work(id: string, ask: Queued): Promise<void>;
  /**
   * Runs one batch: takes the lock, calls `drain(lock)` (which resolves when
   * the queue is empty or the daemon stops), releases it, delivers.
   * Resolves to false when no batch could run (the lock could not be taken):
   * the queue then stops until asked again.
   */
  batch(drain: (lock: HeldLock) => Promise<void>): Promise<boolean>;
}

/** Pause between two lock-holding batches, longer than acquireLock's 200 ms poll, so a waiting `run` gets its turn. */
const LOCK_FAIRNESS_MS = 300;

export class WorkQueue {
  private readonly queue = new Map<string, Queued>();
  private lock: HeldLock | undefined;
  private onDrained: (() => void) | undefined;
  private pumping: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];
  /** Workers running. */
  private workers = 0;

  constructor(private readonly hooks: WorkQueueHooks) {}

  /** Asks for a certificate (merged with an ask already queued) and starts a batch or joins the running one. */
  add(id: string, ask: Queued): void {
    this.queue.set(id, mergeAsks(this.queue.get(id), ask));
    if (this.lock && this.onDrained) this.spawnWorkers();
    else if (!this.pumping) this.start();
  }

  private start(): void {
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      // asked for while the last batch was closing (after its queue ran empty): a new batch, not a stranded ask
      if (this.queue.size > 0 && !this.hooks.stopping()) this.start();
      else this.notifyIdle();
    });
  }

  delete(id: string): void {
    this.queue.delete(id);
  }

  /** Takes everything queued out of the queue (a batch that could not run, a stop). */
  takeAll(): string[] {
    const ids = [...this.queue.keys()];
    this.queue.clear();
    return ids;
  }

  /** Certificates waiting. */
  get size(): number {
    return this.queue.size;
  }

  /** Certificates in progress. */
  get active(): number {
    return this.workers;
  }

  /** True while a batch runs or work is queued or in progress. */
  get busy(): boolean {
    return this.pumping !== undefined || this.queue.size > 0 || this.workers > 0;
  }

  /** True while a batch holds the lock or a worker runs. */
  get holding(): boolean {
    return this.workers > 0 || this.lock !== undefined;
  }

  /** The running batches, for a stop to wait on. */
  get running(): Promise<void> | undefined {
    return this.pumping;
  }

  /** Releases the lock of a batch that did not finish in time (stop). */
  async releaseLock(): Promise<void> {
    if (this.lock) await this.lock.release().catch(() => undefined);
  }

  /** Resolves when no work is queued or in progress. */
  whenIdle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private notifyIdle(): void {
    if (this.busy) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async pump(): Promise<void> {
    while (this.queue.size > 0 && !this.hooks.stopping()) {
      const ran = await this.hooks.batch((lock) => this.drain(lock));
      if (!ran) return;
      if (this.queue.size > 0 && !this.hooks.stopping()) await new Promise((r) => setTimeout(r, LOCK_FAIRNESS_MS));
    }
  }

  private async drain(lock: HeldLock): Promise<void> {
    try {
      if (this.hooks.stopping()) return;
      await new Promise<void>((resolve) => {
        this.lock = lock;
        this.onDrained = () => {
          // no new worker may start once the batch is closing
          this.lock = undefined;
          this.onDrained = undefined;
          resolve();
        };
        this.spawnWorkers();
        if (this.workers === 0) this.onDrained?.();
      });
    } finally {
      this.lock = undefined;
      this.onDrained = undefined;
    }
  }

  private spawnWorkers(): void {
    const limit = Math.max(1, this.hooks.concurrency());
    while (this.lock && !this.hooks.stopping() && this.workers < limit && this.queue.size > 0) {
      this.workers++;
      void this.worker().finally(() => {
        this.workers--;
        if (this.workers === 0 && (this.queue.size === 0 || this.hooks.stopping())) this.onDrained?.();
      });
    }
  }

  private async worker(): Promise<void> {
    while (!this.hooks.stopping() && this.lock) {
      const next = this.queue.entries().next();
      if (next.done) return;
      const [id, ask] = next.value;
      this.queue.delete(id);
      await this.hooks.work(id, ask);
    }
  }
}

/** How a batch's lock waits, marks, pushes and hooks are logged by the daemon. */
export function batchLog(
  log: DaemonLogger,
): Pick<BatchStepOptions, 'onLockWait' | 'onMarksFailure' | 'onNotice' | 'onHookRan' | 'onFailure'> {
  return {
    onLockWait: (m) => log({ level: 'info', msg: m }),
    onMarksFailure: (m) => log({ level: 'error', code: 'FILE_WRITE', msg: m }),
    onNotice: (m) => log({ level: 'info', msg: m }),
    onHookRan: (event, count, stdout) =>
      log({ level: 'info', msg: `${event} hook ran for ${count} certificate(s)${stdout ? `: ${stdout}` : ''}` }),
    onFailure: (f) =>
      log({ level: 'error', code: f.code, msg: f.event === 'haproxy' ? f.message : `${f.event} hook: ${f.message}` }),
  };
}
