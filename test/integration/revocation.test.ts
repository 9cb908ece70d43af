/**
 * Revocation is a first-class state (docs/SECURITY.md "Revoked certificates"). A certificate revoked at its
 * real `openssl ocsp` responder between two runs, with `on_revoked_write`
 * false (the revoked answer is not written) and true (it is), through `run`
 * (text and --json), the on_revoked hook, `check`, and a daemon's `/status`,
 * `/metrics` and status page in headless Chromium.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeLeaf, type Pki } from '../helpers/mint.js';
import { cli } from '../../src/cli/main.js';
import { decodeResponse } from '../../src/core/response.js';
import type { DaemonSnapshot } from '../../src/daemon/daemon.js';
import { STATE_COLOURS } from '../../src/status/page.js';
import { readMarks } from '../../src/revocation/marks.js';
import { memoryIo } from '../helpers/memory-io.js';
import { skipWithout } from '../helpers/tools.js';
import { startOpensslPki, startStatusDaemon } from '../helpers/servers.js';
import { cleanUp } from '../helpers/temp.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let root: string;
let pki: Pki;

beforeAll(async () => {
  ({ root, pki } = await startOpensslPki(
    'sk-revoked-',
    { leaves: [{ name: 'fine' }, { name: 'gone' }, { name: 'gone2' }] },
    { nmin: 7 * 24 * 60 },
  ));
}, 60_000);

afterAll(cleanUp);

async function setUp(name: string, revokedLeaf: string, write: boolean): Promise<{ dir: string; log: string }> {
  const dir = path.join(root, name);
  await mkdir(path.join(dir, 'ocsp'), { recursive: true });
  const log = path.join(dir, 'hooks.log');
  const domain = (id: string, leaf: string): string[] => [
    `  ${id}:`,
    `    cert: ${pki.leaves[leaf]!.cert}`,
    `    chain: ${pki.leaves[leaf]!.chain}`,
    `    ocsp: ${id}.der`,
  ];
  await writeFile(
    path.join(dir, 'staplekeeper.yaml'),
    [
      `ocsp_folder: ${path.join(dir, 'ocsp')}`,
      `on_revoked_write: ${write}`,
      'hooks:',
      `  on_revoked: echo "revoked $STAPLEKEEPER_IDS" >> ${log}`,
      'domains:',
      ...domain('fine', 'fine'),
      ...domain('gone', revokedLeaf),
      '',
    ].join('\n'),
  );
  return { dir, log };
}

describe('a certificate revoked between two runs', () => {
  for (const write of [false, true]) {
    it(`on_revoked_write: ${write} — run, --json, the hook and check all say revoked`, async () => {
      const leaf = write ? 'gone2' : 'gone';
      const { dir, log } = await setUp(`write-${write}`, leaf, write);
      const first = memoryIo(dir);
      expect(await cli(['run'], first)).toBe(2);
      const chk0 = memoryIo(dir);
      expect(await cli(['check'], chk0)).toBe(0);

      await revokeLeaf(pki, leaf, { reason: 'keyCompromise' });
      const io = memoryIo(dir);
      expect(await cli(['run', '--force'], io)).toBe(255);
      const at = pki.leaves[leaf]!.revokedAt!.toISOString();
      if (write) {
        expect(io.err()).toContain(`[gone] error OCSP_REVOKED: certificate REVOKED at ${at} (reason: keyCompromise)`);
        expect(io.err()).toMatch(/; the revoked response was written because on_revoked_write is on/);
        const der = await readFile(path.join(dir, 'ocsp', 'gone.der'));
        expect(decodeResponse(der).basic?.singles[0]?.status).toBe('revoked');
      } else {
        // a good staple is on disk: it was kept (and said so)
        expect(io.err()).toContain(`[gone] error OCSP_REVOKED: certificate REVOKED at ${at} (reason: keyCompromise)`);
        expect(io.err()).toMatch(/; the current staple was kept/);
      }
      expect(await readFile(log, 'utf8')).toBe('revoked gone\n');
      const marks = readMarks(path.join(dir, 'ocsp'));
      expect(marks.gone).toMatchObject({ source: 'ocsp', time: at, reason: 'keyCompromise' });

      const js = memoryIo(dir);
      expect(await cli(['run', '--force', '--json'], js)).toBe(255);
      const lines = js
        .out()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.find((l) => l.id === 'gone')).toMatchObject({
        revoked: { time: at, reason: 'keyCompromise', source: 'ocsp' },
      });
      expect(lines.at(-1)).toMatchObject({ type: 'summary', revoked: 1, exitCode: 255 });

      const chk = memoryIo(dir);
      expect(await cli(['check'], chk)).toBe(2);
      expect(chk.out()).toMatch(
        new RegExp(
          `^STAPLEKEEPER CRITICAL - 1 of 2 staples critical: gone REVOKED at ${at.replace(/\./g, '\\.')} \\(keyCompromise\\)`,
        ),
      );
      // a run that does not fetch (the staple is fresh) does not forget the revocation
      const again = memoryIo(dir);
      await cli(['run'], again);
      const chk2 = memoryIo(dir);
      expect(await cli(['check', '--json'], chk2)).toBe(2);
      const doc = JSON.parse(chk2.out()) as { certificates: Array<Record<string, unknown>> };
      expect(doc.certificates.find((c) => c.id === 'gone')).toMatchObject({
        state: 'revoked',
        level: 'critical',
        revocationTime: at,
        revocationReason: 'keyCompromise',
      });
    }, 60_000);
  }
});

describe.skipIf(skipWithout('chromium', existsSync(CHROMIUM), 'apt-get install chromium, or set CHROMIUM_PATH'))(
  'the daemon after a revocation that was not written',
  () => {
    it('/status, /metrics and the page agree: revoked, first in the list, its own colour', async () => {
      // the on_revoked_write: false directory of the test above, or a fresh one
      const dir = path.join(root, 'write-false');
      if (!existsSync(path.join(dir, 'staplekeeper.yaml'))) {
        await setUp('write-false', 'gone', false);
        await revokeLeaf(pki, 'gone');
        await cli(['run'], memoryIo(dir));
      }
      const end = Date.now() + 30_000;
      const daemon = await startStatusDaemon(dir, 30_000);
      const url = daemon.url;
      let snap: DaemonSnapshot;
      for (;;) {
        snap = (await (await fetch(`${url}/status`)).json()) as DaemonSnapshot;
        const gone = snap.certificates.find((c) => c.id === 'gone');
        const fine = snap.certificates.find((c) => c.id === 'fine');
        if (gone?.state === 'revoked' && gone.lastAttempt && fine?.state === 'good') break;
        if (Date.now() > end) throw new Error(`states never settled: ${JSON.stringify(snap)}\n${daemon.output()}`);
        await sleep(100);
      }
      const gone = snap.certificates[0]!;
      expect(gone).toMatchObject({
        id: 'gone',
        state: 'revoked',
        revocationReason: 'keyCompromise',
        mechanism: 'ocsp',
      });
      expect(gone.revocationTime).toBe(pki.leaves.gone!.revokedAt!.toISOString());
      // the good staple still on disk is what /status reports as the staple: never "good" as the state
      expect(gone.status).toBe('good');
      expect(daemon.output()).toMatch(
        /\[gone\] error OCSP_REVOKED: certificate REVOKED at .*; the current staple was kept/,
      );

      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/^staplekeeper_certificate_revoked\{id="gone"\} 1$/m);
      expect(metrics).toMatch(/^staplekeeper_certificate_revoked\{id="fine"\} 0$/m);
      expect(metrics).toMatch(/^staplekeeper_certificates\{state="revoked"\} 1$/m);
      expect(metrics).toMatch(
        /^staplekeeper_certificate_state\{id="gone",state="revoked",mechanism="ocsp",must_staple="false"\} 1$/m,
      );

      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'] });
      try {
        const page = await browser.newPage();
        await page.goto(`${url}/`);
        await page.waitForSelector('body.js');
        const rows = await page.$$eval('#certificates tbody tr.cert', (trs) =>
          trs.map((tr) => {
            const el = tr as unknown as { dataset: Record<string, string | undefined> };
            const win = globalThis as unknown as { getComputedStyle(e: unknown): { backgroundColor: string } };
            return { id: el.dataset.id, state: el.dataset.state, background: win.getComputedStyle(el).backgroundColor };
          }),
        );
        expect(rows[0]).toMatchObject({ id: 'gone', state: 'revoked' });
        const n = Number.parseInt(STATE_COLOURS.revoked.slice(1), 16);
        expect(rows[0]!.background).toBe(`rgb(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255})`);
        expect(rows[1]).toMatchObject({ id: 'fine', state: 'good' });
      } finally {
        await browser.close();
      }
    }, 60_000);
  },
);
