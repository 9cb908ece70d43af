/**
 * docs/SECURITY.md, the daemon as a real process: a responder blip must not
 * starve it. Twenty certificates whose staples have 7 minutes left; the
 * responder answers 503 for 30 s, then recovers. Each failed request used to
 * bump the per-host backoff, which reached its 1-hour cap within a second and
 * blocked every retry: all twenty staples expired. Now the host backoff counts
 * outages (one step per failed probe window) and stays a fraction of the
 * shortest remaining staple life, so every staple is renewed soon after the
 * responder is back. The only time bound asserted is "renewed while the old
 * staples are still valid".
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import {
  assertBuilt,
  exited,
  killAllChildren,
  removeTempDirs,
  requestedSerial,
  spawnCli,
  tempDir,
  writeCert,
  writeConfig,
} from '../helpers/cli-harness.js';
import { OCSP_CONTENT_TYPE, startEvilResponder, type EvilResponder } from '../helpers/evil-responder.js';
import { buildTestPki, goodResponseFor, type TestPki } from '../helpers/mint.js';

const CERTS = 20;
const MIN = 60_000;
let dir: string;
let pki: TestPki;
let responder: EvilResponder;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('sk-blip-');
  pki = buildTestPki({ keyType: 'ec-p256', delegated: false, now: new Date(), leafCount: CERTS });
});

afterAll(async () => {
  await killAllChildren();
  await responder?.close();
  await removeTempDirs();
});

describe('a responder blip does not starve the daemon (docs/SECURITY.md)', () => {
  it('20 staples with 7 minutes left, responder 503 for 30 s then back: every staple renewed before it expires', async () => {
    const bySerial = new Map(pki.leaves.map((l) => [l.serial.toString('hex').toUpperCase(), l]));
    let outageEnds = Number.POSITIVE_INFINITY;
    let failed = 0;
    responder = await startEvilResponder((req) => {
      if (Date.now() < outageEnds) {
        failed++;
        return { kind: 'respond', status: 503, headers: { 'content-type': 'text/plain' }, body: 'busy' };
      }
      const serial = req.der ? requestedSerial(req.der) : undefined;
      const leaf = serial ? bySerial.get(serial) : undefined;
      if (!leaf) return { kind: 'respond', status: 400, body: 'unknown' };
      return {
        kind: 'respond',
        status: 200,
        headers: { 'content-type': OCSP_CONTENT_TYPE },
        body: goodResponseFor(pki, leaf, new Date()),
      };
    });
    const folder = join(dir, 'staples');
    await mkdir(folder);
    const domains: Record<string, unknown> = {};
    const now = new Date();
    const expiresAt = now.getTime() + 7 * MIN;
    for (const [i, leaf] of pki.leaves.entries()) {
      const { cert, chain } = await writeCert(folder, `c${i}`, leaf, pki.root);
      domains[`c${i}`] = { cert, chain, ocsp: `c${i}.der`, ocsp_responder_uri: responder.url };
      await writeFile(
        join(folder, `c${i}.der`),
        goodResponseFor(pki, leaf, now, { single: { nextUpdate: new Date(expiresAt) } }),
      );
    }
    const cfg = await writeConfig(join(folder, 'staplekeeper.yaml'), {
      ocsp_folder: folder,
      http: { timeout: '5s' },
      domains,
    });
    outageEnds = Date.now() + 30_000;
    const daemon = spawnCli(['daemon', '-c', cfg]);
    let out = '';
    daemon.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    daemon.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const [issuer] = loadCertificates(Buffer.from(pki.root.pem));
      const renewed = async (): Promise<number> => {
        let n = 0;
        for (const [i, leaf] of pki.leaves.entries()) {
          try {
            const [cert] = loadCertificates(Buffer.from(leaf.pem));
            const v = verifyResponse(await readFile(join(folder, `c${i}.der`)), {
              cert: cert!,
              issuer: issuer!,
              now: new Date(),
            });
            if (v.status === 'good' && v.nextUpdate.getTime() > expiresAt + MIN) n++;
          } catch {
            // not renewed (or being replaced)
          }
        }
        return n;
      };
      // generous: the old staples are valid until `expiresAt`; renewal must come well before
      const deadline = expiresAt - 2 * MIN;
      let count = 0;
      while (Date.now() < deadline) {
        count = await renewed();
        if (count === CERTS) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      expect(failed, out).toBeGreaterThan(0); // the outage was seen
      expect(count, `renewed ${count}/${CERTS} before ${new Date(deadline).toISOString()}\n${out}`).toBe(CERTS);
    } finally {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
  }, 400_000);
});
