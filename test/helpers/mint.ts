/**
 * The tests' one door to test PKIs. Two minters, for two needs:
 *
 * - **In-process** (this file): keys, X.509 certificates, OCSP responses and
 *   CRLs built here with @peculiar/asn1-* and node:crypto. For the unit,
 *   hostile-responder and fuzz tests, which need hundreds of certificates and
 *   responses with precise defects: spawning `openssl` for each would
 *   dominate the run time and could not produce most of the defects anyway.
 *   Answered by cli-harness.ts `startGoodResponder` or evil-responder.ts.
 * - **On disk, by the openssl CLI** (`createPki`, `addLeaf`, `revokeLeaf`,
 *   `genCrl`, re-exported below from scripts/lib/pki.mjs, which the demo
 *   shares): a CA folder with an `index.txt` that a real `openssl ocsp`
 *   answers (servers.ts `startOpensslPki`) and real `openssl ca -gencrl`
 *   CRLs. For the end-to-end tests, where an independent implementation
 *   checks ours.
 *
 * The benchmark has its own, third minter, scripts/lib/bench-pki.mjs: plain
 * JavaScript (the bench runs without a build), hand-framed DER for ~10,000
 * certificates a second, and nothing a test needs; tests do not use it.
 *
 * Structures here are encoded with @peculiar/asn1-x509 / asn1-ocsp (through
 * AsnConvert); only the outermost "TBS + algorithm + signature" wrappers are
 * concatenated by hand with {@link tlv}, so that the bytes we sign are exactly
 * the bytes we emit and the TBS is serialised only once.
 *
 * Nothing here is used by src/: it is a tool for producing inputs, including
 * deliberately wrong ones, and it never validates what the caller asks for.
 */
import { constants, createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AccessDescription,
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityInfoAccessSyntax,
  AuthorityKeyIdentifier,
  BasicConstraints,
  CRLDistributionPoints,
  CRLReason,
  DistributionPoint,
  DistributionPointName,
  ExtendedKeyUsage,
  Extension,
  GeneralName,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  Validity,
  Version as CertVersion,
  type KeyUsageType,
} from '@peculiar/asn1-x509';
import {
  CertID,
  CertStatus,
  OCSPResponse,
  ResponderID,
  ResponseBytes,
  ResponseData,
  RevokedInfo,
  SingleResponse,
  KeyHash,
  id_pkix_ocsp_basic,
  id_pkix_ocsp_nonce,
} from '@peculiar/asn1-ocsp';

export {
  addLeaf,
  createPki,
  genCrl,
  revokeLeaf,
  type CreatePkiOptions,
  type Leaf,
  type LeafOptions,
  type Pki,
} from '../../scripts/lib/pki.mjs';

// ---------------------------------------------------------------------------
// Object identifiers used below (named so tests can refer to them too)
// ---------------------------------------------------------------------------

export const OID = {
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  rsassaPss: '1.2.840.113549.1.1.10',
  mgf1: '1.2.840.113549.1.1.8',
  ed25519: '1.3.101.112',
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  ocsp: '1.3.6.1.5.5.7.48.1',
  caIssuers: '1.3.6.1.5.5.7.48.2',
  ocspBasic: id_pkix_ocsp_basic,
  ocspNonce: id_pkix_ocsp_nonce,
  kpServerAuth: '1.3.6.1.5.5.7.3.1',
  kpClientAuth: '1.3.6.1.5.5.7.3.2',
  kpOcspSigning: '1.3.6.1.5.5.7.3.9',
  extBasicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.15',
  extExtKeyUsage: '2.5.29.37',
  extSubjectKeyIdentifier: '2.5.29.14',
  extAuthorityKeyIdentifier: '2.5.29.35',
  extSubjectAltName: '2.5.29.17',
  extAuthorityInfoAccess: '1.3.6.1.5.5.7.1.1',
  extCrlDistributionPoints: '2.5.29.31',
  /** TLS Feature (RFC 7633): status_request (5) = must-staple. */
  extTlsFeature: '1.3.6.1.5.5.7.1.24',
  /** noRevAvail (RFC 9608). */
  extNoRevAvail: '2.5.29.56',
  extCrlNumber: '2.5.29.20',
  extIssuingDistributionPoint: '2.5.29.28',
  extReasonCode: '2.5.29.21',
  extInvalidityDate: '2.5.29.24',
} as const;

// ---------------------------------------------------------------------------
// Minimal DER helpers. Exported because the hostile scenarios tamper with
// lengths and tags directly, which no schema library will let us express.
// ---------------------------------------------------------------------------

/** DER length octets for `len` (short form below 128, else minimal long form). */
export function derLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One DER element: tag byte, minimal length, the concatenated contents. */
export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = contents.length === 1 ? contents[0]! : Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

/** A decoded element header: where the element starts, its contents start and end. */
export interface DerElement {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first contents byte. */
  contentStart: number;
  /** Offset one past the last contents byte (may exceed the buffer if the length lies). */
  end: number;
}

/**
 * Reads one element header at `off`. Only single-byte tags and definite lengths
 * (all DER allows for the structures we walk); throws on anything else so a
 * helper bug never silently produces a wrong CertID.
 */
export function readDer(buf: Buffer, off = 0): DerElement {
  if (off + 2 > buf.length) throw new Error(`DER: truncated header at ${off}`);
  const tag = buf[off]!;
  if ((tag & 0x1f) === 0x1f) throw new Error('DER: multi-byte tags not supported');
  let len = buf[off + 1]!;
  let p = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 6) throw new Error('DER: unsupported length form');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    p += n;
  }
  return { tag, start: off, contentStart: p, end: p + len };
}

/** Contents of each child of the constructed element `el`. */
export function derChildren(buf: Buffer, el: DerElement): DerElement[] {
  const out: DerElement[] = [];
  for (let p = el.contentStart; p < el.end;) {
    const c = readDer(buf, p);
    out.push(c);
    p = c.end;
  }
  return out;
}

/** Copies a Buffer view into a standalone ArrayBuffer (Node Buffers share pooled memory). */
function ab(b: Buffer | Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

function ser(obj: unknown): Buffer {
  return Buffer.from(AsnConvert.serialize(obj));
}

/** Wraps base64 DER in PEM armour with 64-character lines. */
export function toPem(der: Buffer, label = 'CERTIFICATE'): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

export type KeyType = 'ec-p256' | 'ec-p384' | 'ec-p521' | 'rsa-2048' | 'rsa-pss' | 'ed25519';
export const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'ec-p384', 'ec-p521', 'rsa-2048', 'rsa-pss', 'ed25519'];

export interface TestKey {
  type: KeyType;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER as Node exports it. */
  spkiDer: Buffer;
}

/** Generates a fresh key pair. RSA takes ~50–200 ms; prefer {@link sharedKey} where identity does not matter. */
export function generateKey(type: KeyType): TestKey {
  let pair: { privateKey: KeyObject; publicKey: KeyObject };
  switch (type) {
    case 'ec-p256':
      pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      break;
    case 'ec-p384':
      pair = generateKeyPairSync('ec', { namedCurve: 'P-384' });
      break;
    case 'ec-p521':
      pair = generateKeyPairSync('ec', { namedCurve: 'P-521' });
      break;
    case 'rsa-2048':
      pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
      break;
    case 'rsa-pss':
      // An unrestricted RSASSA-PSS key (SPKI algorithm id-RSASSA-PSS without
      // parameters), so the PSS path is exercised for keys as well as signatures.
      pair = generateKeyPairSync('rsa-pss', { modulusLength: 2048 });
      break;
    case 'ed25519':
      pair = generateKeyPairSync('ed25519');
      break;
  }
  return { type, ...pair, spkiDer: pair.publicKey.export({ type: 'spki', format: 'der' }) };
}

const keyCache = new Map<string, TestKey>();

/**
 * A key that is generated once per process for each (type, label) and then
 * reused: tests that need "a different key" pass a different label. This keeps
 * RSA PKIs cheap and lets the bench mint thousands of leaves on one key.
 */
export function sharedKey(type: KeyType, label = 'default'): TestKey {
  const k = `${type}/${label}`;
  let key = keyCache.get(k);
  if (!key) {
    key = generateKey(type);
    keyCache.set(k, key);
  }
  return key;
}

// ---------------------------------------------------------------------------
// Signature algorithms
// ---------------------------------------------------------------------------

export type SigAlgName =
  | 'ecdsa-sha256'
  | 'ecdsa-sha384'
  | 'ecdsa-sha512'
  | 'rsa-sha256'
  | 'rsa-sha384'
  | 'rsa-sha512'
  | 'rsa-pss-sha256'
  | 'ed25519';

/** The algorithm a key of each type signs with unless told otherwise (hash sized to the curve). */
export function defaultSigAlg(type: KeyType): SigAlgName {
  switch (type) {
    case 'ec-p256':
      return 'ecdsa-sha256';
    case 'ec-p384':
      return 'ecdsa-sha384';
    case 'ec-p521':
      return 'ecdsa-sha512';
    case 'rsa-2048':
      return 'rsa-sha256';
    case 'rsa-pss':
      return 'rsa-pss-sha256';
    case 'ed25519':
      return 'ed25519';
  }
}

/**
 * RSASSA-PSS-params for SHA-256 / MGF1-SHA-256 / salt 32 (RFC 4055). The salt
 * length must be explicit because the ASN.1 default is 20; the hash
 * AlgorithmIdentifiers carry no parameters, as RFC 4055 §2.1 prefers.
 */
const PSS_SHA256_PARAMS = (() => {
  const sha256 = ser(new AlgorithmIdentifier({ algorithm: OID.sha256 }));
  const mgf1 = ser(new AlgorithmIdentifier({ algorithm: OID.mgf1, parameters: ab(sha256) }));
  return tlv(0x30, tlv(0xa0, sha256), tlv(0xa1, mgf1), tlv(0xa2, tlv(0x02, Buffer.from([32]))));
})();

const SIG_ALGS: Record<SigAlgName, { oid: string; params?: Buffer | null; hash: string | null }> = {
  // ECDSA and Ed25519 AlgorithmIdentifiers have no parameters at all (RFC 5758, RFC 8410);
  // the RSA PKCS#1 ones have an explicit NULL (RFC 4055).
  'ecdsa-sha256': { oid: OID.ecdsaWithSHA256, hash: 'sha256' },
  'ecdsa-sha384': { oid: OID.ecdsaWithSHA384, hash: 'sha384' },
  'ecdsa-sha512': { oid: OID.ecdsaWithSHA512, hash: 'sha512' },
  'rsa-sha256': { oid: OID.sha256WithRSAEncryption, params: null, hash: 'sha256' },
  'rsa-sha384': { oid: OID.sha384WithRSAEncryption, params: null, hash: 'sha384' },
  'rsa-sha512': { oid: OID.sha512WithRSAEncryption, params: null, hash: 'sha512' },
  'rsa-pss-sha256': { oid: OID.rsassaPss, params: PSS_SHA256_PARAMS, hash: 'sha256' },
  ed25519: { oid: OID.ed25519, hash: null },
};

const algIdCache = new Map<string, Buffer>();

/** DER AlgorithmIdentifier for a named algorithm, or for a bare OID (no parameters). */
export function sigAlgIdDer(alg: SigAlgName | string): Buffer {
  let der = algIdCache.get(alg);
  if (!der) {
    const def = SIG_ALGS[alg as SigAlgName];
    const id = def
      ? new AlgorithmIdentifier({
          algorithm: def.oid,
          ...(def.params === undefined ? {} : { parameters: def.params === null ? null : ab(def.params) }),
        })
      : new AlgorithmIdentifier({ algorithm: checkOid(alg) });
    der = ser(id);
    algIdCache.set(alg, der);
  }
  return der;
}

function checkOid(s: string): string {
  // Anything that is neither a known name nor a dotted OID is a typo in a test, not a knob.
  if (!/^[0-2](\.\d+)+$/.test(s)) throw new Error(`mint: unknown signature algorithm ${JSON.stringify(s)}`);
  return s;
}

/**
 * Signs `data` with `key` using algorithm `alg`. When `alg` is a bare OID the
 * signature is made with the key's default algorithm: the OID is then only a
 * label, which is exactly what the "unsupported algorithm" scenarios want.
 */
export function signWith(key: TestKey, alg: SigAlgName | string, data: Buffer): Buffer {
  const name: SigAlgName = alg in SIG_ALGS ? (alg as SigAlgName) : defaultSigAlg(key.type);
  const def = SIG_ALGS[name];
  if (name.startsWith('ecdsa')) return sign(def.hash, data, { key: key.privateKey, dsaEncoding: 'der' });
  if (name === 'rsa-pss-sha256') {
    return sign('sha256', data, { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  }
  if (name === 'ed25519') return sign(null, data, key.privateKey);
  return sign(def.hash, data, { key: key.privateKey, padding: constants.RSA_PKCS1_PADDING });
}

/** BIT STRING with zero unused bits, the form of every signature and public key. */
function bitString(bytes: Buffer): Buffer {
  return tlv(0x03, Buffer.from([0]), bytes);
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/** Facts about a certificate that issuing and CertID computation need, taken from its exact DER. */
export interface CertFacts {
  /** DER of the subject Name exactly as it appears in the certificate. */
  subjectDer: Buffer;
  /** DER of the issuer Name exactly as it appears in the certificate. */
  issuerDer: Buffer;
  /** Serial number: the contents octets of the DER INTEGER. */
  serial: Buffer;
  /** subjectPublicKey BIT STRING contents without the unused-bits octet. */
  publicKeyBits: Buffer;
  /** SubjectKeyIdentifier extension value if present. */
  ski: Buffer | null;
}

const factsCache = new WeakMap<Buffer, CertFacts>();

/**
 * Walks a certificate's DER to the fields CertIDs and issuing need, without a
 * schema parse: exact bytes matter (a re-encoded Name could differ from the
 * original in string types) and it is cheap enough to call per certificate.
 */
export function certFacts(der: Buffer): CertFacts {
  const cached = factsCache.get(der);
  if (cached) return cached;
  const cert = readDer(der, 0);
  const tbs = readDer(der, cert.contentStart);
  const f = derChildren(der, tbs);
  let i = 0;
  if (f[0]?.tag === 0xa0) i = 1; // explicit version
  const [serialEl, , issuerEl, , subjectEl, spkiEl] = f.slice(i);
  if (!serialEl || !issuerEl || !subjectEl || !spkiEl) throw new Error('certFacts: not a certificate');
  const spkiParts = derChildren(der, spkiEl);
  const bits = spkiParts[1]!;
  let ski: Buffer | null = null;
  const extsWrapper = f.find((e) => e.tag === 0xa3);
  if (extsWrapper) {
    const exts = derChildren(der, readDer(der, extsWrapper.contentStart));
    for (const e of exts) {
      const parts = derChildren(der, e);
      const oid = parts[0]!;
      // 06 03 55 1d 0e is the OID 2.5.29.14 (subjectKeyIdentifier)
      if (der.subarray(oid.start, oid.end).equals(Buffer.from('0603551d0e', 'hex'))) {
        const valueOctets = parts[parts.length - 1]!;
        const inner = readDer(der, valueOctets.contentStart);
        ski = Buffer.from(der.subarray(inner.contentStart, inner.end));
      }
    }
  }
  const facts: CertFacts = {
    subjectDer: Buffer.from(der.subarray(subjectEl.start, subjectEl.end)),
    issuerDer: Buffer.from(der.subarray(issuerEl.start, issuerEl.end)),
    serial: Buffer.from(der.subarray(serialEl.contentStart, serialEl.end)),
    publicKeyBits: Buffer.from(der.subarray(bits.contentStart + 1, bits.end)),
    ski,
  };
  factsCache.set(der, facts);
  return facts;
}

/** Something that can issue: a certificate (DER) and its private key. A {@link MintedCert} qualifies. */
export interface IssuerRef {
  der: Buffer;
  key: TestKey;
}

export interface ExtensionSpec {
  oid: string;
  critical?: boolean;
  /** extnValue contents: the DER of the extension's value. */
  value: Buffer;
}

export interface MintCertOptions {
  subjectCN: string;
  /** Optional organisation, to make subjects that differ only outside the CN. */
  subjectO?: string;
  /** Issuing certificate and key; self-signed with `key` when absent. */
  issuer?: IssuerRef;
  /** Subject key; default: {@link sharedKey} of the issuer's key type (or ec-p256), label 'leaf'. */
  key?: TestKey;
  /** Contents octets of the serial INTEGER, used verbatim (prefix 0x00 if the top bit is set). Default: 16 random bytes, positive. */
  serial?: Buffer;
  notBefore: Date;
  notAfter: Date;
  isCA?: boolean;
  /** Extended key usages as OIDs; absent = no EKU extension. */
  eku?: string[];
  ocspUrls?: string[];
  caIssuersUrls?: string[];
  /** Subject alternative DNS names; default: none. */
  dnsNames?: string[];
  /** Add a SubjectKeyIdentifier (default true). */
  ski?: boolean;
  /** Add an AuthorityKeyIdentifier (default true); a Buffer forces its keyIdentifier. */
  aki?: boolean | Buffer;
  /** Key usages; default CA: digitalSignature+keyCertSign+cRLSign, RSA leaf: +keyEncipherment, else digitalSignature. null omits the extension. */
  keyUsage?: KeyUsageType[] | null;
  /** Signature algorithm (name or raw OID); default derived from the issuer's key type. */
  sigAlg?: SigAlgName | string;
  extraExtensions?: ExtensionSpec[];
  /** CRL distribution points: one point whose fullName lists these URIs. */
  crlUrls?: string[];
  /** Add the TLS Feature extension with status_request (5): must-staple (RFC 7633). */
  mustStaple?: boolean;
  /** Add the noRevAvail extension (RFC 9608). */
  noRevAvail?: boolean;
}

export interface MintedCert {
  der: Buffer;
  pem: string;
  key: TestKey;
  serial: Buffer;
  /** The certificate's subject CN, handy in failure messages. */
  cn: string;
}

function randomSerial(): Buffer {
  const s = createHash('sha256')
    .update(String(Math.random()) + process.hrtime.bigint())
    .digest()
    .subarray(0, 16);
  // Positive and minimal: clear the sign bit and avoid a leading zero octet.
  s[0] = (s[0]! & 0x7f) | 0x01;
  return Buffer.from(s);
}

/** Drops milliseconds: DER times have whole seconds here, and a round trip must compare equal. */
export function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

function makeName(cn: string, o?: string): Name {
  const rdns: RelativeDistinguishedName[] = [];
  if (o !== undefined) {
    rdns.push(
      new RelativeDistinguishedName([
        new AttributeTypeAndValue({ type: OID.organizationName, value: new AttributeValue({ utf8String: o }) }),
      ]),
    );
  }
  rdns.push(
    new RelativeDistinguishedName([
      new AttributeTypeAndValue({ type: OID.commonName, value: new AttributeValue({ utf8String: cn }) }),
    ]),
  );
  return new Name(rdns);
}

const spkiCache = new WeakMap<TestKey, SubjectPublicKeyInfo>();
function spkiOf(key: TestKey): SubjectPublicKeyInfo {
  let s = spkiCache.get(key);
  if (!s) {
    s = AsnConvert.parse(key.spkiDer, SubjectPublicKeyInfo);
    spkiCache.set(key, s);
  }
  return s;
}

/** SubjectKeyIdentifier method 1 of RFC 5280 §4.2.1.2: SHA-1 of the subjectPublicKey bits. */
export function keyIdOf(key: TestKey): Buffer {
  let kid = keyIdCache.get(key);
  if (!kid) {
    kid = createHash('sha1')
      .update(Buffer.from(spkiOf(key).subjectPublicKey))
      .digest();
    keyIdCache.set(key, kid);
  }
  return kid;
}
const keyIdCache = new WeakMap<TestKey, Buffer>();

const nameCache = new WeakMap<Buffer, Name>();
function nameFromDer(der: Buffer): Name {
  let n = nameCache.get(der);
  if (!n) {
    n = AsnConvert.parse(der, Name);
    nameCache.set(der, n);
  }
  return n;
}

function ext(oid: string, critical: boolean, value: Buffer): Extension {
  return new Extension({ extnID: oid, critical, extnValue: new OctetString(ab(value)) });
}

const KU_FLAGS: Record<KeyUsageType, number> = {
  digitalSignature: KeyUsageFlags.digitalSignature,
  nonRepudiation: KeyUsageFlags.nonRepudiation,
  keyEncipherment: KeyUsageFlags.keyEncipherment,
  dataEncipherment: KeyUsageFlags.dataEncipherment,
  keyAgreement: KeyUsageFlags.keyAgreement,
  keyCertSign: KeyUsageFlags.keyCertSign,
  crlSign: KeyUsageFlags.cRLSign,
  encipherOnly: KeyUsageFlags.encipherOnly,
  decipherOnly: KeyUsageFlags.decipherOnly,
};

/**
 * Mints an X.509 v3 certificate. The result is accepted by Node's
 * X509Certificate and by `openssl x509` / `openssl verify` (tested).
 */
export function mintCert(opts: MintCertOptions): MintedCert {
  const issuerKey = opts.issuer?.key ?? opts.key ?? sharedKey('ec-p256', 'leaf');
  const key = opts.key ?? (opts.issuer ? sharedKey(opts.issuer.key.type, 'leaf') : issuerKey);
  const serial = opts.serial ?? randomSerial();
  const sigAlg = opts.sigAlg ?? defaultSigAlg(issuerKey.type);
  const subjectDer = ser(makeName(opts.subjectCN, opts.subjectO));
  const issuerFacts = opts.issuer ? certFacts(opts.issuer.der) : null;
  // The issuer Name is copied byte for byte from the issuer's certificate, so
  // name chaining holds even for issuers minted elsewhere with other string types.
  const issuerNameDer = issuerFacts ? issuerFacts.subjectDer : subjectDer;

  const exts: Buffer[] = [];
  if (opts.isCA)
    exts.push(cachedExt(OID.extBasicConstraints, true, 'ca', () => ser(new BasicConstraints({ cA: true }))));
  const ku =
    opts.keyUsage === undefined
      ? opts.isCA
        ? (['digitalSignature', 'keyCertSign', 'crlSign'] as KeyUsageType[])
        : key.type === 'rsa-2048'
          ? (['digitalSignature', 'keyEncipherment'] as KeyUsageType[])
          : (['digitalSignature'] as KeyUsageType[])
      : opts.keyUsage;
  if (ku && ku.length > 0) {
    const flags = ku.reduce((acc, u) => acc | KU_FLAGS[u], 0);
    exts.push(cachedExt(OID.extKeyUsage, true, String(flags), () => ser(new KeyUsage(flags))));
  }
  if (opts.eku && opts.eku.length > 0) {
    const eku = opts.eku;
    exts.push(cachedExt(OID.extExtKeyUsage, false, eku.join(','), () => ser(new ExtendedKeyUsage(eku))));
  }
  if (opts.ski ?? true) {
    const kid = keyIdOf(key);
    exts.push(
      cachedExt(OID.extSubjectKeyIdentifier, false, kid.toString('hex'), () => ser(new SubjectKeyIdentifier(ab(kid)))),
    );
  }
  const akiOpt = opts.aki ?? true;
  if (akiOpt !== false) {
    // The AKI names the issuer's SKI when it has one (what path builders match on), else the issuer key's hash.
    const kid = Buffer.isBuffer(akiOpt) ? akiOpt : (issuerFacts?.ski ?? keyIdOf(issuerKey));
    exts.push(
      cachedExt(OID.extAuthorityKeyIdentifier, false, kid.toString('hex'), () =>
        ser(new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(ab(kid)) })),
      ),
    );
  }
  if (opts.dnsNames && opts.dnsNames.length > 0) {
    const san = new SubjectAlternativeName(opts.dnsNames.map((d) => new GeneralName({ dNSName: d })));
    exts.push(ser(ext(OID.extSubjectAltName, false, ser(san))));
  }
  const ocspUrls = opts.ocspUrls ?? [];
  const caIssuersUrls = opts.caIssuersUrls ?? [];
  if (ocspUrls.length + caIssuersUrls.length > 0) {
    exts.push(
      cachedExt(OID.extAuthorityInfoAccess, false, JSON.stringify([ocspUrls, caIssuersUrls]), () => {
        const uri = (u: string) => new GeneralName({ uniformResourceIdentifier: u });
        return ser(
          new AuthorityInfoAccessSyntax([
            ...ocspUrls.map((u) => new AccessDescription({ accessMethod: OID.ocsp, accessLocation: uri(u) })),
            ...caIssuersUrls.map((u) => new AccessDescription({ accessMethod: OID.caIssuers, accessLocation: uri(u) })),
          ]),
        );
      }),
    );
  }
  if (opts.crlUrls && opts.crlUrls.length > 0) {
    const dp = new DistributionPoint({
      distributionPoint: new DistributionPointName({
        fullName: opts.crlUrls.map((u) => new GeneralName({ uniformResourceIdentifier: u })),
      }),
    });
    exts.push(ser(ext(OID.extCrlDistributionPoints, false, ser(new CRLDistributionPoints([dp])))));
  }
  // Features ::= SEQUENCE OF INTEGER: { 5 } (status_request)
  if (opts.mustStaple) exts.push(ser(ext(OID.extTlsFeature, false, tlv(0x30, tlv(0x02, Buffer.from([5]))))));
  if (opts.noRevAvail) exts.push(ser(ext(OID.extNoRevAvail, false, Buffer.from([0x05, 0x00]))));
  for (const e of opts.extraExtensions ?? []) exts.push(ser(ext(e.oid, e.critical ?? false, e.value)));

  // Each part is encoded by asn1-x509 (or taken verbatim: the issuer Name, the
  // SPKI Node exported), then framed by hand. Re-serialising a whole
  // TBSCertificate object per certificate made minting 3-4x slower, and the
  // repeated parts (algorithm, issuer, SPKI, most extensions) never change.
  const algDer = sigAlgIdDer(sigAlg);
  const tbsDer = tlv(
    0x30,
    V3_VERSION,
    tlv(0x02, serial),
    algDer,
    issuerNameDer,
    ser(new Validity({ notBefore: opts.notBefore, notAfter: opts.notAfter })),
    subjectDer,
    key.spkiDer,
    // Extensions is SIZE (1..MAX): with none, the [3] field is left out entirely.
    ...(exts.length > 0 ? [tlv(0xa3, tlv(0x30, ...exts))] : []),
  );
  const der = tlv(0x30, tbsDer, algDer, bitString(signWith(issuerKey, sigAlg, tbsDer)));
  return { der, pem: toPem(der), key, serial: Buffer.from(serial), cn: opts.subjectCN };
}

/** [0] EXPLICIT Version v3 (INTEGER 2). */
const V3_VERSION = tlv(0xa0, tlv(0x02, Buffer.from([CertVersion.v3])));

const extCache = new Map<string, Buffer>();
/** DER of an Extension whose value depends only on `key`; built once, then reused. */
function cachedExt(oid: string, critical: boolean, key: string, value: () => Buffer): Buffer {
  const k = `${oid}|${critical}|${key}`;
  let der = extCache.get(k);
  if (!der) {
    der = ser(ext(oid, critical, value()));
    extCache.set(k, der);
  }
  return der;
}

// ---------------------------------------------------------------------------
// CertID
// ---------------------------------------------------------------------------

export type HashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

export interface CertIdFields {
  /** Hash algorithm by name, or any OID (an unknown OID is a hostile-scenario knob). */
  hashAlg: HashName | string;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  /** Serial INTEGER contents octets. */
  serial: Buffer;
}

const HASH_OIDS: Record<HashName, string> = {
  sha1: OID.sha1,
  sha256: OID.sha256,
  sha384: OID.sha384,
  sha512: OID.sha512,
};

/**
 * The CertID fields for `leafDer` issued by `issuerDer` (RFC 6960 §4.1.1):
 * hash of the issuer's DER subject Name, hash of the issuer's subjectPublicKey
 * BIT STRING contents (without the unused-bits octet), and the leaf serial.
 */
export function certIdFor(leafDer: Buffer, issuerDer: Buffer, hash: HashName = 'sha1'): CertIdFields {
  const issuer = certFacts(issuerDer);
  return {
    hashAlg: hash,
    issuerNameHash: createHash(hash).update(issuer.subjectDer).digest(),
    issuerKeyHash: createHash(hash).update(issuer.publicKeyBits).digest(),
    serial: certFacts(leafDer).serial,
  };
}

function certIdObject(f: CertIdFields): CertID {
  const oid = HASH_OIDS[f.hashAlg as HashName] ?? checkOid(f.hashAlg);
  return new CertID({
    // Hash AlgorithmIdentifiers with an explicit NULL, byte-identical to what OpenSSL sends.
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: oid, parameters: null }),
    issuerNameHash: new OctetString(ab(f.issuerNameHash)),
    issuerKeyHash: new OctetString(ab(f.issuerKeyHash)),
    serialNumber: ab(f.serial),
  });
}

/** DER of a CertID, for comparing with a request or response byte for byte. */
export function certIdDer(f: CertIdFields): Buffer {
  return ser(certIdObject(f));
}

// ---------------------------------------------------------------------------
// OCSP responses
// ---------------------------------------------------------------------------

export interface SingleSpec {
  certId: CertIdFields;
  status: 'good' | 'revoked' | 'unknown';
  revocationTime?: Date;
  /** CRLReason value (0..10); absent = no reason field. */
  revocationReason?: number;
  thisUpdate: Date;
  /** null or absent = no nextUpdate field. */
  nextUpdate?: Date | null;
  singleExtensions?: ExtensionSpec[];
}

export type ResponderIdSpec = 'name' | 'key' | { name: Buffer } | { key: Buffer };

export interface MintOcspOptions {
  /** responseStatus; default 0. Values other than 0 carry no responseBytes unless forceResponseBytes. */
  status?: number;
  omitResponseBytes?: boolean;
  forceResponseBytes?: boolean;
  /** responseType OID; default id-pkix-ocsp-basic. */
  responseType?: string;
  signer: IssuerRef;
  /** Put the signer's certificate in `certs`; default: unless the signer is the CertID's issuer. */
  includeSignerCert?: boolean;
  /** More certificates for `certs` (after the signer's). */
  extraCerts?: Buffer[];
  /** Responder ID: by the signer's name (default) or key hash, or explicit Name DER / key-hash bytes. */
  responderId?: ResponderIdSpec;
  producedAt: Date;
  singles: SingleSpec[];
  responseExtensions?: ExtensionSpec[];
  /** Adds an id-pkix-ocsp-nonce response extension with this value (RFC 8954 encoding). */
  nonce?: Buffer;
  /** signatureAlgorithm override: a name changes how we sign, a bare OID only relabels. */
  sigAlg?: SigAlgName | string;
  /** Flip one bit of the signature value after signing. */
  corruptSignature?: boolean;
}

/** Mints a DER OCSPResponse exactly as asked, however wrong that is. */
export function mintOcspResponse(opts: MintOcspOptions): Buffer {
  const status = opts.status ?? 0;
  const withBytes = opts.forceResponseBytes || (status === 0 && !opts.omitResponseBytes);
  if (!withBytes) return ser(new OCSPResponse({ responseStatus: status }));

  const signerFacts = certFacts(opts.signer.der);
  const rid = opts.responderId ?? 'name';
  const responderID =
    rid === 'name'
      ? new ResponderID({ byName: nameFromDer(signerFacts.subjectDer) })
      : rid === 'key'
        ? new ResponderID({ byKey: new KeyHash(ab(createHash('sha1').update(signerFacts.publicKeyBits).digest())) })
        : 'name' in rid
          ? new ResponderID({ byName: AsnConvert.parse(rid.name, Name) })
          : new ResponderID({ byKey: new KeyHash(ab(rid.key)) });

  const responses = opts.singles.map((s) => {
    const certStatus =
      s.status === 'good'
        ? new CertStatus({ good: null })
        : s.status === 'unknown'
          ? new CertStatus({ unknown: null })
          : new CertStatus({
              revoked: new RevokedInfo({
                revocationTime: wholeSeconds(s.revocationTime ?? s.thisUpdate),
                ...(s.revocationReason === undefined ? {} : { revocationReason: new CRLReason(s.revocationReason) }),
              }),
            });
    return new SingleResponse({
      certID: certIdObject(s.certId),
      certStatus,
      thisUpdate: wholeSeconds(s.thisUpdate),
      ...(s.nextUpdate ? { nextUpdate: wholeSeconds(s.nextUpdate) } : {}),
      ...(s.singleExtensions?.length
        ? { singleExtensions: s.singleExtensions.map((e) => ext(e.oid, e.critical ?? false, e.value)) }
        : {}),
    });
  });

  const respExts = (opts.responseExtensions ?? []).map((e) => ext(e.oid, e.critical ?? false, e.value));
  if (opts.nonce) respExts.push(ext(OID.ocspNonce, false, tlv(0x04, opts.nonce)));

  const tbs = new ResponseData({
    responderID,
    producedAt: wholeSeconds(opts.producedAt),
    responses,
    ...(respExts.length > 0 ? { responseExtensions: respExts } : {}),
  });
  const tbsDer = ser(tbs);
  const sigAlg = opts.sigAlg ?? defaultSigAlg(opts.signer.key.type);
  const signature = signWith(opts.signer.key, sigAlg, tbsDer);
  if (opts.corruptSignature) {
    // The last octet is inside the signature value for every algorithm (for
    // ECDSA inside s), so the DER of an ECDSA signature stays well-formed and
    // only the mathematics fails.
    signature[signature.length - 1]! ^= 0x01;
  }

  // By default the signer's certificate travels with the response unless the
  // signer is the issuer named in the (first) CertID, like real responders do.
  const first = opts.singles[0]?.certId;
  const signerIsIssuer =
    first !== undefined &&
    (first.hashAlg as string) in HASH_OIDS &&
    createHash(first.hashAlg).update(signerFacts.subjectDer).digest().equals(first.issuerNameHash) &&
    createHash(first.hashAlg).update(signerFacts.publicKeyBits).digest().equals(first.issuerKeyHash);
  const certs: Buffer[] = [];
  if (opts.includeSignerCert ?? !signerIsIssuer) certs.push(opts.signer.der);
  certs.push(...(opts.extraCerts ?? []));

  const basic = tlv(
    0x30,
    tbsDer,
    sigAlgIdDer(sigAlg),
    bitString(signature),
    ...(certs.length > 0 ? [tlv(0xa0, tlv(0x30, ...certs))] : []),
  );
  return ser(
    new OCSPResponse({
      responseStatus: status,
      responseBytes: new ResponseBytes({
        responseType: opts.responseType ?? OID.ocspBasic,
        response: new OctetString(ab(basic)),
      }),
    }),
  );
}

// ---------------------------------------------------------------------------
// A ready-made PKI
// ---------------------------------------------------------------------------

export interface TestPki {
  keyType: KeyType;
  /** Whether good responses are signed by the delegated responder (else by the root itself). */
  delegated: boolean;
  now: Date;
  /** The issuing CA of the leaves (self-signed). */
  root: MintedCert;
  /** Delegated responder: issued by root, EKU id-kp-OCSPSigning, valid now. */
  responder: MintedCert;
  /** Who signs good responses: `responder` when delegated, else `root`. */
  signer: MintedCert;
  /** Three leaves issued by root, AIA pointing at `ocspUrl`. */
  leaves: MintedCert[];
  /** A second, unrelated self-signed CA (its own key). */
  otherRoot: MintedCert;
  /** Issued by root, but without the OCSPSigning EKU. */
  responderNoEku: MintedCert;
  /** A delegated responder (with EKU) issued by otherRoot. */
  responderOtherCa: MintedCert;
  /** Issued by root with EKU, expired a day before `now`. */
  responderExpired: MintedCert;
  /** Issued by root with EKU, valid only from a day after `now`. */
  responderNotYetValid: MintedCert;
}

export interface BuildPkiOptions {
  keyType: KeyType;
  delegated: boolean;
  /** Clock for validity windows; default the real time. */
  now?: Date;
  /** AIA OCSP URL of the leaves; default http://127.0.0.1:9/ocsp (discard port: nothing answers). */
  ocspUrl?: string;
  /** Fresh keys instead of the per-process shared ones. */
  freshKeys?: boolean;
  /** Number of leaves; default 3. */
  leafCount?: number;
}

const DAY = 86_400_000;

/**
 * A small PKI for one key type: root CA, delegated responder, leaves, plus the
 * rogue responder certificates the hostile scenarios need. Keys come from
 * {@link sharedKey} with distinct labels (so no two roles share a key) unless
 * `freshKeys` is set.
 */
export function buildTestPki(opts: BuildPkiOptions): TestPki {
  const now = wholeSeconds(opts.now ?? new Date());
  const kt = opts.keyType;
  const k = (label: string): TestKey => (opts.freshKeys ? generateKey(kt) : sharedKey(kt, label));
  const ocspUrl = opts.ocspUrl ?? 'http://127.0.0.1:9/ocsp';
  const long = { notBefore: new Date(now.getTime() - 30 * DAY), notAfter: new Date(now.getTime() + 365 * DAY) };

  const root = mintCert({
    subjectCN: `staplekeeper test root ${kt}`,
    subjectO: 'staplekeeper tests',
    key: k('root'),
    isCA: true,
    ...long,
  });
  const otherRoot = mintCert({
    subjectCN: `unrelated test root ${kt}`,
    subjectO: 'elsewhere',
    key: k('other-root'),
    isCA: true,
    ...long,
  });
  const responderOf = (
    cn: string,
    issuer: MintedCert,
    label: string,
    validity = long,
    eku: string[] | undefined = [OID.kpOcspSigning],
  ) =>
    mintCert({
      subjectCN: cn,
      issuer,
      key: k(label),
      ...validity,
      ...(eku ? { eku } : {}),
      keyUsage: ['digitalSignature'],
    });

  const responder = responderOf(`ocsp responder ${kt}`, root, 'responder');
  const responderNoEku = responderOf(`responder without EKU ${kt}`, root, 'responder-noeku', long, [OID.kpServerAuth]);
  const responderOtherCa = responderOf(`responder of another CA ${kt}`, otherRoot, 'responder-otherca');
  const responderExpired = responderOf(`expired responder ${kt}`, root, 'responder-expired', {
    notBefore: new Date(now.getTime() - 30 * DAY),
    notAfter: new Date(now.getTime() - DAY),
  });
  const responderNotYetValid = responderOf(`future responder ${kt}`, root, 'responder-future', {
    notBefore: new Date(now.getTime() + DAY),
    notAfter: new Date(now.getTime() + 60 * DAY),
  });
  const leafKey = k('leaf');
  const leaves: MintedCert[] = [];
  for (let i = 0; i < (opts.leafCount ?? 3); i++) {
    leaves.push(
      mintCert({
        subjectCN: `leaf${i}.test`,
        dnsNames: [`leaf${i}.test`],
        issuer: root,
        key: leafKey,
        notBefore: new Date(now.getTime() - DAY),
        notAfter: new Date(now.getTime() + 90 * DAY),
        eku: [OID.kpServerAuth],
        ocspUrls: [ocspUrl],
      }),
    );
  }
  return {
    keyType: kt,
    delegated: opts.delegated,
    now,
    root,
    responder,
    signer: opts.delegated ? responder : root,
    leaves,
    otherRoot,
    responderNoEku,
    responderOtherCa,
    responderExpired,
    responderNotYetValid,
  };
}

/** Everything in a good response that a caller may want to bend. */
export interface GoodResponseOverrides extends Partial<Omit<MintOcspOptions, 'singles'>> {
  /** Merged into the single response for the leaf. */
  single?: Partial<SingleSpec>;
  /** Hash for the CertID (default sha1). */
  hash?: HashName;
}

/**
 * A response that every acceptance rule of RFC 6960 §3.2 and §4.2.2 accepts at `now`: status
 * good, thisUpdate an hour ago, nextUpdate in 7 days, signed by `pki.signer`.
 */
export function goodResponseFor(
  pki: TestPki,
  leaf: MintedCert,
  now: Date = pki.now,
  overrides: GoodResponseOverrides = {},
): Buffer {
  const { single, hash, ...rest } = overrides;
  const thisUpdate = new Date(now.getTime() - 3_600_000);
  return mintOcspResponse({
    signer: pki.signer,
    producedAt: thisUpdate,
    singles: [
      {
        certId: certIdFor(leaf.der, pki.root.der, hash ?? 'sha1'),
        status: 'good',
        thisUpdate,
        nextUpdate: new Date(now.getTime() + 7 * DAY),
        ...single,
      },
    ],
    ...rest,
  });
}

// ---------------------------------------------------------------------------
// Certificate revocation lists (RFC 5280 §5)
// ---------------------------------------------------------------------------

/** One revoked entry of a CRL. */
export interface CrlEntrySpec {
  /** Contents octets of the serial INTEGER. */
  serial: Buffer;
  revocationDate: Date;
  /** CRLReason code (RFC 5280 §5.3.1), as an entry extension. */
  reason?: number;
  /** More entry extensions. */
  extensions?: ExtensionSpec[];
}

/** The issuingDistributionPoint extension (RFC 5280 §5.2.5). */
export interface IdpSpec {
  /** fullName URIs of the distribution point. */
  urls?: string[];
  onlyContainsUserCerts?: boolean;
  onlyContainsCACerts?: boolean;
  /** onlySomeReasons: keyCompromise only. */
  onlySomeReasons?: boolean;
  indirectCRL?: boolean;
  /** Default true (RFC 5280: the extension is critical). */
  critical?: boolean;
}

export interface MintCrlOptions {
  /** Who signs the CRL (certificate and key). */
  signer: IssuerRef;
  /** The CRL's issuer Name DER; default the signer's subject. */
  issuerNameDer?: Buffer;
  thisUpdate: Date;
  /** null omits nextUpdate. Default thisUpdate + 7 days. */
  nextUpdate?: Date | null;
  revoked?: CrlEntrySpec[];
  /** Pre-encoded revokedCertificates entries (concatenated), for huge CRLs; used instead of `revoked`. */
  revokedEntriesDer?: Buffer;
  /** cRLNumber (default 1); null omits it. */
  crlNumber?: number | null;
  /** authorityKeyIdentifier (default: the signer's key id); false omits it. */
  aki?: boolean | Buffer;
  idp?: IdpSpec;
  extraExtensions?: ExtensionSpec[];
  sigAlg?: SigAlgName | string;
  /** Flip a bit of the signature. */
  corruptSignature?: boolean;
}

/** DER time as X.509 wants it: UTCTime before 2050, else GeneralizedTime. */
export function derTime(d: Date): Buffer {
  const iso = d.toISOString();
  const y = d.getUTCFullYear();
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(`${digits.slice(2)}Z`, 'latin1'));
  return tlv(0x18, Buffer.from(`${digits}Z`, 'latin1'));
}

function derInteger(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  if ((bytes[0] as number) & 0x80) bytes.unshift(0);
  return tlv(0x02, Buffer.from(bytes));
}

function extDer(oid: string, critical: boolean, value: Buffer): Buffer {
  return ser(ext(oid, critical, value));
}

/** One revokedCertificates entry. */
export function crlEntryDer(e: CrlEntrySpec): Buffer {
  const exts: Buffer[] = [];
  if (e.reason !== undefined) exts.push(extDer(OID.extReasonCode, false, tlv(0x0a, Buffer.from([e.reason]))));
  for (const x of e.extensions ?? []) exts.push(extDer(x.oid, x.critical ?? false, x.value));
  return tlv(0x30, tlv(0x02, e.serial), derTime(e.revocationDate), ...(exts.length > 0 ? [tlv(0x30, ...exts)] : []));
}

/** The issuingDistributionPoint value. */
export function idpDer(i: IdpSpec): Buffer {
  const parts: Buffer[] = [];
  if (i.urls && i.urls.length > 0) {
    // distributionPoint [0] { fullName [0] GeneralNames }
    const names = Buffer.concat(i.urls.map((u) => tlv(0x86, Buffer.from(u, 'latin1'))));
    parts.push(tlv(0xa0, tlv(0xa0, names)));
  }
  if (i.onlyContainsUserCerts) parts.push(tlv(0x81, Buffer.from([0xff])));
  if (i.onlyContainsCACerts) parts.push(tlv(0x82, Buffer.from([0xff])));
  if (i.onlySomeReasons) parts.push(tlv(0x83, Buffer.from([0x07, 0x80]))); // keyCompromise (bit 1)
  if (i.indirectCRL) parts.push(tlv(0x84, Buffer.from([0xff])));
  return tlv(0x30, ...parts);
}

/**
 * Mints a v2 CRL signed by `signer`. Framed by hand like {@link mintCert}, so
 * a CRL of a million entries takes a second, not minutes.
 */
export function mintCrl(opts: MintCrlOptions): Buffer {
  const key = opts.signer.key;
  const sigAlg = opts.sigAlg ?? defaultSigAlg(key.type);
  const algDer = sigAlgIdDer(sigAlg);
  const signerFacts = certFacts(opts.signer.der);
  const issuerName = opts.issuerNameDer ?? signerFacts.subjectDer;
  const nextUpdate = opts.nextUpdate === undefined ? new Date(opts.thisUpdate.getTime() + 7 * DAY) : opts.nextUpdate;
  const entries = opts.revokedEntriesDer ?? Buffer.concat((opts.revoked ?? []).map(crlEntryDer));
  const exts: Buffer[] = [];
  const aki = opts.aki ?? true;
  if (aki !== false) {
    const kid = Buffer.isBuffer(aki) ? aki : (signerFacts.ski ?? keyIdOf(key));
    exts.push(extDer(OID.extAuthorityKeyIdentifier, false, tlv(0x30, tlv(0x80, kid))));
  }
  if (opts.crlNumber !== null) exts.push(extDer(OID.extCrlNumber, false, derInteger(opts.crlNumber ?? 1)));
  if (opts.idp) exts.push(extDer(OID.extIssuingDistributionPoint, opts.idp.critical ?? true, idpDer(opts.idp)));
  for (const x of opts.extraExtensions ?? []) exts.push(extDer(x.oid, x.critical ?? false, x.value));
  const tbs = tlv(
    0x30,
    tlv(0x02, Buffer.from([1])), // v2
    algDer,
    issuerName,
    derTime(opts.thisUpdate),
    ...(nextUpdate ? [derTime(nextUpdate)] : []),
    ...(entries.length > 0 ? [tlv(0x30, entries)] : []),
    ...(exts.length > 0 ? [tlv(0xa0, tlv(0x30, ...exts))] : []),
  );
  const sig = signWith(key, sigAlg, tbs);
  if (opts.corruptSignature) sig[sig.length - 1] = (sig[sig.length - 1] as number) ^ 0x01;
  return tlv(0x30, tbs, algDer, bitString(sig));
}

/**
 * `count` revokedCertificates entries, pre-encoded: serials 0x01000000 + i
 * (4 octets after a 0x10 prefix), all revoked at `date`. ~30 bytes each, as
 * in a real large CRL with a reason code on every 4th entry.
 */
export function hugeCrlEntries(count: number, date: Date, serialPrefix = 0x10): Buffer {
  const time = derTime(date);
  const reason = extDer(OID.extReasonCode, false, tlv(0x0a, Buffer.from([1])));
  const withReason = tlv(0x30, reason);
  const parts: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const serial = Buffer.from([serialPrefix, (i >>> 24) & 0xff, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]);
    parts.push(tlv(0x30, tlv(0x02, serial), time, ...(i % 4 === 0 ? [withReason] : [])));
  }
  return Buffer.concat(parts);
}

/** The serial (contents octets) of entry `i` of {@link hugeCrlEntries}. */
export function hugeCrlSerial(i: number, serialPrefix = 0x10): Buffer {
  return Buffer.from([serialPrefix, (i >>> 24) & 0xff, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]);
}
