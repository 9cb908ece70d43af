/**
 * Triage (core/triage.ts) and the certificate facts it rests on: CRL
 * distribution points, the TLS Feature extension (must-staple, RFC 7633),
 * noRevAvail (RFC 9608) and short-lived validity.
 */
import { describe, expect, it } from 'vitest';
import { parseCertificate } from '../../src/core/certs.js';
import {
  isShortLived,
  mustStapleAdvice,
  mustStapleStranded,
  noOcspNotice,
  triage,
  watchableCrlUrls,
} from '../../src/core/triage.js';
import { OID, mintCert, sharedKey, tlv, type MintedCert } from '../helpers/mint.js';

const DAY = 86_400_000;
const now = new Date('2026-06-01T00:00:00Z');
const root = mintCert({
  subjectCN: 'triage root',
  key: sharedKey('ec-p256', 'root'),
  isCA: true,
  notBefore: new Date(now.getTime() - 10 * DAY),
  notAfter: new Date(now.getTime() + 3650 * DAY),
});

function leaf(opts: Partial<Parameters<typeof mintCert>[0]> = {}): MintedCert {
  return mintCert({
    subjectCN: 'leaf.test',
    issuer: root,
    notBefore: new Date(now.getTime() - DAY),
    notAfter: new Date(now.getTime() + 90 * DAY),
    ...opts,
  });
}

describe('certificate facts for triage', () => {
  it('reads CRL distribution points (http and https URIs, in order, once each)', () => {
    const c = parseCertificate(
      leaf({ crlUrls: ['http://crl.example/a.crl', 'ldap://x/cn=crl', 'https://crl.example/b.crl'] }).der,
    );
    expect(c.crlUrls).toEqual(['http://crl.example/a.crl', 'https://crl.example/b.crl']);
    expect(c.crlDistributionPoints).toEqual([
      {
        urls: ['http://crl.example/a.crl', 'ldap://x/cn=crl', 'https://crl.example/b.crl'],
        someReasons: false,
        indirect: false,
      },
    ]);
  });

  it('reads must-staple from the TLS Feature extension only when it lists status_request (5)', () => {
    expect(parseCertificate(leaf({ mustStaple: true }).der).mustStaple).toBe(true);
    expect(parseCertificate(leaf().der).mustStaple).toBe(false);
    // status_request_v2 (17) alone is not must-staple
    const v2 = leaf({
      extraExtensions: [{ oid: OID.extTlsFeature, value: tlv(0x30, tlv(0x02, Buffer.from([17]))) }],
    });
    expect(parseCertificate(v2.der).mustStaple).toBe(false);
    // a critical TLS Feature extension is understood, not an unknown critical extension
    const crit = leaf({
      extraExtensions: [{ oid: OID.extTlsFeature, critical: true, value: tlv(0x30, tlv(0x02, Buffer.from([5]))) }],
    });
    const pc = parseCertificate(crit.der);
    expect(pc.mustStaple).toBe(true);
    expect(pc.unknownCriticalExtensions).toEqual([]);
  });

  it('reads noRevAvail (RFC 9608)', () => {
    expect(parseCertificate(leaf({ noRevAvail: true }).der).noRevAvail).toBe(true);
    expect(parseCertificate(leaf().der).noRevAvail).toBe(false);
  });

  it('a distribution point for some reasons only, or with a CRL issuer, is not watched', () => {
    // DistributionPoint { distributionPoint [0] { fullName [0] { URI } }, reasons [1] }
    const uri = tlv(0x86, Buffer.from('http://crl.example/partial.crl'));
    const dp = tlv(0x30, tlv(0xa0, tlv(0xa0, uri)), tlv(0x81, Buffer.from([0x07, 0x80])));
    const c = parseCertificate(
      leaf({ extraExtensions: [{ oid: OID.extCrlDistributionPoints, value: tlv(0x30, dp) }] }).der,
    );
    expect(c.crlDistributionPoints[0]?.someReasons).toBe(true);
    expect(watchableCrlUrls(c)).toEqual([]);
  });
});

describe('triage', () => {
  it('ocsp when a responder URL applies, crl when only a distribution point, none otherwise', () => {
    const withBoth = parseCertificate(leaf({ ocspUrls: ['http://ocsp.example'], crlUrls: ['http://c/x.crl'] }).der);
    expect(triage(withBoth, withBoth.ocspUrls).mechanism).toBe('ocsp');
    // a configured responder makes a certificate without AIA an ocsp one
    const crlOnly = parseCertificate(leaf({ crlUrls: ['http://c/x.crl'] }).der);
    expect(triage(crlOnly, []).mechanism).toBe('crl');
    expect(triage(crlOnly, ['http://configured.example']).mechanism).toBe('ocsp');
    const bare = parseCertificate(leaf().der);
    expect(triage(bare, []).mechanism).toBe('none');
    expect(triage(bare, [])).toMatchObject({ mustStaple: false, shortLived: false, ocspUrls: [], crlUrls: [] });
  });

  it('short-lived: at most 10 days, 7 for certificates issued from 2026-03-15', () => {
    const before = new Date('2026-01-01T00:00:00Z');
    expect(isShortLived(before, new Date(before.getTime() + 10 * DAY - 1000))).toBe(true);
    expect(isShortLived(before, new Date(before.getTime() + 11 * DAY))).toBe(false);
    const after = new Date('2026-04-01T00:00:00Z');
    expect(isShortLived(after, new Date(after.getTime() + 7 * DAY - 1000))).toBe(true);
    expect(isShortLived(after, new Date(after.getTime() + 8 * DAY))).toBe(false);
    const sl = parseCertificate(leaf({ notAfter: new Date(now.getTime() + 5 * DAY) }).der);
    const t = triage(sl, []);
    expect(t.shortLived).toBe(true);
    expect(noOcspNotice(t)).toMatch(/short-lived/);
  });

  it('must-staple without a responder is stranded, with advice naming the last staple expiry', () => {
    const ms = parseCertificate(leaf({ mustStaple: true, crlUrls: ['http://c/x.crl'] }).der);
    const t = triage(ms, []);
    expect(mustStapleStranded(t)).toBe(true);
    expect(mustStapleStranded(triage(ms, ['http://ocsp.example']))).toBe(false);
    const advice = mustStapleAdvice(t, new Date('2026-06-05T00:00:00Z'));
    expect(advice).toMatch(/reissue it without must-staple before the last staple expires at 2026-06-05T00:00:00.000Z/);
    expect(advice).toMatch(/Firefox/);
  });

  it('the one notice names the CRL', () => {
    const c = parseCertificate(leaf({ crlUrls: ['http://c/x.crl'] }).der);
    expect(noOcspNotice(triage(c, []))).toBe(
      'no OCSP responder: nothing to staple; revocation is published by CRL at http://c/x.crl',
    );
    const n = parseCertificate(leaf({ noRevAvail: true }).der);
    expect(noOcspNotice(triage(n, []))).toMatch(/noRevAvail/);
  });
});
