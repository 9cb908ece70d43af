/**
 * The daemon's HTTP status service (opt-in: `--listen` or
 * `daemon.status.listen`), the "HTTP status service" ocsprenewer's `-http`
 * flag announced and never built.
 *
 * - `GET /healthz`: `200 ok` while the loop is alive (its timer is armed or
 *   work is in progress), else `503`; for systemd watchdogs, load balancers
 *   and Kubernetes probes.
 * - `GET /status`: the {@link DaemonSnapshot} as JSON.
 * - `GET /metrics`: Prometheus text (see metrics.ts).
 * - `GET /`: the HTML page of status-page.ts.
 *
 * It binds to loopback unless told otherwise: a port alone means
 * `127.0.0.1:PORT`. It reveals file paths and responder URLs, so exposing it
 * is the operator's explicit choice (`0.0.0.0:9100`). Only GET and HEAD are
 * served; responses are never cached, and the page may load nothing and run
 * only its own inline script and style (a Content-Security-Policy with a fresh
 * nonce per response).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StapleError } from '../core/errors.js';
import type { DaemonObserver, DaemonSnapshot } from './page.js';
import { createMetrics } from './metrics.js';
import { renderStatusPage } from './page.js';

/** What the status service reads. */
export interface StatusProvider {
  snapshot(): DaemonSnapshot;
  isAlive(): boolean;
  addObserver(o: DaemonObserver): () => void;
}

/** A running status service. */
export interface StatusServer {
  /** Base URL, e.g. `http://127.0.0.1:9100`. */
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Parses `HOST:PORT`, `[IPv6]:PORT`, `:PORT` or `PORT`. A missing host means
 * 127.0.0.1 (loopback by default); port 0 picks a free port (tests).
 *
 * @throws StapleError `BAD_ARGUMENTS`.
 */
export function parseListen(spec: string): { host: string; port: number } {
  const s = spec.trim();
  let host = '127.0.0.1';
  let portText: string;
  const m6 = /^\[([0-9A-Fa-f:.]+)\]:(\d+)$/.exec(s);
  if (m6) {
    host = m6[1] as string;
    portText = m6[2] as string;
  } else if (/^\d+$/.test(s)) {
    portText = s;
  } else {
    const i = s.lastIndexOf(':');
    if (i < 0 || s.indexOf(':') !== i) {
      throw new StapleError(
        'BAD_ARGUMENTS',
        `listen address ${JSON.stringify(spec)}: expected HOST:PORT, [IPv6]:PORT or PORT (for example 127.0.0.1:9100)`,
      );
    }
    if (i > 0) host = s.slice(0, i);
    portText = s.slice(i + 1);
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 0 && port <= 65535)) {
    throw new StapleError(
      'BAD_ARGUMENTS',
      `listen address ${JSON.stringify(spec)}: the port must be a number from 0 to 65535`,
    );
  }
  return { host, port };
}

const COMMON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

/** The page's policy: nothing but its own inline style and script, allowed by this response's nonce. */
function pageCsp(nonce: string): string {
  return `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; img-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`;
}

function send(
  res: ServerResponse,
  req: IncomingMessage,
  status: number,
  type: string,
  body: string,
  extra: Record<string, string> = {},
): void {
  const buf = Buffer.from(body, 'utf8');
  res.writeHead(status, { ...COMMON_HEADERS, 'content-type': type, 'content-length': String(buf.length), ...extra });
  res.end(req.method === 'HEAD' ? undefined : buf);
}

/** Starts the status service for `provider` on `listen`. */
export async function startStatusServer(options: { listen: string; provider: StatusProvider }): Promise<StatusServer> {
  const { host, port } = parseListen(options.listen);
  const metrics = await createMetrics(options.provider);
  const provider = options.provider;

  const server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://status.invalid').pathname;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, req, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
        return;
      }
      switch (path) {
        case '/healthz': {
          const alive = provider.isAlive();
          send(res, req, alive ? 200 : 503, 'text/plain; charset=utf-8', alive ? 'ok\n' : 'not alive\n');
          return;
        }
        case '/status':
          send(res, req, 200, 'application/json; charset=utf-8', `${JSON.stringify(provider.snapshot(), null, 2)}\n`);
          return;
        case '/metrics':
          send(res, req, 200, metrics.contentType, await metrics.render());
          return;
        case '/':
        case '/index.html': {
          const nonce = randomBytes(18).toString('base64');
          send(res, req, 200, 'text/html; charset=utf-8', renderStatusPage(provider.snapshot(), { nonce }), {
            'content-security-policy': pageCsp(nonce),
            'x-frame-options': 'DENY',
          });
          return;
        }
        default:
          send(res, req, 404, 'text/plain; charset=utf-8', 'not found: try /, /status, /metrics or /healthz\n');
      }
    })().catch((e: unknown) => {
      if (!res.headersSent)
        send(res, req, 500, 'text/plain; charset=utf-8', `internal error: ${(e as Error).message}\n`);
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      metrics.close();
      const why =
        e.code === 'EADDRINUSE'
          ? 'the address is already in use'
          : e.code === 'EACCES'
            ? 'permission denied'
            : e.code === 'EADDRNOTAVAIL'
              ? 'no such local address'
              : e.message;
      reject(
        new StapleError('CONFIG_INVALID', `status service: cannot listen on ${options.listen}: ${why}`, { cause: e }),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shownHost}:${addr.port}`,
    host: addr.address,
    port: addr.port,
    async close() {
      metrics.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
