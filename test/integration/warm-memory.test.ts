/**
 * What keeps a warm run small (PERFORMANCE.md, "Memory"): a run whose
 * verdicts all come from the staple-folder cache starts no check thread, and
 * the CLI holds V8's heap growth until a worker thread starts
 * (src/cli/heap-growth.ts). Needs `npm run build` first (it runs dist/).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeConfig, writeDomains } from '../helpers/cli-harness.js';
import { buildTestPki } from '../helpers/mint.js';
import { cleanUp, tempDir } from '../helpers/temp.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'staplekeeper');
afterAll(cleanUp);

/** A preload that records, at exit, whether a worker thread started and the young generation's largest size. */
const PRELOAD = `import v8 from 'node:v8';
import { writeFileSync } from 'node:fs';
let worker = false;
let newSpace = 0;
process.on('worker', () => { worker = true; });
const sample = () => { newSpace = Math.max(newSpace, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size); };
const t = setInterval(sample, 1); t.unref();
process.on('exit', () => { sample(); writeFileSync(process.env.REPORT, JSON.stringify({ worker, newSpace })); });
`;

describe('a warm run stays small', () => {
  it('a run with every verdict cached starts no check thread; a cold one does', async () => {
    const dir = await tempDir('sk-warm-');
    const n = 24;
    // good staples on disk, a responder nobody answers at: every staple is judged, none fetched
    const pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: new Date(), leafCount: n });
    const { domains } = await writeDomains(dir, pki, { responderUrl: 'http://127.0.0.1:9/ocsp', withStaples: true });
    await writeConfig(path.join(dir, 'sk.yaml'), { ocsp_folder: dir, domains });
    const preload = path.join(dir, 'preload.mjs');
    writeFileSync(preload, PRELOAD);
    const report = path.join(dir, 'report.json');
    const run = (): { worker: boolean; newSpace: number } => {
      const r = spawnSync(process.execPath, ['--import', preload, BIN, 'run', '-c', 'sk.yaml', '-q'], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, REPORT: report, STAPLEKEEPER_CACHE_DIR: path.join(dir, 'cache') },
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`${n} unchanged`);
      return JSON.parse(readFileSync(report, 'utf8')) as { worker: boolean; newSpace: number };
    };
    expect(run().worker).toBe(true); // cold: every staple verified, on the check thread
    const warm = run();
    expect(warm.worker).toBe(false);
  }, 60_000);

  it('the CLI keeps the young generation at its initial size until a worker thread starts', () => {
    // many allocations that survive a scavenge (as a warm run's records and outcomes do)
    const script = `import v8 from 'node:v8';
import { Worker } from 'node:worker_threads';
const { holdHeapGrowth } = await import(${JSON.stringify(path.join(ROOT, 'dist', 'cli', 'heap-growth.js'))});
const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
const grow = () => { let keep = []; let max = 0; for (let i = 0; i < 400000; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 50000) keep = []; if (i % 1000 === 0) max = Math.max(max, newSpace()); } return max; };
holdHeapGrowth();
const held = grow();
const w = new Worker('0', { eval: true });
await new Promise((r) => w.once('exit', r));
const released = grow();
process.stdout.write(JSON.stringify({ held, released }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const { held, released } = JSON.parse(r.stdout) as { held: number; released: number };
    // V8 starts the young generation at two 1 MB semi-spaces (plus a page or so) and grows it to 32 MB
    expect(held).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(released).toBeGreaterThan(held);
  }, 60_000);
});
