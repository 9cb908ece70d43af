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
import {
  BOUNDED_FROM_BYTES,
  HELD_FLAGS,
  holdHeapGrowth,
  RELEASED_FLAGS,
  RELEASED_SMALL_FLAGS,
} from '../../src/cli/heap-growth.js';

describe('heap growth of the CLI', () => {
  it('holds the growth until a worker starts, then bounds the old generation to 25 % growth when the live heap is large', async () => {
    const set: string[] = [];
    holdHeapGrowth(
      (f) => set.push(f),
      () => BOUNDED_FROM_BYTES,
    );
    expect(set).toEqual(['--semi-space-growth-factor=1', '--heap-growing-percent=100']);
    expect(set).toEqual([...HELD_FLAGS]);
    // once per process
    holdHeapGrowth(
      (f) => set.push(f),
      () => 0,
    );
    expect(set).toHaveLength(2);
    const w = new Worker('0', { eval: true });
    await new Promise((r) => w.once('exit', r));
    expect(set.slice(2)).toEqual(['--semi-space-growth-factor=2', '--heap-growing-percent=25']);
    expect(set.slice(2)).toEqual([...RELEASED_FLAGS]);
    // V8's own factor (percent 0) is not given back to a large heap: a long run's heap stays near its live size
    expect(set).not.toContain('--heap-growing-percent=0');
  });

  it("gives a small live heap V8's own growth once a worker starts (a fresh process)", async () => {
    const { spawnSync } = await import('node:child_process');
    const { pathToFileURL } = await import('node:url');
    const mod = pathToFileURL(new URL('../../dist/cli/heap-growth.js', import.meta.url).pathname).href;
    const script = `
      const { holdHeapGrowth } = await import(${JSON.stringify(mod)});
      const { Worker } = await import('node:worker_threads');
      const set = [];
      holdHeapGrowth((f) => set.push(f), () => ${BOUNDED_FROM_BYTES - 1});
      const w = new Worker('0', { eval: true });
      await new Promise((r) => w.once('exit', r));
      console.log(JSON.stringify(set));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([...HELD_FLAGS, ...RELEASED_SMALL_FLAGS]);
  });
});
