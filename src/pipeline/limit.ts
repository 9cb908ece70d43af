/**
 * Bounded concurrency: a small semaphore, and a transport wrapper that limits
 * requests per responder host so that no single CA responder is hammered
 * (promise 5 of docs/ARCHITECTURE.md).
 */
import type { HttpTransport } from '../io/http.js';

/** A counting semaphore. A limit below 1 (or not a number) counts as 1, never as "block forever". */
export class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = Number.isFinite(limit) && limit >= 1 ? Math.floor(limit) : limit === Infinity ? Infinity : 1;
  }

  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** Wraps a transport so that at most `perHost` requests run at once per URL host. */
export function limitPerHost(transport: HttpTransport, perHost: number): HttpTransport {
  const sems = new Map<string, Semaphore>();
  return {
    send(req) {
      const host = hostOf(req.url);
      let s = sems.get(host);
      if (!s) {
        s = new Semaphore(perHost);
        sems.set(host, s);
      }
      return s.run(() => transport.send(req));
    },
    close: () => transport.close(),
  };
}

/** Wraps a transport so that at most `limit` requests run at once, whatever their host. */
export function limitOverall(transport: HttpTransport, limit: number): HttpTransport {
  const sem = new Semaphore(limit);
  return {
    send: (req) => sem.run(() => transport.send(req)),
    close: () => transport.close(),
  };
}

/**
 * Runs `fn` over `items` with at most `limit` at a time; `shouldStop` halts new starts.
 *
 * If `fn` throws, no new item is started, the items already running are
 * awaited, and then the first error is thrown: when this function settles,
 * nothing it started is still running (the caller may release the lock or
 * close the transport right after).
 */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
  shouldStop: () => boolean = () => false,
): Promise<void> {
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length && !shouldStop()) {
      const i = next++;
      try {
        await fn(items[i] as T, i);
      } catch (e) {
        if (!failed) {
          failed = true;
          firstError = e;
        }
      }
    }
  };
  const workers =
    Number.isFinite(limit) && limit >= 1
      ? Math.min(Math.floor(limit), items.length)
      : limit === Infinity
        ? items.length
        : 1;
  await Promise.all(Array.from({ length: Math.max(1, workers) }, worker));
  if (failed) throw firstError;
}
