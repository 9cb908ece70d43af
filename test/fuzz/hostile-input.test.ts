/**
 * Property tests (fast-check): hostile bytes through every decoder and the verifier.
 *
 * Seeds are valid responses and certificates of six key types (ECDSA P-256/
 * P-384/P-521, RSA, RSASSA-PSS, Ed25519), minted in-process: good, revoked,
 * unknown, several answers, delegated and direct signers, nonces, SHA-256
 * CertIDs, non-successful statuses. Each input is a seed with 1–4 mutations:
 * truncations, bit flips, byte changes, insertions, deletions, DER length
 * tampering (±n, indefinite, 4 GiB, too many length octets, non-minimal),
 * tag changes, fields spliced in from other seeds, duplicated fields,
 * trailing bytes; PEM inputs get label, base64, line-ending and block damage.
 *
 * For every input, every decoder (decodeResponse, parseCertificate,
 * loadCertificates, decodePem, stapleBytes, the DER reader, the algorithm
 * decoder) and verifyResponse either return or throw a StapleError whose
 * code is in ERROR_CODES (never a RangeError, TypeError or anything else),
 * and every call returns within a bound. And the verifier never accepts
 * signed data that no seed signed.
 *
 * Runs: FUZZ_RUNS per property (default 300: the CI run). `npm run test:fuzz`
 * sets FUZZ_RUNS=100000 (over a million inputs in all); FUZZ_SEED replays.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  decodePem,
  isSignedBy,
  loadCertificates,
  parseCertificate,
  publicKeyOf,
  type Certificate,
} from '../../src/core/certs.js';
import { DerReader, decodeOid, decodeTime } from '../../src/core/der.js';
import { ERROR_CODES, StapleError, type ErrorCode } from '../../src/core/errors.js';
import { decodeResponse } from '../../src/core/response.js';
import { nodeVerifyParams } from '../../src/core/signature.js';
import { assertGood, verifyResponse } from '../../src/core/verify.js';
import { stapleBytes } from '../../src/pipeline/judge.js';
import {
  KEY_TYPES,
  buildTestPki,
  certIdFor,
  goodResponseFor,
  mintOcspResponse,
  sigAlgIdDer,
  toPem,
  type TestPki,
} from '../helpers/mint.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
/** No single decode or verification may take longer than this (a hang or quadratic blow-up shows up here). */
const MAX_CALL_MS = 1500;
/** Generous per-test time: long runs verify ~100k signatures. */
const TEST_TIMEOUT = Math.max(60_000, RUNS * 10);
const params = (): fc.Parameters<unknown> => ({ numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) });

// ---------------------------------------------------------------------------
// The invariant
// ---------------------------------------------------------------------------

/**
 * Calls `fn`; a StapleError with a known code (one of `allowed`, when given)
 * counts as a coded rejection; anything else thrown fails the property, as
 * does a call slower than {@link MAX_CALL_MS}.
 */
function coded<T>(
  what: string,
  fn: () => T,
  allowed?: readonly ErrorCode[],
): { ok: true; value: T } | { ok: false; code: ErrorCode } {
  const t0 = performance.now();
  let result: { ok: true; value: T } | { ok: false; code: ErrorCode };
  try {
    result = { ok: true, value: fn() };
  } catch (e) {
    if (!(e instanceof StapleError)) {
      const name = e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e);
      throw new Error(`${what} threw a non-StapleError: ${name}`, { cause: e });
    }
    if (!(e.code in ERROR_CODES)) throw new Error(`${what} threw an unknown code ${String(e.code)}`);
    if (e.code === 'INTERNAL') throw new Error(`${what} threw INTERNAL: ${e.message}`);
    if (allowed && !allowed.includes(e.code))
      throw new Error(`${what} threw ${e.code} (allowed: ${allowed.join(', ')}): ${e.message}`);
    if (typeof e.message !== 'string' || e.message.length === 0)
      throw new Error(`${what} threw ${e.code} without a message`);
    result = { ok: false, code: e.code };
  }
  const ms = performance.now() - t0;
  if (ms > MAX_CALL_MS) throw new Error(`${what} took ${ms.toFixed(0)} ms`);
  return result;
}

const DECODE_CODES: ErrorCode[] = ['OCSP_MALFORMED', 'OCSP_NO_RESPONSE_BYTES', 'OCSP_UNKNOWN_RESPONSE_TYPE'];
const CERT_CODES: ErrorCode[] = ['NOT_A_CERTIFICATE'];
const OCSP_CODES = (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) => c.startsWith('OCSP_'));

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

interface ResponseSeed {
  der: Buffer;
  cert: Certificate;
  issuer: Certificate;
  label: string;
}

const responseSeeds: ResponseSeed[] = [];
const certSeeds: Buffer[] = [];
/** The exact tbsResponseData of every seed: the only signed data the verifier may ever accept. */
const signedTbs = new Set<string>();
const pkis: TestPki[] = [];

const DAY = 86_400_000;

beforeAll(() => {
  const now = new Date();
  for (const [i, keyType] of KEY_TYPES.entries()) {
    const pki = buildTestPki({ keyType, delegated: i % 2 === 0, now, leafCount: 2 });
    pkis.push(pki);
    const [leaf, other] = pki.leaves as [(typeof pki.leaves)[0], (typeof pki.leaves)[0]];
    const cert = parseCertificate(leaf.der);
    const issuer = parseCertificate(pki.root.der);
    const thisUpdate = new Date(now.getTime() - 3_600_000);
    const single = (status: 'good' | 'revoked' | 'unknown', leafDer = leaf.der, hash: 'sha1' | 'sha256' = 'sha1') => ({
      certId: certIdFor(leafDer, pki.root.der, hash),
      status,
      thisUpdate,
      nextUpdate: new Date(now.getTime() + 7 * DAY),
      ...(status === 'revoked' ? { revocationTime: new Date(now.getTime() - DAY), revocationReason: 1 } : {}),
    });
    const add = (label: string, der: Buffer): void => {
      responseSeeds.push({ der, cert, issuer, label: `${keyType} ${label}` });
    };
    add('good', goodResponseFor(pki, leaf, now));
    add('good-by-issuer', mintOcspResponse({ signer: pki.root, producedAt: thisUpdate, singles: [single('good')] }));
    add(
      'good-by-delegate-keyid',
      mintOcspResponse({
        signer: pki.responder,
        responderId: 'key',
        producedAt: thisUpdate,
        singles: [single('good')],
      }),
    );
    add('revoked', mintOcspResponse({ signer: pki.signer, producedAt: thisUpdate, singles: [single('revoked')] }));
    add('unknown', mintOcspResponse({ signer: pki.signer, producedAt: thisUpdate, singles: [single('unknown')] }));
    add(
      'sha256-certid',
      mintOcspResponse({ signer: pki.signer, producedAt: thisUpdate, singles: [single('good', leaf.der, 'sha256')] }),
    );
    add(
      'several-answers',
      mintOcspResponse({
        signer: pki.signer,
        producedAt: thisUpdate,
        singles: [single('good', other.der), single('good'), single('revoked', other.der)],
      }),
    );
    add(
      'extensions',
      mintOcspResponse({
        signer: pki.signer,
        producedAt: thisUpdate,
        nonce: createHash('sha256').update(keyType).digest().subarray(0, 16),
        responseExtensions: [{ oid: '1.3.6.1.4.1.55555.7', critical: false, value: Buffer.from([0x05, 0x00]) }],
        singles: [
          {
            ...single('good'),
            singleExtensions: [{ oid: '1.3.6.1.4.1.11129.2.4.5', value: Buffer.from([0x04, 0x02, 0x00, 0x00]) }],
          },
        ],
        extraCerts: [pki.otherRoot.der],
      }),
    );
    add('try-later', mintOcspResponse({ status: 3, signer: pki.signer, producedAt: thisUpdate, singles: [] }));
    add(
      'no-next-update',
      mintOcspResponse({
        signer: pki.signer,
        producedAt: thisUpdate,
        singles: [{ ...single('good'), nextUpdate: null }],
      }),
    );
    certSeeds.push(leaf.der, pki.root.der, pki.responder.der, pki.responderNoEku.der);
  }
  for (const s of responseSeeds) {
    const d = decodeResponse(s.der);
    if (d.basic) signedTbs.add(d.basic.tbsDer.toString('hex'));
  }
  // sanity: the seeds themselves are what they claim to be
  const good = responseSeeds.filter((s) => / good$/.test(s.label));
  expect(good.length).toBe(KEY_TYPES.length);
  for (const s of good)
    expect(verifyResponse(s.der, { cert: s.cert, issuer: s.issuer, now: new Date() }).status).toBe('good');
}, 120_000);

// ---------------------------------------------------------------------------
// DER-aware mutations
// ---------------------------------------------------------------------------

/** One TLV found in a buffer: where it starts, the length of its header, where it ends. */
interface Node {
  start: number;
  hdr: number;
  end: number;
  tag: number;
}

function header(buf: Buffer, p: number, end: number): Node | undefined {
  if (p + 2 > end) return undefined;
  const tag = buf[p]!;
  let len = buf[p + 1]!;
  let q = p + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || q + n > end) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[q++]!;
  }
  if (q + len > end) return undefined;
  return { start: p, hdr: q - p, end: q + len, tag };
}

/** Every TLV that a tolerant walk finds, descending into constructed values, OCTET and BIT STRINGs. */
function nodes(buf: Buffer, start = 0, end = buf.length, depth = 0, out: Node[] = []): Node[] {
  for (let p = start; p < end && out.length < 4000;) {
    const h = header(buf, p, end);
    if (!h) break;
    out.push(h);
    if (depth < 24) {
      if (h.tag & 0x20) nodes(buf, p + h.hdr, h.end, depth + 1, out);
      else if (h.tag === 0x04) nodes(buf, p + h.hdr, h.end, depth + 1, out);
      else if (h.tag === 0x03 && h.end > p + h.hdr + 1) nodes(buf, p + h.hdr + 1, h.end, depth + 1, out);
    }
    p = h.end;
  }
  return out;
}

function minimalLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

type Mutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'length'; which: number; how: number; delta: number; random: number }
  | { kind: 'tag'; which: number; value: number }
  | { kind: 'splice'; which: number; donor: number; donorWhich: number }
  | { kind: 'duplicate'; which: number }
  | { kind: 'drop'; which: number }
  | { kind: 'trailing'; bytes: Uint8Array }
  | { kind: 'content'; which: number; at: number; value: number };

const pos = fc.nat({ max: 1 << 20 });
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: pos }) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('flip' as const), at: pos, bit: fc.integer({ min: 0, max: 7 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('set' as const), at: pos, value: fc.integer({ min: 0, max: 255 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      at: pos,
      bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('delete' as const), at: pos, len: fc.integer({ min: 1, max: 16 }) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('length' as const),
      which: pos,
      how: fc.integer({ min: 0, max: 9 }),
      delta: fc.integer({ min: -4, max: 4 }),
      random: fc.integer({ min: 0, max: 255 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('tag' as const), which: pos, value: fc.integer({ min: 0, max: 255 }) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('splice' as const), which: pos, donor: pos, donorWhich: pos }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), which: pos }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), which: pos }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('trailing' as const), bytes: fc.uint8Array({ maxLength: 8 }) }),
  },
);

/**
 * Mutations that keep the DER well-formed, so the input gets past the decoder
 * into the verifier's rules: a content byte of a primitive field changed, or
 * a field replaced by a field of the same type from another seed.
 */
const structurePreservingArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('content' as const), which: pos, at: pos, value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    kind: fc.constant('splice' as const),
    which: pos,
    donor: pos,
    donorWhich: pos.filter((n) => n % 4 !== 0),
  }),
);

/** New length octets for a node, by `how`. */
function tamperedLength(n: Node, buf: Buffer, m: Extract<Mutation, { kind: 'length' }>): Buffer {
  const len = n.end - n.start - n.hdr;
  switch (m.how) {
    case 0:
      return minimalLength(Math.max(0, len + m.delta));
    case 1:
      return Buffer.from([0x80]); // indefinite: not DER
    case 2:
      return Buffer.from([0x84, 0xff, 0xff, 0xff, 0xff]); // 4 GiB - 1
    case 3:
      return Buffer.from([0x85, 0x00, 0x00, 0x00, 0x01, 0x00]); // more length octets than we accept
    case 4:
      return len < 0x80 ? Buffer.from([0x81, len]) : Buffer.from([0x83, 0x00, len >> 8, len & 0xff]); // not minimal
    case 5:
      return Buffer.from([0x00]);
    case 6:
      return minimalLength(buf.length - n.start - n.hdr + 1 + Math.abs(m.delta)); // just past the end
    case 7:
      return Buffer.from([0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    case 8:
      return Buffer.from([0xff]);
    default:
      return Buffer.from([m.random]);
  }
}

function mutate(input: Buffer, muts: Mutation[], donors: Buffer[]): Buffer {
  let buf = Buffer.from(input);
  for (const m of muts) {
    const at = buf.length === 0 ? 0 : ((m as { at?: number }).at ?? 0);
    switch (m.kind) {
      case 'truncate':
        buf = buf.subarray(0, buf.length === 0 ? 0 : at % buf.length);
        break;
      case 'flip':
        if (buf.length > 0) buf[at % buf.length]! ^= 1 << m.bit;
        break;
      case 'set':
        if (buf.length > 0) buf[at % buf.length] = m.value;
        break;
      case 'insert': {
        const p = at % (buf.length + 1);
        buf = Buffer.concat([buf.subarray(0, p), Buffer.from(m.bytes), buf.subarray(p)]);
        break;
      }
      case 'delete': {
        const p = buf.length === 0 ? 0 : at % buf.length;
        buf = Buffer.concat([buf.subarray(0, p), buf.subarray(p + m.len)]);
        break;
      }
      case 'trailing':
        buf = Buffer.concat([buf, Buffer.from(m.bytes)]);
        break;
      default: {
        const all = nodes(buf);
        if (all.length === 0) break;
        const n = all[m.which % all.length]!;
        if (m.kind === 'length') {
          buf = Buffer.concat([buf.subarray(0, n.start + 1), tamperedLength(n, buf, m), buf.subarray(n.start + n.hdr)]);
        } else if (m.kind === 'content') {
          const prim = all.filter((x) => !(x.tag & 0x20) && x.end > x.start + x.hdr);
          if (prim.length === 0) break;
          const p = prim[m.which % prim.length]!;
          buf[p.start + p.hdr + (m.at % (p.end - p.start - p.hdr))] = m.value;
        } else if (m.kind === 'tag') {
          buf[n.start] = m.value;
        } else if (m.kind === 'duplicate') {
          buf = Buffer.concat([buf.subarray(0, n.end), buf.subarray(n.start, n.end), buf.subarray(n.end)]);
        } else if (m.kind === 'drop') {
          buf = Buffer.concat([buf.subarray(0, n.start), buf.subarray(n.end)]);
        } else if (m.kind === 'splice') {
          const donor = donors[m.donor % donors.length]!;
          const all2 = nodes(donor);
          // mostly a field of the same type from elsewhere (the structure stays valid, the meaning changes)
          const same = all2.filter((x) => x.tag === n.tag);
          const dn = same.length > 0 && m.donorWhich % 4 !== 0 ? same : all2;
          if (dn.length === 0) break;
          const d = dn[m.donorWhich % dn.length]!;
          buf = Buffer.concat([buf.subarray(0, n.start), donor.subarray(d.start, d.end), buf.subarray(n.end)]);
        }
      }
    }
  }
  return buf;
}

const responseInput = () =>
  fc
    .record({
      seed: fc.nat(),
      muts: fc.oneof(
        fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
        fc.array(structurePreservingArb, { minLength: 1, maxLength: 3 }),
      ),
    })
    .map(({ seed, muts }) => {
      const s = responseSeeds[seed % responseSeeds.length]!;
      return {
        seed: s,
        der: mutate(
          s.der,
          muts,
          responseSeeds.map((x) => x.der),
        ),
        muts,
      };
    });

const certInput = () =>
  fc
    .record({
      seed: fc.nat(),
      muts: fc.oneof(
        fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
        fc.array(structurePreservingArb, { minLength: 1, maxLength: 3 }),
      ),
    })
    .map(({ seed, muts }) => {
      const s = certSeeds[seed % certSeeds.length]!;
      return { seed: s, der: mutate(s, muts, certSeeds) };
    });

// -- PEM text damage ---------------------------------------------------------

type TextMutation =
  | { kind: 'label'; label: string }
  | { kind: 'char'; at: number; c: string }
  | { kind: 'cut-end' }
  | { kind: 'insert'; at: number; text: string }
  | { kind: 'dup' }
  | { kind: 'crlf' }
  | { kind: 'truncate'; at: number }
  | { kind: 'strip-newlines' };

const textMutationArb: fc.Arbitrary<TextMutation> = fc.oneof(
  fc.record({
    kind: fc.constant('label' as const),
    label: fc.constantFrom(
      'CERTIFICATE',
      'TRUSTED CERTIFICATE',
      'X509 CRL',
      'PRIVATE KEY',
      'OCSP RESPONSE',
      'CERTIFICATE ',
      'certificate',
      '',
      'PKCS7',
    ),
  }),
  fc.record({
    kind: fc.constant('char' as const),
    at: pos,
    c: fc.constantFrom('!', '=', '-', '_', ' ', '\n', '\r', '\0', 'é', '\u2028', 'A', '=='),
  }),
  fc.record({ kind: fc.constant('cut-end' as const) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: pos,
    text: fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.constantFrom(
        '-----BEGIN CERTIFICATE-----',
        '-----END CERTIFICATE-----',
        '-----BEGIN OCSP RESPONSE-----\n',
        '-----',
      ),
    ),
  }),
  fc.record({ kind: fc.constant('dup' as const) }),
  fc.record({ kind: fc.constant('crlf' as const) }),
  fc.record({ kind: fc.constant('truncate' as const), at: pos }),
  fc.record({ kind: fc.constant('strip-newlines' as const) }),
);

function mutateText(text: string, muts: TextMutation[]): string {
  let t = text;
  for (const m of muts) {
    switch (m.kind) {
      case 'label': {
        const old = /-----BEGIN ([^-]*)-----/.exec(t)?.[1];
        if (old !== undefined) t = t.split(old).join(m.label);
        break;
      }
      case 'char': {
        const p = t.length === 0 ? 0 : m.at % t.length;
        t = t.slice(0, p) + m.c + t.slice(p + 1);
        break;
      }
      case 'cut-end': {
        const i = t.lastIndexOf('-----END');
        if (i >= 0) t = t.slice(0, i);
        break;
      }
      case 'insert': {
        const p = m.at % (t.length + 1);
        t = t.slice(0, p) + m.text + t.slice(p);
        break;
      }
      case 'dup':
        t = t + t;
        break;
      case 'crlf':
        t = t.replace(/\n/g, '\r\n');
        break;
      case 'truncate':
        t = t.slice(0, t.length === 0 ? 0 : m.at % t.length);
        break;
      case 'strip-newlines':
        t = t.replace(/\n/g, '');
        break;
    }
  }
  return t;
}

/** The decodePem of before the linear rewrite: the reference for the differential property. */
function referenceDecodePem(text: string): Array<{ label: string; der: Buffer }> | 'broken' {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  const out: Array<{ label: string; der: Buffer }> = [];
  for (const m of text.matchAll(re)) {
    const body = (m[2] ?? '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) return 'broken';
    out.push({ label: m[1]!, der: Buffer.from(body, 'base64') });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

describe(`fuzz: OCSP responses (${RUNS} runs per property)`, () => {
  it(
    'decodeResponse: every mutated response decodes or is rejected with a decoding code',
    { timeout: TEST_TIMEOUT },
    () => {
      fc.assert(
        fc.property(responseInput(), ({ der }) => {
          coded('decodeResponse', () => decodeResponse(der), DECODE_CODES);
        }),
        params(),
      );
    },
  );

  it(
    'verifyResponse: coded rejections only, and nothing accepted that no seed signed',
    { timeout: TEST_TIMEOUT },
    () => {
      const seen = new Map<string, number>();
      fc.assert(
        fc.property(responseInput(), ({ seed, der }) => {
          // the certificate and issuer are fine: whatever is wrong is the response's fault, and its code says so
          const r = coded(
            'verifyResponse',
            () => verifyResponse(der, { cert: seed.cert, issuer: seed.issuer, now: new Date() }),
            OCSP_CODES,
          );
          const key = r.ok ? `accepted:${r.value.status}` : r.code;
          seen.set(key, (seen.get(key) ?? 0) + 1);
          if (r.ok) {
            const tbs = decodeResponse(der).basic!.tbsDer.toString('hex');
            expect(signedTbs.has(tbs), 'the verifier accepted signed data that was never signed').toBe(true);
            coded('assertGood', () => assertGood(r.value), ['OCSP_REVOKED', 'OCSP_UNKNOWN_CERT']);
          }
        }),
        params(),
      );
      // what the mutations reached: a fuzzer that only ever hits OCSP_MALFORMED proves little
      console.log(
        `verifyResponse outcomes: ${[...seen]
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')}`,
      );
      if (RUNS >= 1000) expect(seen.size).toBeGreaterThanOrEqual(12);
    },
  );

  it(
    'verifyResponse: a mutated response checked against the wrong certificate or issuer is still only ever a coded rejection',
    { timeout: TEST_TIMEOUT },
    () => {
      fc.assert(
        fc.property(responseInput(), fc.nat(), ({ der }, other) => {
          const o = responseSeeds[other % responseSeeds.length]!;
          const r = coded('verifyResponse(other)', () =>
            verifyResponse(der, { cert: o.cert, issuer: o.issuer, now: new Date() }),
          );
          if (r.ok) expect(signedTbs.has(decodeResponse(der).basic!.tbsDer.toString('hex'))).toBe(true);
        }),
        params(),
      );
    },
  );

  it(
    'stapleBytes (+ verifyResponse): mutated DER and mutated "OCSP RESPONSE" PEM files',
    { timeout: TEST_TIMEOUT },
    () => {
      fc.assert(
        fc.property(
          responseInput(),
          fc.boolean(),
          fc.array(textMutationArb, { maxLength: 3 }),
          ({ seed, der }, asPem, textMuts) => {
            const data = asPem ? Buffer.from(mutateText(toPem(der, 'OCSP RESPONSE'), textMuts), 'latin1') : der;
            const bytes = coded('stapleBytes', () => stapleBytes(data, '/staples/x.der'), ['OCSP_MALFORMED']);
            if (bytes.ok)
              coded('verifyResponse(staple)', () =>
                verifyResponse(bytes.value, { cert: seed.cert, issuer: seed.issuer, now: new Date() }),
              );
          },
        ),
        params(),
      );
    },
  );

  it('the signature AlgorithmIdentifier decoder: mutated algorithm identifiers', { timeout: TEST_TIMEOUT }, () => {
    const algs = ['ecdsa-sha256', 'ecdsa-sha384', 'rsa-sha256', 'rsa-pss-sha256', 'ed25519', 'rsa-sha512'].map((a) =>
      sigAlgIdDer(a),
    );
    fc.assert(
      fc.property(fc.nat(), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (i, muts) => {
        const der = mutate(algs[i % algs.length]!, muts, algs);
        coded('nodeVerifyParams', () => nodeVerifyParams(der), ['OCSP_MALFORMED', 'OCSP_UNSUPPORTED_ALGORITHM']);
      }),
      params(),
    );
  });
});

describe('directed cases found by the fuzzer', () => {
  it('an unusable certificate named like the responder, included before the real one, does not derail verification', () => {
    const pki = pkis.find((p) => p.keyType === 'ec-p256' && p.delegated)!;
    const leaf = pki.leaves[0]!;
    const bits = parseCertificate(pki.responder.der).publicKeyBits;
    const junk = Buffer.from(pki.responder.der);
    junk[junk.indexOf(bits)] = 0x05; // no EC point encoding starts with 5 (0x06/0x07 are the "hybrid" forms): the key cannot be loaded
    expect(() => publicKeyOf(parseCertificate(junk))).toThrow(StapleError);
    const now = new Date();
    const der = mintOcspResponse({
      signer: pki.responder,
      includeSignerCert: false,
      extraCerts: [junk, pki.responder.der],
      producedAt: new Date(now.getTime() - 60_000),
      singles: [
        {
          certId: certIdFor(leaf.der, pki.root.der),
          status: 'good',
          thisUpdate: new Date(now.getTime() - 60_000),
          nextUpdate: new Date(now.getTime() + DAY),
        },
      ],
    });
    const v = verifyResponse(der, { cert: parseCertificate(leaf.der), issuer: parseCertificate(pki.root.der), now });
    expect(v.status).toBe('good');
    expect(v.delegated).toBe(true);
  });
});

describe(`fuzz: certificates and PEM (${RUNS} runs per property)`, () => {
  it(
    'parseCertificate: mutated certificates parse or are NOT_A_CERTIFICATE; what parses can be used safely',
    { timeout: TEST_TIMEOUT },
    () => {
      fc.assert(
        fc.property(certInput(), fc.nat(), ({ der }, i) => {
          const r = coded('parseCertificate', () => parseCertificate(der), CERT_CODES);
          if (!r.ok) return;
          const cert = r.value;
          coded('publicKeyOf', () => publicKeyOf(cert), CERT_CODES);
          const s = responseSeeds[i % responseSeeds.length]!;
          coded('isSignedBy', () => isSignedBy(cert, s.issuer));
          coded('isSignedBy(issuer)', () => isSignedBy(s.cert, cert));
          // a damaged certificate or issuer next to a real response
          coded('verifyResponse(bad cert)', () => verifyResponse(s.der, { cert, issuer: s.issuer, now: new Date() }));
          const asIssuer = coded('verifyResponse(bad issuer)', () =>
            verifyResponse(s.der, { cert: s.cert, issuer: cert, now: new Date() }),
          );
          if (asIssuer.ok) expect(signedTbs.has(decodeResponse(s.der).basic!.tbsDer.toString('hex'))).toBe(true);
        }),
        params(),
      );
    },
  );

  it(
    'loadCertificates: mutated DER and mutated PEM bundles (labels, base64, line endings, missing END, duplicates)',
    { timeout: TEST_TIMEOUT },
    () => {
      fc.assert(
        fc.property(
          certInput(),
          fc.boolean(),
          fc.boolean(),
          fc.array(textMutationArb, { maxLength: 4 }),
          ({ der }, asPem, bundle, textMuts) => {
            let data: Buffer;
            if (asPem) {
              let text = toPem(der);
              if (bundle) text += toPem(certSeeds[1]!);
              data = Buffer.from(mutateText(text, textMuts), 'utf8');
            } else {
              data = der;
            }
            coded('loadCertificates', () => loadCertificates(data, '/certs/x.pem'), CERT_CODES);
          },
        ),
        params(),
      );
    },
  );

  it(
    'decodePem: arbitrary and adversarial text is decoded or coded, exactly like the regular-expression version',
    { timeout: TEST_TIMEOUT },
    () => {
      const tokens = [
        '-----BEGIN ',
        '-----END ',
        '-----',
        'CERTIFICATE',
        'A',
        'B ',
        'QUJD',
        'QQ==',
        '\n',
        '\r\n',
        ' ',
        '=',
        '!',
        'x',
        '-',
      ];
      const text = fc.oneof(
        fc.array(fc.constantFrom(...tokens), { maxLength: 40 }).map((a) => a.join('')),
        fc.string({ maxLength: 200 }),
        fc
          .tuple(fc.nat(), fc.array(textMutationArb, { maxLength: 4 }))
          .map(([i, m]) => mutateText(toPem(certSeeds[i % certSeeds.length]!), m)),
      );
      fc.assert(
        fc.property(text, fc.constantFrom('NOT_A_CERTIFICATE' as const, 'OCSP_MALFORMED' as const), (t, code) => {
          const r = coded('decodePem', () => decodePem(t, code), [code]);
          const ref = referenceDecodePem(t);
          if (ref === 'broken') expect(r.ok).toBe(false);
          else {
            expect(r.ok).toBe(true);
            if (r.ok) expect(r.value).toEqual(ref);
          }
        }),
        params(),
      );
    },
  );

  it('decodePem stays linear on files of thousands of unterminated BEGIN lines (a regex would take seconds)', () => {
    const t0 = performance.now();
    for (const label of ['A', 'CERTIFICATE', 'OCSP RESPONSE']) {
      const text = `-----BEGIN ${label}-----\n`.repeat(60_000); // ~1-2 MiB
      expect(decodePem(text)).toEqual([]);
      expect(() => stapleBytes(Buffer.from(text), '/x')).toThrow(StapleError);
    }
    // many distinct labels, each without END
    const distinct = Array.from({ length: 40_000 }, (_, i) => `-----BEGIN L${i}-----`).join('');
    expect(decodePem(distinct)).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});

/** An accepted time reads back exactly as written (no month 13 rolled over into the next year). */
function expectReadsBack(d: Date, written: string, tag: number): void {
  expect(Number.isFinite(d.getTime())).toBe(true);
  const iso = d.toISOString().replace(/[-:T]/g, '');
  if (tag === 0x17) expect(iso.slice(2, 14), written).toBe(written.slice(0, 12));
  else expect(iso.slice(0, 14), written).toBe(written.slice(0, 14));
}

describe(`fuzz: the DER reader on arbitrary bytes (${RUNS} runs per property)`, () => {
  /** Walks everything, descending into constructed values; only StapleErrors may come out. */
  function walkAll(buf: Buffer, r: DerReader, depth = 0): void {
    while (!r.done) {
      const t = r.next();
      if (depth < 32 && t.tag & 0x20) walkAll(buf, DerReader.inside(buf, t), depth + 1);
      if (t.tag === 0x06) decodeOid(buf.subarray(t.valueStart, t.end));
      if (t.tag === 0x17 || t.tag === 0x18) {
        const d = decodeTime(buf, t);
        expect(Number.isFinite(d.getTime())).toBe(true);
        d.toISOString();
      }
    }
  }

  it(
    'random and near-DER bytes: the reader never throws anything but a coded StapleError',
    { timeout: TEST_TIMEOUT },
    () => {
      const bytes = fc.oneof(
        fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
        responseInput().map((x) => x.der),
        certInput().map((x) => x.der),
      );
      fc.assert(
        fc.property(bytes, (buf) => {
          coded('DerReader', () => walkAll(buf, new DerReader(buf)), ['OCSP_MALFORMED']);
        }),
        params(),
      );
    },
  );

  it(
    'time strings: every UTCTime/GeneralizedTime content is a valid date or a coded error',
    { timeout: TEST_TIMEOUT },
    () => {
      const digits = fc.string({
        unit: fc.constantFrom('0', '1', '2', '3', '5', '9', 'Z', '.', '+', '-', ' '),
        maxLength: 24,
      });
      fc.assert(
        fc.property(digits, fc.constantFrom(0x17, 0x18, 0x02), (s, tag) => {
          const content = Buffer.from(s, 'latin1');
          const buf = Buffer.concat([Buffer.from([tag]), minimalLength(content.length), content]);
          const r = coded('decodeTime', () => decodeTime(buf, new DerReader(buf).next()), ['OCSP_MALFORMED']);
          if (r.ok) expectReadsBack(r.value, s, tag);
        }),
        params(),
      );
      // well-formed digits with fields out of range: month 13, day 32, hour 24, second 60 …
      const two = (max: number) => fc.integer({ min: 0, max }).map((n) => String(n).padStart(2, '0'));
      const fields = fc.tuple(
        fc.integer({ min: 0, max: 9999 }),
        two(15),
        two(35),
        two(30),
        two(65),
        two(65),
        fc.boolean(),
      );
      fc.assert(
        fc.property(fields, ([y, mo, d, h, mi, se, utc]) => {
          const s = utc
            ? `${String(y % 100).padStart(2, '0')}${mo}${d}${h}${mi}${se}Z`
            : `${String(y).padStart(4, '0')}${mo}${d}${h}${mi}${se}Z`;
          const tag = utc ? 0x17 : 0x18;
          const content = Buffer.from(s, 'latin1');
          const buf = Buffer.concat([Buffer.from([tag]), minimalLength(content.length), content]);
          const r = coded('decodeTime', () => decodeTime(buf, new DerReader(buf).next()), ['OCSP_MALFORMED']);
          const inRange = +mo >= 1 && +mo <= 12 && +d >= 1 && +d <= 31 && +h <= 23 && +mi <= 59 && +se <= 59;
          if (!inRange) expect(r.ok, s).toBe(false);
          if (r.ok) expectReadsBack(r.value, s, tag);
        }),
        params(),
      );
    },
  );
});
