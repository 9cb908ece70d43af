/**
 * Fleet mode with daemons (docs/fleet.md): three `staplekeeper
 * daemon` processes with the same five certificates and separate staple
 * folders, one real `openssl ocsp` responder whose requests are counted, one
 * real `redis-server`. One fetch per certificate; a `run` on a fourth folder
 * takes everything from Redis; a forced renewal on one daemon reaches the
 * others within 2 s; Redis killed (daemons keep serving, say the fleet is
 * down, a `run` renews directly) and restarted (they reconcile); a replica
 * killed while it holds the leases (the next node takes them over, no
 * staple lost, no storm). Needs `npm run build` first.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pki } from '../helpers/mint.js';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import { assertBuilt, cleanEnv, CliProcess, runCli } from '../helpers/cli-harness.js';
import { skipWithoutRedis, startRedis, type TestRedis } from '../helpers/redis.js';
import { startOpensslPki, type Responder } from '../helpers/servers.js';
import { cleanUp } from '../helpers/temp.js';

const NAMES = ['a', 'b', 'c', 'd', 'e'];
const PREFIX = 'skd:';
const ENV = {
  STAPLEKEEPER_CACHE_DIR: 'off',
  // short bounds so that the fault tests take seconds: wait 8 s for a publication, leases of 3 s
  STAPLEKEEPER_FLEET_WAIT_MS: '8000',
  STAPLEKEEPER_FLEET_LEASE_MS: '3000',
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A fleet daemon with its status service on a free port, verbose. */
class Daemon extends CliProcess {
  url = '';
  constructor(config: string, cwd: string) {
    super(['daemon', '-c', config, '--listen', '127.0.0.1:0', '-v'], {
      cwd,
      env: cleanEnv({ ...ENV, JOURNAL_STREAM: '' }),
    });
  }
  override waitFor(re: RegExp, timeoutMs = 20_000, from = 0): Promise<string> {
    return super.waitFor(re, timeoutMs, from);
  }
  async started(): Promise<void> {
    const line = await this.waitFor(/status service listening on (http:\/\/\S+)/);
    this.url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(line)![1]!;
  }
  async get(p: string): Promise<{ status: number; text: string }> {
    const r = await fetch(`${this.url}${p}`);
    return { status: r.status, text: await r.text() };
  }
}

/** A TCP proxy in front of the responder that can hold every new connection unanswered. */
interface Proxy {
  port: number;
  hang: boolean;
  /** Forward each new connection only after this many ms (a slow responder). */
  delayMs: number;
  close(): Promise<void>;
}

async function startProxy(target: number): Promise<Proxy> {
  const sockets = new Set<Socket>();
  const proxy: Proxy = { port: 0, hang: false, delayMs: 0, close: async () => undefined };
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (proxy.hang) return; // accepted, never answered
    const forward = (): void => {
      const upstream = connect(target, '127.0.0.1');
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
    };
    if (proxy.delayMs > 0) {
      client.pause();
      setTimeout(forward, proxy.delayMs);
    } else forward();
  });
  proxy.port = await new Promise<number>((r) =>
    server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)),
  );
  proxy.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  };
  return proxy;
}

describe.skipIf(skipWithoutRedis())('fleet mode: three daemons, one responder, one Redis', () => {
  let dir: string;
  let pki: Pki;
  let responder: Responder;
  let redis: TestRedis;
  let proxy: Proxy;
  const daemons: Daemon[] = [];
  let ca: ReturnType<typeof loadCertificates>[number];
  const certs = new Map<string, ReturnType<typeof loadCertificates>[number]>();

  const staple = (node: string, n: string): string => path.join(dir, node, 'ocsp', `${node}-${n}.der`);

  /** Writes a node's configuration: its own folder and staple names, the shared fleet. */
  const node = async (name: string, opts: { fetch?: boolean; viaProxy?: boolean; redis?: string } = {}) => {
    const folder = path.join(dir, name);
    await mkdir(path.join(folder, 'ocsp'), { recursive: true });
    const lines = [
      `ocsp_folder: ${path.join(folder, 'ocsp')}`,
      'http:',
      '  timeout: 3s',
      'daemon:',
      '  watch: false',
      'fleet:',
      `  redis: ${opts.redis ?? redis.url}`,
      `  prefix: "${PREFIX}"`,
      `  fetch: ${opts.fetch ?? true}`,
    ];
    if (opts.viaProxy) lines.push('responders:', `  "${pki.ocspUrl}": "http://127.0.0.1:${proxy.port}"`);
    lines.push('domains:');
    for (const n of NAMES) {
      const leaf = pki.leaves[n]!;
      lines.push(`  ${n}:`, `    cert: ${leaf.cert}`, `    chain: ${leaf.chain}`, `    ocsp: ${name}-${n}.der`);
    }
    const file = path.join(folder, 'staplekeeper.yaml');
    await writeFile(file, `${lines.join('\n')}\n`);
    return file;
  };

  const startDaemon = async (name: string, opts: Parameters<typeof node>[1] = {}): Promise<Daemon> => {
    const d = new Daemon(await node(name, opts), dir);
    daemons.push(d);
    await d.started();
    return d;
  };

  /** The staples of a node that verify now, by certificate name. */
  const verified = async (name: string): Promise<Map<string, Buffer>> => {
    const out = new Map<string, Buffer>();
    for (const n of NAMES) {
      try {
        const der = await readFile(staple(name, n));
        const v = verifyResponse(der, { cert: certs.get(n)!, issuer: ca, now: new Date() });
        if (v.status === 'good') out.set(n, der);
      } catch {
        // missing or not valid
      }
    }
    return out;
  };

  const waitUntil = async (what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  };

  /** Every listed node holds exactly the same five verified staples. */
  const sameEverywhere = async (nodes: string[]): Promise<Map<string, Buffer> | undefined> => {
    const first = await verified(nodes[0]!);
    if (first.size !== NAMES.length) return undefined;
    for (const other of nodes.slice(1)) {
      const v = await verified(other);
      for (const n of NAMES) if (!v.get(n)?.equals(first.get(n)!)) return undefined;
    }
    return first;
  };

  beforeAll(async () => {
    assertBuilt();
    ({
      root: dir,
      pki,
      responder,
    } = await startOpensslPki('sk-fleet-daemon-', { leaves: NAMES.map((name) => ({ name })) }));
    proxy = await startProxy(responder.port);
    redis = await startRedis();
    ca = loadCertificates(await readFile(pki.ca.cert), 'ca')[0]!;
    for (const n of NAMES) certs.set(n, loadCertificates(await readFile(pki.leaves[n]!.cert), n)[0]!);
  }, 60_000);

  afterAll(async () => {
    for (const d of daemons) await d.kill();
    await proxy?.close();
    await redis?.stop();
    await cleanUp();
  });

  it('three daemons: every folder has five verified staples and the responder saw exactly five requests', async () => {
    await Promise.all(['n1', 'n2', 'n3'].map((n) => startDaemon(n)));
    await waitUntil(
      'five staples in every folder',
      async () => (await sameEverywhere(['n1', 'n2', 'n3'])) !== undefined,
    );
    // give any straggler a moment to fetch when it should not have
    await sleep(1_000);
    expect(responder.requests.length).toBe(5);
    const hits = daemons.map(
      (d) => d.lines.filter((l) => /updated OCSP response: good.*\(from the fleet/.test(l)).length,
    );
    expect(hits.reduce((a, b) => a + b, 0)).toBe(10); // 15 staples written, 5 fetched
    for (const d of daemons) {
      const status = JSON.parse((await d.get('/status')).text) as { fleet: { up: boolean; prefix: string } };
      expect(status.fleet.up).toBe(true);
      expect(status.fleet.prefix).toBe(PREFIX);
      expect((await d.get('/metrics')).text).toMatch(
        /^staplekeeper_fleet_up\{redis="redis:\/\/127\.0\.0\.1:\d+\/0"\} 1$/m,
      );
    }
    const metrics = await Promise.all(daemons.map(async (d) => (await d.get('/metrics')).text));
    const count = (re: RegExp): number => metrics.reduce((sum, m) => sum + Number(re.exec(m)?.[1] ?? 0), 0);
    expect(count(/^staplekeeper_fleet_staples_total\{source="fleet"\} (\d+)$/m)).toBe(10);
    expect(count(/^staplekeeper_fleet_staples_total\{source="responder"\} (\d+)$/m)).toBe(5);
  }, 90_000);

  it('a run on a fourth folder takes all five staples from Redis and sends no request', async () => {
    const before = responder.requests.length;
    const r = await runCli(['run', '-c', await node('r4')], { env: ENV, cwd: dir });
    expect(r.code).toBe(5);
    expect(r.stdout.match(/\(from the fleet, fetched by /g)?.length).toBe(5);
    expect(responder.requests.length).toBe(before);
    expect((await verified('r4')).size).toBe(5);
  }, 60_000);

  it('a forced renewal (SIGUSR2) on one daemon reaches the other folders within 2 s, with five requests', async () => {
    const old = (await sameEverywhere(['n1', 'n2', 'n3']))!;
    await sleep(1_100); // a new response needs a later thisUpdate (whole seconds)
    const before = responder.requests.length;
    const marks = daemons.map((d) => d.mark());
    daemons[0]!.proc.kill('SIGUSR2');
    await waitUntil('the renewed staples everywhere', async () => {
      const now = await sameEverywhere(['n1', 'n2', 'n3']);
      return now !== undefined && NAMES.every((n) => !now.get(n)!.equals(old.get(n)!));
    });
    expect(responder.requests.length - before).toBe(5);
    // per certificate: from the forced daemon's write to the last other daemon's write
    for (const n of NAMES) {
      // a daemon logs a write just after it: wait for the lines, not only the files
      await daemons[0]!.waitFor(new RegExp(`^\\[${n}\\] renewed \\(forced\\) OCSP response`), 5_000, marks[0]);
      for (const i of [1, 2])
        await daemons[i]!.waitFor(
          new RegExp(`^\\[${n}\\] updated OCSP response: good.*from the fleet`),
          5_000,
          marks[i],
        );
      const [forced] = daemons[0]!.timesOf(new RegExp(`^\\[${n}\\] renewed \\(forced\\) OCSP response`), marks[0]);
      const others = [1, 2].map(
        (i) => daemons[i]!.timesOf(new RegExp(`^\\[${n}\\] updated OCSP response: good.*from the fleet`), marks[i])[0]!,
      );
      const lag = Math.max(...others) - forced!;
      console.log(`fleet propagation of ${n}: ${lag} ms`);
      expect(lag).toBeLessThan(2_000);
    }
  }, 60_000);

  it('with Redis stopped: daemons serve /healthz and say the fleet is down; a run renews directly; a daemon starts without it', async () => {
    const marks = daemons.map((d) => d.mark());
    await redis.kill();
    for (const [i, d] of daemons.entries())
      await d.waitFor(/fleet degraded: redis:\/\/127\.0\.0\.1:\d+\/0 cannot be reached/, 20_000, marks[i]);
    for (const d of daemons) {
      expect((await d.get('/healthz')).status).toBe(200);
      const status = JSON.parse((await d.get('/status')).text) as { fleet: { up: boolean; lastError: string | null } };
      expect(status.fleet.up).toBe(false);
      expect((await d.get('/metrics')).text).toMatch(
        /^staplekeeper_fleet_up\{redis="redis:\/\/127\.0\.0\.1:\d+\/0"\} 0$/m,
      );
      expect((await d.get('/')).text).toMatch(/data-fleet="down">Fleet: <b>DEGRADED<\/b>/);
    }
    const before = responder.requests.length;
    const r = await runCli(['run', '--force', '-c', await node('r4')], { env: ENV, cwd: dir });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/fleet degraded: .* cannot be reached .*; fetching directly/);
    expect(responder.requests.length - before).toBe(5);
    expect((await verified('r4')).size).toBe(5);

    // a daemon started while Redis is down fetches directly and still serves
    const late = await startDaemon('n5');
    await late.waitFor(/fleet degraded: .* cannot be reached/);
    await waitUntil('five staples in n5', async () => (await verified('n5')).size === 5);
    expect(responder.requests.length - before).toBe(10);
    expect((await late.get('/healthz')).status).toBe(200);
  }, 90_000);

  it('Redis restarted (empty): every daemon reconnects and reconciles; publications flow again', async () => {
    const marks = daemons.map((d) => d.mark());
    await redis.start();
    for (const [i, d] of daemons.entries()) await d.waitFor(/fleet: redis:\/\/\S+ answers again/, 20_000, marks[i]);
    for (const d of daemons) {
      const status = JSON.parse((await d.get('/status')).text) as { fleet: { up: boolean } };
      expect(status.fleet.up).toBe(true);
    }
    // nothing regressed: every folder still has five verified staples
    for (const n of ['n1', 'n2', 'n3', 'n5']) expect((await verified(n)).size).toBe(5);
    await sleep(1_100);
    const before = responder.requests.length;
    const old = (await sameEverywhere(['n1', 'n2', 'n3']))!;
    daemons[1]!.proc.kill('SIGUSR2');
    await waitUntil('n2 renewal reaching n1, n3 and n5', async () => {
      const now = await sameEverywhere(['n1', 'n2', 'n3', 'n5']);
      return now !== undefined && NAMES.every((n) => !now.get(n)!.equals(old.get(n)!));
    });
    expect(responder.requests.length - before).toBe(5);
  }, 90_000);

  it('a slow replica keeps its leases while it works: a forced run waits for its publication, no second fetch', async () => {
    proxy.delayMs = 1_500;
    const slow = await startDaemon('s1', { viaProxy: true });
    await waitUntil('five staples in s1 (from the fleet)', async () => (await verified('s1')).size === 5);
    await sleep(1_100);
    const before = responder.requests.length;
    const leases = async (): Promise<number> =>
      (await redis.cli('KEYS', `${PREFIX}lease:*`)).split('\n').filter((l) => l.trim() !== '').length;
    slow.proc.kill('SIGUSR2');
    await waitUntil('the slow node holding leases', async () => (await leases()) > 0, 10_000);
    const r = await runCli(['run', '--force', '-v', '-c', await node('r6')], { env: ENV, cwd: dir, timeoutMs: 30_000 });
    expect(r.code).toBe(5);
    expect(r.stdout.match(/\(from the fleet, fetched by /g)?.length).toBe(5);
    await waitUntil('the slow node done', async () => (await leases()) === 0, 20_000);
    expect(responder.requests.length - before).toBe(5);
    const s1 = await verified('s1');
    const r6 = await verified('r6');
    for (const n of NAMES) expect(r6.get(n)).toEqual(s1.get(n));
    proxy.delayMs = 0;
  }, 90_000);

  it('a replica killed while holding the leases: the next node takes them over; nothing lost, no storm', async () => {
    proxy.hang = true;
    const victim = await startDaemon('v1', { viaProxy: true });
    await victim.waitFor(/daemon started/);
    await sleep(1_100);
    const before = responder.requests.length;
    const old = (await sameEverywhere(['n1', 'n2', 'n3']))!;
    victim.proc.kill('SIGUSR2'); // takes all five leases, then hangs on the proxy
    const leases = async (): Promise<number> =>
      (await redis.cli('KEYS', `${PREFIX}lease:*`)).split('\n').filter((l) => l.trim() !== '').length;
    await waitUntil('the victim holding five leases', async () => (await leases()) === 5, 10_000);
    await victim.kill();
    // a forced renewal elsewhere waits for the dead holder's leases to expire, then fetches once each
    daemons[2]!.proc.kill('SIGUSR2');
    await waitUntil(
      'n3 renewal everywhere',
      async () => {
        const now = await sameEverywhere(['n1', 'n2', 'n3']);
        return now !== undefined && NAMES.every((n) => !now.get(n)!.equals(old.get(n)!));
      },
      40_000,
    );
    await sleep(500);
    expect(responder.requests.length - before).toBe(5);
    expect(await leases()).toBe(0);
    proxy.hang = false;
  }, 90_000);
});
