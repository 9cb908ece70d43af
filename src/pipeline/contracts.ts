/**
 * The seams of the staple pipeline (pipeline/process.ts): every part it
 * talks to that is not pure rules, named here with its contract. An
 * implementation that keeps the contract can replace the one staplekeeper
 * ships (tests do; the fleet does for the source and the output).
 *
 * The pipeline, for one certificate: load (certificate and issuer,
 * pipeline/judge.ts) → judge (the staple on disk, pipeline/judge.ts) → decide
 * (core/policy.ts) → obtain (from a {@link StapleSource} — the fleet — then
 * the responder over the {@link HttpTransport}, pipeline/renew.ts) → accept
 * (verified and better than the staple on disk, core/compare.ts, once, in
 * pipeline/renew.ts) → deliver (the {@link StapleStore}, then a
 * {@link StapleOutput}; HAProxy push and hooks observe the outcome in batch/).
 *
 * Seams, and where each contract is written in full:
 *
 * | seam | type | contract |
 * | --- | --- | --- |
 * | store | {@link StapleStore}, {@link SyncReadableStore} | io/store.ts (module doc) |
 * | transport | {@link HttpTransport} | io/http.ts (module doc) |
 * | issuer resolver | {@link IssuerResolver} | pipeline/issuer.ts |
 * | clock | {@link Clock} (`EngineContext.now`) | io/clock.ts |
 * | source / output | {@link StapleSource}, {@link StapleOutput} | fleet/contract.ts |
 * | CRL checker | {@link CrlChecker} | below |
 *
 * Besides the seams, the context carries three optional objects that only
 * save work and never change an answer (each module doc says why): the
 * verdict cache (pipeline/verdict-cache.ts `VerdictCache`), the signature
 * verifier (pipeline/signature-verifier.ts `SignatureVerifier`: a memo of
 * checks and, optionally, the signature thread) and the pass memo
 * (pipeline/pass-memo.ts `PassMemo`). `run` and the daemon create them; a
 * library caller has none unless it passes them.
 */
import type { Certificate } from '../core/certs.js';
import type { ErrorCode } from '../core/errors.js';
import type { StapleStore } from '../io/store.js';

/**
 * The store: where staples are read and written.
 *
 * Contract (io/store.ts): `read` returns the bytes, undefined when there is
 * no file, and throws `FILE_UNREADABLE` for anything else. `write` replaces
 * the staple atomically and durably: after it returns the file holds the new
 * bytes; if it throws, it holds exactly the old ones (or still does not
 * exist); at no moment is the path missing or partial. It refuses to replace
 * a certificate, a key or (unless asked) any other non-OCSP file. Two writes
 * of the same path are not made concurrently by the pipeline: `run` holds
 * the run lock (batch/lock.ts) and the daemon processes one certificate once
 * at a time, which is the lock this seam relies on.
 */
export type { StapleStore } from '../io/store.js';

/**
 * The transport: HTTP to responders and caIssuers servers.
 *
 * Contract (io/http.ts): every call is bounded in time and body size,
 * follows only a few `http:`/`https:` redirects, and fails only with a
 * StapleError whose code starts with `HTTP_`. A transport may wrap another
 * (the daemon's per-host backoff, the signature checks started ahead in
 * pipeline/check-ahead.ts) as long as the answer is passed on untouched.
 */
export type { HttpTransport } from '../io/http.js';

/**
 * The issuer resolver: finds the certificate that issued a leaf.
 *
 * Contract (pipeline/issuer.ts): `resolve` returns a certificate whose
 * signature over the leaf verifies, or throws a StapleError
 * (`ISSUER_MISMATCH` for an explicit issuer that did not sign it, `NO_ISSUER`
 * naming every place searched); sources are tried in a fixed order (explicit
 * file, bundle, chain, root chain, CA folders, caIssuers). A failure
 * (unreadable folder, failed download) is never remembered; folder listings
 * are read again after `refresh()`.
 */
export type { IssuerResolver } from './issuer.js';

/**
 * The clock: the pipeline reads "now" only through the context
 * (`EngineContext.now`, a {@link Clock}'s `now`), never `Date.now()`, so
 * every decision can be replayed at a chosen time (tests, `inspect --at`).
 */
export type { Clock } from '../io/clock.js';

/**
 * A source asked before the responder, and an output told after a fetch
 * (today the fleet). Contract (fleet/contract.ts): nothing a source returns
 * is trusted — the pipeline verifies it like a responder's answer and takes
 * it only when better than the staple on disk; no method throws or blocks
 * past its bound; an output never replaces a staple with an older one.
 */
export type { StapleSource, StapleOutput } from '../fleet/contract.js';

/**
 * A store that can also read synchronously with the same contract as
 * `read` (undefined when missing, `FILE_UNREADABLE` otherwise). A staple
 * is a few KiB on a local disk: one synchronous read costs ~7 µs, the
 * asynchronous one ~50–90 µs of thread-pool round trips, which is most of a
 * 10,000-certificate check. Stores without it are read through `read`.
 */
export interface SyncReadableStore extends StapleStore {
  readSync(path: string): Buffer | undefined;
}

/**
 * What the pipeline needs from a CRL watcher (revocation/crl-watch.ts): the
 * verdict on one certificate. Contract: never throws; a CRL that cannot be
 * fetched or verified is `unavailable`, never `good` and never a false
 * `revoked` (a revocation seen on a CRL verified earlier stays `revoked`:
 * it is final). Full contract: revocation/crl-watch.ts.
 */
export interface CrlChecker {
  check(
    cert: Certificate,
    issuer: Certificate,
    urls: readonly string[],
    candidates?: readonly Certificate[],
  ): Promise<CrlVerdict>;
}

/** The verdict of a CRL check. */
export interface CrlVerdict {
  /** good: listed nowhere on a valid CRL; revoked: listed; unavailable: no valid CRL could be had. */
  status: 'good' | 'revoked' | 'unavailable';
  /** The distribution point the verdict comes from. */
  url: string;
  thisUpdate?: string;
  nextUpdate?: string;
  revocationTime?: string;
  revocationReason?: string;
  /** When unavailable: why (a stable code and a message). */
  error?: { code: ErrorCode; message: string };
  /** How the CRL was had: downloaded, confirmed unchanged (HTTP 304), or from the disk cache. */
  source?: 'downloaded' | 'not-modified' | 'cached';
}
