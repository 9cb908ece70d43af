import { describe, expect, it } from 'vitest';
import { DerReader, TAG, decodeOid, decodeTime, encodeTlv } from '../../src/core/der.js';
import { codeOf } from '../helpers/errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('DerReader', () => {
  it('reads nested elements and exact offsets', () => {
    const buf = hex('30 06 02 01 05 04 01 ff');
    const r = new DerReader(buf);
    const seq = r.next(TAG.SEQUENCE);
    expect(seq).toEqual({ tag: 0x30, start: 0, valueStart: 2, end: 8 });
    const inner = DerReader.inside(buf, seq);
    expect(inner.next(TAG.INTEGER).valueStart).toBe(4);
    expect(inner.optional(TAG.NULL)).toBeUndefined();
    expect(inner.next(TAG.OCTET_STRING).end).toBe(8);
    expect(inner.done).toBe(true);
  });

  it('reads long-form lengths', () => {
    const body = Buffer.alloc(300, 1);
    const buf = encodeTlv(TAG.OCTET_STRING, body);
    expect(buf.subarray(0, 4)).toEqual(hex('04 82 01 2c'));
    expect(new DerReader(buf).next().end).toBe(304);
  });

  it.each([
    ['a length past the end', '30 05 02 01 00'],
    ['a truncated length', '30 82 01'],
    ['indefinite length', '30 80 00 00'],
    ['a 5-byte length field', '04 85 00 00 00 00 01 00'],
    ['a 0x84 ffffffff length', '04 84 ff ff ff ff 00'],
    ['a non-minimal length', '04 81 05 00 00 00 00 00'],
    ['a high tag number', '1f 81 00 00'],
    ['an empty buffer', ''],
  ])('rejects %s with OCSP_MALFORMED', (_name, h) => {
    expect(codeOf(() => new DerReader(hex(h)).next())).toBe('OCSP_MALFORMED');
  });

  it('rejects an unexpected tag and trailing data', () => {
    expect(codeOf(() => new DerReader(hex('04 00')).next(TAG.SEQUENCE))).toBe('OCSP_MALFORMED');
    const r = new DerReader(hex('05 00 05 00'));
    r.next();
    expect(codeOf(() => r.end('x'))).toBe('OCSP_MALFORMED');
  });

  it('uses the error code of the caller', () => {
    expect(codeOf(() => new DerReader(hex('30 05'), 0, 2, 'NOT_A_CERTIFICATE').next())).toBe('NOT_A_CERTIFICATE');
  });
});

describe('decodeOid and decodeTime', () => {
  it('decodes OIDs including multi-byte arcs', () => {
    expect(decodeOid(hex('2b 06 01 05 05 07 30 01 01'))).toBe('1.3.6.1.5.5.7.48.1.1');
    expect(decodeOid(hex('2a 86 48 ce 3d 04 03 02'))).toBe('1.2.840.10045.4.3.2');
    expect(decodeOid(hex('88 37 01'))).toBe('2.999.1');
  });
  it('decodes UTCTime with the RFC 5280 century rule and GeneralizedTime', () => {
    const utc = (s: string): Buffer => encodeTlv(TAG.UTC_TIME, Buffer.from(s));
    const gen = (s: string): Buffer => encodeTlv(TAG.GENERALIZED_TIME, Buffer.from(s));
    const t = (b: Buffer): string => decodeTime(b, new DerReader(b).next()).toISOString();
    expect(t(utc('491231235959Z'))).toBe('2049-12-31T23:59:59.000Z');
    expect(t(utc('500101000000Z'))).toBe('1950-01-01T00:00:00.000Z');
    expect(t(gen('20261122103000Z'))).toBe('2026-11-22T10:30:00.000Z');
    expect(t(gen('20261122103000.5Z'))).toBe('2026-11-22T10:30:00.500Z');
    expect(codeOf(() => t(gen('20261122103000+0100')))).toBe('OCSP_MALFORMED');
    expect(codeOf(() => t(utc('2611221030Z')))).toBe('OCSP_MALFORMED');
  });
});
