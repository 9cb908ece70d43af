/**
 * The Redis fleet store (src/fleet/redis.ts) against a real `redis-server`:
 * leases (NX, token-checked release, renewal while held, expiry), the
 * compare-and-set publication (a holder whose lease expired never overwrites
 * a newer staple), garbage, waiting for publications, and answers while
 * Redis is down and after it comes back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fleet, Lease } from '../../src/fleet/contract.js';
import { createRedisFleet } from '../../src/fleet/redis.js';
import { skipWithoutRedis, startRedis, type TestRedis } from '../helpers/redis.js';

const KEY = `sha256:${'a'.repeat(64)}:${'b'.repeat(64)}:01`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const facts = (tu: number, nu = tu + 86_400_000) => ({
  thisUpdate: new Date(tu),
  nextUpdate: new Date(nu),
  status: 'good',
});

describe.skipIf(skipWithoutRedis())('the Redis fleet store', () => {
  let redis: TestRedis;
  const fleets: Fleet[] = [];
  const open = async (prefix: string, opts: { leaseMs?: number; waitMs?: number } = {}): Promise<Fleet> => {
    const f = await createRedisFleet(
      { redis: redis.url, prefix, fetch: true },
      { waitMs: opts.waitMs ?? 5_000, ...(opts.leaseMs ? { leaseMs: opts.leaseMs } : {}) },
    );
    fleets.push(f);
    return f;
  };

  beforeAll(async () => {
    redis = await startRedis();
  }, 30_000);

  afterAll(async () => {
    for (const f of fleets) await f.close();
    await redis?.stop();
  });

  it('one lease at a time; only its holder releases it; it is renewed while held', async () => {
    const a = await open('l1:', { leaseMs: 600 });
    const b = await open('l1:', { leaseMs: 600 });
    const lease = (await a.lease(KEY)) as Lease;
    expect(typeof lease).toBe('object');
    expect(await b.lease(KEY)).toBe('busy');
    await sleep(1_500); // longer than the lease: renewed every 200 ms
    expect(await b.lease(KEY)).toBe('busy');
    await lease.release();
    expect(await b.leaseHeld(KEY)).toBe(false);
    const second = await b.lease(KEY);
    expect(typeof second).toBe('object');
    // the first holder's late release does not free the second holder's lease
    await lease.release();
    expect(await a.leaseHeld(KEY)).toBe(true);
    await (second as Lease).release();
  });

  it('a lease not renewed (its holder died) expires', async () => {
    await redis.cli('SET', `l2:lease:${KEY}`, 'dead 0', 'PX', '300');
    const a = await open('l2:');
    expect(await a.lease(KEY)).toBe('busy');
    await sleep(400);
    const l = await a.lease(KEY);
    expect(typeof l).toBe('object');
    await (l as Lease).release();
  });

  it('publication is a compare-and-set on thisUpdate: a late, older staple never replaces a newer one', async () => {
    const a = await open('p1:');
    const b = await open('p1:');
    const t = Date.now();
    const slowLease = (await a.lease(KEY)) as Lease;
    expect(await a.publish(KEY, Buffer.from('newer'), facts(t + 1_000), undefined)).toBe('published');
    // the slow holder publishes an older staple afterwards, with its (stale) lease
    expect(await a.publish(KEY, Buffer.from('older'), facts(t), slowLease)).toBe('kept-newer');
    const found = await b.lookup(KEY);
    expect(found.kind).toBe('staple');
    if (found.kind === 'staple') {
      expect(found.staple.der.toString()).toBe('newer');
      expect(found.staple.thisUpdate).toBe(t + 1_000);
      expect(found.staple.status).toBe('good');
      expect(found.staple.fetchedBy).toMatch(/\/\d+$/);
    }
    // its lease was released all the same
    expect(await b.leaseHeld(KEY)).toBe(false);
    // same thisUpdate, later nextUpdate: replaces
    expect(await b.publish(KEY, Buffer.from('longer'), facts(t + 1_000, t + 2 * 86_400_000), undefined)).toBe(
      'published',
    );
    // the entry expires at nextUpdate
    const ttl = Number(await redis.cli('PTTL', `p1:staple:${KEY}`));
    expect(Math.abs(ttl - (t + 2 * 86_400_000 - Date.now()))).toBeLessThan(5_000);
  });

  it('garbage: a wrong type or a hash without a staple is reported, and replaced by the next publication', async () => {
    const a = await open('g1:');
    await redis.cli('SET', `g1:staple:${KEY}`, 'garbage');
    expect(await a.lookup(KEY)).toEqual({ kind: 'garbage', detail: 'the entry is not a hash', storedThisUpdate: '' });
    expect(await a.publish(KEY, Buffer.from('x'), facts(Date.now()), undefined)).toBe('published');
    await redis.cli('DEL', `g1:staple:${KEY}`);
    await redis.cli('HSET', `g1:staple:${KEY}`, 'tu', '99999999999999', 'nu', '99999999999999');
    const g = await a.lookup(KEY);
    expect(g.kind).toBe('garbage');
    // a future thisUpdate would block every publication: naming the unusable entry replaces it
    const t = Date.now();
    expect(await a.publish(KEY, Buffer.from('y'), facts(t), undefined)).toBe('kept-newer');
    expect(await a.publish(KEY, Buffer.from('y'), facts(t), undefined, '99999999999999')).toBe('published');
    const now = await a.lookup(KEY);
    expect(now.kind === 'staple' && now.staple.der.toString()).toBe('y');
  });

  it('waitFor: a publication wakes the waiter; a vanished lease says free; otherwise a timeout', async () => {
    const a = await open('w1:');
    const b = await open('w1:');
    const lease = (await a.lease(KEY)) as Lease;
    const waiting = b.waitFor(KEY, 5_000);
    await sleep(200);
    await a.publish(KEY, Buffer.from('z'), facts(Date.now()), lease);
    expect(await waiting).toBe('published');
    const l2 = (await a.lease(KEY)) as Lease;
    const w2 = b.waitFor(KEY, 5_000);
    await sleep(100);
    await l2.release();
    expect(await w2).toBe('free');
    const l3 = (await a.lease(KEY)) as Lease;
    expect(await b.waitFor(KEY, 300)).toBe('timeout');
    await l3.release();
  });

  it('answers "down" at once while Redis is down, and works again after a restart', async () => {
    const a = await open('d1:');
    await redis.kill();
    await sleep(300);
    const t0 = Date.now();
    expect(await a.lookup(KEY)).toEqual({ kind: 'down' });
    expect(await a.lease(KEY)).toBe('down');
    expect(await a.publish(KEY, Buffer.from('q'), facts(1), undefined)).toBe('down');
    expect(Date.now() - t0).toBeLessThan(2_500);
    expect(a.health().up).toBe(false);
    expect(a.health().lastError).not.toBeNull();
    await redis.start();
    const end = Date.now() + 10_000;
    while (!a.health().up && Date.now() < end) await sleep(50);
    expect(a.health().up).toBe(true);
    expect(await a.lookup(KEY)).toEqual({ kind: 'none' });
  }, 30_000);
});
