/**
 * The per-host backoff as a transport wrapper (daemon/host-health.ts): what
 * a host did is recorded per attempt, a host in backoff is refused without
 * being contacted (responder requests and caIssuers downloads alike), an
 * urgent probe goes through, and a host that answers again is healthy.
 */
import { describe, expect, it } from 'vitest';
import { StapleError } from '../../src/core/errors.js';
import { HostHealth, baseUrlOf, type SettleHooks } from '../../src/daemon/host-health.js';
import { createFakeTransport } from '../../src/testing/index.js';

const NOW = new Date('2026-06-01T12:00:00.000Z');
const none: SettleHooks = { lifeOf: () => undefined, onRecovered: () => undefined };

function setup(answer: (url: string) => { status?: number } | Error = () => ({})) {
  let now = NOW;
  const health = new HostHealth(
    () => now,
    () => 0.5,
  );
  const base = createFakeTransport((req) => {
    const a = answer(req.url);
    if (a instanceof Error) throw a;
    return a;
  });
  return { health, base, advance: (ms: number) => (now = new Date(now.getTime() + ms)) };
}

const down = (url: string) => new StapleError('HTTP_NETWORK', `${url}: connection refused`);
const post = (url: string) => ({ method: 'POST' as const, url, body: Buffer.from('req') });

describe('HostHealth', () => {
  it('a host that fails is refused at once by the next attempt, without a request, until its backoff ends', async () => {
    const { health, base, advance } = setup(down);
    const first = health.attempt(base);
    await expect(first.transport.send(post('http://ocsp.test/'))).rejects.toMatchObject({ code: 'HTTP_NETWORK' });
    expect(first.records).toEqual([
      { host: 'ocsp.test', url: 'http://ocsp.test/', kind: 'failed', code: 'HTTP_NETWORK' },
    ]);
    expect(first.contactedResponder()).toBe(true);
    first.settle('HTTP_NETWORK', none);
    const until = health.blockedUntil('ocsp.test');
    expect(until?.getTime()).toBe(NOW.getTime() + 60_000); // the first step: 1 min (no jitter at 0.5)
    expect(health.list()).toEqual([{ host: 'ocsp.test', until, failures: 1 }]);

    const second = health.attempt(base);
    const err = (await second.transport.send(post('http://ocsp.test/')).catch((e: unknown) => e)) as StapleError;
    expect(err.code).toBe('HTTP_NETWORK');
    expect(err.message).toContain(`not contacting ocsp.test before ${until?.toISOString()}`);
    expect(err.message).toContain('per-host backoff');
    expect(base.requests).toHaveLength(1); // refused without contacting the host
    expect(second.records[0]?.kind).toBe('blocked');
    expect(second.hosts()).toEqual(['ocsp.test']);
    expect(second.contactedResponder()).toBe(false);

    advance(60_001);
    expect(health.blockedUntil('ocsp.test')).toBeUndefined();
    await expect(health.attempt(base).transport.send(post('http://ocsp.test/'))).rejects.toMatchObject({
      code: 'HTTP_NETWORK',
    });
    expect(base.requests).toHaveLength(2);
  });

  it('caIssuers downloads (the issuer resolver transport) go through the same backoff, and count for their host', async () => {
    const { health, base } = setup((url) => (url.includes('ca.test') ? down(url) : {}));
    const a = health.attempt(base);
    await expect(a.issuerTransport.send({ method: 'GET', url: 'http://ca.test/ca.der' })).rejects.toThrow();
    expect(a.records).toEqual([
      { host: 'ca.test', url: 'http://ca.test', kind: 'failed', code: 'HTTP_NETWORK', issuer: true },
    ]);
    expect(a.requestUrl()).toBeUndefined(); // not a responder
    expect(a.contactedResponder()).toBe(false);
    a.settle('NO_ISSUER', none);
    expect(health.size).toBe(1);
    const b = health.attempt(base);
    await expect(b.issuerTransport.send({ method: 'GET', url: 'http://ca.test/ca.der' })).rejects.toThrow(
      /per-host backoff/,
    );
    // a responder on another host is not affected
    await expect(b.transport.send(post('http://ocsp.test/'))).resolves.toMatchObject({ status: 200 });
    expect(base.requests.map((r) => r.url)).toEqual(['http://ca.test/ca.der', 'http://ocsp.test/']);
  });

  it('a 5xx is a host failure; a 4xx is the host answering', async () => {
    const { health, base } = setup((url) => ({ status: url.includes('five') ? 503 : 404 }));
    const a = health.attempt(base);
    await a.transport.send(post('http://five.test/'));
    await a.transport.send(post('http://four.test/'));
    expect(a.records.map((r) => [r.host, r.kind])).toEqual([
      ['five.test', 'failed'],
      ['four.test', 'ok'],
    ]);
    a.settle('HTTP_STATUS', none);
    expect(health.blockedUntil('five.test')).toBeDefined();
    expect(health.blockedUntil('four.test')).toBeUndefined();
  });

  it('a 200 carrying tryLater is the responder host failing (at least 30 min), not the caIssuers host', async () => {
    const { health, base } = setup();
    const a = health.attempt(base);
    await a.issuerTransport.send({ method: 'GET', url: 'http://ca.test/ca.der' });
    await a.transport.send(post('http://ocsp.test/'));
    a.settle('OCSP_TRY_LATER', none);
    expect(health.blockedUntil('ocsp.test')!.getTime() - NOW.getTime()).toBeGreaterThanOrEqual(30 * 60_000);
    expect(health.blockedUntil('ca.test')).toBeUndefined();
  });

  it('the shortest remaining life of the host staples caps its backoff (a quarter of it, at least 10 s)', async () => {
    const { health, base } = setup(down);
    const a = health.attempt(base);
    await a.transport.send(post('http://ocsp.test/')).catch(() => undefined);
    // its staples have a minute left: not the usual first step of 1 min, but 15 s
    a.settle('HTTP_NETWORK', { lifeOf: () => 60_000, onRecovered: () => undefined });
    expect(health.blockedUntil('ocsp.test')!.getTime() - NOW.getTime()).toBe(15_000);
  });

  it('an urgent probe goes through a host in backoff; only one probe per host at a time', async () => {
    let fail = true;
    const { health, base } = setup((url) => (fail ? down(url) : {}));
    const a = health.attempt(base);
    await a.transport.send(post('http://ocsp.test/')).catch(() => undefined);
    a.settle('HTTP_NETWORK', none);
    expect(health.startProbe(['ocsp.test'])).toBe(true);
    expect(health.startProbe(['ocsp.test', 'other.test'])).toBe(false);
    fail = false;
    const probe = health.attempt(base, { probe: true });
    await expect(probe.transport.send(post('http://ocsp.test/'))).resolves.toMatchObject({ status: 200 });
    const recovered: string[] = [];
    probe.settle(undefined, { lifeOf: () => undefined, onRecovered: (h) => recovered.push(h) });
    health.endProbe(['ocsp.test']);
    expect(recovered).toEqual(['ocsp.test']);
    expect(health.size).toBe(0);
    expect(health.startProbe(['ocsp.test'])).toBe(true);
  });

  it('allBlockedUntil: the earliest end, only when every host is in backoff', async () => {
    const { health, base } = setup(down);
    const a = health.attempt(base);
    await a.transport.send(post('http://a.test/')).catch(() => undefined);
    a.settle('HTTP_NETWORK', none);
    expect(health.allBlockedUntil(['a.test'])).toEqual(health.blockedUntil('a.test'));
    expect(health.allBlockedUntil(['a.test', 'b.test'])).toBeUndefined();
    expect(health.allBlockedUntil([])).toBeUndefined();
  });

  it('records the responder base URL of a GET (the encoded request left out, RFC 5019 §5)', () => {
    expect(baseUrlOf('GET', 'http://ocsp.test/sub/MEUwQzBBMD8w')).toBe('http://ocsp.test/sub');
    expect(baseUrlOf('GET', 'http://ocsp.test/MEUwQzBBMD8w')).toBe('http://ocsp.test');
    expect(baseUrlOf('POST', 'http://ocsp.test/x')).toBe('http://ocsp.test/x');
  });
});
