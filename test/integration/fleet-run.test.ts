/**
 * Fleet mode with `staplekeeper run` (real processes, a real `redis-server`,
 * a real `openssl ocsp` responder whose requests are counted): one fetch per
 * certificate for any number of folders, Redis down (fetch: true fetches
 * directly, fetch: false keeps what it has and says so), garbage in Redis,
 * and a run waiting for another node's lease. Needs `npm run build` first.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pki } from '../helpers/mint.js';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import { fleetKeyOf } from '../../src/fleet/key.js';
import { assertBuilt, cleanEnv, killAllChildren, ROOT, runCli } from '../helpers/cli-harness.js';
import { skipWithoutRedis, startRedis, type TestRedis } from '../helpers/redis.js';
import { startOpensslPki, freePort, type Responder } from '../helpers/servers.js';
import { cleanUp } from '../helpers/temp.js';

const NAMES = ['a', 'b', 'c', 'd', 'e'];

describe.skipIf(skipWithoutRedis())('fleet mode: staplekeeper run', () => {
  let dir: string;
  let pki: Pki;
  let responder: Responder;
  let redis: TestRedis;

  /** Writes a node's configuration (its own staple folder) and returns its path. */
  const node = async (name: string, fleet: Record<string, unknown> | null, extra = ''): Promise<string> => {
    const folder = path.join(dir, name);
    await mkdir(path.join(folder, 'ocsp'), { recursive: true });
    const lines = [`ocsp_folder: ${path.join(folder, 'ocsp')}`, 'http:', '  timeout: 3s', 'domains:'];
    for (const n of NAMES) {
      const leaf = pki.leaves[n]!;
      // a different staple name per node: the fleet names certificates by CertID, not by path
      lines.push(`  ${n}:`, `    cert: ${leaf.cert}`, `    chain: ${leaf.chain}`, `    ocsp: ${name}-${n}.der`);
    }
    if (fleet) {
      lines.push('fleet:');
      for (const [k, v] of Object.entries(fleet)) lines.push(`  ${k}: ${JSON.stringify(v)}`);
    }
    lines.push(extra);
    const file = path.join(folder, 'staplekeeper.yaml');
    await writeFile(file, lines.join('\n'));
    return file;
  };

  const stapleOf = (name: string, n: string): string => path.join(dir, name, 'ocsp', `${name}-${n}.der`);

  /** Every staple of a node verifies for its certificate now. */
  const allVerified = async (name: string): Promise<number> => {
    let ok = 0;
    const [ca] = loadCertificates(await readFile(pki.ca.cert), pki.ca.cert);
    for (const n of NAMES) {
      const [cert] = loadCertificates(await readFile(pki.leaves[n]!.cert), 'leaf');
      try {
        const v = verifyResponse(await readFile(stapleOf(name, n)), { cert: cert!, issuer: ca!, now: new Date() });
        if (v.status === 'good') ok++;
      } catch {
        // missing or bad: not counted
      }
    }
    return ok;
  };

  const keyOf = async (n: string): Promise<string> => {
    const [cert] = loadCertificates(await readFile(pki.leaves[n]!.cert), 'leaf');
    const [ca] = loadCertificates(await readFile(pki.ca.cert), 'ca');
    return fleetKeyOf(cert!, ca!);
  };

  const env = {
    STAPLEKEEPER_CACHE_DIR: 'off',
    STAPLEKEEPER_FLEET_WAIT_MS: '8000',
    STAPLEKEEPER_FLEET_LEASE_MS: '3000',
  };

  beforeAll(async () => {
    assertBuilt();
    ({
      root: dir,
      pki,
      responder,
    } = await startOpensslPki('sk-fleet-run-', { leaves: NAMES.map((name) => ({ name })) }));
    redis = await startRedis();
  }, 60_000);

  afterAll(async () => {
    await killAllChildren();
    await redis?.stop();
    await cleanUp();
  });

  it('fetches each certificate once: a second folder gets all five staples from Redis, with no request', async () => {
    const fleet = { redis: redis.url, prefix: 'sk1:' };
    const first = await runCli(['run', '-c', await node('n1', fleet)], { env, cwd: dir });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(5);
    expect(responder.requests.length).toBe(5);
    expect(await allVerified('n1')).toBe(5);

    const second = await runCli(['run', '-c', await node('n2', fleet)], { env, cwd: dir });
    expect(second.code).toBe(5);
    expect(second.stdout).toMatch(/\[a\] updated OCSP response: good, valid until \S+ \(from the fleet, fetched by /);
    expect(responder.requests.length).toBe(5);
    expect(await allVerified('n2')).toBe(5);
    // byte for byte the staples the first node fetched
    for (const n of NAMES) expect(await readFile(stapleOf('n2', n))).toEqual(await readFile(stapleOf('n1', n)));

    // the entry is named by CertID, holds the facts, and expires at nextUpdate
    const key = `sk1:staple:${await keyOf('a')}`;
    const fields = (await redis.cli('HKEYS', key)).trim().split('\n').sort();
    expect(fields).toEqual(['at', 'by', 'der', 'nu', 'st', 'tu']);
    const nu = Number((await redis.cli('HGET', key, 'nu')).trim());
    const ttl = Number((await redis.cli('PTTL', key)).trim());
    expect(Math.abs(Date.now() + ttl - nu)).toBeLessThan(10_000);
    expect((await redis.cli('HGET', key, 'st')).trim()).toBe('good');
    // no lease is left behind
    expect((await redis.cli('KEYS', 'sk1:lease:*')).trim()).toBe('');
  }, 60_000);

  it('the ocspbot drop-in takes the staples from the fleet too (same YAML, same exit codes)', async () => {
    const cfg = await node('o1', { redis: redis.url, prefix: 'sk1:' });
    const before = responder.requests.length;
    const r = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [path.join(ROOT, 'bin', 'ocspbot'), cfg],
        { cwd: dir, env: cleanEnv(env), timeout: 30_000 },
        (_e, stdout) => resolve({ code: child.exitCode, stdout }),
      );
    });
    expect(r.code).toBe(5);
    expect(r.stdout).toMatch(/Success: 0 unchanged OCSP responses, 5 updated OCSP responses and 0 failures\./);
    expect(responder.requests.length).toBe(before);
    expect(await allVerified('o1')).toBe(5);
  }, 60_000);

  it("replaces garbage in Redis: a wrong type, a hash without a staple, another certificate's staple", async () => {
    const fleet = { redis: redis.url, prefix: 'sk2:' };
    await node('g1', fleet);
    // seed sk2 with garbage for a, b and c; d holds n1's staple of e (valid, but for another certificate)
    await redis.cli('SET', `sk2:staple:${await keyOf('a')}`, 'not a hash');
    await redis.cli('HSET', `sk2:staple:${await keyOf('b')}`, 'tu', '99999999999999', 'nu', 'x');
    await redis.cli(
      'HSET',
      `sk2:staple:${await keyOf('c')}`,
      'der',
      'garbage',
      'tu',
      '99999999999999',
      'nu',
      '99999999999999',
    );
    const client = new Redis(redis.url);
    try {
      await client.hset(`sk2:staple:${await keyOf('d')}`, {
        der: await readFile(stapleOf('n1', 'e')),
        tu: String(Date.now()),
        nu: String(Date.now() + 86_400_000),
        st: 'good',
        by: 'a confused node',
        at: String(Date.now()),
      });
    } finally {
      client.disconnect();
    }
    const before = responder.requests.length;
    const r = await runCli(['run', '-v', '-c', path.join(dir, 'g1', 'staplekeeper.yaml')], { env, cwd: dir });
    expect(r.code).toBe(5);
    expect(r.stdout).toMatch(/\[a\]\s+note: the fleet's entry for this certificate is unusable/);
    expect(r.stdout).toMatch(
      /\[c\]\s+note: the fleet's staple for this certificate is not usable here \(OCSP_MALFORMED/,
    );
    expect(responder.requests.length - before).toBe(5);
    expect(await allVerified('g1')).toBe(5);
    // every garbage entry was replaced by the verified staple
    for (const n of ['a', 'b', 'c', 'd']) {
      const key = `sk2:staple:${await keyOf(n)}`;
      expect((await redis.cli('TYPE', key)).trim()).toBe('hash');
      expect((await redis.cli('HGET', key, 'st')).trim()).toBe('good');
    }
    // and a second node now takes them without a request
    await node('g2', fleet);
    const again = await runCli(['run', '-c', path.join(dir, 'g2', 'staplekeeper.yaml')], { env, cwd: dir });
    expect(again.code).toBe(5);
    expect(responder.requests.length - before).toBe(5);
  }, 60_000);

  it('waits for the node holding the lease, and takes the lease over when its holder dies', async () => {
    const fleet = { redis: redis.url, prefix: 'sk3:' };
    const cfg = await node('w1', fleet);
    // a lease held by a node that died: it expires on its own (3 s here), then this run takes it
    await redis.cli('SET', `sk3:lease:${await keyOf('a')}`, 'dead-node token', 'PX', '3000');
    const before = responder.requests.length;
    const r = await runCli(['run', '-v', '-c', cfg], { env, cwd: dir, timeoutMs: 30_000 });
    expect(r.code).toBe(5);
    expect(responder.requests.length - before).toBe(5);
    expect(await allVerified('w1')).toBe(5);
  }, 60_000);

  it('with Redis stopped: fetch: true renews directly (usual exit count); fetch: false keeps its staples and says so', async () => {
    const down = { redis: `redis://127.0.0.1:${await freePort()}/0`, prefix: 'sk4:' };
    const before = responder.requests.length;
    const r = await runCli(['run', '-c', await node('d1', down)], { env, cwd: dir });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/fleet degraded: redis:\/\/127\.0\.0\.1:\d+\/0 cannot be reached .*; fetching directly/);
    expect(responder.requests.length - before).toBe(5);
    expect(await allVerified('d1')).toBe(5);

    // fetch: false with staples on disk that are due (--force): kept, said, no request, exit 0
    const cfg = await node('d1', { ...down, fetch: false });
    const kept = await runCli(['run', '--force', '-v', '-c', cfg], { env, cwd: dir });
    expect(kept.code).toBe(0);
    expect(kept.stdout).toMatch(
      /\[a\] unchanged: the fleet \(redis:\/\/127\.0\.0\.1:\d+\/0\) cannot be reached.*fetch is false: the staple on disk is kept/,
    );
    expect(responder.requests.length - before).toBe(5);
    expect(await allVerified('d1')).toBe(5);

    // fetch: false without staples: a failure with its code (exit 255), nothing written
    const empty = await runCli(['run', '-c', await node('d2', { ...down, fetch: false })], { env, cwd: dir });
    expect(empty.code).toBe(255);
    expect(empty.stderr).toMatch(/\[a\] error FLEET_UNAVAILABLE: /);
    expect(responder.requests.length - before).toBe(5);
  }, 60_000);

  it('a password in the URL is never printed', async () => {
    const secret = 'hunter2-secret';
    const r = await runCli(
      ['run', '-c', await node('p1', { redis: `redis://:${secret}@127.0.0.1:${await freePort()}/0`, prefix: 'sk5:' })],
      { env, cwd: dir },
    );
    expect(r.code).toBe(5);
    expect(r.stdout + r.stderr).not.toContain(secret);
  }, 60_000);

  it('a bad fleet section stops run with exit 253 and a located message', async () => {
    const cfg = await node('bad', { redis: 'redis://127.0.0.1:6379/x' });
    const r = await runCli(['run', '-c', cfg], { env, cwd: dir });
    expect(r.code).toBe(253);
    expect(r.stderr).toMatch(
      /error CONFIG_INVALID: .*staplekeeper\.yaml:\d+:\d+ fleet\.redis: the database in the Redis URL must be a number/,
    );
  });

  it('check says when the fleet is degraded (WARNING, fleet_up=0) and when it is up (fleet_up=1)', async () => {
    // n1 holds five fresh staples (first test)
    const up = await runCli(['check', '-c', path.join(dir, 'n1', 'staplekeeper.yaml')], { env, cwd: dir });
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(/^STAPLEKEEPER OK - 5 staples good.* \| .*fleet_up=1$/m);
    const cfg = await node('c1', { redis: `redis://:pw@127.0.0.1:${await freePort()}/0` });
    await runCli(['run', '-c', cfg], { env, cwd: dir });
    const down = await runCli(['check', '-c', cfg], { env, cwd: dir });
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(
      /^STAPLEKEEPER WARNING - 5 staples good.*; fleet degraded: redis:\/\/127\.0\.0\.1:\d+\/0 cannot be reached \(.*\) \| .*fleet_up=0$/m,
    );
    expect(down.stdout).not.toContain(':pw@');
    const json = await runCli(['check', '--json', '-c', cfg], { env, cwd: dir });
    const doc = JSON.parse(json.stdout) as { status: string; fleet: { up: boolean } };
    expect(doc.status).toBe('WARNING');
    expect(doc.fleet.up).toBe(false);
  }, 60_000);
});
