/**
 * The acceptance rules of RFC 6960 §3.2 and §4.2.2 with a fixed clock, over every
 * supported signature algorithm, issuer-signed and delegated.
 */
import { describe, expect, it } from 'vitest';
import { parseCertificate } from '../../src/core/certs.js';
import { buildRequest, computeCertId } from '../../src/core/request.js';
import { decodeResponse } from '../../src/core/response.js';
import { assertGood, verifyResponse } from '../../src/core/verify.js';
import {
  KEY_TYPES,
  buildTestPki,
  goodResponseFor,
  mintCert,
  mintOcspResponse,
  certIdFor,
  OID,
} from '../helpers/mint.js';
import { codeOf } from '../helpers/errors.js';

const now = new Date('2026-11-22T12:00:00Z');
const H = 3600_000;

describe.each(KEY_TYPES.map((k) => [k]))('%s', (keyType) => {
  for (const delegated of [true, false]) {
    it(`accepts a good ${delegated ? 'delegated' : 'issuer-signed'} response and reports its facts`, () => {
      const pki = buildTestPki({ keyType, delegated, now });
      const leaf = pki.leaves[0]!;
      const v = verifyResponse(goodResponseFor(pki, leaf, now), {
        cert: parseCertificate(leaf.der),
        issuer: parseCertificate(pki.root.der),
        now,
      });
      expect(v.status).toBe('good');
      expect(v.delegated).toBe(delegated);
      expect(v.thisUpdate).toEqual(new Date(now.getTime() - H));
      expect(v.nextUpdate.getTime()).toBeGreaterThan(now.getTime());
      expect(v.responder).toContain('CN=');
      expect(() => assertGood(v)).not.toThrow();
    });
  }
});

describe('verifyResponse rules', () => {
  const pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now });
  const leaf = pki.leaves[0]!;
  const cert = parseCertificate(leaf.der);
  const issuer = parseCertificate(pki.root.der);
  const verify = (der: Buffer, at = now, extra: { skewMs?: number; nonce?: Buffer } = {}) =>
    verifyResponse(der, { cert, issuer, now: at, ...extra });

  it('accepts a SHA-256 CertID', () => {
    expect(verify(goodResponseFor(pki, leaf, now, { hash: 'sha256' })).status).toBe('good');
  });

  it('tolerates thisUpdate up to the skew in the future, not beyond', () => {
    const der = goodResponseFor(pki, leaf, now, { single: { thisUpdate: new Date(now.getTime() + 4 * 60_000) } });
    expect(verify(der).status).toBe('good');
    expect(codeOf(() => verify(der, now, { skewMs: 60_000 }))).toBe('OCSP_NOT_YET_VALID');
  });

  it('rejects a response whose nextUpdate has passed', () => {
    const der = goodResponseFor(pki, leaf, now);
    expect(codeOf(() => verify(der, new Date(now.getTime() + 8 * 24 * H)))).toBe('OCSP_STALE');
  });

  it('rejects when the certificate itself has expired', () => {
    const der = goodResponseFor(pki, leaf, now, { single: { nextUpdate: new Date(now.getTime() + 400 * 24 * H) } });
    expect(codeOf(() => verify(der, new Date(now.getTime() + 200 * 24 * H)))).toBe('CERT_EXPIRED');
  });

  it('reports revoked with time and reason, and unknown, via assertGood', () => {
    const revokedAt = new Date(now.getTime() - 48 * H);
    const r = verify(
      goodResponseFor(pki, leaf, now, {
        single: { status: 'revoked', revocationTime: revokedAt, revocationReason: 1 },
      }),
    );
    expect(r.status).toBe('revoked');
    expect(r.revocationTime).toEqual(revokedAt);
    expect(r.revocationReason).toBe('keyCompromise');
    expect(codeOf(() => assertGood(r))).toBe('OCSP_REVOKED');
    const u = verify(goodResponseFor(pki, leaf, now, { single: { status: 'unknown' } }));
    expect(codeOf(() => assertGood(u))).toBe('OCSP_UNKNOWN_CERT');
  });

  it('caps usableUntil at a delegated signer that expires before nextUpdate', () => {
    const shortSigner = mintCert({
      subjectCN: 'short-lived responder',
      issuer: pki.root,
      notBefore: new Date(now.getTime() - 24 * H),
      notAfter: new Date(now.getTime() + 2 * 24 * H),
      eku: [OID.kpOcspSigning],
    });
    const der = mintOcspResponse({
      signer: shortSigner,
      producedAt: now,
      singles: [
        {
          certId: certIdFor(leaf.der, pki.root.der),
          status: 'good',
          thisUpdate: now,
          nextUpdate: new Date(now.getTime() + 7 * 24 * H),
        },
      ],
    });
    const v = verify(der);
    expect(v.usableUntil).toEqual(shortSigner && new Date(parseCertificate(shortSigner.der).notAfter));
    expect(v.warnings.join()).toContain('expires');
  });

  it('requires exactly one matching SingleResponse', () => {
    const single = {
      certId: certIdFor(leaf.der, pki.root.der),
      status: 'good' as const,
      thisUpdate: now,
      nextUpdate: new Date(now.getTime() + 24 * H),
    };
    const twice = mintOcspResponse({ signer: pki.signer, producedAt: now, singles: [single, single] });
    expect(codeOf(() => verify(twice))).toBe('OCSP_CERTID_MISMATCH');
    const other = { ...single, certId: certIdFor(pki.leaves[1]!.der, pki.root.der) };
    const withOther = mintOcspResponse({ signer: pki.signer, producedAt: now, singles: [other, single] });
    const v = verify(withOther);
    expect(v.status).toBe('good');
    expect(v.warnings.join()).toContain('2 answers');
  });

  it('checks the nonce when one was sent', () => {
    const nonce = Buffer.from('0123456789abcdef');
    const withNonce = goodResponseFor(pki, leaf, now, { nonce });
    expect(verify(withNonce, now, { nonce }).status).toBe('good');
    expect(codeOf(() => verify(withNonce, now, { nonce: Buffer.from('other nonce 1234') }))).toBe(
      'OCSP_NONCE_MISMATCH',
    );
    expect(codeOf(() => verify(goodResponseFor(pki, leaf, now), now, { nonce }))).toBe('OCSP_NONCE_MISMATCH');
  });

  it('accepts a response for another certificate only for that certificate', () => {
    const der = goodResponseFor(pki, leaf, now);
    const otherCert = parseCertificate(pki.leaves[1]!.der);
    expect(codeOf(() => verifyResponse(der, { cert: otherCert, issuer, now }))).toBe('OCSP_CERTID_MISMATCH');
  });

  it('decodes what it verifies: fields survive the round trip', () => {
    const d = decodeResponse(goodResponseFor(pki, leaf, now));
    expect(d.responseStatus).toBe(0);
    expect(d.basic?.singles[0]?.serial).toEqual(cert.serial);
    expect(d.basic?.certs.length).toBe(1);
  });
});

describe('request encoding', () => {
  it('computes the same CertID as the reference and encodes a request without nonce by default', () => {
    const pki = buildTestPki({ keyType: 'rsa-2048', delegated: false, now });
    const leaf = pki.leaves[0]!;
    const id = computeCertId(parseCertificate(leaf.der), parseCertificate(pki.root.der));
    const ref = certIdFor(leaf.der, pki.root.der);
    expect(id.issuerNameHash).toEqual(ref.issuerNameHash);
    expect(id.issuerKeyHash).toEqual(ref.issuerKeyHash);
    expect(id.serial).toEqual(ref.serial);
    const req = buildRequest(id);
    expect(req.nonce).toBeUndefined();
    expect(req.der.includes(Buffer.from([0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02]))).toBe(
      false,
    );
    const withNonce = buildRequest(id, { nonce: true });
    expect(withNonce.nonce?.length).toBe(16);
    expect(withNonce.der.includes(withNonce.nonce!)).toBe(true);
  });
});
