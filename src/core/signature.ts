/**
 * Signature algorithms: from an AlgorithmIdentifier to node:crypto verify
 * parameters. Supported: RSA PKCS#1 v1.5 (SHA-1/224/256/384/512), RSASSA-PSS
 * (RFC 4055), ECDSA with SHA-1/224/256/384/512 (P-256/384/521 keys), Ed25519
 * and Ed448. Anything else is `OCSP_UNSUPPORTED_ALGORITHM`.
 */
import { constants, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { DerReader, TAG, contents, decodeOid } from './der.js';
import { StapleError } from './errors.js';

/** What node:crypto needs to verify one signature. */
export interface VerifyParams {
  /** Digest name for crypto.verify, or null for EdDSA. */
  hash: string | null;
  /** Extra key options (padding and salt length for PSS). */
  keyOptions: { padding?: number; saltLength?: number };
  /** A readable name for messages and `inspect`. */
  name: string;
}

const HASH_OIDS: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.4': 'sha224',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

const SIMPLE: Record<string, { hash: string | null; name: string }> = {
  '1.2.840.113549.1.1.5': { hash: 'sha1', name: 'sha1WithRSAEncryption' },
  '1.2.840.113549.1.1.14': { hash: 'sha224', name: 'sha224WithRSAEncryption' },
  '1.2.840.113549.1.1.11': { hash: 'sha256', name: 'sha256WithRSAEncryption' },
  '1.2.840.113549.1.1.12': { hash: 'sha384', name: 'sha384WithRSAEncryption' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', name: 'sha512WithRSAEncryption' },
  '1.2.840.10045.4.1': { hash: 'sha1', name: 'ecdsa-with-SHA1' },
  '1.2.840.10045.4.3.1': { hash: 'sha224', name: 'ecdsa-with-SHA224' },
  '1.2.840.10045.4.3.2': { hash: 'sha256', name: 'ecdsa-with-SHA256' },
  '1.2.840.10045.4.3.3': { hash: 'sha384', name: 'ecdsa-with-SHA384' },
  '1.2.840.10045.4.3.4': { hash: 'sha512', name: 'ecdsa-with-SHA512' },
  '1.3.101.112': { hash: null, name: 'Ed25519' },
  '1.3.101.113': { hash: null, name: 'Ed448' },
};

const RSASSA_PSS = '1.2.840.113549.1.1.10';

/** The hash algorithm name for a digest OID, or undefined. */
export function hashNameForOid(oid: string): string | undefined {
  return HASH_OIDS[oid];
}

/** The digest OID for a hash name. */
export function oidForHashName(name: string): string {
  for (const [oid, n] of Object.entries(HASH_OIDS)) if (n === name) return oid;
  throw new StapleError('INTERNAL', `unknown hash ${name}`);
}

/**
 * Translates an AlgorithmIdentifier (exact DER) into verify parameters.
 * With a {@link SignatureMemo}, the result is shared between calls with the
 * same bytes: do not modify it.
 */
export function nodeVerifyParams(algIdDer: Buffer, memo?: SignatureMemo): VerifyParams {
  return memo ? memo.params(algIdDer) : parseVerifyParams(algIdDer);
}

function parseVerifyParams(algIdDer: Buffer): VerifyParams {
  const code = 'OCSP_MALFORMED' as const;
  const r = new DerReader(algIdDer, 0, algIdDer.length, code);
  const seq = DerReader.inside(algIdDer, r.next(TAG.SEQUENCE), code);
  const oid = decodeOid(contents(algIdDer, seq.next(TAG.OID)));
  const simple = SIMPLE[oid];
  if (simple) return { hash: simple.hash, keyOptions: {}, name: simple.name };
  if (oid === RSASSA_PSS) return pssParams(algIdDer, seq);
  throw new StapleError('OCSP_UNSUPPORTED_ALGORITHM', `unsupported signature algorithm ${oid}`, {
    details: { algorithm: oid },
  });
}

function pssParams(der: Buffer, seq: DerReader): VerifyParams {
  // RSASSA-PSS-params (RFC 4055 §3.1): defaults SHA-1, MGF1-SHA-1, salt 20
  let hash = 'sha1';
  let saltLength = 20;
  const paramsTlv = seq.optional(TAG.SEQUENCE);
  if (paramsTlv) {
    const p = DerReader.inside(der, paramsTlv);
    const h = p.optional(0xa0);
    if (h) {
      const alg = DerReader.inside(der, DerReader.inside(der, h).next(TAG.SEQUENCE));
      const hashOid = decodeOid(contents(der, alg.next(TAG.OID)));
      const name = HASH_OIDS[hashOid];
      if (!name) throw new StapleError('OCSP_UNSUPPORTED_ALGORITHM', `unsupported PSS hash ${hashOid}`);
      hash = name;
    }
    p.optional(0xa1); // MGF1 with the same hash is what node uses; differing MGF hashes are rare
    const s = p.optional(0xa2);
    if (s) {
      const intTlv = DerReader.inside(der, s).next(TAG.INTEGER);
      saltLength = contents(der, intTlv).reduce((acc, b) => acc * 256 + b, 0);
    }
  }
  return {
    hash,
    keyOptions: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength },
    name: `RSASSA-PSS(${hash})`,
  };
}

/** One remembered check: the exact algorithm and data, and its result. */
interface Checked {
  alg: Buffer;
  data: Buffer;
  ok: boolean;
}

const MAX_CHECKED_PER_KEY = 1024;
const PARAMS_MEMO_MAX = 256;
const MAX_KEYS_BY_SPKI = 1024;

/**
 * Results of signature checks already made, per key, by (algorithm, data,
 * signature), and verify parameters by AlgorithmIdentifier. A check is a
 * pure function of its inputs and costs 20–120 µs: thousands of responses are
 * signed by the same delegated responder certificate, and the engine runs
 * checks ahead on another thread (pipeline/signature-thread.ts, which records
 * its answers with {@link SignatureMemo.remember}) so that the synchronous
 * rules find them done. Entries are found by the signature bytes and hold
 * copies of the algorithm and data, compared in full: no hash shortcut, so no
 * input can be mistaken for another. Bounded per key; keys are held weakly.
 *
 * A memo only saves work: {@link verifySignature} gives the same answer with
 * or without one. Whoever wants one creates it (pipeline/signature-verifier.ts)
 * and passes it down; core holds none of its own.
 */
export class SignatureMemo {
  private readonly checked = new WeakMap<KeyObject, Map<string, Checked[]>>();
  /** Parameters by AlgorithmIdentifier (latin1): a run sees a handful of distinct ones, thousands of times. */
  private readonly paramsByAlg = new Map<string, VerifyParams>();
  /** Keys by SPKI bytes: one CA or responder certificate arrives in thousands of chain files and responses. */
  private readonly keysBySpki = new Map<string, KeyObject>();

  /**
   * One KeyObject per SubjectPublicKeyInfo, so that a check remembered under
   * the key of one copy of a certificate is found from another copy.
   */
  keyFor(spkiDer: Buffer, create: () => KeyObject): KeyObject {
    const id = spkiDer.toString('base64');
    let k = this.keysBySpki.get(id);
    if (k === undefined) {
      k = create();
      if (this.keysBySpki.size >= MAX_KEYS_BY_SPKI) this.keysBySpki.clear();
      this.keysBySpki.set(id, k);
    }
    return k;
  }

  /** {@link nodeVerifyParams}, remembered by the exact bytes. */
  params(algIdDer: Buffer): VerifyParams {
    const key = algIdDer.length <= 128 ? algIdDer.toString('latin1') : undefined;
    if (key !== undefined) {
      const known = this.paramsByAlg.get(key);
      if (known !== undefined) return known;
    }
    const params = parseVerifyParams(algIdDer);
    if (key !== undefined) {
      if (this.paramsByAlg.size >= PARAMS_MEMO_MAX) this.paramsByAlg.clear();
      this.paramsByAlg.set(key, params);
    }
    return params;
  }

  /** The result of a check made before with exactly these inputs, if it is remembered. */
  recall(key: KeyObject, algIdDer: Buffer, data: Buffer, signature: Buffer): boolean | undefined {
    const list = this.checked.get(key)?.get(signature.toString('latin1'));
    if (list === undefined) return undefined;
    for (const c of list) if (c.data.equals(data) && c.alg.equals(algIdDer)) return c.ok;
    return undefined;
  }

  /**
   * Remembers the result of a check of exactly these inputs, made with
   * `crypto.verify(params.hash, data, { key, ...params.keyOptions }, signature)`
   * for the {@link nodeVerifyParams} of `algIdDer` (pipeline/signature-thread.ts
   * makes them on another thread).
   */
  remember(key: KeyObject, algIdDer: Buffer, data: Buffer, signature: Buffer, ok: boolean): void {
    let m = this.checked.get(key);
    if (!m) this.checked.set(key, (m = new Map()));
    else if (m.size >= MAX_CHECKED_PER_KEY) m.clear();
    const id = signature.toString('latin1');
    const entry = { alg: Buffer.from(algIdDer), data: Buffer.from(data), ok };
    const list = m.get(id);
    if (list) list.push(entry);
    else m.set(id, [entry]);
  }
}

/**
 * Verifies `signature` over `data` with `key` per the AlgorithmIdentifier.
 * Returns false for a wrong signature; throws for an unsupported algorithm.
 * With a `memo`, a check made before (here or on the signature thread) is
 * not made again, and this one is remembered.
 */
export function verifySignature(
  algIdDer: Buffer,
  data: Buffer,
  key: KeyObject,
  signature: Buffer,
  memo?: SignatureMemo,
): boolean {
  const params = nodeVerifyParams(algIdDer, memo);
  const known = memo?.recall(key, algIdDer, data, signature);
  if (known !== undefined) return known;
  let ok: boolean;
  try {
    ok = cryptoVerify(params.hash, data, { key, ...params.keyOptions }, signature);
  } catch {
    // a key/algorithm mismatch (e.g. an ECDSA signature with an RSA key) is a bad signature
    ok = false;
  }
  memo?.remember(key, algIdDer, data, signature, ok);
  return ok;
}
