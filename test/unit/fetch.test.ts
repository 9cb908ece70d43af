/**
 * RFC 5019 §5 transport rules through fetchResponse: GET for short
 * URLs and POST beyond 255 bytes, fallback to the other method, every AIA
 * URL in order, and Cache-Control max-age bringing the refresh earlier.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { parseCertificate } from '../../src/core/certs.js';
import { refreshPoint } from '../../src/core/policy.js';
import { MAX_GET_URL, fetchResponse, getUrlFor } from '../../src/pipeline/responder.js';
import { createHttpTransport } from '../../src/io/http.js';
import { startEvilResponder, type EvilResponder } from '../helpers/evil-responder.js';
import { buildTestPki, goodResponseFor } from '../helpers/mint.js';

const now = new Date();
const pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now });
const leaf = pki.leaves[0]!;
const cert = parseCertificate(leaf.der);
const issuer = parseCertificate(pki.root.der);
const good = goodResponseFor(pki, leaf, now);
const transport = createHttpTransport({ timeoutMs: 3000 });
const servers: EvilResponder[] = [];
const ocsp = { 'content-type': 'application/ocsp-response' };

afterAll(async () => {
  await transport.close();
  for (const s of servers) await s.close();
});

async function serve(handler: Parameters<typeof startEvilResponder>[0]): Promise<EvilResponder> {
  const s = await startEvilResponder(handler);
  servers.push(s);
  return s;
}

const fetchFrom = (urls: string[], notices: string[] = []) =>
  fetchResponse({ cert, issuer, urls, transport, now: () => now, onNotice: (m) => notices.push(m) });

describe('fetchResponse transport rules', () => {
  it('uses GET for a short URL', async () => {
    const s = await serve(() => ({ kind: 'respond', status: 200, headers: ocsp, body: good }));
    const r = await fetchFrom([s.url]);
    expect(r.method).toBe('GET');
    expect(s.requests.map((q) => q.method)).toEqual(['GET']);
  });

  it('uses POST only when the GET URL would pass 255 bytes', async () => {
    const s = await serve(() => ({ kind: 'respond', status: 200, headers: ocsp, body: good }));
    const long = `${s.url}/${'x'.repeat(200)}`;
    expect(getUrlFor(long, Buffer.alloc(80)).length).toBeGreaterThan(MAX_GET_URL);
    const r = await fetchFrom([long]);
    expect(r.method).toBe('POST');
    expect(s.requests.map((q) => q.method)).toEqual(['POST']);
    expect(s.requests[0]!.headers['content-type']).toBe('application/ocsp-request');
  });

  it('falls back to POST when GET fails, with a notice', async () => {
    const s = await serve((req) =>
      req.method === 'GET'
        ? { kind: 'respond', status: 405, body: 'no GET here' }
        : { kind: 'respond', status: 200, headers: ocsp, body: good },
    );
    const notices: string[] = [];
    const r = await fetchFrom([s.url], notices);
    expect(r.method).toBe('POST');
    expect(notices.join('\n')).toContain('GET failed (HTTP_STATUS); trying POST');
  });

  it('tries every responder URL in order', async () => {
    const dead = await serve(() => ({ kind: 'respond', status: 500, body: 'down' }));
    const live = await serve(() => ({ kind: 'respond', status: 200, headers: ocsp, body: good }));
    const r = await fetchFrom([dead.url, live.url]);
    expect(r.url).toBe(live.url);
    expect(dead.requests.length).toBe(2); // GET, then the POST fallback
  });

  it('a Cache-Control max-age brings the refresh earlier, never later', async () => {
    const s = await serve(() => ({
      kind: 'respond',
      status: 200,
      headers: { ...ocsp, 'cache-control': 'max-age=600, public' },
      body: good,
    }));
    const r = await fetchFrom([s.url]);
    expect(r.maxAgeMs).toBe(600_000);
    const facts = { ...r.response, cacheUntil: new Date(now.getTime() + r.maxAgeMs!) };
    expect(refreshPoint(facts, cert)).toEqual(new Date(now.getTime() + 600_000));
    expect(refreshPoint({ ...r.response, cacheUntil: new Date(now.getTime() + 30 * 86400_000) }, cert)).toEqual(
      refreshPoint(r.response, cert),
    );
  });

  it('warns, but accepts, a response whose nextUpdate lies after the certificate expires', () => {
    const late = goodResponseFor(pki, leaf, now, {
      single: { nextUpdate: new Date(cert.notAfter.getTime() + 86400_000) },
    });
    return serve(() => ({ kind: 'respond', status: 200, headers: ocsp, body: late })).then(async (s) => {
      const r = await fetchFrom([s.url]);
      expect(r.response.warnings).toContain('nextUpdate lies after the certificate expires');
    });
  });
});
