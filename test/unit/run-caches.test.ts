/**
 * `runOnce` and the verdict cache as an object (pipeline/verdict-cache.ts):
 * a library caller that passes none gets nothing written beside its staples;
 * one that passes a cache has its file written when the run ends (no exit
 * handler), and the next run takes every staple from it with the same outcomes.
 * Both objects come from the library's `ocsp` namespace, as a caller would use them.
 */
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ocsp, runOnce } from '../../src/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { HttpTransport } from '../../src/io/http.js';
import type { TargetOutcome } from '../../src/pipeline/context.js';
import { CACHE_FILE_NAME } from '../../src/pipeline/verdict-cache.js';
import { buildTestPki, goodResponseFor } from '../helpers/mint.js';
import { tempDir } from '../helpers/temp.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const noNetwork: HttpTransport = {
  send: () => Promise.reject(new Error('this test does not expect a request')),
  close: async () => undefined,
};

/** Ten certificates with a shared chain in a temporary folder and their `domains` configuration; `noStapleFor0`: d0 has no staple. */
async function tenDomains(
  prefix: string,
  now: Date,
  noStapleFor0 = false,
): Promise<{ dir: string; config: Awaited<ReturnType<typeof loadConfig>> }> {
  const pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now, leafCount: 10 });
  const dir = await tempDir(prefix);
  dirs.push(dir);
  await mkdir(join(dir, 'certs'));
  await mkdir(join(dir, 'staples'));
  await writeFile(join(dir, 'chain.pem'), pki.root.pem);
  const domains: string[] = [];
  for (const [i, leaf] of pki.leaves.entries()) {
    await writeFile(join(dir, 'certs', `c${i}.pem`), leaf.pem);
    if (i > 0 || !noStapleFor0) await writeFile(join(dir, 'staples', `d${i}.der`), goodResponseFor(pki, leaf, now));
    domains.push(`  d${i}:\n    cert: certs/c${i}.pem\n    chain: chain.pem\n    ocsp: d${i}.der\n`);
  }
  await writeFile(join(dir, 'sk.yaml'), `ocsp_folder: staples\ndomains:\n${domains.join('')}`);
  return { dir, config: await loadConfig('sk.yaml', { cwd: dir }) };
}

describe('runOnce and the verdict cache', () => {
  it('writes no cache file unless given a cache; with one, writes it at the end and hits it next time', async () => {
    const now = new Date();
    const { dir, config } = await tenDomains('sk-run-caches-', now);
    const cacheFile = join(dir, 'staples', CACHE_FILE_NAME);
    const exitHandlers = process.listenerCount('exit');

    const plain = await runOnce(config, { transport: noNetwork });
    await new Promise((r) => setTimeout(r, 20)); // nothing is written later either (idle, exit)
    expect(plain.unchanged).toBe(10);
    await expect(stat(cacheFile)).rejects.toMatchObject({ code: 'ENOENT' });

    const first = new ocsp.VerdictCache();
    const signatures = new ocsp.SignatureVerifier({ thread: true });
    try {
      const cached = await runOnce(config, { transport: noNetwork, verdicts: first, signatures });
      expect((await stat(cacheFile)).isFile()).toBe(true); // written when the run ended
      expect(process.listenerCount('exit')).toBe(exitHandlers);
      expect(first.stats()).toEqual({ hits: 0, misses: 10 });
      const second = new ocsp.VerdictCache();
      const warm = await runOnce(config, { transport: noNetwork, verdicts: second, signatures });
      expect(second.stats()).toEqual({ hits: 10, misses: 0 });
      const decisions = (r: typeof plain): unknown =>
        r.outcomes.map((o) => [o.id, o.result, o.decision?.action, o.decision?.reason, o.staple]);
      expect(decisions(cached)).toEqual(decisions(plain));
      expect(decisions(warm)).toEqual(decisions(plain));
    } finally {
      await signatures.close();
    }
  });
  it('a one-shot cache and brief outcomes: the same outcomes in onOutcome, brief ones in the report', async () => {
    const now = new Date();
    // d0 has no staple: it must be fetched, and the transport fails (a failure, kept whole)
    const { dir, config } = await tenDomains('sk-run-brief-', now, true);
    const plain = await runOnce(config, { transport: noNetwork, now: () => now });
    expect([plain.unchanged, plain.failed]).toEqual([9, 1]);
    const byId = (os: readonly TargetOutcome[]): TargetOutcome[] => [...os].sort((a, b) => a.id.localeCompare(b.id));

    for (const pass of ['cold', 'warm']) {
      const seen: TargetOutcome[] = [];
      const verdicts = new ocsp.VerdictCache({ oneShot: true });
      const r = await runOnce(config, {
        transport: noNetwork,
        now: () => now,
        verdicts,
        briefOutcomes: true,
        onOutcome: (o) => seen.push(o),
      });
      expect(verdicts.stats().hits, pass).toBe(pass === 'cold' ? 0 : 9);
      // the caller saw every outcome whole, as without the options
      expect(byId(seen)).toEqual(byId(plain.outcomes));
      expect([r.unchanged, r.updated, r.failed, r.skipped, r.revoked]).toEqual([9, 0, 1, 0, 0]);
      for (const [i, o] of r.outcomes.entries()) {
        const whole = plain.outcomes[i] as TargetOutcome;
        if (o.result === 'failed') {
          expect(o).toEqual(whole);
          continue;
        }
        expect(o).toEqual({
          id: whole.id,
          certPath: whole.certPath,
          staplePath: whole.staplePath,
          result: 'unchanged',
          notices: [],
        });
      }
    }
    // a dry run keeps the decisions (what would be renewed); with HAProxy, the staples (what is pushed)
    const dry = await runOnce(config, { transport: noNetwork, now: () => now, briefOutcomes: true, dryRun: true });
    expect(dry.outcomes.map((o) => o.decision?.action)).toEqual(plain.outcomes.map((o) => o.decision?.action));
    const withHaproxy = {
      ...config,
      settings: { ...config.settings, haproxy: [{ socket: join(dir, 'none.sock'), certificates: [] }] },
    };
    const pushed = await runOnce(withHaproxy, {
      transport: noNetwork,
      now: () => now,
      briefOutcomes: true,
      onNotice: () => undefined,
    });
    expect(pushed.outcomes.map((o) => o.staple)).toEqual(plain.outcomes.map((o) => o.staple));
  });
});
