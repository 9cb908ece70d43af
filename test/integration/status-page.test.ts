/**
 * The status page in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core): a daemon with one certificate in each state, and the
 * table's rows, their order and their computed colours checked as a browser
 * renders them; then 10,000 synthetic certificates through the status server
 * (time to first render printed, a screenshot in test-results/, the summary
 * counts and the filters checked). Needs `npm run build` first and /usr/bin/chromium (.ci/run
 * installs it).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPki, type Pki } from '../helpers/mint.js';
import type { DaemonSnapshot } from '../../src/daemon/daemon.js';
import { byUrgency, STATE_COLOURS, type CertificateStatus } from '../../src/status/page.js';
import { startStatusServer, type StatusServer } from '../../src/status/server.js';
import { assertInstalled, skipWithout } from '../helpers/tools.js';
import { startStatusDaemon, freePort, startResponder, type Responder } from '../helpers/servers.js';
import { cleanUp, tempDir } from '../helpers/temp.js';

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
    let browser: Browser | undefined;
    let url = '';

    beforeAll(async () => {
      assertInstalled(
        `chromium at ${CHROMIUM}`,
        existsSync(CHROMIUM),
        'apt-get install chromium, or set CHROMIUM_PATH',
      );
      dir = await tempDir('sk-page-');
      const ocsp = path.join(dir, 'ocsp');
      await mkdir(ocsp);
      const port = await freePort();
      pki = await createPki({
        dir: path.join(dir, 'pki'),
        ocspUrl: `http://127.0.0.1:${port}`,
        leaves: [
          { name: 'good' },
          { name: 'failing' },
          { name: 'never' },
          { name: 'due' },
          { name: 'revoked', status: 'revoked' },
          { name: 'site2', noOcspUrl: true },
        ],
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
          ...domain('never', `http://127.0.0.1:${deadPort}/`),
          ...domain('due', `http://127.0.0.1:${hangPort}/`),
          ...domain('revoked'),
          ...domain('site2'),
        ].join('\n'),
      );

      const end = Date.now() + 15_000;
      const daemon = await startStatusDaemon(dir, 15_000);
      url = daemon.url;
      // wait until every certificate has reached the state the test expects
      const want = {
        good: 'good',
        failing: 'failing',
        never: 'never-fetched',
        due: 'due',
        revoked: 'revoked',
        site2: 'no-ocsp-url',
      };
      for (;;) {
        const snap = (await (await fetch(`${url}/status`)).json()) as DaemonSnapshot;
        const states = Object.fromEntries(snap.certificates.map((c) => [c.id, c.state]));
        if (JSON.stringify(states, Object.keys(want).sort()) === JSON.stringify(want, Object.keys(want).sort())) break;
        if (Date.now() > end) throw new Error(`states never settled: ${JSON.stringify(states)}\n${daemon.output()}`);
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
      for (const s of sockets) s.destroy();
      await new Promise((r) => hang?.close(r));
      await long?.stop();
      await short?.stop();
      await cleanUp();
    });

    it('shows every certificate most urgent first, coloured by state, with time left and the last error', async () => {
      const page = await browser!.newPage();
      const requests: string[] = [];
      const consoleErrors: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors.push(m.text());
      });
      const res = await page.goto(`${url}/`);
      expect(res?.status()).toBe(200);
      const csp = res?.headers()['content-security-policy'] ?? '';
      expect(csp).toContain("default-src 'none'");
      expect(csp).toMatch(/script-src 'nonce-[A-Za-z0-9+/=]{20,}'/);
      expect(csp).not.toContain('unsafe-inline');
      await page.waitForSelector('body.js'); // the inline script ran under the CSP

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
            height: el.getBoundingClientRect().height,
          };
        }),
      );
      expect(rows.map((r) => [r.id, r.state])).toEqual([
        ['revoked', 'revoked'],
        ['never', 'never-fetched'],
        ['failing', 'failing'],
        ['due', 'due'],
        ['good', 'good'],
        ['site2', 'no-ocsp-url'],
      ]);
      for (const r of rows) {
        expect(r.visible).toBe(true);
        expect(r.height).toBeLessThan(40); // one line per certificate
        expect(r.background).toBe(rgb(STATE_COLOURS[r.state as keyof typeof STATE_COLOURS]));
      }
      const by = Object.fromEntries(rows.map((r) => [r.id, r]));
      expect(by.never!.badge).toBe('never fetched');
      expect(by['site2']!.badge).toBe('no OCSP URL');
      expect(by.never!.left).toBe('no staple');
      expect(by.never!.last).toMatch(/^HTTP_NETWORK: /);
      expect(by.failing!.left).toMatch(/^in (9|10)m$/); // the 10-minute staple still works
      expect(by.failing!.last).toMatch(/^HTTP_NETWORK: /);
      expect(by.good!.left).toMatch(/^in 2d 2[23]h$/);
      expect(by.good!.last).toMatch(/^updated/);
      expect(by.due!.last).toMatch(/^(not checked yet|first attempt in progress)$/);
      // a certificate without a responder is not a failure: its one notice, not an error (README.md "Certificates without OCSP")
      expect(by['site2']!.last).toMatch(/^no OCSP responder: nothing to staple; /);

      // colours differ between states, so the page reads at a glance
      expect(new Set(rows.map((r) => r.background)).size).toBe(6);
      expect(await page.title()).toMatch(/staplekeeper: 6 certificate\(s\), 3 need attention/);
      expect(await page.textContent('#summary .urgent')).toMatch(/^Most urgent: revoked \(revoked\)/);
      // self-contained: the document itself is the only thing loaded; the script raised nothing
      expect(requests.filter((u) => !u.endsWith('/favicon.ico'))).toEqual([`${url}/`]);
      expect(consoleErrors).toEqual([]);
      await page.close();
    });

    it('escapes what it shows and the JSON agrees with the page', async () => {
      const snap = (await (await fetch(`${url}/status`)).json()) as DaemonSnapshot;
      expect(snap.certificates.map((c) => c.id)).toEqual(['revoked', 'never', 'failing', 'due', 'good', 'site2']);
      const due = snap.certificates.find((c) => c.id === 'due')!;
      expect(due.inProgress).toBe(true);
      const res = await fetch(`${url}/`);
      const html = await res.text();
      expect(html).not.toMatch(/<link|src=/i);
      // every script and style element carries this response's nonce
      const nonce = /'nonce-([^']+)'/.exec(res.headers.get('content-security-policy') ?? '')![1]!;
      for (const m of html.matchAll(/<(script|style)\b([^>]*)>/g)) {
        if (/type="application\/json"/.test(m[2]!)) continue;
        expect(m[2]).toContain(`nonce="${nonce}"`);
      }
      const again = await fetch(`${url}/`);
      expect(again.headers.get('content-security-policy')).not.toContain(nonce); // fresh per response
      await again.text();
    });

    it('counts only attempts that sent a request as fetches', async () => {
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).not.toMatch(/^staplekeeper_fetch_total\{result="NO_OCSP_URL"\}/m);
      expect(metrics).toMatch(/^staplekeeper_certificates\{state="no-ocsp-url"\} 1/m);
      expect(metrics).toMatch(/^staplekeeper_certificates\{state="never-fetched"\} 1/m);
      expect(metrics).toMatch(/^staplekeeper_fetch_total\{result="HTTP_NETWORK"\} \d+/m);
    });
  },
);

/** A synthetic daemon snapshot of `n` certificates in a known mix of states. */
function syntheticSnapshot(n: number, now: Date): DaemonSnapshot {
  const t = now.getTime();
  const iso = (ms: number): string => new Date(t + ms).toISOString();
  const H = 3600_000;
  const certificates: CertificateStatus[] = [];
  const mix: Array<CertificateStatus['state']> = [];
  // a mix per 1000 certificates
  const per1000: Array<[CertificateStatus['state'], number]> = [
    ['revoked', 1],
    ['expired', 4],
    ['never-fetched', 5],
    ['failing', 30],
    ['due', 100],
    ['good', 830],
    ['no-ocsp-url', 20],
    ['disabled', 10],
  ];
  for (const [st, k] of per1000) for (let j = 0; j < k; j++) mix.push(st);
  for (let i = 1; i <= n; i++) {
    const state = mix[(i * 7) % 1000]!;
    const id = `site${i}`;
    const longDir = `/etc/ssl/very/long/path/for/customer-${i % 37}/production/eu-west-${i % 3}/certificates`;
    const failed = state === 'failing' || state === 'expired' || state === 'never-fetched';
    const left =
      state === 'good' ? 40 * H + (i % 50) * H : state === 'expired' ? -((i % 7) + 1) * H : ((i % 20) + 1) * H;
    const hasStaple = !['never-fetched', 'no-ocsp-url', 'disabled'].includes(state);
    certificates.push({
      id,
      certPath: `${longDir}/${id}.example.com.fullchain.pem`,
      staplePath: `/var/lib/staplekeeper/ocsp/${id}.example.com.der`,
      state,
      status: state === 'revoked' ? 'revoked' : hasStaple ? 'good' : null,
      thisUpdate: hasStaple ? iso(left - 96 * H) : null,
      nextUpdate: hasStaple ? iso(left) : null,
      usableUntil: hasStaple ? iso(left) : null,
      nextRefresh: hasStaple ? iso(left - 48 * H) : null,
      nextAttempt: state === 'disabled' ? null : iso(((i % 30) + 1) * 60_000),
      nextAttemptReason: failed ? 'backoff' : state === 'disabled' ? null : 'refresh',
      lastAttempt: iso(-10 * 60_000),
      lastResult: failed || state === 'no-ocsp-url' || state === 'revoked' ? 'failed' : 'unchanged',
      lastCode:
        state === 'no-ocsp-url' ? 'NO_OCSP_URL' : state === 'revoked' ? 'OCSP_REVOKED' : failed ? 'HTTP_TIMEOUT' : null,
      lastError: failed
        ? `${id} (${longDir}/${id}.example.com.fullchain.pem): the responder http://ocsp.ca-${i % 5}.example/ did not answer within 10s; the staple on disk is kept; next attempt in 5m (http.timeout raises the limit)`
        : state === 'no-ocsp-url'
          ? 'the certificate names no OCSP responder: set ocsp_responder_uri, or ocsp_responder_uri: disabled'
          : state === 'revoked'
            ? 'the certificate is REVOKED; replace it now'
            : null,
      lastSuccess: failed ? null : iso(-10 * 60_000),
      consecutiveFailures: failed ? (i % 6) + 1 : 0,
      responderUrl: `http://ocsp.ca-${i % 5}.example/`,
      inProgress: false,
    });
  }
  certificates.sort(byUrgency);
  return {
    version: '0.0.0-test',
    pid: 4242,
    source: '/etc/staplekeeper/staplekeeper.yaml',
    startedAt: iso(-3 * 86_400_000),
    now: now.toISOString(),
    alive: true,
    nextWake: iso(60_000),
    inProgress: 0,
    queued: 0,
    hostsInBackoff: 2,
    backoff: [
      { host: 'ocsp.ca-1.example', until: iso(5 * 60_000), failures: 3 },
      { host: 'ocsp.ca-3.example', until: iso(9 * 60_000), failures: 5 },
    ],
    certificates,
  };
}

describe.skipIf(skipWithout('chromium', existsSync(CHROMIUM), 'apt-get install chromium, or set CHROMIUM_PATH'))(
  'status page with 10,000 certificates in headless Chromium',
  () => {
    const N = 10_000;
    let server: StatusServer | undefined;
    let browser: Browser | undefined;
    let snapshot: DaemonSnapshot;

    beforeAll(async () => {
      snapshot = syntheticSnapshot(N, new Date());
      server = await startStatusServer({
        listen: '0',
        provider: { snapshot: () => snapshot, isAlive: () => true, addObserver: () => () => undefined },
      });
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
      });
    }, 60_000);

    afterAll(async () => {
      await browser?.close().catch(() => undefined);
      await server?.close();
    });

    it('renders a readable summary and one page of rows quickly, and filters by text and state', async () => {
      const page = await browser!.newPage({ viewport: { width: 1400, height: 900 } });
      const consoleErrors: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors.push(m.text());
      });
      page.on('pageerror', (e) => consoleErrors.push(String(e)));
      const t0 = performance.now();
      await page.goto(`${server!.url}/`, { waitUntil: 'load' });
      await page.waitForSelector('body.js #certificates tbody tr.cert');
      const ms = performance.now() - t0;
      console.log(`status page, ${N} certificates: first render in ${ms.toFixed(0)} ms`);

      // the summary counts every state
      const chips = await page.$$eval('#summary button.chip', (bs) =>
        bs.map((b) => {
          const el = b as unknown as BrowserRow;
          return [el.dataset.state, Number(el.querySelector('.n')?.textContent)];
        }),
      );
      const expected = new Map<string, number>();
      for (const c of snapshot.certificates) expected.set(c.state, (expected.get(c.state) ?? 0) + 1);
      expect(Object.fromEntries(chips)).toEqual(Object.fromEntries(expected));
      expect(Object.fromEntries(chips)).toMatchObject({ revoked: 10, good: 8300, 'no-ocsp-url': 200 });
      expect(await page.textContent('#summary .urgent')).toMatch(/^Most urgent: site\d+ \(revoked\)/);
      expect(await page.textContent('#summary .backoff')).toMatch(
        /Responder hosts in backoff: 2 — ocsp\.ca-1\.example until/,
      );

      // one page of 100 rows, most urgent first, one line each
      const first = await page.$$eval('#certificates tbody tr.cert', (trs) =>
        trs.map((tr) => {
          const el = tr as unknown as BrowserRow;
          return { id: el.dataset.id, state: el.dataset.state, h: el.getBoundingClientRect().height };
        }),
      );
      expect(first).toHaveLength(100);
      expect(first[0]!.state).toBe('revoked');
      expect(first.every((r) => r.h < 40)).toBe(true);
      expect(await page.textContent('#shown')).toBe('1–100 of 10000');
      await mkdir(path.join(ROOT, 'test-results'), { recursive: true });
      const shot = path.join(ROOT, 'test-results', 'status-page-10000.png');
      await page.screenshot({ path: shot });
      console.log(`screenshot: ${shot}`);

      // filter by text: natural order of ids among equals, and a hit count
      await page.fill('#filter', 'site10 ');
      await page.waitForFunction(() => {
        const d = (globalThis as unknown as { document: { getElementById(i: string): { textContent: string } } })
          .document;
        return d.getElementById('shown').textContent.endsWith('(filtered from 10000)');
      });
      const hits = await page.$$eval('#certificates tbody tr.cert', (trs) =>
        trs.map((tr) => (tr as unknown as BrowserRow).dataset.id),
      );
      const want = snapshot.certificates.filter((c) => c.id === 'site10' || c.id.startsWith('site10'));
      // words match anywhere (ids, paths, errors): site10, site100…109, site1000…1099, site10000
      expect(want).toHaveLength(112);
      expect(await page.textContent('#shown')).toBe('1–100 of 112 (filtered from 10000)');
      expect(hits).toEqual(want.slice(0, 100).map((c) => c.id));

      // filter by state: only failing rows, count matches the chip
      await page.fill('#filter', '');
      await page.click('#summary button.chip[data-state="failing"]');
      await page.waitForFunction(() => {
        const d = (globalThis as unknown as { document: { getElementById(i: string): { textContent: string } } })
          .document;
        return d.getElementById('shown').textContent.startsWith('1–100 of 300 ');
      });
      const failing = await page.$$eval('#certificates tbody tr.cert', (trs) =>
        trs.map((tr) => (tr as unknown as BrowserRow).dataset.state),
      );
      expect(new Set(failing)).toEqual(new Set(['failing']));
      // pages on
      await page.click('#next');
      expect(await page.textContent('#shown')).toBe('101–200 of 300 (filtered from 10000)');
      // and stays there: clearing the box above must not move back to page 1 once its typing delay ends
      await new Promise((r) => setTimeout(r, 400));
      expect(await page.textContent('#shown')).toBe('101–200 of 300 (filtered from 10000)');
      expect(page.url()).toMatch(/#s=failing&p=2$/);
      // state and text together
      await page.fill('#filter', 'customer-3/ eu-west-1');
      await page.waitForFunction(() => {
        const d = (globalThis as unknown as { document: { getElementById(i: string): { textContent: string } } })
          .document;
        return !d.getElementById('shown').textContent.startsWith('101');
      });
      const both = snapshot.certificates.filter(
        (c) => c.state === 'failing' && c.certPath.includes('customer-3/') && c.certPath.includes('eu-west-1'),
      );
      expect(await page.textContent('#shown')).toBe(
        both.length === 0 ? 'no matches' : `1–${Math.min(100, both.length)} of ${both.length} (filtered from 10000)`,
      );
      // the full error is one click away
      await page.click('#all');
      await page.fill('#filter', 'site4');
      await page.waitForFunction(() => {
        const d = (globalThis as unknown as { document: { getElementById(i: string): { textContent: string } } })
          .document;
        return d.getElementById('shown').textContent.endsWith('(filtered from 10000)');
      });
      const det = await page.$('#certificates tbody tr.state-failing td.last details');
      expect(det).not.toBeNull();
      await det!.click();
      expect(await det!.textContent()).toMatch(/http\.timeout raises the limit/);
      expect(consoleErrors).toEqual([]);
      await page.close();
    }, 60_000);

    it('sorts ids in natural order within a state', () => {
      const good = snapshot.certificates.filter((c) => c.state === 'no-ocsp-url').map((c) => c.id);
      const sorted = [...good].sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
      expect(good).toEqual(sorted);
    });
  },
);
