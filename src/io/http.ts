/**
 * Talking to OCSP responders and caIssuers servers over HTTP (undici).
 *
 * Contract of {@link HttpTransport}: every call is bounded in time (connect
 * and total timeouts) and size (a body cap, 1 MiB by default, as certmagic and
 * lego use), follows at most a few redirects and only to `http:`/`https:`,
 * and fails only with a {@link StapleError} whose code starts with `HTTP_`.
 * Keep-alive connections are reused through one undici dispatcher.
 */
import { createRequire } from 'node:module';
import type { Dispatcher } from 'undici';

/** undici is loaded on the first request: a run that fetches nothing does not pay its ~50 ms. */
let undici: typeof import('undici') | undefined;
function loadUndici(): typeof import('undici') {
  undici ??= createRequire(import.meta.url)('undici') as typeof import('undici');
  return undici;
}
import { StapleError } from '../core/errors.js';

/** One HTTP exchange's result. */
export interface HttpResult {
  status: number;
  body: Buffer;
  contentType?: string;
  /** `Cache-Control: max-age` in ms, if the server sent one. */
  maxAgeMs?: number;
  /** The URL finally answered (after redirects). */
  url: string;
  /** `ETag` and `Last-Modified`, for a conditional GET of the same URL later (CRL watch). */
  etag?: string;
  lastModified?: string;
}

/** What an HTTP exchange needs. */
export interface HttpRequest {
  method: 'GET' | 'POST';
  url: string;
  body?: Buffer;
  headers?: Record<string, string>;
  /** Body cap in bytes (default 1 MiB). */
  maxBytes?: number;
  /** Whole-exchange timeout of this request in ms, instead of the transport's (a large CRL). */
  timeoutMs?: number;
}

/** The transport the engine uses; tests may replace it. */
export interface HttpTransport {
  send(req: HttpRequest): Promise<HttpResult>;
  close(): Promise<void>;
}

/** Transport options. */
export interface HttpOptions {
  /** Whole-exchange timeout in ms (default 10 s). */
  timeoutMs?: number;
  /** Connect timeout in ms (default: the smaller of 5 s and timeoutMs). */
  connectTimeoutMs?: number;
  /** An explicit proxy URL; otherwise HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment. */
  proxy?: string;
  userAgent?: string;
  /** Maximum redirects to follow (default 3). */
  maxRedirects?: number;
  /**
   * Follow a redirect to another host (default false: a responder URL means
   * what it says, and a redirect is never a way to probe other addresses;
   * `http.follow_redirects_across_hosts` in the configuration).
   */
  followRedirectsAcrossHosts?: boolean;
  /** Maximum connections per origin (default 32). */
  connections?: number;
}

/** The default response body cap. */
export const DEFAULT_MAX_BYTES = 1024 * 1024;

/** Checks that a URL is http: or https:; throws `HTTP_BAD_URL` otherwise. */
export function assertHttpUrl(url: string, what = 'URL'): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new StapleError('HTTP_BAD_URL', `the ${what} "${url}" is not a valid URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new StapleError('HTTP_BAD_URL', `the ${what} "${url}" is not an http: or https: URL`);
  }
  return u;
}

function hasProxyEnv(): boolean {
  const e = process.env;
  return Boolean(e.HTTP_PROXY || e.http_proxy || e.HTTPS_PROXY || e.https_proxy);
}

/** Creates the undici-based transport. */
export function createHttpTransport(options: HttpOptions = {}): HttpTransport {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const connectTimeout = options.connectTimeoutMs ?? Math.min(5_000, timeoutMs);
  const agentOpts = {
    connect: { timeout: connectTimeout },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 4_000,
    connections: options.connections ?? 32,
    // Through a proxy, an http: request is forwarded as `GET http://host/path`
    // (what curl and openssl do). undici 7 would otherwise tunnel it with
    // `CONNECT host:80`, which Squid and most corporate proxies refuse for any
    // port but 443 — and OCSP responders are plain http on port 80. https:
    // targets are still tunnelled.
    proxyTunnel: false,
  };
  if (options.proxy) assertHttpUrl(options.proxy, 'proxy URL');
  let created: Dispatcher | undefined;
  const dispatcherOf = (): Dispatcher => {
    if (created) return created;
    const u = loadUndici();
    if (options.proxy) created = new u.ProxyAgent({ uri: options.proxy, ...agentOpts });
    else if (hasProxyEnv()) created = new u.EnvHttpProxyAgent(agentOpts);
    else created = new u.Agent(agentOpts);
    return created;
  };
  const maxRedirects = options.maxRedirects ?? 3;
  const userAgent = options.userAgent;

  async function once(req: HttpRequest, url: URL, signal: AbortSignal): Promise<HttpResult & { location?: string }> {
    const headers: Record<string, string> = { ...(req.headers ?? {}) };
    if (userAgent) headers['user-agent'] = userAgent;
    headers.host = url.host;
    const res = await loadUndici().request(url, {
      method: req.method,
      headers,
      body: req.body,
      dispatcher: dispatcherOf(),
      signal,
    });
    const maxBytes = req.maxBytes ?? DEFAULT_MAX_BYTES;
    const declared = Number(res.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > maxBytes) {
      res.body.destroy();
      throw new StapleError(
        'HTTP_TOO_LARGE',
        `${url.href}: the server announced ${declared} bytes, over the ${maxBytes}-byte cap`,
      );
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of res.body) {
      total += (chunk as Buffer).length;
      if (total > maxBytes) {
        res.body.destroy();
        throw new StapleError('HTTP_TOO_LARGE', `${url.href}: the body exceeds the ${maxBytes}-byte cap`);
      }
      chunks.push(chunk as Buffer);
    }
    // Let undici finish its bookkeeping of this exchange before the next one:
    // it sends a POST (not idempotent) only on an idle connection, and without
    // this turn a POST right after another request would open a new connection.
    await new Promise((r) => setImmediate(r));
    const ct = header(res.headers['content-type']);
    const result: HttpResult & { location?: string } = {
      status: res.statusCode,
      body: Buffer.concat(chunks, total),
      url: url.href,
    };
    if (ct) result.contentType = ct;
    const cc = header(res.headers['cache-control']);
    const m = cc ? /(?:^|,)\s*max-age\s*=\s*(\d+)/i.exec(cc) : null;
    if (m) result.maxAgeMs = Number(m[1]) * 1000;
    const etag = header(res.headers.etag);
    if (etag) result.etag = etag;
    const lm = header(res.headers['last-modified']);
    if (lm) result.lastModified = lm;
    const loc = header(res.headers.location);
    if (loc) result.location = loc;
    return result;
  }

  return {
    async send(req) {
      let url = assertHttpUrl(req.url, 'responder URL');
      let current = req;
      const limitMs = req.timeoutMs ?? timeoutMs;
      const signal = AbortSignal.timeout(limitMs);
      try {
        for (let hop = 0; ; hop++) {
          const r = await once(current, url, signal);
          if (r.status >= 300 && r.status < 400 && r.location !== undefined) {
            if (hop >= maxRedirects) {
              throw new StapleError('HTTP_REDIRECT', `${req.url}: more than ${maxRedirects} redirects`);
            }
            let next: URL;
            try {
              next = new URL(r.location, url);
            } catch {
              throw new StapleError('HTTP_REDIRECT', `${url.href}: redirect to an invalid location "${r.location}"`);
            }
            // never to another scheme (not even http: to https:): a responder URL means what it says
            if (next.protocol !== url.protocol) {
              throw new StapleError(
                'HTTP_REDIRECT',
                `${url.href}: refusing a redirect to another scheme (${next.protocol})`,
              );
            }
            // never to another host unless the operator allowed it (an SSRF-shaped probe otherwise)
            if (next.host !== url.host && options.followRedirectsAcrossHosts !== true) {
              throw new StapleError(
                'HTTP_REDIRECT',
                `${url.href}: the responder ${url.host} redirected to another host (${next.host}); not followed (set http.follow_redirects_across_hosts: true to allow it)`,
              );
            }
            url = next;
            if (r.status === 303 && current.method === 'POST') current = asGet(current); // RFC 9110 §15.4.4
            continue;
          }
          const { location: _ignored, ...result } = r;
          return result;
        }
      } catch (e) {
        throw classify(e, req.url, limitMs, signal);
      }
    },
    async close() {
      await created?.close().catch(() => undefined);
    },
  };
}

/** The request a 303 "See Other" asks for: a GET of the new location, without the POST body and its headers. */
function asGet(req: HttpRequest): HttpRequest {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) {
    if (!/^content-/i.test(k)) headers[k] = v;
  }
  const { body: _body, ...rest } = req;
  return { ...rest, method: 'GET', headers };
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function classify(e: unknown, url: string, timeoutMs: number, signal: AbortSignal): StapleError {
  if (e instanceof StapleError) return e;
  const err = e as { code?: string; name?: string; message?: string; cause?: { code?: string } };
  const code = err.code ?? err.cause?.code ?? '';
  if (
    signal.aborted ||
    err.name === 'TimeoutError' ||
    err.name === 'AbortError' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'ETIMEDOUT'
  ) {
    return new StapleError('HTTP_TIMEOUT', `${url}: no complete answer within ${timeoutMs} ms`, { cause: e });
  }
  return new StapleError('HTTP_NETWORK', `${url}: ${code ? `${code} ` : ''}${err.message ?? String(e)}`, { cause: e });
}
