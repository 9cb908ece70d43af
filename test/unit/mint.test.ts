/**
 * Tests of the test tools themselves: the in-process minting (checked against
 * Node's X509Certificate and OpenSSL as independent oracles) and the evil
 * responder (each scenario is served as described, and close() never leaves a
 * socket behind). If these tools were subtly wrong, every hostile-responder test
 * built on them would prove nothing.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate, createHash, verify as cryptoVerify } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicOCSPResponse, OCSPResponse, OCSPRequest } from '@peculiar/asn1-ocsp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/core/errors.js';
import {
  KEY_TYPES,
  OID,
  buildTestPki,
  certIdDer,
  certIdFor,
  certFacts,
  goodResponseFor,
  mintCert,
  mintOcspResponse,
  readDer,
  sharedKey,
  tlv,
  toPem,
  type KeyType,
  type MintedCert,
  type TestPki,
} from '../helpers/mint.js';
import {
  GARBAGE,
  SCENARIOS,
  decodeGetPath,
  makeScenarioContext,
  startEvilResponder,
  type Behaviour,
  type EvilResponder,
  type Scenario,
  type ScenarioContext,
} from '../helpers/evil-responder.js';
import { tempDirSync } from '../helpers/temp.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const DAY = 86_400_000;

let dir: string;
beforeAll(() => {
  dir = tempDirSync('sk-mint-');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let fileNo = 0;
function file(name: string, content: Buffer | string): string {
  const p = join(dir, `${fileNo++}-${name}`);
  writeFileSync(p, content);
  return p;
}

function openssl(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

/** `openssl ocsp` checking `resp` for `leaf` with the PKI root as the only trust anchor. */
function opensslOcsp(
  pki: TestPki,
  leaf: MintedCert,
  resp: Buffer,
  hash: 'sha1' | 'sha256' = 'sha1',
): { status: number | null; out: string } {
  const root = file('root.pem', pki.root.pem);
  // openssl looks our status up by a CertID it builds itself, so it must use the response's hash.
  return openssl([
    'ocsp',
    '-respin',
    file('resp.der', resp),
    '-issuer',
    root,
    `-${hash}`,
    '-cert',
    file('leaf.pem', leaf.pem),
    '-CAfile',
    root,
    '-no_nonce',
  ]);
}

// Real time: OpenSSL checks validity against the wall clock.
const pkis = new Map<string, TestPki>();
function pkiFor(keyType: KeyType, delegated: boolean): TestPki {
  const k = `${keyType}/${delegated}`;
  let p = pkis.get(k);
  if (!p) {
    p = buildTestPki({ keyType, delegated });
    pkis.set(k, p);
  }
  return p;
}

describe('mintCert', () => {
  it.each(KEY_TYPES)('%s: Node parses the certificates and the signatures verify', (kt) => {
    const pki = pkiFor(kt, true);
    const root = new X509Certificate(pki.root.der);
    const leaf = new X509Certificate(pki.leaves[0]!.der);
    const responder = new X509Certificate(pki.responder.der);
    expect(root.ca).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(root.verify(root.publicKey)).toBe(true);
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.checkIssued(root)).toBe(true);
    expect(leaf.subject).toContain('CN=leaf0.test');
    expect(leaf.issuer).toBe(root.subject);
    expect(leaf.serialNumber.toLowerCase()).toBe(pki.leaves[0]!.serial.toString('hex'));
    expect(leaf.infoAccess).toContain('OCSP - URI:http://127.0.0.1:9/ocsp');
    expect(leaf.subjectAltName).toBe('DNS:leaf0.test');
    expect(responder.keyUsage).toEqual([OID.kpOcspSigning]);
    expect(new X509Certificate(pki.responderNoEku.der).keyUsage).toEqual([OID.kpServerAuth]);
    // The leaf's AKI must equal the root's SKI, as path builders match on it.
    expect(certFacts(pki.root.der).ski).not.toBeNull();
    expect(pki.leaves[0]!.pem).toBe(toPem(pki.leaves[0]!.der));
  });

  it.runIf(hasOpenssl).each(KEY_TYPES)('%s: openssl x509 reads and openssl verify accepts the chain', (kt) => {
    const pki = pkiFor(kt, true);
    const root = file('root.pem', pki.root.pem);
    const text = openssl(['x509', '-noout', '-text', '-in', file('leaf.pem', pki.leaves[0]!.pem)]);
    expect(text.status, text.out).toBe(0);
    expect(text.out).toContain('Authority Information Access');
    expect(text.out).toContain('X509v3 Authority Key Identifier');
    for (const c of [pki.leaves[0]!, pki.responder, pki.responderNoEku]) {
      const v = openssl(['verify', '-CAfile', root, file('c.pem', c.pem)]);
      expect(v.status, v.out).toBe(0);
      expect(v.out).toContain(': OK');
    }
    // The rogue certificates are wrong in the intended way and no other.
    const other = openssl(['verify', '-CAfile', root, file('c.pem', pki.responderOtherCa.pem)]);
    expect(other.status).not.toBe(0);
    const expired = openssl(['verify', '-CAfile', root, file('c.pem', pki.responderExpired.pem)]);
    expect(expired.out).toContain('certificate has expired');
    const future = openssl(['verify', '-CAfile', root, file('c.pem', pki.responderNotYetValid.pem)]);
    expect(future.out).toContain('certificate is not yet valid');
  });

  it('uses a caller-given serial verbatim and a self-signed cert when no issuer is given', () => {
    const now = new Date();
    const c = mintCert({
      subjectCN: 'selfie',
      key: sharedKey('ec-p256', 'selfie'),
      serial: Buffer.from('00ff01', 'hex'),
      notBefore: now,
      notAfter: new Date(now.getTime() + DAY),
    });
    const x = new X509Certificate(c.der);
    expect(x.serialNumber.toLowerCase()).toBe('ff01');
    expect(c.serial.toString('hex')).toBe('00ff01');
    expect(certFacts(c.der).serial.toString('hex')).toBe('00ff01');
    expect(x.verify(x.publicKey)).toBe(true);
  });

  it('honours extension switches: no KU, SKI or AKI still makes a valid certificate', () => {
    const now = new Date();
    const root = pkiFor('ec-p256', false).root;
    const bare = mintCert({
      subjectCN: 'bare',
      issuer: root,
      keyUsage: null,
      ski: false,
      aki: false,
      notBefore: now,
      notAfter: new Date(now.getTime() + DAY),
    });
    const x = new X509Certificate(bare.der);
    expect(x.checkIssued(new X509Certificate(root.der))).toBe(true);
    expect(certFacts(bare.der).ski).toBeNull();
  });

  it.runIf(hasOpenssl)('signature algorithm overrides: RSA-PSS and SHA-384 with an rsaEncryption key', () => {
    const pki = pkiFor('rsa-2048', true);
    const now = new Date();
    const root = file('root.pem', pki.root.pem);
    for (const sigAlg of ['rsa-pss-sha256', 'rsa-sha384'] as const) {
      const c = mintCert({
        subjectCN: sigAlg,
        issuer: pki.root,
        sigAlg,
        notBefore: now,
        notAfter: new Date(now.getTime() + DAY),
      });
      const v = openssl(['verify', '-CAfile', root, file('c.pem', c.pem)]);
      expect(v.out, sigAlg).toContain(': OK');
      const r = opensslOcsp(pki, pki.leaves[0]!, goodResponseFor(pki, pki.leaves[0]!, now, { sigAlg }));
      expect(r.out, sigAlg).toContain('Response verify OK');
    }
  });

  it('mints leaves quickly when they share a key', () => {
    const rates: Record<string, number> = {};
    for (const [kt, n] of [
      ['ec-p256', 2000],
      ['rsa-2048', 300],
    ] as const) {
      const pki = pkiFor(kt, false);
      const key = sharedKey(kt, 'leaf');
      const now = new Date();
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        mintCert({
          subjectCN: `bench${i}.test`,
          issuer: pki.root,
          key,
          notBefore: now,
          notAfter: new Date(now.getTime() + DAY),
          ocspUrls: ['http://127.0.0.1:9/'],
        });
      }
      rates[kt] = Math.round(n / ((performance.now() - t0) / 1000));
    }
    console.log(`mintCert throughput (certs/s, shared leaf key): ${JSON.stringify(rates)}`);
    // Loose floors: only a gross regression (e.g. a key generated per certificate) should trip them.
    expect(rates['ec-p256']).toBeGreaterThan(300);
    expect(rates['rsa-2048']).toBeGreaterThan(50);
  });
});

describe('certIdFor', () => {
  it.runIf(hasOpenssl).each(['sha1', 'sha256'] as const)(
    'matches the CertID openssl puts in a request (%s)',
    (hash) => {
      for (const kt of ['ec-p256', 'rsa-2048', 'ed25519'] as const) {
        const pki = pkiFor(kt, false);
        // Include a serial whose top bit is set, which DER encodes with a leading zero.
        const leaves = [
          pki.leaves[0]!,
          mintCert({
            subjectCN: 'hibit',
            issuer: pki.root,
            serial: Buffer.from('00f00d', 'hex'),
            notBefore: new Date(),
            notAfter: new Date(Date.now() + DAY),
          }),
        ];
        for (const leaf of leaves) {
          const reqPath = join(dir, `req-${fileNo++}.der`);
          const r = openssl([
            'ocsp',
            `-${hash}`,
            '-issuer',
            file('root.pem', pki.root.pem),
            '-cert',
            file('leaf.pem', leaf.pem),
            '-reqout',
            reqPath,
            '-no_nonce',
          ]);
          expect(r.status, r.out).toBe(0);
          const req = Buffer.from(spawnSync('cat', [reqPath]).stdout);
          const ours = certIdDer(certIdFor(leaf.der, pki.root.der, hash));
          expect(req.indexOf(ours), `${kt} ${hash}`).toBeGreaterThan(0);
          // And the library parse agrees field by field.
          const parsed = AsnConvert.parse(req, OCSPRequest).tbsRequest.requestList[0]!.reqCert;
          const f = certIdFor(leaf.der, pki.root.der, hash);
          expect(Buffer.from(parsed.issuerNameHash.buffer)).toEqual(f.issuerNameHash);
          expect(Buffer.from(parsed.issuerKeyHash.buffer)).toEqual(f.issuerKeyHash);
          expect(Buffer.from(parsed.serialNumber)).toEqual(f.serial);
        }
      }
    },
  );
});

describe('mintOcspResponse', () => {
  it.runIf(hasOpenssl).each(KEY_TYPES.flatMap((kt) => [[kt, true] as const, [kt, false] as const]))(
    '%s delegated=%s: openssl ocsp says Response verify OK and good',
    (kt, delegated) => {
      const pki = pkiFor(kt, delegated);
      const leaf = pki.leaves[0]!;
      const r = opensslOcsp(pki, leaf, goodResponseFor(pki, leaf, new Date()));
      expect(r.out).toContain('Response verify OK');
      expect(r.out).toMatch(/leaf\.pem: good/);
      expect(r.status, r.out).toBe(0);
    },
  );

  it.runIf(hasOpenssl)('revoked and unknown statuses, SHA-256 CertIDs and nonces read back in openssl', () => {
    const pki = pkiFor('ec-p256', true);
    const leaf = pki.leaves[1]!;
    const now = new Date();
    const revoked = goodResponseFor(pki, leaf, now, {
      hash: 'sha256',
      nonce: Buffer.from('0123456789abcdef'),
      single: { status: 'revoked', revocationTime: new Date(now.getTime() - DAY), revocationReason: 1 },
    });
    const r = opensslOcsp(pki, leaf, revoked, 'sha256');
    expect(r.out).toContain('Response verify OK');
    expect(r.out).toMatch(/leaf\.pem: revoked/);
    expect(r.out).toContain('Reason: keyCompromise');
    const u = opensslOcsp(pki, leaf, goodResponseFor(pki, leaf, now, { single: { status: 'unknown' } }));
    expect(u.out).toMatch(/leaf\.pem: unknown/);
  });

  it('round-trips through @peculiar/asn1-ocsp with the fields asked for', () => {
    for (const delegated of [true, false]) {
      const pki = pkiFor('ec-p256', delegated);
      const leaf = pki.leaves[0]!;
      const now = new Date('2030-01-02T03:04:05.678Z');
      const der = goodResponseFor(pki, leaf, now, { responderId: 'key' });
      const resp = AsnConvert.parse(der, OCSPResponse);
      expect(resp.responseStatus).toBe(0);
      expect(resp.responseBytes!.responseType).toBe(OID.ocspBasic);
      const basic = AsnConvert.parse(resp.responseBytes!.response.buffer, BasicOCSPResponse);
      const single = basic.tbsResponseData.responses[0]!;
      expect(single.thisUpdate.toISOString()).toBe('2030-01-02T02:04:05.000Z');
      expect(single.nextUpdate!.toISOString()).toBe('2030-01-09T03:04:05.000Z');
      expect(single.certStatus.good).toBe(null);
      expect(Buffer.from(single.certID.serialNumber)).toEqual(leaf.serial);
      expect(Buffer.from(basic.tbsResponseData.responderID.byKey!.buffer)).toEqual(
        createHash('sha1').update(certFacts(pki.signer.der).publicKeyBits).digest(),
      );
      // The signer's certificate travels only when the signer is not the issuer.
      expect(basic.certs?.length ?? 0).toBe(delegated ? 1 : 0);
      // The signature covers exactly the tbsResponseData bytes we emitted.
      const tbs = Buffer.from(basic.tbsResponseDataRaw!);
      expect(
        cryptoVerify(
          'sha256',
          tbs,
          { key: pki.signer.key.publicKey, dsaEncoding: 'der' },
          Buffer.from(basic.signature),
        ),
      ).toBe(true);
    }
  });

  it('non-successful statuses carry only the status unless forced', () => {
    const pki = pkiFor('ec-p256', false);
    const base = { signer: pki.signer, producedAt: new Date(), singles: [] };
    expect(mintOcspResponse({ ...base, status: 3 }).toString('hex')).toBe('30030a0103');
    expect(mintOcspResponse({ ...base, status: 0, omitResponseBytes: true }).toString('hex')).toBe('30030a0100');
    const forced = AsnConvert.parse(mintOcspResponse({ ...base, status: 3, forceResponseBytes: true }), OCSPResponse);
    expect(forced.responseStatus).toBe(3);
    expect(forced.responseBytes).toBeDefined();
  });
});

// ---------------------------------------------------------------------------
// Scenarios and the evil responder
// ---------------------------------------------------------------------------

/** Minimal HTTP client with full control: what came back, or how it failed. */
interface Got {
  status?: number;
  headers?: IncomingHttpHeaders;
  body: Buffer;
  error?: string;
  timedOut?: boolean;
  ms: number;
}
function get(
  url: string,
  opts: { timeoutMs?: number; maxBytes?: number; method?: string; body?: Buffer } = {},
): Promise<Got> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    // Status and headers, once they arrived: a later socket error must not hide them.
    let head: Pick<Got, 'status' | 'headers'> = {};
    const finish = (g: Omit<Got, 'body' | 'ms'>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ ...head, ...g, body: Buffer.concat(chunks), ms: performance.now() - t0 });
    };
    const req = httpRequest(url, { method: opts.method ?? 'GET', agent: false }, (res) => {
      head = { status: res.statusCode!, headers: res.headers };
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        size += c.length;
        if (opts.maxBytes !== undefined && size > opts.maxBytes)
          finish({ status: res.statusCode!, headers: res.headers, error: 'too-large' });
      });
      res.on('end', () => finish({ status: res.statusCode!, headers: res.headers }));
      res.on('error', (e) =>
        finish({
          status: res.statusCode!,
          headers: res.headers,
          error: (e as NodeJS.ErrnoException).code ?? e.message,
        }),
      );
      res.on('aborted', () => finish({ status: res.statusCode!, headers: res.headers, error: 'aborted' }));
    });
    req.on('error', (e) => finish({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    const timer = setTimeout(() => finish({ timedOut: true }), opts.timeoutMs ?? 5000);
    req.end(opts.body);
  });
}

describe('SCENARIOS catalogue', () => {
  it('has at least 35 uniquely named scenarios with real error codes', () => {
    expect(SCENARIOS.length).toBeGreaterThanOrEqual(35);
    expect(new Set(SCENARIOS.map((s) => s.name)).size).toBe(SCENARIOS.length);
    for (const s of SCENARIOS) {
      if (s.expectedCode !== 'OK') expect(Object.keys(ERROR_CODES), s.name).toContain(s.expectedCode);
    }
    // The misbehaviours the issues list by name, each present.
    const names = SCENARIOS.map((s) => s.name).join(' ');
    for (const n of [
      'status-undefined-4',
      'status-undefined-99',
      'redirect-loop',
      'redirect-to-file',
      'accepts-never-answers',
      'body-never-ends',
    ]) {
      expect(names).toContain(n);
    }
  });

  it.each(['ec-p256', 'rsa-2048', 'ed25519'] as const)('every scenario builds for %s', (kt) => {
    for (const delegated of [true, false]) {
      const ctx = { ...makeScenarioContext(pkiFor(kt, delegated)), selfUrl: 'http://127.0.0.1:1/ocsp/x' };
      for (const s of SCENARIOS) expect(() => s.build(ctx), s.name).not.toThrow();
    }
  });

  it('DER-level scenarios are damaged as named, and the good response is not', () => {
    const ctx = { ...makeScenarioContext(pkiFor('ec-p256', true)), selfUrl: 'http://127.0.0.1:1/' };
    const bodyOf = (name: string): Buffer => {
      const b = SCENARIOS.find((s) => s.name === name)!.build(ctx);
      if (b.kind !== 'respond') throw new Error(`${name} is not a plain response`);
      return Buffer.from(b.body);
    };
    const parses = (b: Buffer): boolean => {
      try {
        const r = AsnConvert.parse(b, OCSPResponse);
        if (r.responseBytes) AsnConvert.parse(r.responseBytes.response.buffer, BasicOCSPResponse);
        return true;
      } catch {
        return false;
      }
    };
    expect(parses(ctx.good())).toBe(true);
    for (const n of [
      'garbage',
      'empty-body',
      'truncated-der',
      'overlong-outer-length',
      'huge-outer-length-0x84ffffffff',
      'inner-length-overrun',
    ]) {
      expect(parses(bodyOf(n)), n).toBe(false);
    }
    expect(bodyOf('huge-outer-length-0x84ffffffff').subarray(0, 6).toString('hex')).toBe('3084ffffffff');
    // Trailing bytes: a prefix is a complete, valid response; the rest is extra.
    const trailing = bodyOf('trailing-bytes');
    const el = readDer(trailing, 0);
    expect(el.end).toBeLessThan(trailing.length);
    expect(parses(trailing.subarray(0, el.end))).toBe(true);
    expect(bodyOf('garbage')).toEqual(GARBAGE);
    for (const [n, st] of [
      ['status-undefined-4', 4],
      ['status-undefined-99', 99],
      ['status-tryLater', 3],
      ['successful-without-responseBytes', 0],
    ] as const) {
      const r = AsnConvert.parse(bodyOf(n), OCSPResponse);
      expect(r.responseStatus).toBe(st);
      expect(r.responseBytes).toBeUndefined();
    }
  });

  // OpenSSL as an independent oracle: each signer/signature/CertID scenario must
  // really be rejected, while the same PKI's good response passes.
  it.runIf(hasOpenssl).each([true, false])(
    'openssl rejects the signer, signature and CertID scenarios (delegated=%s)',
    (delegated) => {
      const pki = buildTestPki({ keyType: 'ec-p256', delegated });
      const ctx: ScenarioContext = { ...makeScenarioContext(pki, pki.leaves[0]!, new Date()), selfUrl: 'http://x/' };
      const body = (s: Scenario): Buffer => {
        const b: Behaviour = s.build(ctx);
        if (b.kind !== 'respond') throw new Error('not a response');
        return Buffer.from(b.body);
      };
      expect(opensslOcsp(pki, ctx.leaf, ctx.good()).out).toContain('Response verify OK');
      for (const s of SCENARIOS.filter((x) => x.category === 'signer' || x.category === 'signature')) {
        const r = opensslOcsp(pki, ctx.leaf, body(s));
        expect(r.out, s.name).not.toContain('Response verify OK');
      }
      for (const s of SCENARIOS.filter((x) => x.category === 'certid')) {
        // OpenSSL additionally refuses a delegated signature over CertIDs of another issuer, so only the lookup is asserted.
        const r = opensslOcsp(pki, ctx.leaf, body(s));
        expect(r.out, s.name).toMatch(/No Status found/);
        if (!delegated) expect(r.out, s.name).toContain('Response verify OK');
      }
      for (const n of ['next-update-in-past', 'this-update-in-future']) {
        const r = opensslOcsp(pki, ctx.leaf, body(SCENARIOS.find((s) => s.name === n)!));
        expect(r.out, n).toContain('Status times invalid');
      }
    },
  );
});

describe('evil responder', () => {
  // Ed25519 and RSA PKCS#1 signatures are deterministic, so a body served can be compared byte for byte with a fresh build.
  // Built at collection time: the list of plain-response scenarios below depends on it.
  const ctx: Omit<ScenarioContext, 'selfUrl'> = makeScenarioContext(pkiFor('ed25519', true));
  let server: EvilResponder;
  beforeAll(async () => {
    server = await startEvilResponder((req, info) => {
      // /s/<scenario>/<anything>: route to the named scenario.
      const name = decodeURIComponent(req.path.split('/')[2] ?? '');
      const s = SCENARIOS.find((x) => x.name === name);
      if (!s) return { kind: 'respond', status: 400, body: `unknown scenario ${name}` };
      return s.build({ ...ctx, selfUrl: `${info.baseUrl}${req.path}` });
    });
  });
  afterAll(async () => {
    await server.close();
  });
  const urlOf = (name: string): string => `http://127.0.0.1:${server.port}/s/${name}/MEMwQTA`;

  it.each(
    SCENARIOS.filter((s) => s.build({ ...ctx, selfUrl: '' }).kind === 'respond').map((s) => [s.name, s] as const),
  )('serves %s as built', async (_name, s) => {
    const expected = s.build({ ...ctx, selfUrl: '' });
    if (expected.kind !== 'respond') throw new Error('unreachable');
    const got = await get(urlOf(s.name), { timeoutMs: 10_000 });
    expect(got.error).toBeUndefined();
    expect(got.status).toBe(expected.status);
    expect(got.headers!['content-type']).toBe(expected.headers?.['content-type']);
    expect(got.body.equals(Buffer.from(expected.body))).toBe(true);
    if (expected.chunked) expect(got.headers!['transfer-encoding']).toBe('chunked');
    else expect(got.headers!['content-length']).toBe(String(got.body.length));
  });

  it('records requests and decodes the OCSP request from GET paths and POST bodies', async () => {
    // An OCSPRequest for our CertID; vary the serial until the base64 contains '/',
    // so the path decoding is exercised with an unescaped '/' too.
    let reqDer: Buffer = Buffer.alloc(0);
    for (let i = 1; !reqDer.toString('base64').includes('/'); i++) {
      const id = certIdDer({ ...ctx.certId, serial: Buffer.from([0x01, i & 0xff, i >> 8]) });
      reqDer = tlv(0x30, tlv(0x30, tlv(0x30, tlv(0x30, id))));
    }
    const b64 = reqDer.toString('base64');
    const n0 = server.requests.length;
    await get(`http://127.0.0.1:${server.port}/s/http-404/${encodeURIComponent(b64)}`);
    await get(`http://127.0.0.1:${server.port}/s/http-404/${b64}`);
    await get(`http://127.0.0.1:${server.port}/s/http-404`, { method: 'POST', body: reqDer });
    const [a, b, c] = server.requests.slice(n0);
    expect(a!.method).toBe('GET');
    expect(a!.der).toEqual(reqDer);
    expect(b!.der).toEqual(reqDer);
    expect(c!.method).toBe('POST');
    expect(c!.body).toEqual(reqDer);
    expect(c!.der).toEqual(reqDer);
    expect(decodeGetPath('/ocsp/not-base64!')).toBeNull();
  });

  it('redirects: a loop back to the same URL, and to ftp: and file:', async () => {
    const loop = await get(urlOf('redirect-loop'));
    expect(loop.status).toBe(302);
    expect(loop.headers!.location).toBe(urlOf('redirect-loop'));
    expect((await get(urlOf('redirect-to-ftp'))).headers!.location).toMatch(/^ftp:/);
    expect((await get(urlOf('redirect-to-file'))).headers!.location).toBe('file:///etc/passwd');
  });

  it('the endless body passes 1 MiB quickly', async () => {
    const got = await get(urlOf('body-never-ends'), { maxBytes: 1024 * 1024, timeoutMs: 5000 });
    expect(got.error).toBe('too-large');
    expect(got.ms).toBeLessThan(3000);
    expect(got.headers!['transfer-encoding']).toBe('chunked');
  });

  it('one byte per second: headers at once, then a trickle', async () => {
    const got = await get(urlOf('one-byte-per-second'), { timeoutMs: 2500 });
    expect(got.timedOut).toBe(true);
    expect(got.body.length).toBeGreaterThanOrEqual(1);
    expect(got.body.length).toBeLessThanOrEqual(3);
  });

  it('resets the connection mid-body and before answering', async () => {
    const mid = await get(urlOf('connection-reset-mid-body'));
    expect(mid.status).toBe(200);
    expect(mid.error).toBeDefined();
    expect(mid.body.length).toBeLessThan(Number(mid.headers!['content-length']));
    const before = await get(urlOf('connection-reset-before-answer'));
    expect(before.status).toBeUndefined();
    expect(before.error).toMatch(/ECONNRESET|socket hang up/);
  });

  it('hangs without answering, and close() ends hanging and streaming sockets at once', async () => {
    const own = await startEvilResponder((req) =>
      req.path.includes('stream') ? { kind: 'stream-forever', intervalMs: 50, chunkSize: 16 } : { kind: 'hang' },
    );
    const hung = get(`${own.url}/hang`, { timeoutMs: 10_000 });
    const streaming = get(`${own.url}/stream`, { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    expect(own.requests.length).toBe(2);
    const t0 = performance.now();
    await own.close();
    const [h, s] = await Promise.all([hung, streaming]);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(h.timedOut).toBeUndefined();
    expect(h.status).toBeUndefined();
    expect(h.error).toBeDefined();
    expect(s.status).toBe(200);
    expect(s.body.length).toBeGreaterThan(0);
  });
});
