/**
 * Differential test of the lean response decoder (core/response.ts) against
 * the schema decoder of @peculiar/asn1-ocsp (AsnConvert.parse into
 * OCSPResponse, then BasicOCSPResponse), with fast-check.
 *
 * 1. Valid responses minted with random fields — status, one to three
 *    SingleResponses (CertID hash algorithm, hashes, serial, good / revoked
 *    with time and optional reason / unknown, thisUpdate, optional
 *    nextUpdate, random extensions), responder ID by name or key hash,
 *    producedAt, response extensions and nonce, included certificates, and
 *    four key types — decode to the same fields in both, including the exact
 *    bytes of tbsResponseData that the signature covers.
 * 2. The same responses with one to three mutations (a byte inside a
 *    field's contents, bit flips, byte changes, truncation, insertion,
 *    deletion, a length octet changed): whenever ours accepts, the library
 *    decodes the same bytes to the same fields. Ours may reject what the
 *    library accepts; the cases are pinned below. These responses carry no
 *    certificates: ours leaves included certificates as opaque elements for
 *    parseCertificate (which has its own hostile-input tests), while the
 *    library's BER parser checks inside them (e.g. a certificate's BIT
 *    STRING with 8+ unused bits), so a mutation there is a difference of
 *    scope, not of decoding.
 *
 * Where the library is laxer (it accepts, ours rejects), as observed over
 * 30,000 mutated inputs (FUZZ_RUNS=30000 prints the histogram): a SEQUENCE
 * whose tag was changed to a context-specific constructed tag (0xa0–0xbf;
 * most cases), trailing bytes after the OCSPResponse or inside ResponseBytes,
 * a high tag number, a non-minimal length, a signature BIT STRING with unused
 * bits; and an empty list of answers. Ours is DER-strict by design; the
 * simplest cases are pinned below. Where the library is stricter about the
 * response's own fields: never (the property would fail). The one value
 * read differently is a one-octet ENUMERATED of 0x80–0xff (see signed8).
 *
 * Runs: FUZZ_RUNS per property (default 200, so CI stays fast).
 */
import { createHash } from 'node:crypto';
import { AsnConvert, AsnProp, AsnPropTypes } from '@peculiar/asn1-schema';
import { BasicOCSPResponse, OCSPResponse, ResponseData, id_pkix_ocsp_basic } from '@peculiar/asn1-ocsp';
import { AlgorithmIdentifier, type Extension as LibExtension } from '@peculiar/asn1-x509';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { StapleError } from '../../src/core/errors.js';
import { decodeResponse, type Extension } from '../../src/core/response.js';
import {
  buildTestPki,
  mintOcspResponse,
  type ExtensionSpec,
  type HashName,
  type KeyType,
  type SingleSpec,
  type TestPki,
} from '../helpers/mint.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
/** RSA signing makes a valid response ~1 ms: allow for long runs. */
const TIMEOUT = Math.max(30_000, RUNS * 5);
const KEYS: KeyType[] = ['ec-p256', 'ec-p384', 'ed25519', 'rsa-2048'];
const HASH_LENGTH: Record<HashName, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

/** What both decoders are compared on: plain data, bytes as hex, times as ms. */
interface Fields {
  responseStatus: number;
  responseType?: string;
  basic?: {
    tbs: string;
    version: number;
    responderId: { byName: string } | { byKey: string };
    producedAt: number;
    singles: Array<{
      hashAlgorithm: string;
      issuerNameHash: string;
      issuerKeyHash: string;
      serial: string;
      status: string;
      revocationTime?: number;
      revocationReason?: number;
      thisUpdate: number;
      nextUpdate?: number;
      extensions: ExtFields[];
    }>;
    extensions: ExtFields[];
    signatureAlgorithm: string;
    signature: string;
    certs: string[];
  };
}
interface ExtFields {
  oid: string;
  critical: boolean;
  value: string;
}

/**
 * A one-octet ENUMERATED read as DER says, in two's complement. Our decoder
 * reads responseStatus and CRLReason octets as unsigned (0x80 → 128, the
 * library −128); both are undefined values that end in the same error
 * (OCSP_BAD_STATUS, or an unnamed reason), so the fields are compared as
 * DER reads them.
 */
const signed8 = (v: number): number => (v >= 0x80 && v <= 0xff ? v - 0x100 : v);

const hex = (b: ArrayBuffer | Uint8Array): string =>
  Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString('hex');

function oursExt(e: Extension): ExtFields {
  return { oid: e.oid, critical: e.critical, value: hex(e.value) };
}

/** Our decoder's view, or the error code. */
function ours(der: Buffer): Fields | { error: string } {
  try {
    const d = decodeResponse(der);
    const out: Fields = { responseStatus: signed8(d.responseStatus) };
    if (d.responseType !== undefined) out.responseType = d.responseType;
    if (d.basic) {
      const b = d.basic;
      out.basic = {
        tbs: hex(b.tbsDer),
        version: b.version,
        responderId:
          'byName' in b.responderId ? { byName: hex(b.responderId.byName) } : { byKey: hex(b.responderId.byKey) },
        producedAt: b.producedAt.getTime(),
        singles: b.singles.map((s) => ({
          hashAlgorithm: s.hashAlgorithm,
          issuerNameHash: hex(s.issuerNameHash),
          issuerKeyHash: hex(s.issuerKeyHash),
          serial: hex(s.serial),
          status: s.status,
          ...(s.revocationTime ? { revocationTime: s.revocationTime.getTime() } : {}),
          ...(s.revocationReason !== undefined ? { revocationReason: signed8(s.revocationReason) } : {}),
          thisUpdate: s.thisUpdate.getTime(),
          ...(s.nextUpdate ? { nextUpdate: s.nextUpdate.getTime() } : {}),
          extensions: s.extensions.map(oursExt),
        })),
        extensions: b.extensions.map(oursExt),
        signatureAlgorithm: b.signatureAlgorithm,
        signature: hex(b.signature),
        certs: b.certs.map((c) => hex(c)),
      };
    }
    return out;
  } catch (e) {
    if (!(e instanceof StapleError)) throw e; // anything else is a bug of ours
    return { error: e.code };
  }
}

/**
 * BasicOCSPResponse with the included certificates left as raw elements:
 * our response decoder does not parse them either (parseCertificate does,
 * later, with its own tests), so the comparison is byte for byte.
 */
class BasicWithRawCerts {
  tbsResponseData = new ResponseData();
  tbsResponseDataRaw?: ArrayBuffer;
  signatureAlgorithm = new AlgorithmIdentifier();
  signature = new ArrayBuffer(0);
  certs?: ArrayBuffer[];
}
AsnProp({ type: ResponseData, raw: true })(BasicWithRawCerts.prototype, 'tbsResponseData');
AsnProp({ type: AlgorithmIdentifier })(BasicWithRawCerts.prototype, 'signatureAlgorithm');
AsnProp({ type: AsnPropTypes.BitString })(BasicWithRawCerts.prototype, 'signature');
AsnProp({ type: AsnPropTypes.Any, repeated: 'sequence', optional: true, context: 0 })(
  BasicWithRawCerts.prototype,
  'certs',
);

function libExt(e: LibExtension): ExtFields {
  return { oid: e.extnID, critical: e.critical, value: hex(e.extnValue.buffer) };
}

/** The library's view of the same fields, or its error. Non-successful statuses stop at responseType, as ours does. */
function library(der: Buffer): Fields | { error: string } {
  try {
    const r = AsnConvert.parse(der, OCSPResponse);
    const out: Fields = { responseStatus: r.responseStatus };
    if (r.responseBytes) out.responseType = r.responseBytes.responseType;
    if (r.responseStatus !== 0) return out;
    if (!r.responseBytes) return { error: 'OCSP_NO_RESPONSE_BYTES' };
    if (r.responseBytes.responseType !== id_pkix_ocsp_basic) return { error: 'OCSP_UNKNOWN_RESPONSE_TYPE' };
    const b = AsnConvert.parse(r.responseBytes.response.buffer, BasicWithRawCerts);
    const t = b.tbsResponseData;
    const rid = t.responderID;
    out.basic = {
      tbs: hex(b.tbsResponseDataRaw ?? new ArrayBuffer(0)),
      version: t.version,
      responderId: rid.byName
        ? { byName: hex(AsnConvert.serialize(rid.byName)) }
        : { byKey: hex(rid.byKey?.buffer ?? new ArrayBuffer(0)) },
      producedAt: t.producedAt.getTime(),
      singles: t.responses.map((s) => {
        const st = s.certStatus;
        const status = st.good !== undefined ? 'good' : st.revoked !== undefined ? 'revoked' : 'unknown';
        return {
          hashAlgorithm: s.certID.hashAlgorithm.algorithm,
          issuerNameHash: hex(s.certID.issuerNameHash.buffer),
          issuerKeyHash: hex(s.certID.issuerKeyHash.buffer),
          serial: hex(s.certID.serialNumber),
          status,
          ...(st.revoked ? { revocationTime: st.revoked.revocationTime.getTime() } : {}),
          ...(st.revoked?.revocationReason !== undefined
            ? { revocationReason: st.revoked.revocationReason.reason as number }
            : {}),
          thisUpdate: s.thisUpdate.getTime(),
          ...(s.nextUpdate ? { nextUpdate: s.nextUpdate.getTime() } : {}),
          extensions: (s.singleExtensions ?? []).map(libExt),
        };
      }),
      extensions: (t.responseExtensions ?? []).map(libExt),
      signatureAlgorithm: b.signatureAlgorithm.algorithm,
      signature: hex(b.signature),
      certs: (b.certs ?? []).map((c) => hex(c)),
    };
    return out;
  } catch (e) {
    return { error: (e as Error).message };
  }
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

const pkis = new Map<KeyType, TestPki>();
beforeAll(() => {
  for (const k of KEYS)
    pkis.set(k, buildTestPki({ keyType: k, delegated: true, now: new Date('2026-11-20T12:00:00Z') }));
}, 60_000);

/** Whole seconds between 1970 and 2100 (DER GeneralizedTime as the minting library writes it). */
const time = fc.integer({ min: 0, max: 4_102_444_800 }).map((s) => new Date(s * 1000));
const oidArc = fc.integer({ min: 0, max: 100_000 });
const randomOid = fc.array(oidArc, { minLength: 1, maxLength: 4 }).map((arcs) => `1.3.6.1.4.1.${arcs.join('.')}`);
const bytes = (min: number, max: number) =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((u) => Buffer.from(u));
const extension: fc.Arbitrary<ExtensionSpec> = fc.record({
  oid: randomOid,
  critical: fc.boolean(),
  value: bytes(0, 40),
});
const hashName = fc.constantFrom<HashName>('sha1', 'sha256', 'sha384', 'sha512');
/** INTEGER contents: 1–20 bytes, used verbatim. */
const serial = bytes(1, 20);

const single: fc.Arbitrary<SingleSpec> = fc
  .record({
    hash: hashName,
    seed: bytes(1, 8),
    serial,
    status: fc.constantFrom('good', 'revoked', 'unknown'),
    revocationTime: time,
    reason: fc.option(fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 8, 9, 10), { nil: undefined }),
    thisUpdate: time,
    nextUpdate: fc.option(time, { nil: null }),
    singleExtensions: fc.array(extension, { maxLength: 2 }),
  })
  .map((r) => {
    const h = (label: string): Buffer =>
      createHash(r.hash).update(label).update(r.seed).digest().subarray(0, HASH_LENGTH[r.hash]);
    const s: SingleSpec = {
      certId: { hashAlg: r.hash, issuerNameHash: h('name'), issuerKeyHash: h('key'), serial: r.serial },
      status: r.status as SingleSpec['status'],
      thisUpdate: r.thisUpdate,
      nextUpdate: r.nextUpdate,
      singleExtensions: r.singleExtensions,
    };
    if (r.status === 'revoked') {
      s.revocationTime = r.revocationTime;
      if (r.reason !== undefined) s.revocationReason = r.reason;
    }
    return s;
  });

const validResponse = (withCerts: boolean): fc.Arbitrary<Buffer> =>
  fc
    .record({
      key: fc.constantFrom(...KEYS),
      status: fc.constantFrom(0, 0, 0, 0, 1, 2, 3, 5, 6),
      singles: fc.array(single, { minLength: 1, maxLength: 3 }),
      responderId: fc.constantFrom<'name' | 'key'>('name', 'key'),
      producedAt: time,
      responseExtensions: fc.array(extension, { maxLength: 2 }),
      nonce: fc.option(bytes(1, 32), { nil: undefined }),
      includeSignerCert: withCerts ? fc.boolean() : fc.constant(false),
      extraCert: withCerts ? fc.boolean() : fc.constant(false),
    })
    .map((r) => {
      const pki = pkis.get(r.key) as TestPki;
      return mintOcspResponse({
        status: r.status,
        signer: pki.signer,
        responderId: r.responderId,
        producedAt: r.producedAt,
        singles: r.singles,
        responseExtensions: r.responseExtensions,
        ...(r.nonce ? { nonce: r.nonce } : {}),
        includeSignerCert: r.includeSignerCert,
        ...(r.extraCert ? { extraCerts: [pki.root.der] } : {}),
      });
    });

/**
 * The contents ranges of every primitive element, walking into constructed
 * ones and into OCTET STRINGs that hold DER (responseBytes, extension
 * values): changing a byte there keeps the structure well-formed, so these
 * mutations reach the field decoding rather than stopping at the framing.
 */
function primitiveRanges(
  b: Buffer,
  start = 0,
  end = b.length,
  out: Array<[number, number]> = [],
): Array<[number, number]> {
  let p = start;
  while (p < end) {
    if (p + 2 > end) return out;
    const tag = b[p]!;
    let q = p + 1;
    let len = b[q++]!;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 3 || q + n > end) return out;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + b[q++]!;
    }
    if (q + len > end) return out;
    if (tag & 0x20) primitiveRanges(b, q, q + len, out);
    else if (tag === 0x04 && len > 1 && (b[q] === 0x30 || b[q] === 0x04)) {
      const before = out.length;
      primitiveRanges(b, q, q + len, out);
      if (out.length === before && len > 0) out.push([q, q + len]);
    } else if (len > 0) out.push([q, q + len]);
    p = q + len;
  }
  return out;
}

type Mutation = (b: Buffer) => Buffer;
const at = (b: Buffer, f: number): number => Math.min(b.length - 1, Math.floor(f * b.length));
const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  // a byte inside a field's contents (the structure stays well-formed), twice as likely as each framing change
  {
    weight: 2,
    arbitrary: fc
      .record({ f: unit, g: unit, v: fc.integer({ min: 0, max: 255 }) })
      .map(({ f, g, v }) => (b: Buffer) => {
        const ranges = primitiveRanges(b);
        if (ranges.length === 0) return b;
        const [s0, e0] = ranges[Math.floor(f * ranges.length)]!;
        const c = Buffer.from(b);
        c[s0 + Math.floor(g * (e0 - s0))] = v;
        return c;
      }),
  },
  fc
    .record({ f: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), bit: fc.integer({ min: 0, max: 7 }) })
    .map(({ f, bit }) => (b: Buffer) => {
      const c = Buffer.from(b);
      c[at(c, f)]! ^= 1 << bit;
      return c;
    }),
  fc
    .record({ f: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), v: fc.integer({ min: 0, max: 255 }) })
    .map(({ f, v }) => (b: Buffer) => {
      const c = Buffer.from(b);
      c[at(c, f)] = v;
      return c;
    }),
  fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }).map((f) => (b: Buffer) => b.subarray(0, at(b, f))),
  fc
    .record({ f: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), ins: bytes(1, 4) })
    .map(({ f, ins }) => (b: Buffer) => {
      const i = at(b, f);
      return Buffer.concat([b.subarray(0, i), ins, b.subarray(i)]);
    }),
  fc
    .record({ f: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), n: fc.integer({ min: 1, max: 8 }) })
    .map(({ f, n }) => (b: Buffer) => {
      const i = at(b, f);
      return Buffer.concat([b.subarray(0, i), b.subarray(i + n)]);
    }),
  // a length octet: find the n-th element header and change its length by ±1..3
  fc
    .record({
      f: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      d: fc.constantFrom(-3, -2, -1, 1, 2, 3),
    })
    .map(({ f, d }) => (b: Buffer) => {
      const c = Buffer.from(b);
      const starts: number[] = [];
      for (let p = 0; p + 1 < c.length; p++) if (c[p] === 0x30 || c[p] === 0x04 || c[p] === 0xa0) starts.push(p + 1);
      if (starts.length === 0) return c;
      const p = starts[Math.min(starts.length - 1, Math.floor(f * starts.length))]!;
      c[p] = (c[p]! + d) & 0xff;
      return c;
    }),
);

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

describe('decodeResponse against @peculiar/asn1-ocsp', () => {
  it(
    'decodes valid responses with random fields to the same fields, including the signed bytes',
    () => {
      fc.assert(
        fc.property(validResponse(true), (der) => {
          const o = ours(der);
          expect('error' in o ? o.error : undefined).toBeUndefined();
          expect(o).toEqual(library(der));
          // and the library's full schema (certificates parsed) takes it too
          const full = AsnConvert.parse(der, OCSPResponse);
          if (full.responseStatus === 0 && full.responseBytes) {
            const basic = AsnConvert.parse(full.responseBytes.response.buffer, BasicOCSPResponse);
            expect((basic.certs ?? []).map((c) => hex(AsnConvert.serialize(c)))).toEqual(
              'basic' in o ? o.basic?.certs : undefined,
            );
          }
        }),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  it(
    'whenever it accepts mutated bytes, the library decodes them to the same fields',
    () => {
      const stats = { accepted: 0, rejected: 0, libraryLaxer: 0 };
      const laxer = new Map<string, number>();
      fc.assert(
        fc.property(validResponse(false), fc.array(mutation, { minLength: 1, maxLength: 3 }), (der, ms) => {
          const input = ms.reduce((b, m) => (b.length === 0 ? b : m(b)), der);
          const o = ours(input);
          const l = library(input);
          if ('error' in o) {
            stats.rejected++;
            if (!('error' in l)) {
              stats.libraryLaxer++;
              if (RUNS >= 10_000) {
                let why = '';
                try {
                  decodeResponse(input);
                } catch (e) {
                  why = (e as Error).message.replace(/offset \d+/g, 'offset N').replace(/"[^"]*"/g, '"…"');
                }
                laxer.set(why, (laxer.get(why) ?? 0) + 1);
              }
            }
            return;
          }
          stats.accepted++;
          expect(l).toEqual(o);
        }),
        { numRuns: RUNS },
      );
      // the mutations must exercise both sides
      expect(stats.rejected).toBeGreaterThan(0);
      if (RUNS >= 10_000) {
        console.info(`differential: ${JSON.stringify(stats)}`);
        console.info(
          [...laxer]
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => `${v}\t${k}`)
            .join('\n'),
        );
      }
    },
    TIMEOUT,
  );
});

describe('where the library is laxer (pinned)', () => {
  const good = (): Buffer => {
    const pki = pkis.get('ec-p256') as TestPki;
    return mintOcspResponse({
      signer: pki.signer,
      producedAt: new Date('2026-11-20T11:00:00Z'),
      singles: [
        {
          certId: {
            hashAlg: 'sha1',
            issuerNameHash: Buffer.alloc(20, 1),
            issuerKeyHash: Buffer.alloc(20, 2),
            serial: Buffer.from([1, 2, 3]),
          },
          status: 'good',
          thisUpdate: new Date('2026-11-20T11:00:00Z'),
          nextUpdate: new Date('2026-11-27T11:00:00Z'),
        },
      ],
    });
  };

  it('accepts only DER lengths; the library also takes a non-minimal length', () => {
    const der = good();
    // re-frame the outer SEQUENCE with a two-octet long form for a length that fits one octet
    const body = der.subarray(der[1]! & 0x80 ? 2 + (der[1]! & 0x7f) : 2);
    const nonMinimal = Buffer.concat([
      Buffer.from([0x30, 0x83, 0, (body.length >> 8) & 0xff, body.length & 0xff]),
      body,
    ]);
    expect(ours(nonMinimal)).toEqual({ error: 'OCSP_MALFORMED' });
    expect('error' in library(nonMinimal)).toBe(false);
  });

  it('rejects trailing bytes after the response; the library ignores them', () => {
    const der = Buffer.concat([good(), Buffer.from([0, 0])]);
    expect(ours(der)).toEqual({ error: 'OCSP_MALFORMED' });
    expect('error' in library(der)).toBe(false);
  });

  it('reads a one-octet ENUMERATED responseStatus of 0x80–0xff as 128–255; DER (and the library) say −128…−1', () => {
    const der = Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x80]);
    const o = decodeResponse(der);
    expect(signed8(o.responseStatus)).toBe(-128);
    expect(library(der)).toEqual({ responseStatus: -128 });
  });

  it('rejects an empty list of answers; the library returns it', () => {
    const pki = pkis.get('ec-p256') as TestPki;
    const der = mintOcspResponse({ signer: pki.signer, producedAt: new Date('2026-11-20T11:00:00Z'), singles: [] });
    expect(ours(der)).toEqual({ error: 'OCSP_MALFORMED' });
    const l = library(der);
    expect('error' in l ? undefined : l.basic?.singles).toEqual([]);
  });
});
