/**
 * The fleet on Redis (docs/fleet.md), with ioredis. Redis is only a channel:
 * it holds public, signed staples that every node verifies again before use.
 *
 * Keys (P is `fleet.prefix`, K a {@link FleetKey}):
 * - `P staple:K` — a hash: `der` (the DER OCSPResponse), `tu`/`nu`
 *   (thisUpdate/nextUpdate, ms since the epoch), `st` (status), `by` (the
 *   node that fetched it), `at` (when, ms). It expires at nextUpdate.
 * - `P lease:K` — the right to fetch K: a random token, `SET NX PX`,
 *   renewed every third of its lifetime while its holder works, deleted by
 *   its holder only (compare token, in Lua).
 * - channel `P published` — the key of every staple stored.
 *
 * Publication is one Lua script: store only when the stored thisUpdate is
 * older (or unreadable, or the one this node found unusable), set the
 * expiry, publish, release the lease — atomically, so that a node whose
 * lease expired while it worked never overwrites a newer staple.
 *
 * Faults: commands are not queued while Redis is unreachable
 * (`enableOfflineQueue: false`), each has a 2 s timeout, so every call
 * answers `'down'` at once; ioredis reconnects in the background (backoff up
 * to 2 s) and resubscribes, and the subscribers are told to reconcile.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis, type RedisOptions } from 'ioredis';
import type { FleetSettings } from '../config/types.js';
import type { Fleet, FleetHealth, FleetKey, FleetLookup, Lease, PublishedFacts } from './contract.js';
import { isFleetKey } from './key.js';

/** Options of {@link createRedisFleet}. */
export interface RedisFleetOptions {
  /** How long a node waits for another's publication before fetching itself (ms). */
  waitMs: number;
  /** Lease lifetime (ms, default 15 s); renewed every third of it. */
  leaseMs?: number;
  /** How long to wait for the first connection before answering 'down' (ms, default 2 s). */
  connectWaitMs?: number;
  /** Identifies this node in published entries (default host/PID). */
  nodeName?: string;
  /** Called when the store goes down or comes back (logs). */
  onHealth?: (up: boolean, detail: string) => void;
}

const COMMAND_TIMEOUT_MS = 2_000;
const LEASE_POLL_MS = 500;

const PUBLISH_LUA = `
local t = redis.call('TYPE', KEYS[1])['ok']
local write = false
if t ~= 'hash' then
  write = true
else
  local cur = redis.call('HGET', KEYS[1], 'tu')
  local c = tonumber(cur)
  local tu = tonumber(ARGV[2])
  if c == nil then
    write = true
  elseif ARGV[10] ~= '' and cur == ARGV[10] then
    write = true
  elseif tu > c then
    write = true
  elseif tu == c and tonumber(ARGV[3]) > (tonumber(redis.call('HGET', KEYS[1], 'nu')) or 0) then
    write = true
  end
end
if write then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'der', ARGV[1], 'tu', ARGV[2], 'nu', ARGV[3], 'st', ARGV[4], 'by', ARGV[5], 'at', ARGV[6])
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[8], ARGV[9])
end
if ARGV[7] ~= '' and redis.call('GET', KEYS[2]) == ARGV[7] then
  redis.call('DEL', KEYS[2])
end
if write then return 1 else return 0 end
`;

const RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

const RENEW_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

interface Scripts {
  skPublish(...args: Array<string | Buffer | number>): Promise<number>;
  skRelease(...args: Array<string | Buffer | number>): Promise<number>;
  skRenew(...args: Array<string | Buffer | number>): Promise<number>;
}

/** The Redis address without user name or password, for logs and pages. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return 'redis://(unparseable)';
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Connects (waiting at most `connectWaitMs`; Redis being down is not an error) and returns the fleet. */
export async function createRedisFleet(settings: FleetSettings, options: RedisFleetOptions): Promise<Fleet> {
  const fleet = new RedisFleet(settings, options);
  await fleet.connected(options.connectWaitMs ?? 2_000);
  return fleet;
}

class RedisFleet implements Fleet {
  readonly fetch: boolean;
  readonly waitMs: number;
  private readonly prefix: string;
  private readonly leaseMs: number;
  private readonly node: string;
  private readonly client: Redis & Scripts;
  private sub: Redis | undefined;
  private readonly channel: string;
  private readonly managed = new Map<FleetKey, Set<string>>();
  private readonly waiters = new Map<FleetKey, Set<() => void>>();
  private readonly listeners = new Set<{
    onStaple(ids: string[]): void;
    onReconnect(): void;
    onDown(error: string): void;
  }>();
  private readonly counts = { hits: 0, published: 0, direct: 0 };
  private up = false;
  private everUp = false;
  private since = new Date();
  private lastError: string | null = null;
  private closed = false;

  constructor(
    private readonly settings: FleetSettings,
    private readonly options: RedisFleetOptions,
  ) {
    this.fetch = settings.fetch;
    this.waitMs = options.waitMs;
    this.prefix = settings.prefix;
    this.leaseMs = options.leaseMs ?? 15_000;
    this.node = options.nodeName ?? `${hostname()}/${process.pid}`;
    this.channel = `${this.prefix}published`;
    this.client = new Redis(settings.redis, this.redisOptions(false)) as Redis & Scripts;
    this.client.defineCommand('skPublish', { numberOfKeys: 2, lua: PUBLISH_LUA });
    this.client.defineCommand('skRelease', { numberOfKeys: 1, lua: RELEASE_LUA });
    this.client.defineCommand('skRenew', { numberOfKeys: 1, lua: RENEW_LUA });
    this.client.on('ready', () => this.setUp(true, 'connected'));
    this.client.on('error', (e: unknown) => {
      this.lastError = errorText(e);
    });
    this.client.on('close', () => this.setUp(false, this.lastError ?? 'connection closed'));
  }

  private redisOptions(offlineQueue: boolean): RedisOptions {
    return {
      enableOfflineQueue: offlineQueue,
      maxRetriesPerRequest: offlineQueue ? null : 0,
      commandTimeout: offlineQueue ? undefined : COMMAND_TIMEOUT_MS,
      connectTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
      lazyConnect: false,
      connectionName: `staplekeeper:${this.node}`,
    };
  }

  private setUp(up: boolean, detail: string): void {
    if (this.closed || up === this.up) return;
    this.up = up;
    this.since = new Date();
    if (up) this.lastError = null;
    const reconnect = up && this.everUp;
    if (up) this.everUp = true;
    this.options.onHealth?.(up, detail);
    for (const l of this.listeners) {
      try {
        if (reconnect) l.onReconnect();
        else if (!up) l.onDown(detail);
      } catch {
        // a listener never breaks the client
      }
    }
    // waiters cannot hear publications while the store is down
    if (!up) for (const key of [...this.waiters.keys()]) this.wake(key);
  }

  /** Resolves once connected, or after `ms` (then the fleet is down and says so). */
  async connected(ms: number): Promise<void> {
    if (this.client.status === 'ready') return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      const client = this.client;
      function done(): void {
        clearTimeout(timer);
        client.off('ready', done);
        resolve();
      }
      client.once('ready', done);
    });
  }

  private k(kind: 'staple' | 'lease', key: FleetKey): string {
    return `${this.prefix}${kind}:${key}`;
  }

  private markError(e: unknown): void {
    this.lastError = errorText(e);
  }

  async lookup(key: FleetKey): Promise<FleetLookup> {
    if (!this.up) return { kind: 'down' };
    let h: Record<string, Buffer>;
    try {
      h = await this.client.hgetallBuffer(this.k('staple', key));
    } catch (e) {
      const text = errorText(e);
      if (/WRONGTYPE/.test(text)) return { kind: 'garbage', detail: 'the entry is not a hash', storedThisUpdate: '' };
      this.markError(e);
      return { kind: 'down' };
    }
    const fields = Object.keys(h);
    if (fields.length === 0) return { kind: 'none' };
    const text = (name: string): string => h[name]?.toString('latin1') ?? '';
    const storedThisUpdate = text('tu');
    const der = h.der;
    const tu = Number(storedThisUpdate);
    const nu = Number(text('nu'));
    if (!der || der.length === 0 || !Number.isFinite(tu) || !Number.isFinite(nu) || storedThisUpdate === '') {
      return { kind: 'garbage', detail: 'the entry lacks a staple or its times', storedThisUpdate };
    }
    return {
      kind: 'staple',
      staple: {
        der,
        thisUpdate: tu,
        nextUpdate: nu,
        status: text('st'),
        fetchedBy: text('by'),
        fetchedAt: Number(text('at')) || 0,
        storedThisUpdate,
      },
    };
  }

  async lease(key: FleetKey): Promise<Lease | 'busy' | 'down'> {
    if (!this.up) return 'down';
    const token = randomBytes(16).toString('hex');
    const leaseKey = this.k('lease', key);
    let ok: string | null;
    try {
      ok = await this.client.set(leaseKey, `${this.node} ${token}`, 'PX', this.leaseMs, 'NX');
    } catch (e) {
      this.markError(e);
      return 'down';
    }
    if (ok !== 'OK') return 'busy';
    const value = `${this.node} ${token}`;
    const renew = setInterval(
      () => {
        this.client.skRenew(leaseKey, value, this.leaseMs).catch(() => undefined);
      },
      Math.max(100, Math.floor(this.leaseMs / 3)),
    );
    renew.unref();
    let released = false;
    return {
      key,
      token: value,
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(renew);
        await this.client.skRelease(leaseKey, value).catch(() => undefined);
      },
    };
  }

  async leaseHeld(key: FleetKey): Promise<boolean | 'down'> {
    if (!this.up) return 'down';
    try {
      return (await this.client.exists(this.k('lease', key))) === 1;
    } catch (e) {
      this.markError(e);
      return 'down';
    }
  }

  async waitFor(key: FleetKey, ms: number): Promise<'published' | 'free' | 'timeout' | 'down'> {
    if (!this.up) return 'down';
    await this.ensureSubscriber();
    return await new Promise((resolve) => {
      let settled = false;
      const finish = (r: 'published' | 'free' | 'timeout' | 'down'): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        clearInterval(poll);
        const set = this.waiters.get(key);
        set?.delete(onPublished);
        if (set?.size === 0) this.waiters.delete(key);
        resolve(r);
      };
      const onPublished = (): void => finish(this.up ? 'published' : 'down');
      let set = this.waiters.get(key);
      if (!set) this.waiters.set(key, (set = new Set()));
      set.add(onPublished);
      const deadline = setTimeout(() => finish('timeout'), ms);
      // a holder that died leaves its lease to expire: then someone else may take it
      const poll = setInterval(() => {
        void this.leaseHeld(key).then((held) => {
          if (held === 'down') finish('down');
          else if (!held) finish('free');
        });
      }, LEASE_POLL_MS);
    });
  }

  private wake(key: FleetKey): void {
    for (const w of [...(this.waiters.get(key) ?? [])]) w();
  }

  private async ensureSubscriber(): Promise<void> {
    if (this.sub || this.closed) return;
    const sub = new Redis(this.settings.redis, this.redisOptions(true));
    this.sub = sub;
    sub.on('error', () => undefined); // the main client reports health
    sub.on('message', (channel: string, message: string) => {
      if (channel !== this.channel || !isFleetKey(message)) return;
      this.wake(message);
      const ids = this.managed.get(message);
      if (!ids || ids.size === 0) return;
      for (const l of this.listeners) {
        try {
          l.onStaple([...ids]);
        } catch {
          // a listener never breaks the client
        }
      }
    });
    // queued until connected; ioredis resubscribes after every reconnect
    const subscribed = sub.subscribe(this.channel).catch(() => undefined);
    await Promise.race([subscribed, new Promise((r) => setTimeout(r, COMMAND_TIMEOUT_MS).unref())]);
  }

  async publish(
    key: FleetKey,
    der: Buffer,
    facts: PublishedFacts,
    lease: Lease | undefined,
    replaceStored = '',
  ): Promise<'published' | 'kept-newer' | 'down'> {
    try {
      if (!this.up) return 'down';
      const n = await this.client.skPublish(
        this.k('staple', key),
        this.k('lease', key),
        der,
        String(facts.thisUpdate.getTime()),
        String(facts.nextUpdate.getTime()),
        facts.status,
        this.node,
        String(Date.now()),
        lease?.token ?? '',
        this.channel,
        key,
        replaceStored,
      );
      if (n === 1) this.counts.published++;
      return n === 1 ? 'published' : 'kept-newer';
    } catch (e) {
      this.markError(e);
      return 'down';
    } finally {
      await lease?.release();
    }
  }

  health(): FleetHealth {
    return {
      up: this.up,
      redis: redactRedisUrl(this.settings.redis),
      prefix: this.prefix,
      fetch: this.fetch,
      since: this.since.toISOString(),
      lastError: this.up ? null : (this.lastError ?? 'not connected yet'),
      ...this.counts,
    };
  }

  count(what: 'hits' | 'published' | 'direct'): void {
    this.counts[what]++;
  }

  manage(key: FleetKey, targetId: string): void {
    let ids = this.managed.get(key);
    if (!ids) this.managed.set(key, (ids = new Set()));
    ids.add(targetId);
  }

  subscribe(listener: { onStaple(ids: string[]): void; onReconnect(): void; onDown(error: string): void }): () => void {
    this.listeners.add(listener);
    void this.ensureSubscriber();
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const key of [...this.waiters.keys()]) this.wake(key);
    const quit = async (c: Redis | undefined): Promise<void> => {
      if (!c) return;
      try {
        await Promise.race([c.quit(), new Promise((r) => setTimeout(r, 500).unref())]);
      } catch {
        // already gone
      }
      c.disconnect();
    };
    await Promise.all([quit(this.client), quit(this.sub)]);
  }
}
