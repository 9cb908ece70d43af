/**
 * Stapling built into a Node.js TLS server, the way certmagic does it for Go
 * servers: {@link attachStapling} answers the server's `OCSPRequest` event
 * from an in-memory staple that the pipeline of `run` and the daemon keeps
 * fresh in the background.
 *
 * This module holds only what is particular to a TLS server: the handshake
 * cache (the DER served on `OCSPRequest`, one per certificate) and the timers.
 * Everything else is the pipeline's: each refresh is one
 * {@link processTarget} call (load → judge → decide → fetch → verify →
 * accept: the monotonic rule → store) on a {@link Target} that carries the
 * handshake's certificate in memory, against a staple store in memory (with a
 * disk copy under `cacheDir`); the first look at a disk copy is the
 * pipeline's judge step ({@link judgeTarget}); retries are planned by pipeline/backoff.ts's
 * {@link planNextAttempt} and wait on the injected clock's timers (io/clock.ts);
 * "may this be stapled now" is core/usability.ts's {@link usableAt}.
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
 * - A staple only gets better (core/compare.ts, applied by the pipeline): an
 *   answer that verifies but is older or shorter than the current valid
 *   staple (or carries answers for other certificates too) is not adopted; it
 *   is reported as `kept` and retried with the same backoff.
 * - Each certificate has its own staple, keyed by the SHA-256 of its DER:
 *   the event hands over the DER of the certificate in use, so SNI contexts
 *   and a certificate swapped with `server.setSecureContext()` work without
 *   configuration. A certificate that no handshake asked for since its last
 *   refresh is forgotten instead of refreshed (its cache file stays).
 */
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import type { Server as TlsServer } from 'node:tls';
import { type Certificate, loadCertificates, parseCertificate } from '../core/certs.js';
import { StapleError, toStapleError } from '../core/errors.js';
import { DEFAULT_POLICY } from '../core/policy.js';
import { usableAt } from '../core/usability.js';
import { assertGood } from '../core/verify.js';
import { systemClock } from '../io/clock.js';
import { createHttpTransport, type HttpTransport } from '../io/http.js';
import { createFileStore, type StapleStore } from '../io/store.js';
import { USER_AGENT } from '../version.js';
import { planNextAttempt, type BackoffShape } from '../pipeline/backoff.js';
import { IssuerResolver, pickLeaf } from '../pipeline/issuer.js';
import {
  summarize,
  type EngineContext,
  type StapleSummary,
  type Target,
  type TargetOutcome,
} from '../pipeline/context.js';
import { judgeTarget, stapleBytes, type TargetJudgement } from '../pipeline/judge.js';
import { processTarget } from '../pipeline/process.js';
import type { StaplingEvent, StaplingHandle, StaplingOptions, StaplingStatus } from './types.js';

export type { StaplingEvent, StaplingHandle, StaplingOptions, StaplingStatus } from './types.js';

/** What a handshake gets: the DER of a good staple and the facts {@link usableAt} checks at each handshake. */
interface Served {
  der: Buffer;
  summary: StapleSummary;
  status: 'good';
  thisUpdate: Date;
  nextUpdate: Date;
  usableUntil: Date;
}

interface Entry {
  key: string;
  cert: Certificate;
  /** Issuer candidates from the events or the bundle given to add() (the target's `bundle`: the same array). */
  candidates: Certificate[];
  /** What the pipeline works on: this certificate, in memory; its staple in the store at `staplePath`. */
  target: Target;
  /** The handshake cache. */
  served?: Served;
  /** The refresh point the pipeline gave for the staple in use (ms). */
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

/** The longest a handshake waits for the disk cache the first time a certificate is seen. */
const CACHE_WAIT_MS = 500;

function parseIssuers(list: Array<string | Buffer> | undefined): Certificate[] {
  const out: Certificate[] = [];
  for (const item of list ?? [])
    out.push(...loadCertificates(Buffer.isBuffer(item) ? item : Buffer.from(item), 'issuers option'));
  return out;
}

/**
 * The embedded stapler's staple store: every staple in memory (`staples`, by
 * path), with a copy on `disk` when there is a cache folder. A read that
 * memory cannot answer goes to the disk once something is there; a disk
 * write that fails is reported and does not undo the one in memory (the staple
 * is served all the same). Only OCSP responses are ever replaced on disk, and
 * the cache folder is created below its existing parent.
 */
function handshakeStore(
  staples: Map<string, Buffer>,
  disk: StapleStore | undefined,
  cacheDir: string | undefined,
  onDiskError: (path: string, error: StapleError) => void,
): StapleStore {
  return {
    async read(path) {
      const held = staples.get(path);
      if (held !== undefined || !disk) return held;
      const data = await disk.read(path);
      if (data !== undefined) staples.set(path, data);
      return data;
    },
    async write(path, data) {
      staples.set(path, Buffer.from(data));
      if (disk && cacheDir !== undefined) {
        try {
          await disk.write(path, data, { createBelow: dirname(resolve(cacheDir)) });
        } catch (err) {
          onDiskError(path, toStapleError(err));
        }
      }
      return { path, pruned: [] };
    },
  };
}

/**
 * Makes `server` staple OCSP responses. See the module comment for the
 * guarantees. Call it before `listen()` or at any time after; handshakes
 * before the first staple simply go without one.
 */
export function attachStapling(server: TlsServer, options: StaplingOptions = {}): StaplingHandle {
  const clock = options.clock ?? systemClock;
  const now = options.now ?? (() => clock.now());
  const ownTransport = options.transport
    ? undefined
    : createHttpTransport({ timeoutMs: options.timeoutMs ?? 10_000, userAgent: USER_AGENT });
  const transport = (options.transport ?? ownTransport) as HttpTransport;
  const skewMs = options.skewMs;
  const backoff: BackoffShape = {};
  if (options.backoff?.initialMs !== undefined) backoff.baseMs = options.backoff.initialMs;
  if (options.backoff?.maxMs !== undefined) backoff.maxMs = options.backoff.maxMs;
  if (options.backoff?.jitter !== undefined) backoff.jitter = options.backoff.jitter;
  const extraIssuers = parseIssuers(options.issuers);
  // For the handshake path: local sources only, so that finding an issuer never waits for a download.
  const localResolver = new IssuerResolver({ caDirs: options.caDirs ?? [] });
  const entries = new Map<string, Entry>();
  const staples = new Map<string, Buffer>();
  let closed = false;

  const emit = (e: StaplingEvent): void => {
    try {
      options.onEvent?.(e);
    } catch {
      // a throwing logger must not break stapling
    }
  };

  const store = handshakeStore(
    staples,
    options.cacheDir !== undefined ? (options.store ?? createFileStore()) : undefined,
    options.cacheDir,
    (path, error) => {
      const e = [...entries.values()].find((x) => x.target.staplePath === path);
      if (e) emit({ type: 'cache-error', key: e.key, subject: e.cert.subject, path, error });
    },
  );
  const ctx: EngineContext = {
    store,
    transport,
    resolver: new IssuerResolver({ caDirs: options.caDirs ?? [], transport }),
    now,
    policy: options.policy ?? DEFAULT_POLICY,
    // a certificate without a responder is an error to report, as it always was here
    strictOcsp: true,
    stapleName: 'the staple in use',
  };
  if (skewMs !== undefined) ctx.skewMs = skewMs;
  if (options.method) ctx.method = options.method;
  if (options.hash) ctx.hash = options.hash;

  /** The DER to staple now, or undefined: only good and current responses (checked at each handshake). */
  function servable(e: Entry, at: number): Buffer | undefined {
    const s = e.served;
    if (!s || !usableAt(s, new Date(at), { cert: e.cert, ...(skewMs !== undefined ? { skewMs } : {}) }))
      return undefined;
    return s.der;
  }

  /** Serves the staple the pipeline left in the store (described by `summary`), if it is good. */
  function serve(e: Entry, summary: StapleSummary | undefined): void {
    const data = summary?.status === 'good' ? staples.get(e.target.staplePath) : undefined;
    if (!summary || data === undefined) {
      e.served = undefined;
      return;
    }
    e.served = {
      der: stapleBytes(data, e.target.staplePath),
      summary,
      status: 'good',
      thisUpdate: new Date(summary.thisUpdate),
      nextUpdate: new Date(summary.nextUpdate),
      usableUntil: new Date(summary.usableUntil),
    };
  }

  function entryFor(certDer: Buffer, issuerDer: Buffer | null | undefined): Entry {
    const key = sha256(certDer);
    let e = entries.get(key);
    if (!e) {
      const cert = parseCertificate(certDer);
      const candidates: Certificate[] = [];
      e = {
        key,
        cert,
        candidates,
        target: {
          id: key,
          certPath: `the certificate "${cert.subject}" (SHA-256 ${key})`,
          staplePath: options.cacheDir !== undefined ? join(options.cacheDir, `${key}.ocsp`) : `${key}.ocsp`,
          certificate: { leaf: cert, bundle: candidates, chain: extraIssuers },
          ...(options.responderUrls && options.responderUrls.length > 0
            ? { responderUrls: options.responderUrls }
            : {}),
        },
        retryAt: 0,
        failures: 0,
        cacheChecked: options.cacheDir === undefined,
        used: false,
        pinned: false,
      };
      entries.set(key, e);
    }
    if (issuerDer && issuerDer.length > 0 && !e.candidates.some((c) => c.der.equals(issuerDer))) {
      try {
        e.candidates.push(parseCertificate(issuerDer));
      } catch {
        // not a certificate we can read: other sources remain
      }
    }
    return e;
  }

  /**
   * The first look at the disk copy: the pipeline's load and judge steps;
   * served when it verifies and says good. Never throws. A certificate whose
   * issuer cannot be found here is left to the refresh, which reports it (and,
   * on the handshake path, may download the issuer).
   */
  async function loadCache(e: Entry, resolver: IssuerResolver): Promise<void> {
    if (e.cacheChecked) return;
    let judged: TargetJudgement;
    try {
      judged = await judgeTarget(e.target, { ...ctx, resolver });
    } catch {
      return;
    }
    e.cacheChecked = true;
    const path = e.target.staplePath;
    try {
      if (judged.state.kind === 'missing') return;
      if (judged.state.kind === 'invalid') throw new StapleError(judged.state.error.code, judged.state.error.message);
      const v = judged.verified;
      if (!v) return;
      assertGood(v);
      if (e.served) return;
      serve(e, summarize(v));
      emit({ type: 'cache-loaded', key: e.key, subject: e.cert.subject, path, nextUpdate: v.nextUpdate });
    } catch (err) {
      emit({ type: 'cache-error', key: e.key, subject: e.cert.subject, path, error: toStapleError(err) });
    }
  }

  function schedule(e: Entry, at: number): void {
    e.cancelTimer?.();
    if (closed) return;
    e.timerAt = at;
    e.cancelTimer = clock.setTimer(
      at - now().getTime(),
      () => {
        e.cancelTimer = undefined;
        e.timerAt = undefined;
        onTimer(e);
      },
      { unref: true },
    );
  }

  function forget(e: Entry, reason: string): void {
    e.cancelTimer?.();
    entries.delete(e.key);
    staples.delete(e.target.staplePath);
    emit({ type: 'forgotten', key: e.key, subject: e.cert.subject, reason });
  }

  function onTimer(e: Entry): void {
    if (closed || entries.get(e.key) !== e) return;
    // No handshake asked for it since the last refresh: the server no longer uses this certificate.
    if (!e.pinned && !e.used && e.served) forget(e, 'no handshake asked for its staple since the last refresh');
    else void maintain(e, false);
  }

  /** Takes in what the pipeline did: the staple to serve, the next attempt, the events. */
  function settle(e: Entry, o: TargetOutcome): void {
    const at = now();
    // the pipeline judged the staple in the store (decision set): serve what it found there
    if (o.staple || o.decision) serve(e, o.staple);
    const expiresAt = e.served?.usableUntil;
    if (o.result === 'failed' || o.kept) {
      e.failures++;
      const code = o.error?.code ?? 'OCSP_STALE'; // a kept answer retries as the daemon retries it
      if (o.error) e.lastError = new StapleError(o.error.code, o.error.message);
      const plan = planNextAttempt(
        { ok: false, code, failures: e.failures, ...(expiresAt ? { expiresAt } : {}) },
        at,
        Math.random,
        backoff,
      );
      e.retryAt = plan.at.getTime();
      schedule(e, e.retryAt);
      if (o.revoked?.source === 'ocsp') {
        const ev: StaplingEvent = { type: 'revoked', key: e.key, subject: e.cert.subject };
        if (o.revoked.time) ev.revocationTime = new Date(o.revoked.time);
        if (o.revoked.reason) ev.revocationReason = o.revoked.reason;
        emit(ev);
      }
      const failure = { key: e.key, subject: e.cert.subject, failures: e.failures, retryAt: plan.at };
      if (o.kept) emit({ type: 'kept', ...failure, message: o.kept.message });
      else emit({ type: 'error', ...failure, error: e.lastError as StapleError });
      return;
    }
    const previous = e.refreshAt;
    e.refreshAt = o.nextRefresh ? Date.parse(o.nextRefresh) : at.getTime();
    // a Cache-Control deadline given with the staple in use is not forgotten by a later "keep"
    if (o.result !== 'updated' && previous !== undefined && previous < e.refreshAt) e.refreshAt = previous;
    e.failures = 0;
    e.lastError = undefined;
    e.retryAt = 0;
    // the refresh point itself, not jittered (as it always was here); at least a minute away
    const plan = planNextAttempt(
      { ok: true, refreshAt: new Date(e.refreshAt), ...(expiresAt ? { expiresAt } : {}) },
      at,
      Math.random,
      { ...backoff, jitter: 0 },
    );
    schedule(e, plan.at.getTime());
    if (o.result !== 'updated' || !o.staple) return;
    e.used = false;
    emit({
      type: 'fetched',
      key: e.key,
      subject: e.cert.subject,
      url: o.url ?? '',
      thisUpdate: new Date(o.staple.thisUpdate),
      nextUpdate: new Date(o.staple.nextUpdate),
      nextRefresh: plan.at,
    });
  }

  /**
   * One refresh through the pipeline: renewed when it decides so, when the
   * refresh point it gave last time has passed, or when forced. One at a time
   * per certificate. Never rejects.
   */
  function maintain(e: Entry, force: boolean): Promise<void> {
    if (e.busy) return e.busy;
    const run = async (): Promise<void> => {
      if (e.cert.notAfter.getTime() <= now().getTime()) {
        forget(e, `the certificate expired at ${e.cert.notAfter.toISOString()}`);
        return;
      }
      await loadCache(e, ctx.resolver);
      const due = e.refreshAt !== undefined && e.refreshAt <= now().getTime();
      const o = await processTarget(e.target, ctx, { force: force || due });
      if (!closed) settle(e, o);
    };
    e.busy = run().finally(() => {
      e.busy = undefined;
    });
    return e.busy;
  }

  /** A handshake found no usable staple, or one past its refresh point: refresh in the background unless backing off. */
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
      const loading = loadCache(e, localResolver);
      let answered = false;
      const answer = (): void => {
        if (answered) return;
        answered = true;
        callback(null, servable(e, now().getTime()) ?? null);
        kick(e, now().getTime());
      };
      const timer = setTimeout(answer, CACHE_WAIT_MS); // wall-clock on purpose: it bounds a real handshake
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
        if (e.served) {
          const { status, thisUpdate, nextUpdate, producedAt, usableUntil } = e.served.summary;
          s.staple = { status, thisUpdate, nextUpdate, producedAt, usableUntil };
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

/** The key of a certificate: the SHA-256 of its DER (hex), taken before it is parsed. */
function sha256(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}
