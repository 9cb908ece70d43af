/**
 * Certificate loading and issuer discovery: PEM bundles in any order, DER,
 * broken inputs with clear errors, and every issuer source (docs/ARCHITECTURE.md).
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSignedBy, loadCertificates, parseCertificate } from '../../src/core/certs.js';
import { StapleError } from '../../src/core/errors.js';
import { parseCaIssuersContent } from '../../src/core/asn1.js';
import { IssuerResolver, pickLeaf } from '../../src/pipeline/issuer.js';
import { createHttpTransport } from '../../src/io/http.js';
import { buildTestPki, mintCert } from '../helpers/mint.js';
import { tempDir, cleanUp } from '../helpers/temp.js';
import { createFakeTransport } from '../../src/testing/index.js';
import { codeOfAsync } from '../helpers/errors.js';

const now = new Date();
const pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now });
const leaf = pki.leaves[0]!;

function errOf(fn: () => unknown): StapleError {
  try {
    fn();
  } catch (e) {
    return e as StapleError;
  }
  throw new Error('did not throw');
}

describe('parseCertificate', () => {
  it('reads the fields OCSP needs, agreeing with node:crypto', () => {
    const c = parseCertificate(leaf.der);
    const x = new X509Certificate(leaf.der);
    expect(c.serialHex).toBe(x.serialNumber.toUpperCase());
    expect(c.notAfter.getTime()).toBe(new Date(x.validTo).getTime());
    expect(c.ocspUrls).toEqual(['http://127.0.0.1:9/ocsp']);
    expect(c.subject).toContain(`CN=${leaf.cn}`);
    expect(c.isCA).toBe(false);
    expect(parseCertificate(pki.root.der).isCA).toBe(true);
    expect(parseCertificate(pki.responder.der).extKeyUsage).toContain('1.3.6.1.5.5.7.3.9');
    expect(c.authorityKeyId).toEqual(parseCertificate(pki.root.der).subjectKeyId);
    expect(isSignedBy(c, parseCertificate(pki.root.der))).toBe(true);
    expect(isSignedBy(c, parseCertificate(pki.otherRoot.der))).toBe(false);
  });
});

describe('loadCertificates', () => {
  it('loads PEM bundles in any order and picks the leaf', () => {
    const certs = loadCertificates(Buffer.from(pki.root.pem + '\n# comment\n' + leaf.pem));
    expect(certs).toHaveLength(2);
    const { leaf: l, rest } = pickLeaf(certs);
    expect(l.serial).toEqual(leaf.serial);
    expect(rest).toHaveLength(1);
  });
  it('loads DER', () => {
    expect(loadCertificates(leaf.der)[0]!.serial).toEqual(leaf.serial);
  });
  it.each([
    ['an empty file', Buffer.alloc(0), 'empty'],
    ['binary junk', Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3]), 'not a valid certificate'],
    ['truncated DER', leaf.der.subarray(0, leaf.der.length - 10), 'runs past the end'],
    [
      'PEM with broken base64',
      Buffer.from('-----BEGIN CERTIFICATE-----\nMII*&^%\n-----END CERTIFICATE-----\n'),
      'broken base64',
    ],
    [
      'the wrong PEM type',
      Buffer.from('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'),
      'found: PRIVATE KEY',
    ],
  ])('rejects %s with NOT_A_CERTIFICATE naming the input', (_n, data, fragment) => {
    const e = errOf(() => loadCertificates(data, '/etc/x/site.pem'));
    expect(e.code).toBe('NOT_A_CERTIFICATE');
    expect(e.message).toContain('/etc/x/site.pem');
    expect(e.message).toContain(fragment);
  });
});

describe('IssuerResolver', () => {
  let dir: string;
  let server: Server;
  let base: string;
  const served = new Map<string, Buffer>();
  let hits = 0;

  beforeAll(async () => {
    dir = await tempDir('sk-issuer-');
    await writeFile(join(dir, 'ca.pem'), pki.root.pem);
    execFileSync('openssl', [
      'crl2pkcs7',
      '-nocrl',
      '-certfile',
      join(dir, 'ca.pem'),
      '-outform',
      'DER',
      '-out',
      join(dir, 'ca.p7c'),
    ]);
    served.set('/ca.der', pki.root.der);
    served.set('/ca.p7c', (await import('node:fs')).readFileSync(join(dir, 'ca.p7c')));
    served.set('/big', Buffer.alloc(300 * 1024));
    server = createServer((req, res) => {
      hits++;
      const body = served.get(req.url ?? '');
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/pkix-cert' }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await cleanUp();
  });

  const l = parseCertificate(leaf.der);
  const root = parseCertificate(pki.root.der);
  const other = parseCertificate(pki.otherRoot.der);

  it('uses an explicit issuer only if it signed the certificate', async () => {
    const r = new IssuerResolver();
    expect((await r.resolve(l, { explicit: [root] })).subjectDer).toEqual(root.subjectDer);
    expect(await codeOfAsync(r.resolve(l, { explicit: [other] }))).toBe('ISSUER_MISMATCH');
  });

  it('finds the issuer in the bundle, the chain or the root chain', async () => {
    const r = new IssuerResolver();
    expect((await r.resolve(l, { bundle: [other, root] })).spkiDer).toEqual(root.spkiDer);
    expect((await r.resolve(l, { bundle: [other], chain: [root] })).spkiDer).toEqual(root.spkiDer);
    expect((await r.resolve(l, { rootchain: [root] })).spkiDer).toEqual(root.spkiDer);
  });

  it('finds the issuer in a CA directory, ignoring non-certificates', async () => {
    const caDir = join(dir, 'cas');
    await mkdir(caDir);
    await writeFile(join(caDir, 'other.pem'), pki.otherRoot.pem);
    await writeFile(join(caDir, 'root.crt'), pki.root.der);
    await writeFile(join(caDir, 'junk.pem'), 'not a cert');
    const r = new IssuerResolver({ caDirs: [caDir] });
    expect((await r.resolve(l, {})).spkiDer).toEqual(root.spkiDer);
  });

  it('a same-name impostor CA is not taken for the issuer', async () => {
    const impostor = parseCertificate(
      mintCert({
        subjectCN: pki.root.cn,
        isCA: true,
        notBefore: new Date(now.getTime() - 1e6),
        notAfter: new Date(now.getTime() + 1e9),
      }).der,
    );
    const r = new IssuerResolver();
    expect(await codeOfAsync(r.resolve(l, { bundle: [impostor] }))).toBe('NO_ISSUER');
  });

  it('fetches caIssuers as DER and as PKCS#7, once per URL, size-capped', async () => {
    const transport = createHttpTransport({ timeoutMs: 3000 });
    try {
      for (const path of ['/ca.der', '/ca.p7c']) {
        const withAia = parseCertificate(
          mintCert({
            subjectCN: `aia${path}`,
            issuer: pki.root,
            notBefore: new Date(now.getTime() - 1e6),
            notAfter: new Date(now.getTime() + 1e9),
            caIssuersUrls: [`${base}${path}`],
          }).der,
        );
        const r = new IssuerResolver({ transport });
        const before = hits;
        expect((await r.resolve(withAia, {})).spkiDer).toEqual(root.spkiDer);
        expect((await r.resolve(withAia, {})).spkiDer).toEqual(root.spkiDer);
        expect(hits - before).toBe(1);
      }
      const big = parseCertificate(
        mintCert({
          subjectCN: 'big',
          issuer: pki.root,
          notBefore: new Date(now.getTime() - 1e6),
          notAfter: new Date(now.getTime() + 1e9),
          caIssuersUrls: [`${base}/big`],
        }).der,
      );
      const e = await new IssuerResolver({ transport }).resolve(big, {}).catch((x: StapleError) => x);
      expect((e as StapleError).code).toBe('NO_ISSUER');
      expect((e as StapleError).message).toContain('cap');
    } finally {
      await transport.close();
    }
  });

  it('does not remember a failed caIssuers download: the next resolve tries again', async () => {
    const transport = createHttpTransport({ timeoutMs: 3000 });
    try {
      const withAia = parseCertificate(
        mintCert({
          subjectCN: 'aia-later',
          issuer: pki.root,
          notBefore: new Date(now.getTime() - 1e6),
          notAfter: new Date(now.getTime() + 1e9),
          caIssuersUrls: [`${base}/later.der`],
        }).der,
      );
      const r = new IssuerResolver({ transport });
      expect(await codeOfAsync(r.resolve(withAia, {}))).toBe('NO_ISSUER'); // 404: not there yet
      served.set('/later.der', pki.root.der);
      expect((await r.resolve(withAia, {})).spkiDer).toEqual(root.spkiDer);
      // a success is remembered
      const before = hits;
      expect((await r.resolve(withAia, {})).spkiDer).toEqual(root.spkiDer);
      expect(hits).toBe(before);
    } finally {
      await transport.close();
    }
  });

  it('reads CA directories again after refresh(), and an unreadable one at the next resolve', async () => {
    const caDir = join(dir, 'cas-later');
    const r = new IssuerResolver({ caDirs: [caDir] });
    // a missing folder is an error, and not remembered
    expect(await codeOfAsync(r.resolve(l, {}))).toBe('FILE_UNREADABLE');
    await mkdir(caDir);
    expect(await codeOfAsync(r.resolve(l, {}))).toBe('NO_ISSUER');
    // the listing of the (empty) folder is remembered until refresh()
    await writeFile(join(caDir, 'root.pem'), pki.root.pem);
    expect(await codeOfAsync(r.resolve(l, {}))).toBe('NO_ISSUER');
    r.refresh();
    expect((await r.resolve(l, {})).spkiDer).toEqual(root.spkiDer);
  });

  it('withTransport downloads through the given transport and shares the caches', async () => {
    const fake = createFakeTransport(() => ({ body: pki.root.der }));
    const withAia = parseCertificate(
      mintCert({
        subjectCN: 'aia-through',
        issuer: pki.root,
        notBefore: new Date(now.getTime() - 1e6),
        notAfter: new Date(now.getTime() + 1e9),
        caIssuersUrls: ['http://127.0.0.1:9/ca.der'],
      }).der,
    );
    const r = new IssuerResolver(); // no transport of its own
    expect(await codeOfAsync(r.resolve(withAia, {}))).toBe('NO_ISSUER');
    const through = r.withTransport(fake as never);
    expect((await through.resolve(withAia, {})).spkiDer).toEqual(root.spkiDer);
    expect(fake.requests.map((r) => r.url)).toEqual(['http://127.0.0.1:9/ca.der']);
    // the download is now in the shared cache: the original finds it without a transport
    expect((await r.resolve(withAia, {})).spkiDer).toEqual(root.spkiDer);
  });

  it('parseCaIssuersContent rejects junk with NOT_A_CERTIFICATE', async () => {
    await expect(parseCaIssuersContent(Buffer.from('hello'), 'http://x/')).rejects.toMatchObject({
      code: 'NOT_A_CERTIFICATE',
    });
  });
});
