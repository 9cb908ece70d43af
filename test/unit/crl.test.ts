/**
 * core/crl.ts: decoding, verification and serial lookup of CRLs, with CRLs
 * minted in-process (test/helpers/mint.ts) for every defect and one issued by
 * `openssl ca -gencrl` (scripts/lib/pki.mjs).
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createPki,
  genCrl,
  revokeLeaf,
  OID,
  hugeCrlEntries,
  hugeCrlSerial,
  mintCert,
  mintCrl,
  sharedKey,
  tlv,
  type MintedCert,
} from '../helpers/mint.js';
import { loadCertificates, parseCertificate, type Certificate } from '../../src/core/certs.js';
import { countRevoked, decodeCrl, findRevoked, listRevoked, verifyCrl } from '../../src/core/crl.js';
import { isStapleError } from '../../src/core/errors.js';
import { tempDir } from '../helpers/temp.js';

const DAY = 86_400_000;
const now = new Date('2026-06-01T12:00:00Z');
const URL = 'http://127.0.0.1:9/ca.crl';
const ca = mintCert({
  subjectCN: 'crl test CA',
  key: sharedKey('ec-p256', 'crl-ca'),
  isCA: true,
  notBefore: new Date(now.getTime() - 100 * DAY),
  notAfter: new Date(now.getTime() + 3650 * DAY),
});
const otherCa = mintCert({
  subjectCN: 'crl test CA', // the same name, another key
  key: sharedKey('ec-p256', 'crl-other'),
  isCA: true,
  notBefore: new Date(now.getTime() - 100 * DAY),
  notAfter: new Date(now.getTime() + 3650 * DAY),
});
function leafOf(issuer: MintedCert, opts: Partial<Parameters<typeof mintCert>[0]> = {}): MintedCert {
  return mintCert({
    subjectCN: 'crl leaf',
    issuer,
    notBefore: new Date(now.getTime() - DAY),
    notAfter: new Date(now.getTime() + 90 * DAY),
    crlUrls: [URL],
    ...opts,
  });
}
const leaf = leafOf(ca);
const other = leafOf(ca);
const P = (m: MintedCert): Certificate => parseCertificate(m.der);
const base = { thisUpdate: new Date(now.getTime() - 3_600_000), signer: ca };

function verify(der: Buffer, cert: MintedCert = leaf, issuer: MintedCert = ca, extra: MintedCert[] = []) {
  return verifyCrl(decodeCrl(der), { cert: P(cert), issuer: P(issuer), candidates: extra.map(P), url: URL, now });
}
function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (isStapleError(e)) return e.code;
    throw e;
  }
  return undefined;
}

describe('CRL lookup', () => {
  it('good when the serial is not listed, revoked with date and reason when it is', () => {
    const der = mintCrl({
      ...base,
      revoked: [{ serial: other.serial, revocationDate: new Date(now.getTime() - DAY), reason: 1 }],
    });
    expect(verify(der)).toMatchObject({ status: 'good' });
    const r = verify(der, other);
    expect(r).toMatchObject({ status: 'revoked', reason: 'keyCompromise', crlNumber: '01' });
    expect(r.revocationDate?.toISOString()).toBe(new Date(now.getTime() - DAY).toISOString());
  });

  it('reads a CRL without nextUpdate (optional in RFC 5280 §5.1.2.5) and lists its entries', () => {
    const der = mintCrl({
      ...base,
      nextUpdate: null,
      revoked: [{ serial: leaf.serial, revocationDate: now, reason: 4 }],
    });
    const crl = decodeCrl(der);
    expect(crl.nextUpdate).toBeUndefined();
    expect(crl.crlNumber).toBe('01');
    expect(verify(der)).toMatchObject({ status: 'revoked', reason: 'superseded' });
  });

  it('finds an entry among a hundred thousand, and counts them', () => {
    const entries = hugeCrlEntries(100_000, new Date(now.getTime() - DAY));
    const der = mintCrl({ ...base, revokedEntriesDer: entries });
    const crl = decodeCrl(der);
    expect(countRevoked(crl)).toBe(100_000);
    expect(findRevoked(crl, hugeCrlSerial(99_999))?.serial).toEqual(hugeCrlSerial(99_999));
    expect(findRevoked(crl, hugeCrlSerial(40_000))?.reason).toBe('keyCompromise');
    expect(findRevoked(crl, hugeCrlSerial(100_000))).toBeUndefined();
  });

  it('a CRL from `openssl ca -gencrl` lists the revoked leaf', async () => {
    const dir = await tempDir('sk-crl-unit-');
    try {
      const pki = await createPki({
        dir,
        ocspUrl: 'http://127.0.0.1:9/',
        leaves: [
          { name: 'a', crlUrl: URL },
          { name: 'b', crlUrl: URL },
        ],
      });
      await revokeLeaf(pki, 'b', { reason: 'superseded' });
      const out = await genCrl(pki, { out: join(dir, 'ca.crl') });
      const der = await readFile(out);
      const issuer = loadCertificates(await readFile(pki.ca.cert))[0]!;
      const a = loadCertificates(await readFile(pki.leaves.a!.cert))[0]!;
      const b = loadCertificates(await readFile(pki.leaves.b!.cert))[0]!;
      const crl = decodeCrl(der);
      expect(crl.version).toBe(2);
      const at = new Date();
      expect(verifyCrl(crl, { cert: a, issuer, url: URL, now: at }).status).toBe('good');
      const rb = verifyCrl(crl, { cert: b, issuer, url: URL, now: at });
      expect(rb).toMatchObject({ status: 'revoked', reason: 'superseded' });
      expect(rb.revocationDate?.toISOString()).toBe(pki.leaves.b!.revokedAt!.toISOString());
      expect(listRevoked(crl)).toHaveLength(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('CRLs that must be refused', () => {
  it('signed by the wrong key (same name, other CA)', () => {
    const der = mintCrl({ ...base, signer: otherCa });
    expect(code(() => verify(der))).toBe('CRL_BAD_SIGNATURE');
  });

  it('a flipped signature bit', () => {
    expect(code(() => verify(mintCrl({ ...base, corruptSignature: true })))).toBe('CRL_BAD_SIGNATURE');
  });

  it('expired (nextUpdate passed) and not yet valid', () => {
    const old = mintCrl({
      ...base,
      thisUpdate: new Date(now.getTime() - 9 * DAY),
      nextUpdate: new Date(now.getTime() - DAY),
    });
    expect(code(() => verify(old))).toBe('CRL_STALE');
    const future = mintCrl({ ...base, thisUpdate: new Date(now.getTime() + DAY) });
    expect(code(() => verify(future))).toBe('CRL_NOT_YET_VALID');
  });

  it('for another issuer', () => {
    const stranger = mintCert({
      subjectCN: 'another CA',
      key: sharedKey('ec-p256', 'crl-stranger'),
      isCA: true,
      notBefore: new Date(now.getTime() - DAY),
      notAfter: new Date(now.getTime() + 365 * DAY),
    });
    expect(code(() => verify(mintCrl({ ...base, signer: stranger })))).toBe('CRL_WRONG_ISSUER');
  });

  it('truncated, or with trailing garbage, or not a CRL at all', () => {
    const der = mintCrl({ ...base, revokedEntriesDer: hugeCrlEntries(1000, now) });
    expect(code(() => decodeCrl(der.subarray(0, der.length - 100)))).toBe('CRL_MALFORMED');
    expect(code(() => decodeCrl(Buffer.concat([der, Buffer.from([0])])))).toBe('CRL_MALFORMED');
    expect(code(() => decodeCrl(Buffer.from('<html>not found</html>')))).toBe('CRL_MALFORMED');
    expect(code(() => decodeCrl(ca.der))).toBe('CRL_MALFORMED');
  });

  it('a damaged entry inside the list is found by the lookup (framing is checked entry by entry)', () => {
    const entries = hugeCrlEntries(10, now);
    entries[entries.length - 15] = 0x31; // a SET where the last entry's revocationDate should be
    const der = mintCrl({ ...base, revokedEntriesDer: entries });
    expect(code(() => verify(der))).toBe('CRL_MALFORMED');
  });

  it('an unknown critical CRL extension, a delta CRL, an unknown critical entry extension', () => {
    const crit = mintCrl({
      ...base,
      extraExtensions: [{ oid: '1.2.3.4.5', critical: true, value: Buffer.from([5, 0]) }],
    });
    expect(code(() => verify(crit))).toBe('CRL_CRITICAL_EXTENSION');
    const delta = mintCrl({
      ...base,
      extraExtensions: [{ oid: '2.5.29.27', critical: true, value: tlv(0x02, Buffer.from([1])) }],
    });
    expect(code(() => verify(delta))).toBe('CRL_CRITICAL_EXTENSION');
    const entry = mintCrl({
      ...base,
      revoked: [
        {
          serial: leaf.serial,
          revocationDate: now,
          extensions: [{ oid: '1.2.3.9', critical: true, value: Buffer.from([5, 0]) }],
        },
      ],
    });
    expect(code(() => verify(entry))).toBe('CRL_CRITICAL_EXTENSION');
    // a non-critical unknown extension is fine
    const fine = mintCrl({ ...base, extraExtensions: [{ oid: '1.2.3.4.5', value: Buffer.from([5, 0]) }] });
    expect(verify(fine).status).toBe('good');
  });
});

describe('issuing distribution point scope (partitioned CRLs)', () => {
  it('accepts a partition naming the certificate’s distribution point, refuses another one', () => {
    expect(verify(mintCrl({ ...base, idp: { urls: [URL], onlyContainsUserCerts: true } })).status).toBe('good');
    expect(code(() => verify(mintCrl({ ...base, idp: { urls: ['http://127.0.0.1:9/shard-7.crl'] } })))).toBe(
      'CRL_SCOPE',
    );
  });

  it('refuses CA-only, some-reasons-only and indirect CRLs for a leaf', () => {
    expect(code(() => verify(mintCrl({ ...base, idp: { onlyContainsCACerts: true } })))).toBe('CRL_SCOPE');
    expect(code(() => verify(mintCrl({ ...base, idp: { urls: [URL], onlySomeReasons: true } })))).toBe('CRL_SCOPE');
    expect(code(() => verify(mintCrl({ ...base, idp: { urls: [URL], indirectCRL: true } })))).toBe('CRL_SCOPE');
  });
});

describe('a CRL signer certified by the issuer (RFC 5280 §6.3.3 f)', () => {
  const signerKey = sharedKey('ec-p256', 'crl-signer');
  const validity = { notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + 365 * DAY) };
  // same subject as the CA (the CRL issuer name must match the certificate's issuer name)
  const crlSigner = mintCert({
    subjectCN: 'crl test CA',
    issuer: ca,
    key: signerKey,
    keyUsage: ['crlSign'],
    ...validity,
  });
  const noCrlSign = mintCert({
    subjectCN: 'crl test CA',
    issuer: ca,
    key: sharedKey('ec-p256', 'crl-signer-2'),
    keyUsage: ['digitalSignature'],
    ...validity,
  });

  it('is accepted with keyUsage cRLSign', () => {
    const der = mintCrl({ ...base, signer: crlSigner, revoked: [{ serial: leaf.serial, revocationDate: now }] });
    expect(verify(der, leaf, ca, [crlSigner])).toMatchObject({ status: 'revoked', signer: 'CN=crl test CA' });
  });

  it('is refused without cRLSign, or when it is not given', () => {
    expect(code(() => verify(mintCrl({ ...base, signer: noCrlSign }), leaf, ca, [noCrlSign]))).toBe(
      'CRL_BAD_SIGNATURE',
    );
    expect(code(() => verify(mintCrl({ ...base, signer: crlSigner })))).toBe('CRL_BAD_SIGNATURE');
  });

  it('an issuer without cRLSign may not sign CRLs', () => {
    const noSign = mintCert({
      subjectCN: 'no crl ca',
      key: sharedKey('ec-p256', 'crl-nosign'),
      isCA: true,
      keyUsage: ['keyCertSign'],
      ...validity,
    });
    const l = leafOf(noSign);
    expect(code(() => verify(mintCrl({ ...base, signer: noSign }), l, noSign))).toBe('CRL_WRONG_ISSUER');
  });
});

describe('certificate facts', () => {
  it('OID of the TLS feature extension is the RFC 7633 one', () => {
    expect(OID.extTlsFeature).toBe('1.3.6.1.5.5.7.1.24');
  });
});

afterAll(() => undefined);
