/**
 * Unbounded AIA lists (docs/SECURITY.md), through the real executable: a
 * certificate listing 31 dead responder URLs is tried on at most 4 of them
 * (a notice says the rest were ignored), and once its overall deadline
 * (2 × http.timeout) has passed no further URL is started.
 */
import { mkdir } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  endCliBench,
  outcomesById,
  runCli,
  showResult,
  startCliBench,
  writeCert,
  writeConfig,
} from '../helpers/cli-harness.js';
import type { CliResult, GoodResponder } from '../helpers/cli-harness.js';
import { mintCert, OID, type TestPki } from '../helpers/mint.js';

let dir: string;
let pki: TestPki;
let good: GoodResponder;
/** Servers that accept connections and never answer; counts connections. */
const hangs: Array<{ server: Server; port: number; sockets: Socket[] }> = [];
/** Ports with nothing listening (a server was bound there and closed). */
const deadPorts: number[] = [];

function listen(server: Server): Promise<number> {
  return new Promise((res) => server.listen(0, '127.0.0.1', () => res((server.address() as { port: number }).port)));
}

beforeAll(async () => {
  ({ dir, pki, responder: good } = await startCliBench('sk-rel-aia-', 1));
  for (let i = 0; i < 31; i++) {
    const sockets: Socket[] = [];
    const server = createServer((sock) => {
      sockets.push(sock);
      sock.on('error', () => undefined);
    });
    hangs.push({ server, port: await listen(server), sockets });
  }
  // bound all at once (so no port repeats), then closed: nothing listens there any more
  const held: Server[] = [];
  for (let i = 0; i < 31; i++) {
    const s = createServer();
    deadPorts.push(await listen(s));
    held.push(s);
  }
  for (const s of held) await new Promise<void>((r) => s.close(() => r()));
});

afterAll(async () => {
  for (const h of hangs) {
    for (const s of h.sockets) s.destroy();
    await new Promise<void>((r) => h.server.close(() => r()));
  }
  await endCliBench();
});

async function runLeaf(name: string, ocspUrls: string[], timeout: string): Promise<{ r: CliResult; ms: number }> {
  const folder = join(dir, name);
  await mkdir(folder);
  const now = Date.now();
  const leaf = mintCert({
    subjectCN: `${name}.test`,
    dnsNames: [`${name}.test`],
    issuer: pki.root,
    key: pki.leaves[0]!.key,
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + 90 * 86_400_000),
    eku: [OID.kpServerAuth],
    ocspUrls,
  });
  const { cert, chain } = await writeCert(folder, 'leaf', leaf, pki.root);
  const cfg = await writeConfig(join(folder, 'sk.yaml'), {
    ocsp_folder: folder,
    http: { timeout },
    domains: { leaf: { cert, chain, ocsp: 'leaf.der' } },
  });
  const t0 = performance.now();
  const r = await runCli(['run', '-c', cfg, '--json', '-v'], { timeoutMs: 120_000 });
  return { r, ms: performance.now() - t0 };
}

describe('AIA lists are bounded (docs/SECURITY.md "Bounded AIA lists")', () => {
  it('tries at most 4 distinct responder URLs per certificate and says the rest were ignored', async () => {
    // 30 dead URLs (one listed twice), then a working responder that must not be reached
    const urls = deadPorts.slice(0, 30).map((p) => `http://127.0.0.1:${p}/ocsp`);
    urls.splice(1, 0, urls[0]!);
    urls.push(good.url);
    const before = good.count();
    const { r } = await runLeaf('capped', urls, '5s');
    expect(r.code, showResult(r)).toBe(255);
    const o = outcomesById(r.stdout).get('leaf');
    const notices = (o?.notices ?? []) as string[];
    expect(notices.join('\n'), showResult(r)).toContain(
      'the certificate lists 31 responder URLs; only the first 4 are tried, 27 ignored',
    );
    const tried = notices.filter((n) => /^http:\/\/127\.0\.0\.1:\d+\/ocsp: HTTP_/.test(n));
    expect(tried.length, showResult(r)).toBe(4);
    expect(o?.error?.message, showResult(r)).toContain('and 3 more responder URL(s) failed');
    expect(good.count()).toBe(before);
  });

  it('stops starting URLs once the overall deadline (2 × http.timeout) has passed', async () => {
    const urls = hangs.map((h) => `http://127.0.0.1:${h.port}/ocsp`);
    const { r, ms } = await runLeaf('deadline', urls, '1s');
    expect(r.code, showResult(r)).toBe(255);
    const o = outcomesById(r.stdout).get('leaf');
    const notices = (o?.notices ?? []) as string[];
    expect(notices.join('\n'), showResult(r)).toMatch(/overall deadline of 2 s for this certificate passed; [12] more/);
    expect(o?.error?.message, showResult(r)).toMatch(/not tried: the overall deadline of 2 s passed/);
    // at most the first 2-3 hanging responders were contacted; the 28 beyond the cap never were
    const contacted = hangs.filter((h) => h.sockets.length > 0).length;
    expect(contacted).toBeGreaterThanOrEqual(1);
    expect(contacted).toBeLessThanOrEqual(3);
    for (const h of hangs.slice(4)) expect(h.sockets.length).toBe(0);
    // 31 × 1 s before; a generous bound that still fails the old behaviour
    expect(ms, showResult(r)).toBeLessThan(25_000);
  });
});
