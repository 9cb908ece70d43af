/**
 * Overlapping runs on one staple folder, through the real executable.
 *
 * - Two `run`s started at the same moment: one takes the folder lock, the
 *   other says "waiting for another staplekeeper (PID n)" naming the first,
 *   then does its work; no staple is lost or corrupted.
 * - With `lock_timeout: 0s` the second gives up at once: exit 255,
 *   LOCK_TIMEOUT naming the holder's PID; the first finishes normally.
 * - A `run` started while the daemon renews the same folder waits for it in
 *   the same way (when `staplekeeper daemon` exists in this build).
 */
import { existsSync } from 'node:fs';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCertificates, type Certificate } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import {
  exited,
  ROOT,
  runCli,
  showResult,
  spawnCli,
  tempDir,
  writeConfig,
  writeDomains,
  startCliBench,
  endCliBench,
} from '../helpers/cli-harness.js';
import type { GoodResponder } from '../helpers/cli-harness.js';
import type { TestPki } from '../helpers/mint.js';

const CERTS = 8;
/** Each answer is held back this long, so that a run holds the lock long enough for the other to find it taken. */
const DELAY_MS = 700;

let pki: TestPki;
let responder: GoodResponder;
let issuer: Certificate;

beforeAll(async () => {
  ({ pki, responder } = await startCliBench('sk-overlap-', CERTS, { delegated: true, delayMs: DELAY_MS }));
  [issuer] = loadCertificates(pki.root.der) as [Certificate];
});

afterAll(endCliBench);

/** A folder with CERTS domains and good staples; returns the config path and the staple paths. */
async function setup(extra: Record<string, unknown> = {}): Promise<{ dir: string; config: string; staples: string[] }> {
  const dir = await tempDir('sk-overlap-');
  const { domains, staples } = await writeDomains(dir, pki, {
    prefix: 'd',
    responderUrl: responder.url,
    withStaples: true,
  });
  const config = await writeConfig(join(dir, 'staplekeeper.yaml'), {
    ocsp_folder: dir,
    http: { timeout: '10s' },
    lock_timeout: '30s',
    ...extra,
    domains,
  });
  return { dir, config, staples };
}

/** Every staple verifies and is one of the responses the responder sent. */
async function expectStaplesIntact(staples: string[]): Promise<void> {
  for (const [i, path] of staples.entries()) {
    const leaf = pki.leaves[i]!;
    const bytes = await readFile(path);
    const served = responder.served.get(leaf.serial.toString('hex').toUpperCase()) ?? [];
    expect(
      served.some((b) => b.equals(bytes)),
      `${path} is not a response the responder sent`,
    ).toBe(true);
    const [cert] = loadCertificates(leaf.der);
    expect(verifyResponse(bytes, { cert: cert!, issuer, now: new Date() }).status).toBe('good');
  }
}

async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.includes('.sk-tmp-') || n === '.staplekeeper.lock');
}

describe('two runs started at the same moment', () => {
  it('one waits for the other, saying so with its PID; both renew, nothing is lost or corrupted', async () => {
    for (let round = 0; round < 3; round++) {
      const { dir, config, staples } = await setup();
      const [a, b] = await Promise.all([
        runCli(['run', '-c', config, '--force'], { timeoutMs: 60_000 }),
        runCli(['run', '-c', config, '--force'], { timeoutMs: 60_000 }),
      ]);
      for (const r of [a, b]) expect(r.code, showResult(r)).toBe(CERTS);
      const waiters = [a, b].filter((r) => r.stderr.includes('waiting for another staplekeeper'));
      expect(waiters.length, `${showResult(a)}\n${showResult(b)}`).toBe(1);
      const waiter = waiters[0]!;
      const holder = waiter === a ? b : a;
      expect(waiter.stderr).toContain(`waiting for another staplekeeper (PID ${holder.pid}) to finish with ${dir}`);
      expect(holder.stderr).not.toContain('waiting');
      // the waiter started its work only after the holder was done
      expect(waiter.ms).toBeGreaterThan(holder.ms);
      await expectStaplesIntact(staples);
      expect(await leftovers(dir)).toEqual([]);
    }
  });

  it('with lock_timeout 0s the second gives up at once: exit 255, LOCK_TIMEOUT naming the holder PID', async () => {
    const { dir, config, staples } = await setup({ lock_timeout: '0s' });
    const [a, b] = await Promise.all([
      runCli(['run', '-c', config, '--force'], { timeoutMs: 60_000 }),
      runCli(['run', '-c', config, '--force'], { timeoutMs: 60_000 }),
    ]);
    const losers = [a, b].filter((r) => r.code === 255);
    expect(losers.length, `${showResult(a)}\n${showResult(b)}`).toBe(1);
    const loser = losers[0]!;
    const winner = loser === a ? b : a;
    expect(winner.code, showResult(winner)).toBe(CERTS);
    expect(loser.stderr).toContain(
      `error LOCK_TIMEOUT: another staplekeeper (PID ${winner.pid}) holds ${join(dir, '.staplekeeper.lock')}`,
    );
    // the loser gave up without waiting for the holder to finish
    expect(loser.ms).toBeLessThan(winner.ms);
    await expectStaplesIntact(staples);
    expect(await leftovers(dir)).toEqual([]);
  });
});

const hasDaemon = existsSync(join(ROOT, 'dist', 'cli', 'daemon.js'));

describe('a run while the daemon works on the same folder', () => {
  it.skipIf(!hasDaemon)(
    'the run waits for the daemon, naming its PID, then renews; no staple is lost or corrupted',
    async () => {
      // No staples yet: the daemon starts renewing all of them at once, holding the lock.
      const { dir, config, staples } = await setup();
      for (const s of staples) await rm(s);
      const daemon = spawnCli(['daemon', '-c', config]);
      let daemonOut = '';
      daemon.stdout?.on('data', (d: Buffer) => (daemonOut += d.toString()));
      daemon.stderr?.on('data', (d: Buffer) => (daemonOut += d.toString()));
      try {
        // wait until the daemon's first requests arrive: it holds the lock now
        const seen = responder.count();
        const start = Date.now();
        const before = responder.times.length;
        while (responder.times.length === before && Date.now() - start < 20_000)
          await new Promise((r) => setTimeout(r, 20));
        expect(responder.times.length, daemonOut).toBeGreaterThan(before);
        const r = await runCli(['run', '-c', config, '--force'], { timeoutMs: 60_000 });
        expect(r.code, `${showResult(r)}\ndaemon: ${daemonOut}`).toBe(CERTS);
        expect(r.stderr).toContain(`waiting for another staplekeeper (PID ${daemon.pid}) to finish with ${dir}`);
        expect(responder.count()).toBeGreaterThanOrEqual(seen + 2 * CERTS);
        await expectStaplesIntact(staples);
      } finally {
        daemon.kill('SIGTERM');
        const t = setTimeout(() => daemon.kill('SIGKILL'), 10_000);
        await exited(daemon);
        clearTimeout(t);
      }
      expect((await leftovers(dir)).filter((n) => n !== '.staplekeeper.lock')).toEqual([]);
    },
  );

  it.skipIf(!hasDaemon)('the daemon waits for a run that holds the lock, naming its PID', async () => {
    const { dir, config, staples } = await setup();
    for (const s of staples) await rm(s);
    const before = responder.times.length;
    const run = runCli(['run', '-c', config, '--force'], { timeoutMs: 60_000 });
    const start = Date.now();
    while (responder.times.length === before && Date.now() - start < 20_000)
      await new Promise((r) => setTimeout(r, 20));
    const daemon = spawnCli(['daemon', '-c', config]);
    let daemonOut = '';
    daemon.stdout?.on('data', (d: Buffer) => (daemonOut += d.toString()));
    daemon.stderr?.on('data', (d: Buffer) => (daemonOut += d.toString()));
    try {
      const r = await run;
      expect(r.code, showResult(r)).toBe(CERTS);
      const until = Date.now() + 10_000;
      while (!daemonOut.includes('waiting for another staplekeeper') && Date.now() < until) {
        await new Promise((res) => setTimeout(res, 50));
      }
      expect(daemonOut).toContain(`waiting for another staplekeeper (PID ${r.pid}) to finish with ${dir}`);
      await expectStaplesIntact(staples);
    } finally {
      daemon.kill('SIGTERM');
      const t = setTimeout(() => daemon.kill('SIGKILL'), 10_000);
      await exited(daemon);
      clearTimeout(t);
    }
    await expectStaplesIntact(staples);
  });
});
