/**
 * Locks (docs/SECURITY.md), through the real executable: the folder lock dies with
 * its holder. A lock file naming a live process that is not a staplekeeper
 * (a PID reused after a crash) never blocks a run, and a holder killed with
 * SIGKILL releases the lock at that instant.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  endCliBench,
  exited,
  runCli,
  showResult,
  spawnCli,
  startCliBench,
  startGoodResponder,
  writeConfig,
  writeDomains,
} from '../helpers/cli-harness.js';
import type { GoodResponder } from '../helpers/cli-harness.js';
import type { TestPki } from '../helpers/mint.js';

let dir: string;
let pki: TestPki;
let fast: GoodResponder;
let slow: GoodResponder;
const extra: Array<{ kill(sig: NodeJS.Signals): boolean }> = [];

beforeAll(async () => {
  ({ dir, pki, responder: fast } = await startCliBench('sk-rel-locks-', 2));
  slow = await startGoodResponder(pki, pki.leaves, { delayMs: 20_000 });
});

afterAll(async () => {
  for (const c of extra) c.kill('SIGKILL');
  await slow?.close();
  await endCliBench();
});

async function folderWith(name: string, url: string): Promise<{ folder: string; cfg: string }> {
  const folder = join(dir, name);
  await mkdir(folder);
  const { domains } = await writeDomains(folder, pki, { responderUrl: url });
  const cfg = await writeConfig(join(folder, 'staplekeeper.yaml'), {
    ocsp_folder: folder,
    lock_timeout: '0s',
    http: { timeout: '30s' },
    domains,
  });
  return { folder, cfg };
}

describe('locks that die with their holder (docs/SECURITY.md "Locks")', () => {
  it('a lock file naming a live unrelated process (sleep) does not block `run`', async () => {
    const { folder, cfg } = await folderWith('reused-pid', fast.url);
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    extra.push(sleeper);
    await new Promise((r) => sleeper.once('spawn', r));
    await writeFile(join(folder, '.staplekeeper.lock'), `${sleeper.pid}\n`);
    const r = await runCli(['run', '-c', cfg], { timeoutMs: 30_000 });
    expect(r.code, showResult(r)).toBe(2); // two staples renewed
    expect(r.stderr).not.toContain('LOCK_TIMEOUT');
    expect(sleeper.exitCode).toBeNull(); // and the sleeper was left alone
    sleeper.kill('SIGKILL');
  });

  it('a holder killed with SIGKILL releases the lock at once; the lock file then names a dead PID only', async () => {
    const { folder, cfg } = await folderWith('sigkill', slow.url);
    const holder = spawnCli(['run', '-c', cfg]);
    // the holder's PID in the lock file: it holds the lock and waits for the slow responder
    const lockFile = join(folder, '.staplekeeper.lock');
    const until = Date.now() + 20_000;
    for (;;) {
      const text = await readFile(lockFile, 'utf8').catch(() => '');
      if (text.trim() === String(holder.pid)) break;
      if (Date.now() > until) throw new Error('the first run never took the lock');
      await new Promise((r) => setTimeout(r, 50));
    }
    // while it lives, it excludes others (lock_timeout 0s: fails at once, naming it)
    const blocked = await runCli(['run', '-c', cfg], { timeoutMs: 30_000 });
    expect(blocked.code, showResult(blocked)).toBe(255);
    expect(blocked.stderr).toContain(`LOCK_TIMEOUT: another staplekeeper (PID ${holder.pid})`);
    holder.kill('SIGKILL');
    await exited(holder);
    // the configuration now points at the fast responder; lock_timeout is still 0s
    await writeConfig(cfg, {
      ocsp_folder: folder,
      lock_timeout: '0s',
      domains: Object.fromEntries(
        pki.leaves.map((_, i) => [
          `leaf${i}`,
          {
            cert: join(folder, `leaf${i}.pem`),
            chain: join(folder, `leaf${i}-chain.pem`),
            ocsp: `leaf${i}.der`,
            ocsp_responder_uri: fast.url,
          },
        ]),
      ),
    });
    const r = await runCli(['run', '-c', cfg], { timeoutMs: 30_000 });
    expect(r.code, showResult(r)).toBe(2);
  });
});
