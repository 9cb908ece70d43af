import { describe, expect, it } from 'vitest';
import { Semaphore, forEachLimited, limitOverall, limitPerHost } from '../../src/pipeline/limit.js';
import type { HttpRequest, HttpResult, HttpTransport } from '../../src/io/http.js';
import { createFakeTransport } from '../../src/testing/index.js';

const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Counts how many calls run at once, overall and per key. */
function gauge() {
  let now = 0;
  let peak = 0;
  const perKey = new Map<string, { now: number; peak: number }>();
  return {
    enter(key = '') {
      now++;
      peak = Math.max(peak, now);
      const k = perKey.get(key) ?? { now: 0, peak: 0 };
      k.now++;
      k.peak = Math.max(k.peak, k.now);
      perKey.set(key, k);
    },
    leave(key = '') {
      now--;
      (perKey.get(key) as { now: number }).now--;
    },
    get peak() {
      return peak;
    },
    get now() {
      return now;
    },
    peakOf: (key: string) => perKey.get(key)?.peak ?? 0,
  };
}

describe('Semaphore', () => {
  it('never lets more than `limit` holders run at once, and runs everything', async () => {
    const sem = new Semaphore(3);
    const g = gauge();
    const done: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        sem.run(async () => {
          g.enter();
          await tick(i % 3);
          g.leave();
          done.push(i);
        }),
      ),
    );
    expect(g.peak).toBe(3);
    expect(done.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('hands slots to waiters in FIFO order', async () => {
    const sem = new Semaphore(1);
    const first = await sem.acquire();
    const order: string[] = [];
    const waiters = ['a', 'b', 'c'].map((n) => sem.acquire().then((rel) => (order.push(n), rel)));
    await tick();
    expect(order).toEqual([]); // all blocked behind `first`
    first();
    const relA = await waiters[0];
    expect(order).toEqual(['a']);
    relA?.();
    (await waiters[1])?.();
    (await waiters[2])?.();
    expect(order).toEqual(['a', 'b', 'c']);
  });

  it('ignores a second call of the same release function', async () => {
    const sem = new Semaphore(1);
    const rel = await sem.acquire();
    rel();
    rel(); // must not free a slot it no longer holds
    const a = await sem.acquire();
    let bGot = false;
    const b = sem.acquire().then((r) => ((bGot = true), r));
    await tick(5);
    expect(bGot).toBe(false);
    a();
    (await b)();
    expect(bGot).toBe(true);
  });

  it('releases the slot when the task throws', async () => {
    const sem = new Semaphore(1);
    await expect(sem.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    // the slot is free again: this would hang otherwise
    await expect(sem.run(async () => 42)).resolves.toBe(42);
  });

  it('treats a limit below 1 as 1 instead of blocking forever', async () => {
    const sem = new Semaphore(0);
    const g = gauge();
    await Promise.all(
      [1, 2, 3].map(() =>
        sem.run(async () => {
          g.enter();
          await tick(1);
          g.leave();
        }),
      ),
    );
    expect(g.peak).toBe(1);
  });
});

describe('limitPerHost', () => {
  function fakeTransport(g: ReturnType<typeof gauge>, delayMs = 5) {
    let closed = 0;
    const seen: string[] = [];
    const t: HttpTransport = {
      async send(req: HttpRequest): Promise<HttpResult> {
        const host = new URL(req.url).host;
        g.enter(host);
        seen.push(req.url);
        await tick(delayMs);
        g.leave(host);
        return { status: 200, body: Buffer.from(req.url), url: req.url };
      },
      async close() {
        closed++;
      },
    };
    return { t, seen, closed: () => closed };
  }

  it('limitOverall bounds requests across hosts, and both limits compose', async () => {
    const g = gauge();
    const { t, seen } = fakeTransport(g);
    const limited = limitOverall(limitPerHost(t, 2), 3);
    const urls = ['a', 'b', 'c'].flatMap((h) => Array.from({ length: 5 }, (_, i) => `http://${h}.example/${i}`));
    const results = await Promise.all(urls.map((url) => limited.send({ method: 'GET', url })));
    expect(results.map((r) => r.body.toString())).toEqual(urls);
    expect(seen).toHaveLength(15);
    expect(g.peak).toBe(3);
    for (const h of ['a', 'b', 'c']) expect(g.peakOf(`${h}.example`)).toBeLessThanOrEqual(2);
  });

  it('bounds requests per host but not across hosts', async () => {
    const g = gauge();
    const { t, seen } = fakeTransport(g);
    const limited = limitPerHost(t, 2);
    const urls = [
      ...Array.from({ length: 6 }, (_, i) => `http://a.example/${i}`),
      ...Array.from({ length: 6 }, (_, i) => `http://b.example:8080/${i}`),
    ];
    const results = await Promise.all(urls.map((url) => limited.send({ method: 'GET', url })));
    expect(results.map((r) => r.body.toString())).toEqual(urls); // each caller gets its own answer
    expect(seen).toHaveLength(12);
    expect(g.peakOf('a.example')).toBe(2);
    expect(g.peakOf('b.example:8080')).toBe(2);
    expect(g.peak).toBe(4); // two hosts ran side by side
  });

  it('treats different ports of one name as different hosts', async () => {
    const g = gauge();
    const { t } = fakeTransport(g);
    const limited = limitPerHost(t, 1);
    await Promise.all(
      ['http://h:1/x', 'http://h:2/x', 'http://h:1/y', 'http://h:2/y'].map((url) =>
        limited.send({ method: 'GET', url }),
      ),
    );
    expect(g.peakOf('h:1')).toBe(1);
    expect(g.peakOf('h:2')).toBe(1);
    expect(g.peak).toBe(2);
  });

  it('frees the slot when a request fails and passes close() through', async () => {
    const inner = createFakeTransport(() => {
      if (inner.requests.length === 1) throw new Error('refused');
      return {};
    });
    const limited = limitPerHost(inner, 1);
    await expect(limited.send({ method: 'GET', url: 'http://x/' })).rejects.toThrow('refused');
    await expect(limited.send({ method: 'GET', url: 'http://x/' })).resolves.toMatchObject({ status: 200 });
    await limited.close();
    expect(inner.closed).toBe(true);
  });
});

describe('forEachLimited', () => {
  it('visits every item once with at most `limit` at a time', async () => {
    const g = gauge();
    const items = Array.from({ length: 25 }, (_, i) => i * 10);
    const seen: Array<[number, number]> = [];
    await forEachLimited(items, 4, async (item, index) => {
      g.enter();
      await tick(index % 4);
      seen.push([item, index]);
      g.leave();
    });
    expect(g.peak).toBe(4);
    expect(seen.sort((a, b) => a[1] - b[1])).toEqual(items.map((v, i) => [v, i]));
  });

  it('handles an empty list and a limit larger than the list', async () => {
    let calls = 0;
    await forEachLimited([], 8, async () => void calls++);
    expect(calls).toBe(0);
    const g = gauge();
    await forEachLimited([1, 2], 8, async () => {
      g.enter();
      await tick(2);
      g.leave();
    });
    expect(g.peak).toBe(2);
  });

  it('starts nothing new once shouldStop() is true, but lets running items finish', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    let stop = false;
    await forEachLimited(
      Array.from({ length: 20 }, (_, i) => i),
      3,
      async (i) => {
        started.push(i);
        await tick(5);
        if (i === 4) stop = true;
        finished.push(i);
      },
      () => stop,
    );
    // items 0..2 run, then 3,4,5 start as slots free; after 4 finishes nothing new starts
    expect(started.length).toBeLessThan(9);
    expect(started).toContain(4);
    expect(finished.sort((a, b) => a - b)).toEqual([...started].sort((a, b) => a - b));
  });

  it('shouldStop() true from the start runs nothing', async () => {
    let calls = 0;
    await forEachLimited(
      [1, 2, 3],
      2,
      async () => void calls++,
      () => true,
    );
    expect(calls).toBe(0);
  });

  it('on a failure, starts nothing new, waits for running items, then rejects with the first error', async () => {
    const started: number[] = [];
    let running = 0;
    let runningAtReject = -1;
    const p = forEachLimited(
      Array.from({ length: 10 }, (_, i) => i),
      3,
      async (i) => {
        started.push(i);
        running++;
        try {
          if (i === 0) throw new Error('first');
          await tick(20);
          if (i === 1) throw new Error('second');
        } finally {
          running--;
        }
      },
    );
    await p.catch(() => (runningAtReject = running));
    await expect(p).rejects.toThrow('first');
    expect(runningAtReject).toBe(0); // nothing still running behind the caller's back
    expect(started).toEqual([0, 1, 2]); // no new item after the failure
  });
});
