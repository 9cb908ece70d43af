/**
 * Stapling built into a Node.js TLS server, the way certmagic does it for Go
 * servers: {@link attachStapling} answers the server's `OCSPRequest` event
 * from an in-memory staple that the same engine keeps fresh in the
 * background (fetch and verification of pipeline/responder.ts and core/verify.ts,
 * the refresh point of core/policy.ts).
 *
 * The promises (docs/ARCHITECTURE.md):
 * - A handshake never waits for the network. With no usable staple the
 *   handshake goes on without one and a fetch starts in the background. The
 *   only wait is a local disk read of the cache, the first time a certificate
 *   is seen, so that a restarted server staples at once.
 * - Only a response that verified and says `good` is ever stapled, and its
 *   validity window is checked again at each handshake (nextUpdate, capped by
 *   a delegated signer's expiry; thisUpdate not in the future).
 * - A failed refresh keeps the current staple, served while it is valid, and
 *   is retried with backoff: 1 min, doubling, at most 1 h (with ±10 % jitter,
 *   so that a fleet does not retry in step).
 * - A staple only gets better (core/compare.ts): an answer that verifies but
 *   is older or shorter than the current valid staple (or carries answers for
 *   other certificates too) is not adopted; it is reported as `kept` and
 *   retried with the same backoff. The disk copy is adopted on the same rule.
 * - Each certificate has its own staple, keyed by the SHA-256 of its DER:
 *   the event hands over the DER of the certificate in use, so SNI contexts
 *   and a certificate swapped with `server.setSecureContext()` work without
 *   configuration. A certificate that no handshake asked for since its last
 *   refresh is forgotten instead of refreshed (its cache file stays).
 */
import { createHash, randomInt } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import type { Server as TlsServer } from 'node:tls';
import { type Certificate, loadCertificates, parseCertificate } from '../core/certs.js';
import { StapleError, toStapleError } from '../core/errors.js';
import { cacheDeadline, DEFAULT_POLICY, refreshPoint, type RefreshPolicy } from '../core/policy.js';
import { compareStaples, keptMessage, rankOfVerified } from '../core/compare.js';
import type { CertIdHash } from '../core/request.js';
import { usableAt } from '../core/usability.js';
import type { Clock } from '../io/clock.js';
import { DEFAULT_SKEW_MS, assertGood, verifyResponse, type VerifiedResponse } from '../core/verify.js';
import { createHttpTransport, type HttpTransport } from '../io/http.js';
import { createFileStore, type StapleStore } from '../io/store.js';
import { USER_AGENT } from '../version.js';
import { fetchResponse, type MethodChoice } from '../pipeline/responder.js';
import { IssuerResolver, pickLeaf } from '../pipeline/issuer.js';
import { stapleBytes } from '../pipeline/judge.js';

/** Options of {@link attachStapling}. */
export interface StaplingOptions {
  /**
   * A folder for a disk copy of each staple (`<sha256 of the certificate>.ocsp`),
   * written atomically through the {@link StapleStore}; after a restart the
   * first handshake is stapled from it without waiting for a responder.
   */
  cacheDir?: string;
  /** Where the cache files live (default: the file store). */
  store?: StapleStore;
  /** HTTP transport (default: a new one, closed by `close()`). */
  transport?: HttpTransport;
  /** Whole-exchange timeout of the default transport (default 10 s). */
  timeoutMs?: number;
  /** When to refresh (default: halfway through the validity, as certmagic). */
  policy?: RefreshPolicy;
  /** Responder URLs to use instead of each certificate's AIA, tried in order. */
  responderUrls?: string[];
  /**
   * Issuer certificates (PEM text or DER) for certificates whose issuer the
   * server context does not carry. Node passes the issuer it found in the
   * context's chain (`cert` bundle or `ca`) with each event; the AIA
   * caIssuers URL is the last resort.
   */
  issuers?: Array<string | Buffer>;
  /** Folders of CA certificates searched for issuers. */
  caDirs?: string[];
  method?: MethodChoice;
  hash?: CertIdHash;
  /** Clock-skew tolerance (default 5 min). */
  skewMs?: number;
  /** Retry after failures: `initialMs` (1 min) doubling up to `maxMs` (1 h), ± `jitter` (0.1). */
  backoff?: { initialMs?: number; maxMs?: number; jitter?: number };
  /** The clock's time (only its `now` is used; timers are the system's). */
  clock?: Clock;
  /** The older form of `clock` (tests); used when both are given. */
  now?: () => Date;
  /** Told about fetches, failures, cache loads and forgotten certificates. */
  onEvent?: (event: StaplingEvent) => void;
}

/** Something worth logging. */
export type StaplingEvent =
  | {
      type: 'fetched';
      key: string;
      subject: string;
      url: string;
      thisUpdate: Date;
      nextUpdate: Date;
      nextRefresh: Date;
    }
  | { type: 'cache-loaded'; key: string; subject: string; path: string; nextUpdate: Date }
  | { type: 'cache-error'; key: string; subject: string; path: string; error: StapleError }
  | { type: 'error'; key: string; subject: string; error: StapleError; failures: number; retryAt: Date }
  /** The responder's verified answer was not better than the current staple, which is kept (core/compare.ts). */
  | { type: 'kept'; key: string; subject: string; message: string; failures: number; retryAt: Date }
  | { type: 'revoked'; key: string; subject: string; revocationTime?: Date; revocationReason?: string }
  | { type: 'forgotten'; key: string; subject: string; reason: string };

/** The state of one certificate, for logs and health endpoints. */
export interface StaplingStatus {
  /** SHA-256 of the certificate DER, hex. */
  key: string;
  subject: string;
  serialHex: string;
  /** True when a handshake now would get a staple. */
  servable: boolean;
  staple?: { status: string; thisUpdate: string; nextUpdate: string; producedAt: string; usableUntil: string };
  nextRefresh?: string;
  fetching: boolean;
  failures: number;
  lastError?: { code: string; message: string };
}

/** What {@link attachStapling} returns. */
export interface StaplingHandle {
  /** Stops every timer and detaches from the server (also done when the server emits `close`). */
  close(): Promise<void>;
  /** Fetches a new staple for every known certificate now, ignoring the refresh point and the backoff. */
  refresh(): Promise<void>;
  /** The state of each known certificate. */
  status(): StaplingStatus[];
  /** Resolves when no fetch or cache read is running. */
  idle(): Promise<void>;
  /**
   * Starts looking after a certificate before any handshake (PEM bundle or
   * DER; the issuer may follow the leaf in the bundle), so that the first
   * client already gets a staple. Such a certificate is never forgotten.
   * Resolves when its first staple is there or the first attempt failed.
   */
  add(certificate: string | Buffer): Promise<void>;
}

interface Entry {
  key: string;
  cert: Certificate;
  /** Issuer candidates from the event or the bundle given to add(). */
  candidates: Certificate[];
  issuer?: Certificate;
  staple?: VerifiedResponse;
  /** Refresh point of the current staple (ms). */
  refreshAt?: number;
  /** No fetch before this (backoff, ms). */
  retryAt: number;
  failures: number;
  lastError?: StapleError;
  /** When the pending timer fires (ms). */
  timerAt?: number;
  cancelTimer?: () => void;
  busy?: Promise<void>;
  cacheChecked: boolean;
  /** Asked for by a handshake since the last successful fetch. */
  used: boolean;
  /** Added with add(): never forgotten. */
  pinned: boolean;
}

const MINUTE = 60_000;
/** Never schedule a refresh sooner than this after a success (a responder with a tiny window must not make us spin). */
const MIN_REFRESH_DELAY = MINUTE;
/** The longest a handshake waits for the disk cache the first time a certificate is seen. */
const CACHE_WAIT_MS = 500;
/** setTimeout's limit; longer waits are chained. */
const MAX_TIMER = 2 ** 31 - 1;

function sha256(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/** A timer that does not keep the process alive, with chaining past ~24.8 days. */
function unrefTimer(ms: number, fn: () => void): () => void {
  let handle: NodeJS.Timeout;
  const arm = (left: number): void => {
    handle = setTimeout(
      () => (left > MAX_TIMER ? arm(left - MAX_TIMER) : fn()),
      Math.min(Math.max(0, left), MAX_TIMER),
    );
    handle.unref();
  };
  arm(ms);
  return () => clearTimeout(handle);
}

function parseIssuers(list: Array<string | Buffer> | undefined): Certificate[] {
  const out: Certificate[] = [];
  for (const item of list ?? [])
    out.push(...loadCertificates(Buffer.isBuffer(item) ? item : Buffer.from(item), 'issuers option'));
  return out;
}

/**
 * Makes `server` staple OCSP responses. See the module comment for the
 * guarantees. Call it before `listen()` or at any time after; handshakes
 * before the first staple simply go without one.
 */
export function attachStapling(server: TlsServer, options: StaplingOptions = {}): StaplingHandle {
  const clock = options.clock;
  const now = options.now ?? (clock ? () => clock.now() : () => new Date());
  const store = options.store ?? createFileStore();
  const ownTransport = options.transport
    ? undefined
    : createHttpTransport({ timeoutMs: options.timeoutMs ?? 10_000, userAgent: USER_AGENT });
  const transport = (options.transport ?? ownTransport) as HttpTransport;
  const policy = options.policy ?? DEFAULT_POLICY;
  const skewMs = options.skewMs ?? DEFAULT_SKEW_MS;
  const initialMs = options.backoff?.initialMs ?? MINUTE;
  const maxMs = options.backoff?.maxMs ?? 60 * MINUTE;
  const jitter = options.backoff?.jitter ?? 0.1;
  const extraIssuers = parseIssuers(options.issuers);
  const resolver = new IssuerResolver({ caDirs: options.caDirs ?? [], transport });
  // For the handshake path: local sources only, so that finding an issuer never waits for a download.
  const localResolver = new IssuerResolver({ caDirs: options.caDirs ?? [] });
  const entries = new Map<string, Entry>();
  let closed = false;

  const emit = (e: StaplingEvent): void => {
    try {
      options.onEvent?.(e);
    } catch {
      // a throwing logger must not break stapling
    }
  };

  const cachePath = (e: Entry): string | undefined =>
    options.cacheDir ? join(options.cacheDir, `${e.key}.ocsp`) : undefined;

  /** The DER to staple now, or undefined: only good and current responses (checked at each handshake). */
  function servable(e: Entry, at: number): Buffer | undefined {
    const s = e.staple;
    if (!s || !usableAt(s, new Date(at), { cert: e.cert, skewMs })) return undefined;
    return s.der;
  }

  function entryFor(certDer: Buffer, issuerDer: Buffer | null | undefined): Entry {
    const key = sha256(certDer);
    let e = entries.get(key);
    if (!e) {
      e = {
        key,
        cert: parseCertificate(certDer),
        candidates: [],
        retryAt: 0,
        failures: 0,
        cacheChecked: !options.cacheDir,
        used: false,
        pinned: false,
      };
      entries.set(key, e);
    }
    if (issuerDer && issuerDer.length > 0 && !e.issuer && !e.candidates.some((c) => c.der.equals(issuerDer))) {
      try {
        e.candidates.push(parseCertificate(issuerDer));
      } catch {
        // not a certificate we can read: other sources remain
      }
    }
    return e;
  }

  async function issuerOf(e: Entry, local: boolean): Promise<Certificate> {
    if (e.issuer) return e.issuer;
    const issuer = await (local ? localResolver : resolver).resolve(e.cert, {
      bundle: e.candidates,
      chain: extraIssuers,
    });
    e.issuer = issuer;
    return issuer;
  }

  function adopt(e: Entry, v: VerifiedResponse, cacheUntil?: Date): void {
    e.staple = v;
    const at = refreshPoint({ ...v, ...(cacheUntil ? { cacheUntil } : {}) }, e.cert, policy).getTime();
    e.refreshAt = at;
  }

  /** Reads and verifies the disk copy; adopts it when it is good and current. Never throws. */
  async function loadCache(e: Entry, local: boolean): Promise<void> {
    const path = cachePath(e);
    if (!path || e.cacheChecked) return;
    try {
      const issuer = await issuerOf(e, local);
      e.cacheChecked = true;
      const data = await store.read(path);
      if (data === undefined) return;
      const v = verifyResponse(stapleBytes(data, path), { cert: e.cert, issuer, now: now(), skewMs });
      assertGood(v);
      if (!e.staple || compareStaples(rankOfVerified(e.staple), rankOfVerified(v)).better) {
        adopt(e, v);
        emit({ type: 'cache-loaded', key: e.key, subject: e.cert.subject, path, nextUpdate: v.nextUpdate });
      }
    } catch (err) {
      if (local && isStapleError(err, 'NO_ISSUER')) return; // the background attempt may download the issuer
      e.cacheChecked = true;
      emit({ type: 'cache-error', key: e.key, subject: e.cert.subject, path, error: toStapleError(err) });
    }
  }

  function schedule(e: Entry, at: number): void {
    e.cancelTimer?.();
    if (closed) return;
    e.timerAt = at;
    e.cancelTimer = unrefTimer(at - now().getTime(), () => {
      e.cancelTimer = undefined;
      e.timerAt = undefined;
      onTimer(e);
    });
  }

  function onTimer(e: Entry): void {
    if (closed || entries.get(e.key) !== e) return;
    if (!e.pinned && !e.used && e.staple) {
      // No handshake asked for it since the last refresh: the server no longer uses this certificate.
      entries.delete(e.key);
      emit({
        type: 'forgotten',
        key: e.key,
        subject: e.cert.subject,
        reason: 'no handshake asked for its staple since the last refresh',
      });
      return;
    }
    void maintain(e, false);
  }

  function backoffMs(failures: number): number {
    const base = Math.min(initialMs * 2 ** Math.min(failures - 1, 30), maxMs);
    if (jitter <= 0) return base;
    const spread = Math.floor(base * jitter);
    return base + (spread > 0 ? randomInt(-spread, spread + 1) : 0);
  }

  /** Loads the cache, then fetches when due (or forced). One at a time per certificate. Never rejects. */
  function maintain(e: Entry, force: boolean): Promise<void> {
    if (e.busy) return e.busy;
    const run = async (): Promise<void> => {
      const t0 = now().getTime();
      if (e.cert.notAfter.getTime() <= t0) {
        e.cancelTimer?.();
        entries.delete(e.key);
        emit({
          type: 'forgotten',
          key: e.key,
          subject: e.cert.subject,
          reason: `the certificate expired at ${e.cert.notAfter.toISOString()}`,
        });
        return;
      }
      try {
        const issuer = await issuerOf(e, false);
        await loadCache(e, false);
        if (
          !force &&
          e.staple &&
          e.refreshAt !== undefined &&
          e.refreshAt > now().getTime() &&
          servable(e, now().getTime())
        ) {
          schedule(e, e.refreshAt);
          return;
        }
        const started = now();
        const fopts: Parameters<typeof fetchResponse>[0] = {
          cert: e.cert,
          issuer,
          urls: options.responderUrls && options.responderUrls.length > 0 ? options.responderUrls : e.cert.ocspUrls,
          transport,
          now,
          skewMs,
        };
        if (options.method) fopts.method = options.method;
        if (options.hash) fopts.hash = options.hash;
        const fetched = await fetchResponse(fopts);
        const v = fetched.response;
        if (v.status === 'revoked') {
          const ev: StaplingEvent = { type: 'revoked', key: e.key, subject: e.cert.subject };
          if (v.revocationTime) ev.revocationTime = v.revocationTime;
          if (v.revocationReason) ev.revocationReason = v.revocationReason;
          emit(ev);
        }
        assertGood(v, `the certificate "${e.cert.subject}"`);
        if (closed) return;
        if (e.staple && servable(e, now().getTime())) {
          const current = rankOfVerified(e.staple);
          const candidate = rankOfVerified(v);
          const verdict = compareStaples(current, candidate);
          if (!verdict.better) {
            // not an error: the current staple stays and is served; retried like a failure
            e.failures++;
            const retryAt = now().getTime() + backoffMs(e.failures);
            e.retryAt = retryAt;
            schedule(e, retryAt);
            emit({
              type: 'kept',
              key: e.key,
              subject: e.cert.subject,
              message: keptMessage(current, candidate, verdict.reason, 'the staple in use'),
              failures: e.failures,
              retryAt: new Date(retryAt),
            });
            return;
          }
        }
        adopt(
          e,
          v,
          fetched.maxAgeMs !== undefined ? cacheDeadline(started, fetched.maxAgeMs, v.usableUntil) : undefined,
        );
        e.failures = 0;
        e.lastError = undefined;
        e.retryAt = 0;
        e.used = false;
        const next = Math.max(e.refreshAt ?? 0, now().getTime() + MIN_REFRESH_DELAY);
        schedule(e, next);
        emit({
          type: 'fetched',
          key: e.key,
          subject: e.cert.subject,
          url: fetched.url,
          thisUpdate: v.thisUpdate,
          nextUpdate: v.nextUpdate,
          nextRefresh: new Date(next),
        });
        const path = cachePath(e);
        if (path) {
          try {
            // the cache folder is created (below its existing parent); only OCSP responses are replaced in it
            await store.write(path, v.der, { createBelow: dirname(resolve(path, '..')) });
          } catch (err) {
            emit({ type: 'cache-error', key: e.key, subject: e.cert.subject, path, error: toStapleError(err) });
          }
        }
      } catch (err) {
        if (closed) return;
        const error = toStapleError(err);
        e.failures++;
        e.lastError = error;
        const retryAt = now().getTime() + backoffMs(e.failures);
        e.retryAt = retryAt;
        schedule(e, retryAt);
        emit({
          type: 'error',
          key: e.key,
          subject: e.cert.subject,
          error,
          failures: e.failures,
          retryAt: new Date(retryAt),
        });
      }
    };
    e.busy = run().finally(() => {
      e.busy = undefined;
    });
    return e.busy;
  }

  /** A handshake found no usable staple, or one past its refresh point: fetch in the background unless backing off. */
  function kick(e: Entry, at: number): void {
    if (closed || e.busy || at < e.retryAt) return;
    void maintain(e, false);
  }

  const onOcspRequest = (
    certificate: Buffer,
    issuer: Buffer | null,
    callback: (err: Error | null, resp: Buffer | null) => void,
  ): void => {
    if (closed) {
      callback(null, null);
      return;
    }
    let e: Entry;
    try {
      e = entryFor(certificate, issuer);
    } catch {
      callback(null, null); // a certificate we cannot parse gets no staple, the handshake goes on
      return;
    }
    e.used = true;
    const at = now().getTime();
    const der = servable(e, at);
    if (der) {
      callback(null, der);
      if (e.refreshAt !== undefined && at >= e.refreshAt && (e.timerAt === undefined || e.timerAt > at)) kick(e, at);
      return;
    }
    if (!e.cacheChecked && !e.busy) {
      // First sight of this certificate: a local disk read (never the network), bounded in time.
      const loading = loadCache(e, true);
      let answered = false;
      const answer = (): void => {
        if (answered) return;
        answered = true;
        callback(null, servable(e, now().getTime()) ?? null);
        kick(e, now().getTime());
      };
      const timer = setTimeout(answer, CACHE_WAIT_MS);
      void loading.finally(() => {
        clearTimeout(timer);
        answer();
      });
      return;
    }
    callback(null, null);
    kick(e, at);
  };

  server.on('OCSPRequest', onOcspRequest);

  const handle: StaplingHandle = {
    async close() {
      if (closed) return;
      closed = true;
      server.off('OCSPRequest', onOcspRequest);
      server.off('close', onServerClose);
      for (const e of entries.values()) e.cancelTimer?.();
      await Promise.allSettled([...entries.values()].map((e) => e.busy));
      await ownTransport?.close();
    },
    async refresh() {
      await Promise.all(
        [...entries.values()].map(async (e) => {
          await e.busy;
          await maintain(e, true);
        }),
      );
    },
    status() {
      const at = now().getTime();
      return [...entries.values()].map((e) => {
        const s: StaplingStatus = {
          key: e.key,
          subject: e.cert.subject,
          serialHex: e.cert.serialHex,
          servable: servable(e, at) !== undefined,
          fetching: e.busy !== undefined,
          failures: e.failures,
        };
        if (e.staple) {
          s.staple = {
            status: e.staple.status,
            thisUpdate: e.staple.thisUpdate.toISOString(),
            nextUpdate: e.staple.nextUpdate.toISOString(),
            producedAt: e.staple.producedAt.toISOString(),
            usableUntil: e.staple.usableUntil.toISOString(),
          };
        }
        if (e.timerAt !== undefined) s.nextRefresh = new Date(e.timerAt).toISOString();
        if (e.lastError) s.lastError = { code: e.lastError.code, message: e.lastError.message };
        return s;
      });
    },
    async idle() {
      for (;;) {
        const busy = [...entries.values()].map((e) => e.busy).filter((b) => b !== undefined);
        if (busy.length === 0) return;
        await Promise.allSettled(busy);
      }
    },
    async add(certificate) {
      if (closed) throw new StapleError('BAD_ARGUMENTS', 'attachStapling: the handle is closed');
      const all = loadCertificates(
        Buffer.isBuffer(certificate) ? certificate : Buffer.from(certificate),
        'certificate',
      );
      const { leaf, rest } = pickLeaf(all);
      const e = entryFor(leaf.der, undefined);
      e.pinned = true;
      for (const c of rest) if (!e.candidates.some((x) => x.der.equals(c.der))) e.candidates.push(c);
      await maintain(e, false);
    },
  };

  function onServerClose(): void {
    void handle.close();
  }
  server.on('close', onServerClose);
  return handle;
}

function isStapleError(e: unknown, code: string): boolean {
  return e instanceof StapleError && e.code === code;
}
