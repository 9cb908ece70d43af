/**
 * CRL watch (issue 13): the revocation state of certificates that have no
 * OCSP responder, from the CRL at their distribution point.
 *
 * Contract of {@link CrlWatch.check} (the engine's `CrlChecker`):
 * - never throws; a CRL that cannot be fetched, decoded or verified gives
 *   `unavailable` with a `CRL_*`/`HTTP_*` code — never `good`, never a false
 *   `revoked`. The one exception to "unavailable": a CRL verified earlier
 *   (cached on disk) that lists the certificate still says `revoked` when the
 *   distribution point is unreachable: a revocation is final.
 * - fetches through the given transport (the configuration's proxy, user
 *   agent, per-host limits; loopback-safe redirects, io/http.ts), with the
 *   `crl.max_size` body cap and the `crl.timeout` deadline;
 * - keeps the last good CRL of each URL on disk (`<dir>/<sha256(url)>.crl`
 *   and `.json` with its ETag and Last-Modified), written with the store's
 *   atomic writer (io/store.ts), and asks again with a conditional GET
 *   (`If-None-Match`, `If-Modified-Since`): an unchanged CRL is never
 *   downloaded twice, a 304 costs one small exchange;
 * - asks each URL at most once per {@link CrlWatchOptions.memoMs} (all the
 *   certificates of one `check` or one daemon batch share one request), and
 *   shares a request in flight.
 *
 * Memory: one decoded CRL per URL while it is memoised (its DER, nothing per
 * entry: core/crl.ts walks the list in place).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Certificate } from '../core/certs.js';
import { decodeCrl, verifyCrl, type DecodedCrl } from '../core/crl.js';
import { StapleError, toStapleError } from '../core/errors.js';
import type { HttpTransport } from '../io/http.js';
import type { StapleStore } from '../io/store.js';
import type { CrlVerdict } from '../pipeline/contracts.js';

/** The verdict of a CRL check: the pipeline's `CrlVerdict` (pipeline/contracts.ts). */
export type CrlWatchVerdict = CrlVerdict;

/** What a {@link CrlWatch} needs. */
export interface CrlWatchOptions {
  transport: HttpTransport;
  /** Writes the disk cache atomically (io/store.ts). */
  store: StapleStore;
  /** The folder of the disk cache (created on first write); undefined: no disk cache. */
  cacheDir?: string;
  /** The folder below which the cache folder may be created (the configuration's ocsp_folder). */
  createBelow?: string;
  /** Body cap of one CRL download. */
  maxBytes: number;
  /** Deadline of one CRL download. */
  timeoutMs: number;
  now: () => Date;
  /** How long one answer per URL is reused in memory (default 30 s). */
  memoMs?: number;
  /** Told about cache write problems (the check goes on without the cache). */
  onNotice?: (message: string) => void;
}

/** The cache metadata of one URL. */
interface CacheMeta {
  url: string;
  etag?: string;
  lastModified?: string;
  /** SHA-256 of the cached DER, hex. */
  sha256: string;
  fetchedAt: string;
}

/** One CRL as had for a URL. */
interface Had {
  crl: DecodedCrl;
  source: 'downloaded' | 'not-modified' | 'cached';
  /** Set when the distribution point could not be asked and the disk copy was used. */
  error?: StapleError;
}

/** The CRL disk cache folder inside `ocsp_folder`. */
export const CRL_CACHE_DIR_NAME = '.staplekeeper-crl';

/** The disk cache file stem of a URL. */
export function cacheStem(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 32);
}

/** See the module comment. */
export class CrlWatch {
  private readonly memo = new Map<string, { at: number; had: Promise<Had> }>();
  private readonly memoMs: number;

  constructor(private readonly opts: CrlWatchOptions) {
    this.memoMs = opts.memoMs ?? 30_000;
  }

  /** Forgets what was fetched (the daemon's next interval asks again). */
  reset(): void {
    this.memo.clear();
  }

  /** The verdict for `cert` from the first of `urls` that gives one. Never throws. */
  async check(
    cert: Certificate,
    issuer: Certificate,
    urls: readonly string[],
    candidates: readonly Certificate[] = [],
  ): Promise<CrlWatchVerdict> {
    let first: CrlWatchVerdict | undefined;
    for (const url of urls) {
      const v = await this.checkOne(cert, issuer, url, candidates);
      if (v.status !== 'unavailable') return v;
      first ??= v;
    }
    return (
      first ?? {
        status: 'unavailable',
        url: '',
        error: { code: 'CRL_MALFORMED', message: 'the certificate names no http(s) CRL distribution point' },
      }
    );
  }

  private async checkOne(
    cert: Certificate,
    issuer: Certificate,
    url: string,
    candidates: readonly Certificate[],
  ): Promise<CrlWatchVerdict> {
    let had: Had;
    try {
      had = await this.have(url);
    } catch (e) {
      const err = toStapleError(e);
      return { status: 'unavailable', url, error: { code: err.code, message: err.message } };
    }
    const now = this.opts.now();
    try {
      const r = verifyCrl(had.crl, { cert, issuer, candidates, url, now });
      const v: CrlWatchVerdict = { status: r.status, url, thisUpdate: r.thisUpdate.toISOString(), source: had.source };
      if (r.nextUpdate) v.nextUpdate = r.nextUpdate.toISOString();
      if (r.revocationDate) v.revocationTime = r.revocationDate.toISOString();
      if (r.reason) v.revocationReason = r.reason;
      if (had.error && r.status !== 'revoked') {
        // the distribution point could not be asked: a cached CRL that does not list the certificate proves nothing new
        return {
          status: 'unavailable',
          url,
          thisUpdate: v.thisUpdate,
          ...(v.nextUpdate ? { nextUpdate: v.nextUpdate } : {}),
          source: 'cached',
          error: { code: had.error.code, message: had.error.message },
        };
      }
      return v;
    } catch (e) {
      const err = toStapleError(e);
      if (had.error) {
        return {
          status: 'unavailable',
          url,
          source: 'cached',
          error: { code: had.error.code, message: had.error.message },
        };
      }
      // a stale CRL that still lists the certificate: revoked stays revoked
      if (err.code === 'CRL_STALE') {
        const stale = this.staleRevocation(had.crl, cert, issuer, url, candidates);
        if (stale) return stale;
      }
      return { status: 'unavailable', url, source: had.source, error: { code: err.code, message: err.message } };
    }
  }

  /** A revocation from a CRL that verifies except for its age. */
  private staleRevocation(
    crl: DecodedCrl,
    cert: Certificate,
    issuer: Certificate,
    url: string,
    candidates: readonly Certificate[],
  ): CrlWatchVerdict | undefined {
    if (!crl.nextUpdate) return undefined;
    try {
      // judged at a moment inside its window: every other rule still applies
      const r = verifyCrl(crl, { cert, issuer, candidates, url, now: new Date(crl.nextUpdate.getTime() - 1) });
      if (r.status !== 'revoked') return undefined;
      const v: CrlWatchVerdict = { status: 'revoked', url, thisUpdate: r.thisUpdate.toISOString(), source: 'cached' };
      v.nextUpdate = crl.nextUpdate.toISOString();
      if (r.revocationDate) v.revocationTime = r.revocationDate.toISOString();
      if (r.reason) v.revocationReason = r.reason;
      return v;
    } catch {
      return undefined;
    }
  }

  /** The CRL of `url`: memoised, else fetched (conditionally when cached). */
  private have(url: string): Promise<Had> {
    const t = Date.now(); // memo housekeeping only; verdicts use opts.now
    const m = this.memo.get(url);
    if (m && t - m.at < this.memoMs) return m.had;
    const had = this.fetch(url);
    this.memo.set(url, { at: t, had });
    had.catch(() => this.memo.delete(url));
    return had;
  }

  private paths(url: string): { der: string; meta: string } | undefined {
    const dir = this.opts.cacheDir;
    if (!dir) return undefined;
    const stem = cacheStem(url);
    return { der: join(dir, `${stem}.crl`), meta: join(dir, `${stem}.json`) };
  }

  private readCache(url: string): { meta: CacheMeta; der: Buffer } | undefined {
    const p = this.paths(url);
    if (!p) return undefined;
    try {
      const meta = JSON.parse(readFileSync(p.meta, 'utf8')) as CacheMeta;
      if (meta.url !== url || typeof meta.sha256 !== 'string') return undefined;
      const der = readFileSync(p.der);
      if (createHash('sha256').update(der).digest('hex') !== meta.sha256) return undefined;
      return { meta, der };
    } catch {
      return undefined;
    }
  }

  private async writeCache(url: string, der: Buffer, etag?: string, lastModified?: string): Promise<void> {
    const p = this.paths(url);
    if (!p) return;
    const meta: CacheMeta = {
      url,
      sha256: createHash('sha256').update(der).digest('hex'),
      fetchedAt: this.opts.now().toISOString(),
    };
    if (etag) meta.etag = etag;
    if (lastModified) meta.lastModified = lastModified;
    try {
      // the DER first: a meta file always describes bytes that are there (its hash is checked on read)
      // state files, not staples: the store's "only OCSP responses are replaced" rule does not apply
      const w = { overwriteNonOcsp: true, ...(this.opts.createBelow ? { createBelow: this.opts.createBelow } : {}) };
      await this.opts.store.write(p.der, der, w);
      await this.opts.store.write(p.meta, Buffer.from(`${JSON.stringify(meta)}\n`), w);
    } catch (e) {
      this.opts.onNotice?.(`cannot cache the CRL of ${url}: ${toStapleError(e).message}`);
    }
  }

  private async fetch(url: string): Promise<Had> {
    const cached = this.readCache(url);
    let cachedCrl: DecodedCrl | undefined;
    if (cached) {
      try {
        cachedCrl = decodeCrl(cached.der);
      } catch {
        cachedCrl = undefined;
      }
    }
    const headers: Record<string, string> = {
      accept: 'application/pkix-crl, application/x-pkcs7-crl;q=0.5, */*;q=0.1',
    };
    if (cachedCrl && cached?.meta.etag) headers['if-none-match'] = cached.meta.etag;
    if (cachedCrl && cached?.meta.lastModified) headers['if-modified-since'] = cached.meta.lastModified;
    let res;
    try {
      res = await this.opts.transport.send({
        method: 'GET',
        url,
        headers,
        maxBytes: this.opts.maxBytes,
        timeoutMs: this.opts.timeoutMs,
      });
    } catch (e) {
      const err = toStapleError(e);
      if (cachedCrl) return { crl: cachedCrl, source: 'cached', error: err };
      throw err;
    }
    if (res.status === 304 && cachedCrl) return { crl: cachedCrl, source: 'not-modified' };
    if (res.status !== 200) {
      const err = new StapleError('HTTP_STATUS', `${url}: HTTP ${res.status} for the CRL`);
      if (cachedCrl) return { crl: cachedCrl, source: 'cached', error: err };
      throw err;
    }
    const der = pemOrDer(res.body);
    const crl = decodeCrl(der); // CRL_MALFORMED: a truncated or foreign body is never cached
    if (cached && cached.der.equals(der)) return { crl, source: 'not-modified' };
    await this.writeCache(url, der, res.etag, res.lastModified);
    return { crl, source: 'downloaded' };
  }
}

/** A CRL body: DER, or PEM `X509 CRL` (some servers send that). */
function pemOrDer(body: Buffer): Buffer {
  const head = body.subarray(0, 64).toString('latin1');
  if (!head.includes('-----BEGIN X509 CRL-----')) return body;
  const text = body.toString('latin1');
  const m = /-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/.exec(text);
  if (!m) throw new StapleError('CRL_MALFORMED', 'malformed CRL: a PEM "X509 CRL" block without its end line');
  return Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64');
}
