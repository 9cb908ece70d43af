/**
 * The daemon's work queue (daemon/queue.ts): asks merge, a batch runs until
 * the queue is empty with at most `concurrency` certificates in progress,
 * what is asked for during a batch joins it, a batch that cannot run stops
 * the queue, and whenIdle resolves once nothing is queued or in progress.
 */
import { describe, expect, it } from 'vitest';
import type { HeldLock } from '../../src/batch/lock.js';
import { mergeAsks, WorkQueue, type Queued } from '../../src/daemon/queue.js';

const lock: HeldLock = { path: '/ocsp/.staplekeeper.lock', waited: false, release: async () => undefined };
const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A queue whose work waits for `release(id)` (or runs at once with `instant`), recording what happened. */
function harness(options: { concurrency?: number; instant?: boolean; lockFails?: boolean } = {}) {
  const events: string[] = [];
  const waiting = new Map<string, () => void>();
  let inProgress = 0;
  let most = 0;
  const q = new WorkQueue({
    concurrency: () => options.concurrency ?? 2,
    stopping: () => false,
    work: async (id: string, ask: Queued) => {
      inProgress++;
      most = Math.max(most, inProgress);
      events.push(`start ${id}${ask.force ? ' (force)' : ''}`);
      if (!options.instant) await new Promise<void>((r) => waiting.set(id, r));
      inProgress--;
      events.push(`end ${id}`);
    },
    batch: async (drain) => {
      if (options.lockFails) {
        // as the daemon does: the queued certificates go back on their timers
        events.push(`no lock: ${q.takeAll().join(',')}`);
        return false;
      }
      events.push('batch');
      await drain(lock);
      events.push('batch done');
      return true;
    },
  });
  const release = async (id: string): Promise<void> => {
    waiting.get(id)?.();
    waiting.delete(id);
    await tick();
  };
  return { q, events, release, most: () => most };
}

describe('WorkQueue', () => {
  it('merges asks: force and fleet win', () => {
    expect(mergeAsks(undefined, { force: false })).toEqual({ force: false, fleet: false });
    expect(mergeAsks({ force: true }, { force: false, fleet: true })).toEqual({ force: true, fleet: true });
  });

  it('runs one batch until the queue is empty, at most `concurrency` at once; a later ask joins the running batch', async () => {
    const { q, events, release, most } = harness({ concurrency: 2 });
    q.add('a', { force: false });
    q.add('b', { force: false });
    q.add('c', { force: false });
    q.add('a', { force: true }); // still queued? no: a started at once; this ask is queued again
    await tick();
    expect(q.active).toBe(2);
    expect(q.busy).toBe(true);
    expect(q.holding).toBe(true);
    await release('a');
    q.add('d', { force: false });
    await release('b');
    await release('c');
    await release('a');
    await release('d');
    await tick();
    expect(events.filter((e) => e.startsWith('batch'))).toEqual(['batch', 'batch done']);
    expect(most()).toBe(2);
    expect(events.filter((e) => e.startsWith('start')).sort()).toEqual([
      'start a',
      'start a (force)',
      'start b',
      'start c',
      'start d',
    ]);
    expect(q.busy).toBe(false);
  });

  it('starts a new batch for work asked after one ended', async () => {
    const { q, events } = harness({ instant: true });
    q.add('a', { force: false });
    await q.whenIdle();
    q.add('b', { force: false });
    await q.whenIdle();
    expect(events).toEqual(['batch', 'start a', 'end a', 'batch done', 'batch', 'start b', 'end b', 'batch done']);
  });

  it('a batch that cannot run stops the queue, which is idle once the caller took the queued certificates back', async () => {
    const { q, events } = harness({ lockFails: true });
    q.add('a', { force: false });
    q.add('b', { force: true });
    await q.whenIdle();
    // b was asked for while the first batch was closing: it gets a batch of its own
    expect(events).toEqual(['no lock: a', 'no lock: b']);
    expect(q.size).toBe(0);
    expect(q.busy).toBe(false);
  });

  it('whenIdle resolves at once when nothing is queued', async () => {
    const { q } = harness();
    await expect(q.whenIdle()).resolves.toBeUndefined();
    expect(q.running).toBeUndefined();
  });
});
