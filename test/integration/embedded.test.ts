/**
 * Embedded stapling for Node TLS servers (attachStapling).
 *
 * With a real `https.Server`, a real `openssl ocsp` responder (scripts/lib)
 * and `openssl s_client -status` as the client: the staple is served; during
 * a responder outage the old staple keeps being served while valid; a
 * certificate swapped with `setSecureContext` gets its own staple; a
 * restarted server staples at once from the disk cache; a handshake never
 * waits for a hanging responder; revoked and expired responses are never
 * stapled.
 *
 * With a stand-in server (an EventEmitter receiving `OCSPRequest`) and a fake
 * clock and transport: the backoff schedule (1 min doubling to 1 h), no
 * fetch from handshakes during backoff, the refresh point, forgetting a
 * certificate no handshake asks for any more.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { createServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Server as TlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { StapleError } from '../../src/core/errors.js';
import { attachStapling, type StaplingEvent, type StaplingHandle } from '../../src/embed/stapling.js';
import type { Clock } from '../../src/io/clock.js';
import { assertBuilt, requestedSerial, ROOT } from '../helpers/cli-harness.js';
import { decodeGetPath, startEvilResponder, type EvilResponder } from '../helpers/evil-responder.js';
import { buildTestPki, createPki, goodResponseFor, mintOcspResponse, type Pki, type TestPki } from '../helpers/mint.js';
import { freePort, startResponder, type Responder } from '../helpers/servers.js';
import { sClient } from '../helpers/s-client.js';
import { tempDir, cleanUp } from '../helpers/temp.js';
import { createFakeTransport, type FakeTransport } from '../../src/testing/index.js';

// ---------------------------------------------------------------- helpers

async function listen(server: HttpsServer): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: HttpsServer | undefined): Promise<void> {
  if (!server?.listening) return;
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
}

async function tlsOptions(pki: Pki, name: string): Promise<{ key: Buffer; cert: Buffer }> {
  const leaf = pki.leaves[name]!;
  return { key: await readFile(leaf.key), cert: await readFile(leaf.bundle) };
}

// ---------------------------------------------------------------- real server, real responder, real client

describe('attachStapling on a real https.Server', () => {
  let dir: string;
  let pki: Pki;
  let responder: Responder | undefined;
  const servers: HttpsServer[] = [];
  const handles: StaplingHandle[] = [];
  let hanging: EvilResponder | undefined;

  beforeAll(async () => {
    dir = await tempDir('sk-embed-');
    pki = await createPki({
      dir: join(dir, 'pki'),
      ocspUrl: `http://127.0.0.1:${await freePort()}`,
      leaves: [{ name: 'site' }, { name: 'swap' }, { name: 'gone', status: 'revoked' }],
    });
    responder = await startResponder({ pki });
  });

  afterAll(async () => {
    for (const h of handles) await h.close();
    for (const s of servers) await closeServer(s);
    await responder?.stop();
    await hanging?.close();
    await cleanUp();
  });

  it('staples, keeps serving through an outage, follows a setSecureContext swap, and restarts from the cache', async () => {
    const cacheDir = join(dir, 'cache');
    const events: StaplingEvent[] = [];
    const server = createServer(await tlsOptions(pki, 'site'), (_req, res) => res.end('ok'));
    servers.push(server);
    const handle = attachStapling(server, { cacheDir, onEvent: (e) => events.push(e) });
    handles.push(handle);
    const port = await listen(server);

    // The first handshake finds no staple: it goes on without one at once and starts a fetch.
    const first = await sClient(port);
    expect(first.out).toContain('Verify return code');
    expect(first.noResponse).toBe(true);
    await handle.idle();
    expect(events.map((e) => e.type)).toEqual(['fetched']);

    const served = await sClient(port);
    expect(served.responseStatus, served.out).toBe('successful');
    expect(served.certStatus).toBe('good');
    expect(served.serial).toBe(pki.leaves.site!.serialHex);
    const [status] = handle.status();
    expect(status).toMatchObject({
      servable: true,
      failures: 0,
      fetching: false,
      serialHex: pki.leaves.site!.serialHex,
    });
    expect(served.thisUpdate?.toISOString()).toBe(status?.staple?.thisUpdate);
    // halfway through the 3-day validity of the openssl responder's answers
    expect(Date.parse(status!.nextRefresh!) - Date.parse(status!.staple!.thisUpdate)).toBeCloseTo(1.5 * 86_400_000, -5);
    // the disk copy, named by the certificate's SHA-256
    const certDer = Buffer.from(
      (await readFile(pki.leaves.site!.cert, 'utf8')).replace(/-----[^-]+-----|\s/g, ''),
      'base64',
    );
    const sha = createHash('sha256').update(certDer).digest('hex');
    expect(await readdir(cacheDir)).toEqual([`${sha}.ocsp`]);

    // Outage: the forced refresh fails, the old staple is still served and a retry is scheduled in ~1 min.
    await responder!.stop();
    responder = undefined;
    const failedAt = Date.now();
    await handle.refresh();
    const down = handle.status()[0]!;
    expect(down).toMatchObject({ servable: true, failures: 1, lastError: { code: 'HTTP_NETWORK' } });
    const retryIn = Date.parse(down.nextRefresh!) - failedAt;
    expect(retryIn).toBeGreaterThan(50_000);
    expect(retryIn).toBeLessThan(70_000);
    const during = await sClient(port);
    expect(during.certStatus, during.out).toBe('good');
    expect(during.thisUpdate).toEqual(served.thisUpdate);
    expect(events.at(-1)).toMatchObject({ type: 'error', failures: 1 });

    // Swap: the new certificate is seen in the next handshake and gets its own staple.
    responder = await startResponder({ pki });
    server.setSecureContext(await tlsOptions(pki, 'swap'));
    const swapped = await sClient(port);
    expect(swapped.out).toContain('CN = swap.test');
    expect(swapped.noResponse).toBe(true); // never waits for the fetch it starts
    await handle.idle();
    const swapServed = await sClient(port);
    expect(swapServed.certStatus, swapServed.out).toBe('good');
    expect(swapServed.serial).toBe(pki.leaves.swap!.serialHex);
    expect(
      handle
        .status()
        .map((s) => s.serialHex)
        .sort(),
    ).toEqual([pki.leaves.site!.serialHex, pki.leaves.swap!.serialHex].sort());

    // Restart during an outage: the new process staples from the disk cache in its first handshake.
    await handle.close();
    await closeServer(server);
    await responder.stop();
    responder = undefined;
    const restarted = createServer(await tlsOptions(pki, 'swap'), (_req, res) => res.end('ok'));
    servers.push(restarted);
    const again = attachStapling(restarted, { cacheDir });
    handles.push(again);
    const port2 = await listen(restarted);
    const fromCache = await sClient(port2);
    expect(fromCache.certStatus, fromCache.out).toBe('good');
    expect(fromCache.serial).toBe(pki.leaves.swap!.serialHex);
    expect(fromCache.thisUpdate).toEqual(swapServed.thisUpdate);
    await again.idle();
    await again.close();
    responder = await startResponder({ pki });
  });

  it('runs the example in examples/https-server.mjs: stapled from the first handshake', async () => {
    assertBuilt(); // the example imports the package itself (dist/)
    const leaf = pki.leaves.site!;
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [join(ROOT, 'examples', 'https-server.mjs'), leaf.key, leaf.bundle, String(port), join(dir, 'example-cache')],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let log = '';
    child.stdout.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const deadline = Date.now() + 10_000;
      while (!log.includes('listening on') && Date.now() < deadline && child.exitCode === null)
        await new Promise((r) => setTimeout(r, 50));
      expect(log).toMatch(
        /staple for CN=site\.test: good until \S+, next refresh \S+\nlistening on https:\/\/127\.0\.0\.1:\d+\//,
      );
      const view = await sClient(port);
      expect(view.certStatus, view.out).toBe('good');
      expect(view.serial).toBe(leaf.serialHex);
    } finally {
      const gone = new Promise((r) => child.once('exit', r));
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(timer);
    }
    expect(child.exitCode).toBe(0); // SIGTERM closes the server, the stapling timers do not hold the process
  });

  it('never delays a handshake on a hanging responder', async () => {
    hanging = await startEvilResponder(() => ({ kind: 'hang' }));
    const server = createServer(await tlsOptions(pki, 'site'), (_req, res) => res.end('ok'));
    servers.push(server);
    const handle = attachStapling(server, { responderUrls: [hanging.url], timeoutMs: 1500 });
    handles.push(handle);
    const port = await listen(server);
    const view = await sClient(port);
    expect(view.noResponse, view.out).toBe(true);
    expect(view.ms).toBeLessThan(1500);
    expect(handle.status()[0]?.fetching).toBe(true);
    await handle.idle();
    expect(handle.status()[0]).toMatchObject({ fetching: false, failures: 1, lastError: { code: 'HTTP_TIMEOUT' } });
    await handle.close();
  });

  it('never staples a revoked response', async () => {
    const events: StaplingEvent[] = [];
    const server = createServer(await tlsOptions(pki, 'gone'), (_req, res) => res.end('ok'));
    servers.push(server);
    const handle = attachStapling(server, { onEvent: (e) => events.push(e) });
    handles.push(handle);
    const port = await listen(server);
    await sClient(port);
    await handle.idle();
    expect(events.map((e) => e.type)).toEqual(['revoked', 'error']);
    expect(handle.status()[0]).toMatchObject({ servable: false, lastError: { code: 'OCSP_REVOKED' } });
    const view = await sClient(port);
    expect(view.noResponse, view.out).toBe(true);
    await handle.close();
  });

  it('stops stapling a response once its nextUpdate has passed (checked at each handshake)', async () => {
    let offset = 0;
    const server = createServer(await tlsOptions(pki, 'site'), (_req, res) => res.end('ok'));
    servers.push(server);
    const handle = attachStapling(server, { now: () => new Date(Date.now() + offset) });
    handles.push(handle);
    const port = await listen(server);
    await sClient(port);
    await handle.idle();
    expect((await sClient(port)).certStatus).toBe('good');
    offset = 4 * 86_400_000; // the responder's answers are valid for 3 days
    const late = await sClient(port);
    expect(late.noResponse, late.out).toBe(true);
    await handle.idle(); // the background fetch gets a response that is stale at the fake time: refused
    expect(handle.status()[0]).toMatchObject({ servable: false, lastError: { code: 'OCSP_STALE' } });
    expect((await sClient(port)).noResponse).toBe(true);
    await handle.close();
  });
});

// ---------------------------------------------------------------- stand-in server, fake clock and transport

describe('attachStapling scheduling (fake clock and transport)', () => {
  const MIN = 60_000;
  let pki: TestPki;
  let t: number;
  const now = (): Date => new Date(t);

  beforeAll(() => {
    pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: new Date('2026-11-20T12:00:00Z') });
  });

  function fakeServer(): TlsServer & EventEmitter {
    return new EventEmitter() as unknown as TlsServer & EventEmitter;
  }

  function handshake(server: EventEmitter, leafIndex = 0): Promise<Buffer | null> {
    return new Promise((resolve, reject) =>
      server.emit('OCSPRequest', pki.leaves[leafIndex]!.der, pki.root.der, (err: Error | null, resp: Buffer | null) =>
        err ? reject(err) : resolve(resp),
      ),
    );
  }

  /** Answers every request with `answer()`'s bytes, or throws its error. */
  function transport(answer: () => Buffer | Error): FakeTransport {
    return createFakeTransport(() => {
      const a = answer();
      if (a instanceof Error) throw a;
      return { body: a, contentType: 'application/ocsp-response' };
    });
  }

  it('backs off 1, 2, 4 … minutes up to 1 hour, and handshakes do not fetch during the backoff', async () => {
    t = pki.now.getTime();
    const server = fakeServer();
    const tr = transport(() => new StapleError('HTTP_TIMEOUT', 'no answer')); // no GET→POST fallback: one call per attempt
    const handle = attachStapling(server, { transport: tr, now, backoff: { jitter: 0 } });
    expect(await handshake(server)).toBeNull();
    await handle.idle();
    expect(tr.requests.length).toBe(1);
    const delays: number[] = [];
    delays.push(Date.parse(handle.status()[0]!.nextRefresh!) - t);
    // handshakes within the backoff answer at once and fetch nothing
    t += 30_000;
    expect(await handshake(server)).toBeNull();
    await handle.idle();
    expect(tr.requests.length).toBe(1);
    for (let i = 0; i < 7; i++) {
      await handle.refresh();
      delays.push(Date.parse(handle.status()[0]!.nextRefresh!) - t);
    }
    expect(delays).toEqual([1, 2, 4, 8, 16, 32, 60, 60].map((m) => m * MIN));
    // after the backoff, a handshake starts a fetch again
    t += 61 * MIN;
    await handshake(server);
    await handle.idle();
    expect(tr.requests.length).toBe(9);
    await handle.close();
  });

  it('staples after the first fetch, refreshes at the halfway point, and a success resets the backoff', async () => {
    t = pki.now.getTime();
    let fail = true;
    let last: Buffer | undefined;
    const server = fakeServer();
    const tr = transport(() => {
      if (fail) return new StapleError('HTTP_STATUS', 'HTTP 503');
      last = goodResponseFor(pki, pki.leaves[0]!, new Date(t));
      return last;
    });
    const handle = attachStapling(server, { transport: tr, now, backoff: { jitter: 0 } });
    await handshake(server);
    await handle.idle();
    expect(handle.status()[0]).toMatchObject({ failures: 1, servable: false });
    fail = false;
    await handle.refresh();
    const s = handle.status()[0]!;
    expect(s).toMatchObject({ failures: 0, servable: true });
    // goodResponseFor: producedAt = now - 1 h, nextUpdate = now + 7 d → refresh at now + 3.5 d - 30 min
    expect(Date.parse(s.nextRefresh!) - t).toBe(3.5 * 86_400_000 - 30 * MIN);
    expect(await handshake(server)).toEqual(last);
    await handle.close();
  });

  it('kept: a worse answer (shorter, or for other certificates too) never replaces the staple in use; retried with backoff', async () => {
    t = pki.now.getTime();
    const leaf = pki.leaves[0]!;
    const first = goodResponseFor(pki, leaf, new Date(t));
    let answer = first;
    const server = fakeServer();
    const events: StaplingEvent[] = [];
    const handle = attachStapling(server, {
      transport: transport(() => answer),
      now,
      backoff: { jitter: 0 },
      onEvent: (e) => events.push(e),
    });
    await handshake(server);
    await handle.idle();
    expect(await handshake(server)).toEqual(first);
    // newer, but valid for two minutes
    answer = goodResponseFor(pki, leaf, new Date(t), {
      producedAt: new Date(t),
      single: { thisUpdate: new Date(t), nextUpdate: new Date(t + 2 * MIN) },
    });
    await handle.refresh();
    const kept = events.filter((e) => e.type === 'kept');
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatchObject({ failures: 1, retryAt: new Date(t + MIN) });
    expect((kept[0] as { message: string }).message).toMatch(
      /^kept: the responder's answer \(valid until \S+\) is shorter than the staple in use \(valid until/,
    );
    expect(await handshake(server)).toEqual(first);
    expect(handle.status()[0]).toMatchObject({
      servable: true,
      failures: 1,
      nextRefresh: new Date(t + MIN).toISOString(),
    });
    // a better one is taken, and the backoff ends
    t += MIN;
    const better = goodResponseFor(pki, leaf, new Date(t + 60 * MIN));
    answer = better;
    await handle.refresh();
    expect(await handshake(server)).toEqual(better);
    expect(handle.status()[0]).toMatchObject({ failures: 0 });
    await handle.close();
  });

  /** A transport that answers every request good for the leaf it asks about, minted at the (fake) current time. */
  function honestTransport(): FakeTransport {
    const bySerial = new Map(pki.leaves.map((l) => [l.serial.toString('hex').toUpperCase(), l]));
    return createFakeTransport((req) => {
      const der = req.method === 'POST' ? req.body : decodeGetPath(new URL(req.url).pathname);
      const leaf = der ? bySerial.get(requestedSerial(der) ?? '') : undefined;
      if (!leaf) throw new StapleError('HTTP_STATUS', 'unknown certificate');
      return { body: goodResponseFor(pki, leaf, new Date()), contentType: 'application/ocsp-response' };
    });
  }

  it('refreshes certificates in use, forgets one no handshake asked for since its last refresh, keeps added ones', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      vi.setSystemTime(pki.now);
      const events: StaplingEvent[] = [];
      const server = fakeServer();
      const tr = honestTransport();
      const handle = attachStapling(server, { transport: tr, onEvent: (e) => events.push(e), backoff: { jitter: 0 } });
      await handshake(server, 0);
      await handshake(server, 1);
      await handle.idle();
      await handle.add(pki.leaves[2]!.pem + pki.root.pem);
      expect(tr.requests.length).toBe(3);
      expect(handle.status().every((s) => s.servable)).toBe(true);

      // Leaf 1 stays in use; leaf 0 is no longer asked for (its certificate was swapped out).
      await vi.advanceTimersByTimeAsync(3 * 86_400_000);
      expect(await handshake(server, 1)).not.toBeNull();
      // Past every refresh point (3.5 d - 30 min):
      await vi.advanceTimersByTimeAsync(0.6 * 86_400_000);
      await handle.idle();
      const forgotten = events.filter((e) => e.type === 'forgotten');
      expect(forgotten.map((e) => e.subject)).toEqual([`CN=${pki.leaves[0]!.cn}`]);
      expect(
        handle
          .status()
          .map((s) => s.serialHex)
          .sort(),
      ).toEqual([pki.leaves[1]!, pki.leaves[2]!].map((l) => l.serial.toString('hex').toUpperCase()).sort());
      expect(tr.requests.length).toBe(5); // leaf 1 and the added leaf 2 were refreshed
      expect(handle.status().every((s) => s.servable && s.failures === 0)).toBe(true);
      // A handshake for the forgotten certificate starts over: no staple at once, a fetch in the background.
      expect(await handshake(server, 0)).toBeNull();
      await handle.idle();
      expect(await handshake(server, 0)).not.toBeNull();
      await handle.close();
    } finally {
      vi.useRealTimers();
    }
  });

  /** A clock whose timers fire only when the test says so; it records how each was asked for. */
  function manualClock(): Clock & {
    timers: Array<{ at: number; fn: () => void; unref: boolean; cancelled: boolean }>;
  } {
    const timers: Array<{ at: number; fn: () => void; unref: boolean; cancelled: boolean }> = [];
    return {
      timers,
      now,
      setTimer(ms, fn, opts) {
        const timer = { at: t + ms, fn, unref: opts?.unref === true, cancelled: false };
        timers.push(timer);
        return () => {
          timer.cancelled = true;
        };
      },
    };
  }

  it("waits on the injected clock's timers (unref'd), with the daemon's backoff: tryLater at least 30 min", async () => {
    t = pki.now.getTime();
    const clock = manualClock();
    const server = fakeServer();
    const tryLater = mintOcspResponse({ status: 3, signer: pki.root, producedAt: new Date(t), singles: [] });
    const tr = transport(() => tryLater);
    const events: StaplingEvent[] = [];
    const handle = attachStapling(server, {
      transport: tr,
      clock,
      backoff: { jitter: 0 },
      onEvent: (e) => events.push(e),
    });
    expect(await handshake(server)).toBeNull();
    await handle.idle();
    expect(events.at(-1)).toMatchObject({ type: 'error', error: { code: 'OCSP_TRY_LATER' }, failures: 1 });
    const retry = Date.parse(handle.status()[0]!.nextRefresh!);
    expect(retry - t).toBe(30 * MIN); // not the 1 min of an ordinary failure: the responder asked us to stay away
    const live = clock.timers.filter((x) => !x.cancelled);
    expect(live).toHaveLength(1);
    expect(live[0]).toMatchObject({ at: retry, unref: true });
    // the clock fires the retry: one more request
    t = retry;
    live[0]!.fn();
    await handle.idle();
    expect(tr.requests.length).toBe(2);
    expect(Date.parse(handle.status()[0]!.nextRefresh!) - t).toBe(30 * MIN);
    await handle.close();
  });

  it('retries a failure only the operator can fix (an unusable responder URL) at the backoff cap, not every minute', async () => {
    t = pki.now.getTime();
    const server = fakeServer();
    const tr = transport(() => Buffer.alloc(0));
    const handle = attachStapling(server, {
      transport: tr,
      now,
      responderUrls: ['ftp://127.0.0.1/ocsp'],
      backoff: { jitter: 0, maxMs: 20 * MIN },
    });
    await handshake(server);
    await handle.idle();
    const s = handle.status()[0]!;
    expect(s).toMatchObject({ failures: 1, lastError: { code: 'HTTP_BAD_URL' } });
    expect(Date.parse(s.nextRefresh!) - t).toBe(20 * MIN);
    expect(tr.requests.length).toBe(0);
    await handle.close();
  });

  it('gives no staple and no error for a certificate it cannot read, and nothing after close()', async () => {
    t = pki.now.getTime();
    const server = fakeServer();
    const handle = attachStapling(server, { transport: transport(() => Buffer.alloc(0)), now });
    const garbage = await new Promise((resolve) =>
      server.emit('OCSPRequest', Buffer.from('nope'), null, (_e: unknown, r: unknown) => resolve(r)),
    );
    expect(garbage).toBeNull();
    await handle.close();
    expect(server.listenerCount('OCSPRequest')).toBe(0);
  });
});
