/**
 * The undici transport against real node:http servers on 127.0.0.1 (port 0).
 * Every server tracks its sockets and destroys them on close, so a test that
 * leaves a request hanging on purpose cannot keep close() waiting.
 */
import { once } from 'node:events';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { StapleError } from '../../src/core/errors.js';
import { DEFAULT_MAX_BYTES, assertHttpUrl, createHttpTransport, type HttpTransport } from '../../src/io/http.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface TestServer {
  url: string;
  port: number;
  /** TCP connections accepted so far. */
  connections: () => number;
  requests: Seen[];
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function trackSockets(server: net.Server): { sockets: Set<Socket>; count: () => number } {
  const sockets = new Set<Socket>();
  let count = 0;
  server.on('connection', (s: Socket) => {
    count++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return { sockets, count: () => count };
}

async function listen(
  server: net.Server,
  extraSockets: Set<Socket> = new Set(),
): Promise<{ port: number; close: () => Promise<void> }> {
  const { sockets } = trackSockets(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const close = async (): Promise<void> => {
    for (const s of [...sockets, ...extraSockets]) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  cleanups.push(close);
  return { port, close };
}

/** An HTTP server whose handler sees the whole request body in `seen.body`. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse, seen: Seen) => void): Promise<TestServer> {
  const requests: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(seen);
      handler(req, res, seen);
    });
  });
  let connections = 0;
  server.on('connection', () => connections++);
  const { port, close } = await listen(server);
  return { url: `http://127.0.0.1:${port}`, port, connections: () => connections, requests, close };
}

/**
 * A forward proxy: plain requests with an absolute URI are forwarded; CONNECT
 * opens a tunnel. It records which of the two it saw.
 */
async function proxyServer(): Promise<{ url: string; seen: Array<{ method: string; url: string }> }> {
  const seen: Array<{ method: string; url: string }> = [];
  const upstream = new Set<Socket>();
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '' });
    let target: URL;
    try {
      target = new URL(req.url ?? '');
    } catch {
      res.writeHead(400).end('absolute URI expected');
      return;
    }
    const up = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname + target.search,
        method: req.method,
        headers: { ...req.headers, 'x-via-test-proxy': '1' },
      },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on('socket', (s) => upstream.add(s));
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    seen.push({ method: 'CONNECT', url: req.url ?? '' });
    const [host, port] = (req.url ?? '').split(':');
    const s = net.connect(Number(port), host ?? '', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      s.write(head);
      s.pipe(client);
      client.pipe(s);
    });
    upstream.add(s);
    upstream.add(client);
    s.on('error', () => client.destroy());
    client.on('error', () => s.destroy());
  });
  const { port } = await listen(server, upstream);
  return { url: `http://127.0.0.1:${port}`, seen };
}

function transport(options: Parameters<typeof createHttpTransport>[0] = {}): HttpTransport {
  const t = createHttpTransport({ userAgent: 'staplekeeper-test/9.9', ...options });
  cleanups.push(() => t.close());
  return t;
}

async function failure(p: Promise<unknown>, code: string): Promise<StapleError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(StapleError);
  expect((e as StapleError).code).toBe(code);
  return e as StapleError;
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const ok =
  (body: string | Buffer, headers: Record<string, string> = {}) =>
  (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/ocsp-response', ...headers });
    res.end(body);
  };

describe('requests', () => {
  it('GET reaches the server with Host and the User-Agent, and returns status, body and type', async () => {
    const srv = await serve(ok('der-bytes'));
    const r = await transport().send({ method: 'GET', url: `${srv.url}/ocsp/MFQwUjBQ%2F%3D` });
    expect(r).toEqual({
      status: 200,
      body: Buffer.from('der-bytes'),
      contentType: 'application/ocsp-response',
      url: `${srv.url}/ocsp/MFQwUjBQ%2F%3D`,
    });
    expect(srv.requests).toHaveLength(1);
    const seen = srv.requests[0] as Seen;
    expect(seen.method).toBe('GET');
    expect(seen.url).toBe('/ocsp/MFQwUjBQ%2F%3D'); // the encoded path is sent as given
    expect(seen.headers.host).toBe(`127.0.0.1:${srv.port}`);
    expect(seen.headers['user-agent']).toBe('staplekeeper-test/9.9');
  });

  it('POST sends the body and the caller headers', async () => {
    const srv = await serve(ok('resp'));
    const body = Buffer.from([0x30, 0x82, 0x01, 0x00, 0xff]);
    const r = await transport().send({
      method: 'POST',
      url: `${srv.url}/`,
      body,
      headers: { 'content-type': 'application/ocsp-request' },
    });
    expect(r.status).toBe(200);
    const seen = srv.requests[0] as Seen;
    expect(seen.method).toBe('POST');
    expect(seen.body).toEqual(body);
    expect(seen.headers['content-type']).toBe('application/ocsp-request');
    expect(seen.headers['content-length']).toBe(String(body.length));
    expect(seen.headers.host).toBe(`127.0.0.1:${srv.port}`);
    expect(seen.headers['user-agent']).toBe('staplekeeper-test/9.9');
  });

  it('returns HTTP error statuses as results (the caller decides)', async () => {
    const srv = await serve((_req, res) => res.writeHead(503, { 'retry-after': '60' }).end('busy'));
    const r = await transport().send({ method: 'GET', url: `${srv.url}/` });
    expect(r.status).toBe(503);
    expect(r.body.toString()).toBe('busy');
    expect(r.contentType).toBeUndefined();
  });

  it('reuses one keep-alive connection for consecutive requests', async () => {
    const srv = await serve(ok('x'));
    const t = transport();
    await t.send({ method: 'GET', url: `${srv.url}/1` });
    await t.send({ method: 'POST', url: `${srv.url}/2`, body: Buffer.from('q') });
    await t.send({ method: 'GET', url: `${srv.url}/3` });
    expect(srv.requests.map((r) => r.url)).toEqual(['/1', '/2', '/3']);
    expect(srv.connections()).toBe(1);
  });

  it('close() can be called twice', async () => {
    const t = createHttpTransport();
    await t.close();
    await expect(t.close()).resolves.toBeUndefined();
  });
});

describe('Cache-Control max-age', () => {
  it.each([
    ['max-age=300', 300_000],
    ['public, max-age=600, must-revalidate', 600_000],
    ['public,MAX-AGE=60', 60_000],
    ['max-age = 5', 5_000],
    ['max-age=0, no-cache', 0],
    ['s-maxage=100, max-age=50', 50_000],
    ['s-maxage=100', undefined],
    ['no-store', undefined],
    ['max-age=abc', undefined],
  ])('%s → %s ms', async (cc, expected) => {
    const srv = await serve(ok('r', { 'cache-control': cc }));
    const r = await transport().send({ method: 'GET', url: `${srv.url}/` });
    expect(r.maxAgeMs).toBe(expected);
  });

  it('no Cache-Control → no maxAgeMs', async () => {
    const srv = await serve(ok('r'));
    const r = await transport().send({ method: 'GET', url: `${srv.url}/` });
    expect('maxAgeMs' in r).toBe(false);
  });
});

describe('body cap', () => {
  it('refuses an announced Content-Length over the cap without reading or waiting for the body', async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': String(50 * 1024 * 1024) });
      res.write(Buffer.alloc(1024)); // and then nothing more: reading on would hang until the timeout
    });
    const t0 = Date.now();
    const e = await failure(
      transport({ timeoutMs: 5000 }).send({ method: 'GET', url: `${srv.url}/`, maxBytes: 4096 }),
      'HTTP_TOO_LARGE',
    );
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(e.message).toContain('52428800');
    expect(e.message).toContain('4096');
  });

  it('refuses a chunked body that grows over the cap', async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(200); // no content-length: chunked
      let n = 0;
      const t = setInterval(() => {
        if (res.destroyed || n++ > 100) return (clearInterval(t), res.end());
        res.write(Buffer.alloc(1024, 0x41));
      }, 1);
    });
    const e = await failure(
      transport().send({ method: 'GET', url: `${srv.url}/`, maxBytes: 10 * 1024 }),
      'HTTP_TOO_LARGE',
    );
    expect(e.message).toContain('10240-byte cap');
  });

  it('accepts a body of exactly the cap, chunked or announced', async () => {
    const srv = await serve((req, res) => {
      if (req.url === '/chunked') {
        res.writeHead(200);
        res.write(Buffer.alloc(1000, 1));
        res.end(Buffer.alloc(1048, 2));
      } else res.end(Buffer.alloc(2048, 3));
    });
    const t = transport();
    expect((await t.send({ method: 'GET', url: `${srv.url}/chunked`, maxBytes: 2048 })).body.length).toBe(2048);
    expect((await t.send({ method: 'GET', url: `${srv.url}/announced`, maxBytes: 2048 })).body.length).toBe(2048);
    await failure(t.send({ method: 'GET', url: `${srv.url}/chunked`, maxBytes: 2047 }), 'HTTP_TOO_LARGE');
  });

  it('defaults to a 1 MiB cap', async () => {
    expect(DEFAULT_MAX_BYTES).toBe(1024 * 1024);
    const srv = await serve((_req, res) => res.end(Buffer.alloc(DEFAULT_MAX_BYTES + 1)));
    await failure(transport().send({ method: 'GET', url: `${srv.url}/` }), 'HTTP_TOO_LARGE');
  });
});

describe('timeouts', () => {
  it('a server that never answers → HTTP_TIMEOUT after about timeoutMs', async () => {
    const srv = await serve(() => undefined);
    const t0 = Date.now();
    const e = await failure(transport({ timeoutMs: 500 }).send({ method: 'GET', url: `${srv.url}/` }), 'HTTP_TIMEOUT');
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(1500);
    expect(e.message).toContain('500 ms');
    expect(srv.requests).toHaveLength(1);
  });

  it('a server that dribbles one byte every 200 ms → HTTP_TIMEOUT (the timeout bounds the whole exchange)', async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write('x')), 200);
      res.on('close', () => clearInterval(t));
    });
    const t0 = Date.now();
    await failure(transport({ timeoutMs: 1000 }).send({ method: 'GET', url: `${srv.url}/` }), 'HTTP_TIMEOUT');
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(2000);
  });

  it('headers dribbled slowly also count against the total timeout', async () => {
    const srv = await serve((_req, res) => {
      const s = res.socket as Socket;
      s.write('HTTP/1.1 200 OK\r\n');
      const t = setInterval(() => (s.destroyed ? clearInterval(t) : s.write('X-A: b\r\n')), 150);
      s.on('close', () => clearInterval(t));
    });
    const t0 = Date.now();
    await failure(transport({ timeoutMs: 700 }).send({ method: 'GET', url: `${srv.url}/` }), 'HTTP_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(1700);
  });
});

describe('network failures', () => {
  it('connection refused → HTTP_NETWORK naming the cause', async () => {
    const port = await closedPort();
    const e = await failure(transport().send({ method: 'GET', url: `http://127.0.0.1:${port}/` }), 'HTTP_NETWORK');
    expect(e.message).toContain('ECONNREFUSED');
    expect(e.message).toContain(`127.0.0.1:${port}`);
  });

  it('a reset before the answer → HTTP_NETWORK', async () => {
    const srv = await serve((req) => req.socket.resetAndDestroy());
    await failure(transport().send({ method: 'GET', url: `${srv.url}/` }), 'HTTP_NETWORK');
  });

  it('a connection closed in the middle of the body → HTTP_NETWORK, never a truncated success', async () => {
    const srv = await serve((req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write(Buffer.alloc(10));
      setTimeout(() => req.socket.destroy(), 20);
    });
    await failure(transport().send({ method: 'GET', url: `${srv.url}/` }), 'HTTP_NETWORK');
  });

  it('a server that is not HTTP → HTTP_NETWORK', async () => {
    const server = net.createServer((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n'));
    const { port } = await listen(server);
    await failure(transport().send({ method: 'GET', url: `http://127.0.0.1:${port}/` }), 'HTTP_NETWORK');
  });
});

describe('redirects', () => {
  it('follows up to 3 redirects (absolute and relative) and reports the final URL', async () => {
    const other = await serve(ok('final'));
    const srv = await serve((req, res) => {
      const next: Record<string, string> = { '/a': '/b', '/b': `${other.url}/c`, '/c': '' };
      res.writeHead(302, { location: next[req.url ?? ''] ?? '' }).end();
    });
    // /a → /b (relative) → other/c (absolute, other host:port): only when allowed (docs/SECURITY.md "Redirects to another host")
    const refused = await transport()
      .send({ method: 'GET', url: `${srv.url}/a` })
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'HTTP_REDIRECT' });
    expect((refused as Error).message).toContain(`redirected to another host (127.0.0.1:${other.port}); not followed`);
    expect(other.requests).toHaveLength(0);
    const r = await transport({ followRedirectsAcrossHosts: true }).send({ method: 'GET', url: `${srv.url}/a` });
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('final');
    expect(r.url).toBe(`${other.url}/c`);
    expect(other.requests[0]?.headers.host).toBe(`127.0.0.1:${other.port}`); // Host follows the redirect

    const chain = await serve((req, res) => {
      const n = Number((req.url ?? '/0').slice(1));
      if (n < 3) res.writeHead(301, { location: `/${n + 1}` }).end();
      else ok('after three')(req, res);
    });
    const r3 = await transport().send({ method: 'GET', url: `${chain.url}/0` });
    expect(r3.body.toString()).toBe('after three');
    expect(chain.requests.map((q) => q.url)).toEqual(['/0', '/1', '/2', '/3']);
  });

  it('a fourth redirect → HTTP_REDIRECT', async () => {
    const chain = await serve((req, res) => {
      const n = Number((req.url ?? '/0').slice(1));
      res.writeHead(302, { location: `/${n + 1}` }).end();
    });
    const e = await failure(transport().send({ method: 'GET', url: `${chain.url}/0` }), 'HTTP_REDIRECT');
    expect(e.message).toContain('more than 3 redirects');
    expect(chain.requests.map((q) => q.url)).toEqual(['/0', '/1', '/2', '/3']);
  });

  it('a redirect loop → HTTP_REDIRECT, and maxRedirects is configurable', async () => {
    const srv = await serve((_req, res) => res.writeHead(307, { location: '/loop' }).end());
    await failure(transport().send({ method: 'GET', url: `${srv.url}/loop` }), 'HTTP_REDIRECT');
    expect(srv.requests).toHaveLength(4);
    const e = await failure(
      transport({ maxRedirects: 0 }).send({ method: 'GET', url: `${srv.url}/loop` }),
      'HTTP_REDIRECT',
    );
    expect(e.message).toContain('more than 0 redirects');
  });

  it.each([
    'ftp://127.0.0.1/ocsp',
    'file:///etc/passwd',
    'gopher://x/',
    'javascript:alert(1)',
    'https://127.0.0.1/ocsp',
  ])('a redirect to %s → HTTP_REDIRECT', async (location) => {
    const srv = await serve((_req, res) => res.writeHead(302, { location }).end());
    const e = await failure(transport().send({ method: 'GET', url: `${srv.url}/` }), 'HTTP_REDIRECT');
    expect(e.message).toContain(`refusing a redirect to another scheme (${new URL(location).protocol})`);
    expect(srv.requests).toHaveLength(1);
  });

  it('a 307 keeps the POST and its body', async () => {
    const srv = await serve((req, res) => {
      if (req.url === '/old') res.writeHead(307, { location: '/new' }).end();
      else ok('posted')(req, res);
    });
    const body = Buffer.from('ocsp-request-der');
    const r = await transport().send({
      method: 'POST',
      url: `${srv.url}/old`,
      body,
      headers: { 'content-type': 'application/ocsp-request' },
    });
    expect(r.body.toString()).toBe('posted');
    expect(srv.requests.map((q) => [q.method, q.url, q.body.toString()])).toEqual([
      ['POST', '/old', 'ocsp-request-der'],
      ['POST', '/new', 'ocsp-request-der'],
    ]);
  });

  it('a 303 after a POST is followed with a GET without the body (RFC 9110 §15.4.4)', async () => {
    const srv = await serve((req, res) => {
      if (req.url === '/post') res.writeHead(303, { location: '/result' }).end();
      else ok(`${req.method}`)(req, res);
    });
    const r = await transport().send({
      method: 'POST',
      url: `${srv.url}/post`,
      body: Buffer.from('q'),
      headers: { 'content-type': 'application/ocsp-request' },
    });
    expect(r.body.toString()).toBe('GET');
    const second = srv.requests[1] as Seen;
    expect(second.method).toBe('GET');
    expect(second.body.length).toBe(0);
    expect(second.headers['content-type']).toBeUndefined();
  });

  it('a 3xx without Location is returned as it is', async () => {
    const srv = await serve((_req, res) => res.writeHead(304).end());
    expect((await transport().send({ method: 'GET', url: `${srv.url}/` })).status).toBe(304);
  });
});

describe('URLs', () => {
  it.each(['ftp://ocsp.example/', 'file:///etc/passwd', 'ldap://ocsp.example/', 'not a url', '', '/relative/path'])(
    '%j → HTTP_BAD_URL without any connection',
    async (url) => {
      await failure(transport().send({ method: 'GET', url }), 'HTTP_BAD_URL');
    },
  );

  it('assertHttpUrl accepts http: and https:', () => {
    expect(assertHttpUrl('http://ocsp.example/a').hostname).toBe('ocsp.example');
    expect(assertHttpUrl('HTTPS://OCSP.example:8443/').port).toBe('8443');
  });

  it('a non-http proxy URL is rejected when the transport is created', () => {
    expect(() => createHttpTransport({ proxy: 'socks5://127.0.0.1:1080' })).toThrow(StapleError);
    expect(() => createHttpTransport({ proxy: 'nonsense' })).toThrow(/proxy URL/);
  });
});

describe('proxies', () => {
  it('an explicit proxy receives the http request as a plain absolute-URI request (no CONNECT)', async () => {
    // Forward proxies such as Squid only allow CONNECT to port 443 by default; OCSP is plain
    // http on port 80, so the request must be forwarded, not tunnelled.
    const target = await serve(ok('via proxy'));
    const proxy = await proxyServer();
    const r = await transport({ proxy: proxy.url }).send({ method: 'GET', url: `${target.url}/ocsp/abc` });
    expect(r.body.toString()).toBe('via proxy');
    expect(proxy.seen).toEqual([{ method: 'GET', url: `${target.url}/ocsp/abc` }]);
    const seen = target.requests[0] as Seen;
    expect(seen.headers['x-via-test-proxy']).toBe('1');
    expect(seen.headers.host).toBe(`127.0.0.1:${target.port}`);
    expect(seen.headers['user-agent']).toBe('staplekeeper-test/9.9');
  });

  it('POST through the explicit proxy carries the body', async () => {
    const target = await serve((req, res, seen) => ok(seen.body)(req, res));
    const proxy = await proxyServer();
    const r = await transport({ proxy: proxy.url }).send({
      method: 'POST',
      url: `${target.url}/`,
      body: Buffer.from('echo me'),
    });
    expect(r.body.toString()).toBe('echo me');
    expect(proxy.seen).toEqual([{ method: 'POST', url: `${target.url}/` }]);
  });

  it('an https: request through the proxy is still tunnelled with CONNECT, never forwarded in clear', async () => {
    // the tunnel leads to a plain-http server, so the TLS handshake fails: we only check the proxy's view
    const target = await serve(ok('never'));
    const proxy = await proxyServer();
    await failure(
      transport({ proxy: proxy.url, timeoutMs: 2000 }).send({
        method: 'GET',
        url: `https://127.0.0.1:${target.port}/secret`,
      }),
      'HTTP_NETWORK',
    );
    expect(proxy.seen).toEqual([{ method: 'CONNECT', url: `127.0.0.1:${target.port}` }]);
    expect(target.requests).toEqual([]);
  });

  it('a proxy that is down → HTTP_NETWORK', async () => {
    const target = await serve(ok('never'));
    const port = await closedPort();
    await failure(
      transport({ proxy: `http://127.0.0.1:${port}` }).send({ method: 'GET', url: `${target.url}/` }),
      'HTTP_NETWORK',
    );
    expect(target.requests).toHaveLength(0);
  });

  describe('from the environment', () => {
    const names = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy'];
    let saved: Record<string, string | undefined> = {};
    /** Sets the proxy variables for the duration of one test. */
    function setEnv(vars: Record<string, string>): void {
      saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
      for (const n of names) delete process.env[n];
      Object.assign(process.env, vars);
      cleanups.unshift(async () => {
        for (const n of names) {
          if (saved[n] === undefined) delete process.env[n];
          else process.env[n] = saved[n];
        }
      });
    }

    it('HTTP_PROXY is used when set before the transport is created', async () => {
      const target = await serve(ok('env proxy'));
      const proxy = await proxyServer();
      setEnv({ HTTP_PROXY: proxy.url });
      const r = await transport().send({ method: 'GET', url: `${target.url}/x` });
      expect(r.body.toString()).toBe('env proxy');
      expect(proxy.seen).toEqual([{ method: 'GET', url: `${target.url}/x` }]);
    });

    it('NO_PROXY bypasses the proxy for a listed host', async () => {
      const target = await serve(ok('direct'));
      const proxy = await proxyServer();
      setEnv({ HTTP_PROXY: proxy.url, NO_PROXY: 'localhost,127.0.0.1' });
      const r = await transport().send({ method: 'GET', url: `${target.url}/x` });
      expect(r.body.toString()).toBe('direct');
      expect(proxy.seen).toEqual([]);
      expect(target.requests[0]?.headers['x-via-test-proxy']).toBeUndefined();
    });

    it('no proxy variables → direct connection', async () => {
      const target = await serve(ok('direct'));
      setEnv({});
      await transport().send({ method: 'GET', url: `${target.url}/` });
      expect(target.requests).toHaveLength(1);
      expect(target.requests[0]?.headers['x-via-test-proxy']).toBeUndefined();
    });
  });
});
