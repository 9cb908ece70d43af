/**
 * Fetching and verifying one OCSP response (RFC 6960 §4.1, RFC 5019 §5).
 *
 * GET per RFC 5019 §5 when `{url}/{urlencode(base64(DER))}` is at most 255
 * bytes, else POST; when one method fails at the transport level, the other
 * is tried (some responders handle only one). Each AIA URL is tried in
 * order until one gives a response that verifies; at most
 * {@link MAX_URLS_PER_CERT} distinct URLs per certificate (the rest are
 * ignored, with a notice), and no URL is started once the certificate's
 * overall deadline ({@link FetchOptions.deadlineMs}) has passed.
 */
import type { Certificate } from '../core/certs.js';
import { StapleError, toStapleError, type ErrorCode } from '../core/errors.js';
import type { SignatureMemo } from '../core/signature.js';
import { buildRequest, computeCertId, type CertIdHash } from '../core/request.js';
import { decodeResponse } from '../core/response.js';
import { verifyResponse, type VerifiedResponse } from '../core/verify.js';
import { assertHttpUrl, type HttpTransport } from '../io/http.js';

/** Request methods: `auto` picks GET for short URLs and falls back to the other. */
export type MethodChoice = 'auto' | 'get' | 'post';

/** Options for {@link fetchResponse}. */
export interface FetchOptions {
  cert: Certificate;
  issuer: Certificate;
  /** Responder URLs to try in order (the AIA URLs or an override). */
  urls: string[];
  transport: HttpTransport;
  now: () => Date;
  method?: MethodChoice;
  hash?: CertIdHash;
  /** Send a nonce and require it back. */
  nonce?: boolean;
  skewMs?: number;
  /** Signature checks made before (core/signature.ts); the answer is the same without. */
  signatures?: SignatureMemo;
  /** Called for notices (fallbacks, warnings). */
  onNotice?: (message: string) => void;
  /**
   * Overall time for this certificate (default {@link DEFAULT_FETCH_DEADLINE_MS}):
   * once it has passed, the remaining URLs are not tried.
   */
  deadlineMs?: number;
  /** Monotonic milliseconds for the deadline (tests); default performance.now. */
  monotonic?: () => number;
}

/** Distinct responder URLs tried per certificate; an AIA listing more has the rest ignored. */
export const MAX_URLS_PER_CERT = 4;

/** The default overall deadline per certificate: 2 × the default HTTP timeout. */
export const DEFAULT_FETCH_DEADLINE_MS = 20_000;

/** A verified response and where it came from. */
export interface FetchResult {
  response: VerifiedResponse;
  url: string;
  method: 'GET' | 'POST';
  /** Cache-Control max-age from the responder, in ms. */
  maxAgeMs?: number;
}

/** The longest GET URL RFC 5019 §5 allows. */
export const MAX_GET_URL = 255;

/** Builds the RFC 5019 GET URL for a request. */
export function getUrlFor(base: string, der: Buffer): string {
  const path = encodeURIComponent(der.toString('base64'));
  return base.endsWith('/') ? `${base}${path}` : `${base}/${path}`;
}

/** Failures after which the other HTTP method is worth a try. */
const FALLBACK_CODES = new Set<ErrorCode>(['HTTP_STATUS', 'HTTP_NETWORK', 'OCSP_MALFORMED', 'OCSP_MALFORMED_REQUEST']);

/**
 * Fetches a response for `cert`, verifies it against `issuer`, and returns it.
 * The status may be good, revoked or unknown; the caller decides what to store.
 * Throws the first URL's error when no URL gives a verifiable response.
 */
export async function fetchResponse(opts: FetchOptions): Promise<FetchResult> {
  if (opts.urls.length === 0) {
    throw new StapleError(
      'NO_OCSP_URL',
      `the certificate "${opts.cert.subject}" names no OCSP responder (no OCSP URL in its Authority Information Access)`,
    );
  }
  const certId = computeCertId(opts.cert, opts.issuer, opts.hash ?? 'sha1');
  const distinct = [...new Set(opts.urls)];
  const urls = distinct.slice(0, MAX_URLS_PER_CERT);
  if (distinct.length > urls.length) {
    opts.onNotice?.(
      `the certificate lists ${distinct.length} responder URLs; only the first ${MAX_URLS_PER_CERT} are tried, ${distinct.length - urls.length} ignored`,
    );
  }
  const clock = opts.monotonic ?? (() => performance.now());
  const deadlineMs = opts.deadlineMs ?? DEFAULT_FETCH_DEADLINE_MS;
  const end = clock() + deadlineMs;
  const errors: StapleError[] = [];
  let notTried = 0;
  for (const [i, url] of urls.entries()) {
    if (i > 0 && clock() >= end) {
      notTried = urls.length - i;
      opts.onNotice?.(
        `the overall deadline of ${seconds(deadlineMs)} s for this certificate passed; ${notTried} more responder URL(s) not tried`,
      );
      break;
    }
    try {
      assertHttpUrl(url, 'responder URL');
      return await fetchFromUrl(url, certId, opts);
    } catch (e) {
      const err = toStapleError(e);
      errors.push(err);
      if (urls.length > 1) opts.onNotice?.(`${url}: ${err.code}: ${err.message}`);
    }
  }
  const first = errors[0] as StapleError;
  const more: string[] = [];
  if (errors.length > 1) more.push(`and ${errors.length - 1} more responder URL(s) failed`);
  if (notTried > 0) more.push(`${notTried} not tried: the overall deadline of ${seconds(deadlineMs)} s passed`);
  if (more.length > 0) {
    throw new StapleError(first.code, `${first.message} (${more.join('; ')})`, {
      cause: first,
      details: { ...first.details, errors: errors.map((e) => ({ code: e.code, message: e.message })) },
    });
  }
  throw first;
}

function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}

async function fetchFromUrl(
  url: string,
  certId: ReturnType<typeof computeCertId>,
  opts: FetchOptions,
): Promise<FetchResult> {
  const req = buildRequest(certId, { nonce: opts.nonce ?? false });
  const getUrl = getUrlFor(url, req.der);
  const choice = opts.method ?? 'auto';
  let order: Array<'GET' | 'POST'>;
  if (choice === 'get') order = ['GET', 'POST'];
  else if (choice === 'post') order = ['POST', 'GET'];
  else order = getUrl.length <= MAX_GET_URL ? ['GET', 'POST'] : ['POST', 'GET'];
  // An explicit GET on a URL that is too long is still sent by POST only
  if (getUrl.length > MAX_GET_URL) order = ['POST'];

  let firstError: StapleError | undefined;
  for (const method of order) {
    try {
      return await exchange(method, url, getUrl, req.der, req.nonce, opts);
    } catch (e) {
      const err = toStapleError(e);
      firstError ??= err;
      if (!FALLBACK_CODES.has(err.code)) throw err;
      if (method === order[0] && order.length > 1)
        opts.onNotice?.(`${url}: ${method} failed (${err.code}); trying ${order[1]}`);
    }
  }
  throw firstError as StapleError;
}

async function exchange(
  method: 'GET' | 'POST',
  url: string,
  getUrl: string,
  der: Buffer,
  nonce: Buffer | undefined,
  opts: FetchOptions,
): Promise<FetchResult> {
  const res =
    method === 'GET'
      ? await opts.transport.send({ method, url: getUrl, headers: { accept: 'application/ocsp-response' } })
      : await opts.transport.send({
          method,
          url,
          body: der,
          headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
        });
  // after a redirect to another host (http.follow_redirects_across_hosts), say who answered
  const answeredBy = hostOf(res.url);
  if (answeredBy !== undefined && answeredBy !== hostOf(url)) {
    opts.onNotice?.(`${url}: answered by ${answeredBy} after a redirect (${res.url.split('?')[0]})`);
  }
  if (res.status !== 200) {
    throw new StapleError('HTTP_STATUS', `${url}: the responder answered HTTP ${res.status} to ${method}`, {
      details: { httpStatus: res.status },
    });
  }
  const ct = res.contentType?.split(';')[0]?.trim().toLowerCase();
  if (ct === undefined) {
    opts.onNotice?.(`${url}: the response has no Content-Type (expected application/ocsp-response)`);
  } else if (ct !== 'application/ocsp-response') {
    // Not fatal on its own (the body decides), but an HTML error page must not pass as DER
    opts.onNotice?.(`${url}: unexpected Content-Type "${res.contentType}"`);
  }
  let decoded;
  try {
    decoded = decodeResponse(res.body);
  } catch (e) {
    const err = toStapleError(e, 'OCSP_MALFORMED');
    if (ct && ct !== 'application/ocsp-response' && err.code === 'OCSP_MALFORMED') {
      throw new StapleError('OCSP_MALFORMED', `${url}: the responder sent "${ct}" content, not an OCSP response`, {
        cause: e,
      });
    }
    throw err;
  }
  const now = opts.now();
  const vopts: Parameters<typeof verifyResponse>[1] = { cert: opts.cert, issuer: opts.issuer, now };
  if (opts.skewMs !== undefined) vopts.skewMs = opts.skewMs;
  if (opts.signatures) vopts.signatures = opts.signatures;
  if (nonce) vopts.nonce = nonce;
  const response = verifyResponse(decoded, vopts);
  for (const w of response.warnings) opts.onNotice?.(`${url}: ${w}`);
  const result: FetchResult = { response, url, method };
  if (res.maxAgeMs !== undefined) result.maxAgeMs = res.maxAgeMs;
  return result;
}

function hostOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  try {
    return new URL(url).host;
  } catch {
    return undefined;
  }
}
