/**
 * Crash safety: `staplekeeper run --force` renewing 20 staples is killed with
 * SIGKILL at random moments, at least 200 times. After every kill, every
 * staple on disk is either the old response or one of the new responses the
 * responder sent, byte for byte, and verifies against its certificate: never
 * missing, never partial, never a mix. The next run cleans up after the
 * killed one (its lock and its temporary files).
 *
 * `CRASH_KILLS` sets the number of kills (default 200), `CRASH_SEED` the
 * random seed (printed, so a failure can be replayed).
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCertificates, type Certificate } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import {
  assertBuilt,
  exited,
  killAllChildren,
  removeTempDirs,
  runCli,
  spawnCli,
  startGoodResponder,
  tempDir,
  writeConfig,
  writeDomains,
} from '../helpers/cli-harness.js';
import type { GoodResponder } from '../helpers/cli-harness.js';
import { buildTestPki, type TestPki } from '../helpers/mint.js';

const CERTS = 20;
const KILLS = Number(process.env.CRASH_KILLS ?? 200);
const LANES = 2;
const SEED = Number(process.env.CRASH_SEED ?? Date.now() % 2 ** 31);

/** mulberry32: a small seeded PRNG, so that a failing sequence of delays can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Lane {
  dir: string;
  config: string;
  staples: string[];
  /** Each lane has its own responder, so its requests tell when its run starts fetching. */
  responder: GoodResponder;
}

let pki: TestPki;
let parsed: Array<{ cert: Certificate; serial: string }>;
let issuer: Certificate;
/** The first staple of each certificate (before any run), by serial. */
const initial = new Map<string, Buffer>();
const lanes: Lane[] = [];

beforeAll(async () => {
  assertBuilt();
  pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: new Date(), leafCount: CERTS });
  [issuer] = loadCertificates(pki.root.der) as [Certificate];
  parsed = pki.leaves.map((l) => ({
    cert: loadCertificates(l.der)[0]!,
    serial: l.serial.toString('hex').toUpperCase(),
  }));
  for (let lane = 0; lane < LANES; lane++) {
    const dir = await tempDir(`sk-crash-${lane}-`);
    // a little jitter spreads each run's 20 writes over ~100 ms, so kills land between writes
    const responder = await startGoodResponder(pki, pki.leaves, { jitterMs: 100 });
    const { domains, staples } = await writeDomains(dir, pki, {
      prefix: 'd',
      responderUrl: responder.url,
      withStaples: true,
    });
    for (const [i, staple] of staples.entries()) initial.set(`${lane}/${parsed[i]!.serial}`, await readFile(staple));
    const config = await writeConfig(join(dir, 'staplekeeper.yaml'), {
      ocsp_folder: dir,
      http: { timeout: '5s' },
      lock_timeout: '10s',
      domains,
    });
    lanes.push({ dir, config, staples, responder });
  }
});

afterAll(async () => {
  await killAllChildren();
  for (const lane of lanes) await lane.responder.close();
  await removeTempDirs();
});

/** Every staple is complete, verifies, and is the initial one or one the responder sent. Returns how many changed. */
async function checkStaples(lane: number): Promise<number> {
  let changed = 0;
  for (const [i, path] of lanes[lane]!.staples.entries()) {
    const { cert, serial } = parsed[i]!;
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      throw new Error(`${path}: staple missing after a kill (${(e as Error).message})`);
    }
    const first = initial.get(`${lane}/${serial}`)!;
    const served = lanes[lane]!.responder.served.get(serial) ?? [];
    const known = bytes.equals(first) || served.some((b) => b.equals(bytes));
    if (!known)
      throw new Error(
        `${path}: ${bytes.length} bytes that are neither the old staple nor any response sent (partial write?)`,
      );
    const v = verifyResponse(bytes, { cert, issuer, now: new Date() });
    if (v.status !== 'good') throw new Error(`${path}: status ${v.status}`);
    if (!bytes.equals(first)) changed++;
    initial.set(`${lane}/${serial}`, bytes); // what is on disk now is "the old staple" of the next round
  }
  return changed;
}

describe('SIGKILL at random moments during a renewing run', () => {
  it(
    `leaves every staple old-or-new, complete and valid (${KILLS} kills, seed ${SEED})`,
    { timeout: 240_000 },
    async () => {
      // How long a whole run takes here (node start-up, 20 fetches, 20 atomic writes), both lanes busy.
      const totals: number[] = [];
      await Promise.all(
        lanes.map(async (lane, l) => {
          for (let i = 0; i < 2; i++) {
            const r = await runCli(['run', '-c', lane.config, '--force'], { timeoutMs: 30_000 });
            expect(r.code, r.stderr).toBe(CERTS);
            totals.push(r.ms);
            await checkStaples(l);
          }
        }),
      );
      const typical = [...totals].sort((a, b) => a - b)[Math.floor(totals.length / 2)]!;
      const random = prng(SEED);
      const stats = { kills: 0, beforeAnyWrite: 0, partial: 0, afterAllWrites: 0, exitedBeforeKill: 0 };
      const perLane = Math.ceil(KILLS / LANES);
      const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

      await Promise.all(
        lanes.map(async (lane, l) => {
          // Only a kill of a process that was still running counts.
          for (let k = 0, killed = 0; killed < perLane; k++) {
            const seen = lane.responder.times.length;
            const child = spawnCli(['run', '-c', lane.config, '--force']);
            if (k % 2 === 0) {
              // anywhere in [0, typical run time]
              await sleep(random() * typical);
            } else {
              // in the part of the run that writes, where a crash can do harm: from its
              // first request to the last answer (the responder's jitter) and a little more.
              // Anchored on the run's own requests, so a slow machine does not shift it.
              const until = Date.now() + 15_000;
              while (lane.responder.times.length === seen && child.exitCode === null && Date.now() < until)
                await sleep(2);
              await sleep(random() * 160);
            }
            const wasRunning = child.exitCode === null && child.signalCode === null;
            child.kill('SIGKILL');
            await exited(child);
            if (wasRunning) {
              killed++;
              stats.kills++;
            } else {
              stats.exitedBeforeKill++;
            }
            const changed = await checkStaples(l);
            if (changed === 0) stats.beforeAnyWrite++;
            else if (changed < CERTS) stats.partial++;
            else stats.afterAllWrites++;
          }
        }),
      );
      console.log(
        `crash test: seed ${SEED}, typical run ${typical} ms, ${stats.kills} kills: ${stats.beforeAnyWrite} before any write, ` +
          `${stats.partial} in the middle of the writes, ${stats.afterAllWrites} after all writes; ${stats.exitedBeforeKill} more runs had finished before their kill`,
      );
      expect(stats.kills).toBeGreaterThanOrEqual(KILLS);
      // The kills must really have hit runs that were writing, or this test proves little.
      expect(stats.partial).toBeGreaterThan(KILLS / 20);

      // After all that, one uninterrupted run renews everything and leaves nothing behind.
      for (const [l, lane] of lanes.entries()) {
        const r = await runCli(['run', '-c', lane.config, '--force'], { timeoutMs: 30_000 });
        expect(r.code, r.stderr).toBe(CERTS);
        expect(await checkStaples(l)).toBe(CERTS);
        const left = (await readdir(lane.dir)).filter((n) => n.includes('.sk-tmp-') || n === '.staplekeeper.lock');
        expect(left).toEqual([]);
      }
    },
  );
});
