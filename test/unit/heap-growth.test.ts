/**
 * cli/heap-growth.ts: the flags the CLI gives V8, in order. Held from the
 * start (young generation at its initial size, old generation at most 2×);
 * once a worker thread starts, the young generation grows again and the old
 * generation by at most 25 % between full collections (not V8's own factor,
 * which let a cold check of 100,000 hold ~2.4× its live heap). What the flags
 * do to a real process's heap is measured in test/integration/warm-memory.test.ts
 * and docs/PERFORMANCE.md.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { HELD_FLAGS, holdHeapGrowth, RELEASED_FLAGS } from '../../src/cli/heap-growth.js';

describe('heap growth of the CLI', () => {
  it('holds the growth until a worker starts, then bounds the old generation to 25 % growth', async () => {
    const set: string[] = [];
    holdHeapGrowth((f) => set.push(f));
    expect(set).toEqual(['--semi-space-growth-factor=1', '--heap-growing-percent=100']);
    expect(set).toEqual([...HELD_FLAGS]);
    // once per process
    holdHeapGrowth((f) => set.push(f));
    expect(set).toHaveLength(2);
    const w = new Worker('0', { eval: true });
    await new Promise((r) => w.once('exit', r));
    expect(set.slice(2)).toEqual(['--semi-space-growth-factor=2', '--heap-growing-percent=25']);
    expect(set.slice(2)).toEqual([...RELEASED_FLAGS]);
    // V8's own factor (percent 0) is never given back: a long run's heap stays near its live size
    expect(set).not.toContain('--heap-growing-percent=0');
  });
});
