/**
 * promise 5 of docs/ARCHITECTURE.md: requests are bounded. A run checks up to 128
 * targets at once (batch/run.ts), so the bound on requests must hold on its
 * own: at most `concurrency` in flight, however many targets are due.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { runOnce } from '../../src/batch/run.js';
import { buildTestPki } from '../helpers/mint.js';
import { tempDir } from '../helpers/temp.js';
import { createFakeTransport } from '../../src/testing/index.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('run: requests in flight', () => {
  it('never exceed `concurrency`, with 40 certificates due at once', async () => {
    const pki = buildTestPki({ keyType: 'ec-p256', delegated: false, now: new Date(), leafCount: 40 });
    const dir = await tempDir('sk-limits-');
    dirs.push(dir);
    await mkdir(join(dir, 'certs'));
    await mkdir(join(dir, 'staples')); // the staple folder must exist (README.md, "Configuration")
    await writeFile(join(dir, 'chain.pem'), pki.root.pem);
    const domains: string[] = [];
    for (const [i, leaf] of pki.leaves.entries()) {
      await writeFile(join(dir, 'certs', `c${i}.pem`), leaf.pem);
      domains.push(`  d${i}:\n    cert: certs/c${i}.pem\n    chain: chain.pem\n    ocsp: d${i}.der\n`);
    }
    await writeFile(join(dir, 'sk.yaml'), `ocsp_folder: staples\nconcurrency: 3\ndomains:\n${domains.join('')}`);
    const config = await loadConfig('sk.yaml', { cwd: dir });

    let now = 0;
    let peak = 0;
    const transport = createFakeTransport(async () => {
      peak = Math.max(peak, ++now);
      await new Promise((r) => setTimeout(r, 10));
      now--;
      return { status: 503 };
    });
    const report = await runOnce(config, { transport });
    expect(report.failed).toBe(40); // every staple is missing and every answer is an error
    expect(transport.requests.length).toBeGreaterThanOrEqual(40);
    expect(peak).toBe(3);
  });
});
