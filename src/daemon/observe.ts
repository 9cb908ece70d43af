/**
 * What the daemon shows of itself: its observers, told of every finished
 * attempt (metrics, tests), and the facts its snapshot is made of (rendered
 * by status/snapshot.ts for `/status`, `/metrics` and `status`).
 *
 * Contract: an observer that throws never breaks the loop;
 * {@link daemonSnapshot} only reads what it is handed.
 */
import type { Fleet } from '../fleet/contract.js';
import type { Schedule } from '../pipeline/backoff.js';
import type { AttemptEvent, DaemonObserver, DaemonSnapshot } from '../status/page.js';
import { snapshotOf } from '../status/snapshot.js';
import type { Entry } from './apply.js';
import type { HostHealth } from './host-health.js';
import type { WorkQueue } from './queue.js';

/** The daemon's observers. */
export class Observers {
  private readonly observers = new Set<DaemonObserver>();

  /** Subscribes an observer; returns the unsubscribe function. */
  add(o: DaemonObserver): () => void {
    this.observers.add(o);
    return () => this.observers.delete(o);
  }

  /** Tells every observer of a finished attempt. */
  attempt(event: AttemptEvent): void {
    for (const o of this.observers) {
      try {
        o.onAttempt?.(event);
      } catch {
        // an observer never breaks the loop
      }
    }
  }
}

/** The parts of a daemon its snapshot reads. */
export interface DaemonView {
  source: string;
  startedAt: Date;
  alive: boolean;
  schedule: Pick<Schedule, 'armedFor' | 'get'>;
  work: Pick<WorkQueue, 'active' | 'size'>;
  health: Pick<HostHealth, 'size' | 'list'>;
  fleet: Fleet | undefined;
  entries: Iterable<Entry>;
}

/** The status of every certificate of `v` at `now`, most urgent first. */
export function daemonSnapshot(v: DaemonView, now: Date): DaemonSnapshot {
  const facts = {
    source: v.source,
    startedAt: v.startedAt,
    alive: v.alive,
    nextWake: v.schedule.armedFor(),
    inProgress: v.work.active,
    queued: v.work.size,
    hostsFailing: v.health.size,
    backoff: v.health.list(),
    fleet: v.fleet?.health(),
    certificates: [...v.entries].map((e) => ({
      facts: e,
      nextAttempt: v.schedule.get(e.target.id),
      inProgress: e.inFlight,
    })),
  };
  return snapshotOf(facts, now, process.pid);
}
