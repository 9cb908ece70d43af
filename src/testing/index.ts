/**
 * Test doubles for the library's seams, for your tests and ours: a staple
 * store in memory and an HTTP transport that answers from a function. Both
 * keep the contracts of the real ones (io/store.ts, io/http.ts) that the
 * engine relies on.
 *
 * ```ts
 * import { runOnce, testing } from 'staplekeeper';
 * const store = testing.createMemoryStore();
 * const transport = testing.createFakeTransport(() => ({ status: 503 }));
 * await runOnce(config, { store, transport });
 * ```
 */
import { resolve } from 'node:path';
import type { HttpRequest, HttpResult, HttpTransport } from '../io/http.js';
import { backupPathFor, type StapleStore, type WriteOptions, type WriteResult } from '../io/store.js';

/** A {@link StapleStore} in memory, with its files to look at. */
export interface MemoryStore extends StapleStore {
  readSync(path: string): Buffer | undefined;
  /** Every file by absolute path, backups included. */
  readonly files: Map<string, Buffer>;
  /** How many writes there were (backups not counted). */
  readonly writes: number;
}

/**
 * A store in memory. Paths are made absolute (as the file store does);
 * reads return copies, so a caller cannot change what is stored; backups are
 * named as the file store names them, and `backupKeep` prunes the oldest.
 */
export function createMemoryStore(initial: Iterable<[string, Buffer]> = []): MemoryStore {
  const files = new Map<string, Buffer>();
  for (const [p, data] of initial) files.set(resolve(p), Buffer.from(data));
  let writes = 0;
  const readSync = (path: string): Buffer | undefined => {
    const data = files.get(resolve(path));
    return data === undefined ? undefined : Buffer.from(data);
  };
  return {
    files,
    get writes() {
      return writes;
    },
    readSync,
    read: async (path) => readSync(path),
    async write(path: string, data: Buffer, options: WriteOptions = {}): Promise<WriteResult> {
      const target = resolve(path);
      files.set(target, Buffer.from(data));
      writes++;
      const result: WriteResult = { path: target, pruned: [] };
      if (options.backup) {
        const backupPath = backupPathFor(target, options.now ?? new Date());
        files.set(backupPath, Buffer.from(data));
        result.backupPath = backupPath;
        if (options.backupKeep !== undefined) {
          const mine = [...files.keys()].filter((k) => /-\d{8}-\d{6}$/.test(k) && k.startsWith(`${target}-`)).sort();
          for (const old of mine.slice(0, Math.max(0, mine.length - options.backupKeep))) {
            files.delete(old);
            result.pruned.push(old);
          }
        }
      }
      return result;
    },
  };
}

/** What a fake transport's handler may answer: a full result, or only what matters (status 200, empty body by default). */
export type FakeAnswer = Partial<HttpResult>;

/** An {@link HttpTransport} that answers from a function, and remembers what it was asked. */
export interface FakeTransport extends HttpTransport {
  /** Every request, in order. */
  readonly requests: HttpRequest[];
  /** True once `close()` was called. */
  readonly closed: boolean;
}

/**
 * A transport that never touches the network: `answer` is called for each
 * request and may return a result or throw (a `StapleError` with an
 * `HTTP_*` code is what the real one throws for network failures). Missing
 * fields default to status 200, an empty body and the request's URL.
 */
export function createFakeTransport(answer: (req: HttpRequest) => FakeAnswer | Promise<FakeAnswer>): FakeTransport {
  const requests: HttpRequest[] = [];
  let closed = false;
  return {
    requests,
    get closed() {
      return closed;
    },
    async send(req) {
      requests.push(req);
      const a = await answer(req);
      const result: HttpResult = { status: a.status ?? 200, body: a.body ?? Buffer.alloc(0), url: a.url ?? req.url };
      if (a.contentType !== undefined) result.contentType = a.contentType;
      if (a.maxAgeMs !== undefined) result.maxAgeMs = a.maxAgeMs;
      return result;
    },
    async close() {
      closed = true;
    },
  };
}
