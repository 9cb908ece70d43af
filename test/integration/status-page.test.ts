/**
 * The status page in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core): a daemon with one certificate in each state, and the
 * table's rows, their order and their computed colours checked as a browser
 * renders them. Needs `npm run build` first and /usr/bin/chromium (.ci/run
 * installs it).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPki, type Pki } from '../../scripts/lib/pki.mjs';
import { freePort, startResponder, type Responder } from '../../scripts/lib/responder.mjs';
import type { DaemonSnapshot } from '../../src/engine/daemon.js';
import { STATE_COLOURS } from '../../src/engine/status-page.js';
import { assertInstalled, skipWithout } from '../helpers/tools.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/staplekeeper');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const run = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The parts of a table row element the browser-side callback reads. */
interface BrowserRow {
  dataset: Record<string, string | undefined>;
  querySelector(selector: string): { textContent: string | null } | null;
  getBoundingClientRect(): { height: number };
}

/** `#rrggbb` as a browser's computed `rgb(r, g, b)`. */
function rgb(hex: string): string {
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgb(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255})`;
}

describe.skipIf(skipWithout('chromium', existsSync(CHROMIUM), 'apt-get install chromium, or set CHROMIUM_PATH'))(
  'status page in headless Chromium',
  () => {
    let dir: string;
    let pki: Pki;
    let long: Responder;
    let short: Responder;
    let hang: Server;
    const sockets = new Set<Socket>();
    let daemon: ChildProcess | undefined;
    let browser: Browser | undefined;
    let url = '';
    let output = '';

    beforeAll(async () => {
      assertInstalled(
        `chromium at ${CHROMIUM}`,
        existsSync(CHROMIUM),
        'apt-get install chromium, or set CHROMIUM_PATH',
      );
      dir = await mkdtemp(path.join(tmpdir(), 'sk-page-'));
      const ocsp = path.join(dir, 'ocsp');
      await mkdir(ocsp);
      const port = await freePort();
      pki = await createPki({
        dir: path.join(dir, 'pki'),
        ocspUrl: `http://127.0.0.1:${port}`,
        leaves: [{ name: 'good' }, { name: 'failing' }, { name: 'expired' }, { name: 'due' }],
      });
      long = await startResponder({ pki, port }); // 3-day responses
      short = await startResponder({ pki, port: await freePort(), nmin: 10 }); // 10-minute responses
      hang = createServer((s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      });
      const hangPort = await new Promise<number>((r) =>
        hang.listen(0, '127.0.0.1', () => r((hang.address() as { port: number }).port)),
      );
      const deadPort = await freePort();

      // staples on disk before the daemon starts: 10-minute ones, due at once under minimum_validity 1h
      const fetchStaple = async (name: string, responderUrl: string): Promise<void> => {
        const leaf = pki.leaves[name]!;
        await run(process.execPath, [
          BIN,
          'fetch',
          '--cert',
          leaf.cert,
          '--chain',
          leaf.chain,
          '--url',
          responderUrl,
          '--out',
          path.join(ocsp, `${name}.der`),
        ]);
      };
      await fetchStaple('failing', short.url);
      await fetchStaple('due', short.url);

      const domain = (name: string, responder?: string): string[] => {
        const leaf = pki.leaves[name]!;
        return [
          `  ${name}:`,
          `    cert: ${leaf.cert}`,
          `    chain: ${leaf.chain}`,
          `    ocsp: ${name}.der`,
          ...(responder ? [`    ocsp_responder_uri: ${responder}`] : []),
        ];
      };
      await writeFile(
        path.join(dir, 'staplekeeper.yaml'),
        [
          `ocsp_folder: ${ocsp}`,
          // 3-day staples are fresh, 10-minute ones are due at once
          'minimum_validity: 1h',
          'http:',
          '  timeout: 60s',
          'domains:',
          ...domain('good'),
          ...domain('failing', `http://127.0.0.1:${deadPort}/`),
          ...domain('expired', `http://127.0.0.1:${deadPort}/`),
          ...domain('due', `http://127.0.0.1:${hangPort}/`),
        ].join('\n'),
      );

      daemon = spawn(process.execPath, [BIN, 'daemon', '-c', 'staplekeeper.yaml', '--listen', '0'], {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      daemon.stdout?.on('data', (d: Buffer) => (output += d.toString()));
      daemon.stderr?.on('data', (d: Buffer) => (output += d.toString()));
      const end = Date.now() + 15_000;
      while (!/listening on (http:\/\/\S+)/.test(output)) {
        if (Date.now() > end || daemon.exitCode !== null) throw new Error(`the daemon did not start:\n${output}`);
        await sleep(50);
      }
      url = /listening on (http:\/\/\S+)/.exec(output)![1]!;
      // wait until every certificate has reached the state the test expects
      const want = { good: 'good', failing: 'failing', expired: 'expired', due: 'due' };
      for (;;) {
        const snap = (await (await fetch(`${url}/status`)).json()) as DaemonSnapshot;
        const states = Object.fromEntries(snap.certificates.map((c) => [c.id, c.state]));
        if (JSON.stringify(states, Object.keys(want).sort()) === JSON.stringify(want, Object.keys(want).sort())) break;
        if (Date.now() > end) throw new Error(`states never settled: ${JSON.stringify(states)}\n${output}`);
        await sleep(100);
      }
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
    }, 60_000);

    afterAll(async () => {
      await browser?.close().catch(() => undefined);
      if (daemon && daemon.exitCode === null) {
        const exited = new Promise((r) => daemon!.once('exit', r));
        daemon.kill('SIGKILL');
        await exited;
      }
      for (const s of sockets) s.destroy();
      await new Promise((r) => hang?.close(r));
      await long?.stop();
      await short?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('shows every certificate most urgent first, coloured by state, with time left and the last error', async () => {
      const page = await browser!.newPage();
      const requests: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      const res = await page.goto(`${url}/`);
      expect(res?.status()).toBe(200);
      expect(res?.headers()['content-security-policy']).toContain("default-src 'none'");

      const rows = await page.$$eval('#certificates tbody tr.cert', (trs) =>
        trs.map((tr) => {
          // this runs in the page; the project's TypeScript has no DOM types, so name what is used
          const el = tr as unknown as BrowserRow;
          const win = globalThis as unknown as { getComputedStyle(e: unknown): { backgroundColor: string } };
          return {
            id: el.dataset.id,
            state: el.dataset.state,
            background: win.getComputedStyle(el).backgroundColor,
            badge: el.querySelector('.badge')?.textContent,
            left: el.querySelector('td.left')?.textContent,
            last: el.querySelector('td.last')?.textContent,
            visible: el.getBoundingClientRect().height > 0,
          };
        }),
      );
      expect(rows.map((r) => [r.id, r.state])).toEqual([
        ['expired', 'expired'],
        ['failing', 'failing'],
        ['due', 'due'],
        ['good', 'good'],
      ]);
      for (const r of rows) {
        expect(r.visible).toBe(true);
        expect(r.background).toBe(rgb(STATE_COLOURS[r.state as keyof typeof STATE_COLOURS]));
        expect(r.badge?.toLowerCase()).toBe(r.state);
      }
      const by = Object.fromEntries(rows.map((r) => [r.id, r]));
      expect(by.expired!.left).toBe('no valid staple');
      expect(by.expired!.last).toMatch(/^HTTP_NETWORK: /);
      expect(by.failing!.left).toMatch(/^(9|10)m$/); // the 10-minute staple still works
      expect(by.failing!.last).toMatch(/^HTTP_NETWORK: /);
      expect(by.good!.left).toMatch(/^2d 2[23]h$/);
      expect(by.good!.last).toMatch(/^updated/);
      expect(by.due!.last).toBe('not checked yet');

      // colours differ between states, so the page reads at a glance
      expect(new Set(rows.map((r) => r.background)).size).toBe(4);
      expect(await page.title()).toMatch(/staplekeeper: 4 certificate\(s\), 2 need attention/);
      expect(await page.$eval('meta[http-equiv="refresh"]', (m) => (m as unknown as { content: string }).content)).toBe(
        '30',
      );
      // self-contained: the document itself is the only thing loaded
      expect(requests.filter((u) => !u.endsWith('/favicon.ico'))).toEqual([`${url}/`]);
      await page.close();
    });

    it('escapes what it shows and the JSON agrees with the page', async () => {
      const snap = (await (await fetch(`${url}/status`)).json()) as DaemonSnapshot;
      expect(snap.certificates.map((c) => c.id)).toEqual(['expired', 'failing', 'due', 'good']);
      const due = snap.certificates.find((c) => c.id === 'due')!;
      expect(due.inProgress).toBe(true);
      const html = await (await fetch(`${url}/`)).text();
      expect(html).not.toMatch(/<script|<link|src=/i);
    });
  },
);
