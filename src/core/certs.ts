/**
 * Certificates: loading PEM bundles and DER, reading the fields OCSP needs,
 * and matching a certificate to its issuer.
 *
 * Parsing uses the lean DER reader so that the exact bytes the OCSP CertID is
 * computed over (the issuer's Name and subjectPublicKey, RFC 6960 §4.1.1) are
 * taken as they are in the file, never re-encoded.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { DerReader, TAG, contents, decodeOid, decodeTime, whole, type Tlv } from './der.js';
import { StapleError } from './errors.js';
import { verifySignature, type SignatureMemo } from './signature.js';

/** The facts about one X.509 certificate that staplekeeper uses. */
export interface Certificate {
  /** The whole certificate, DER. */
  der: Buffer;
  /** The signed part (tbsCertificate), DER. */
  tbsDer: Buffer;
  /** Serial number: the contents bytes of the DER INTEGER. */
  serial: Buffer;
  /** Serial as upper-case hex, as OpenSSL prints it. */
  serialHex: string;
  /** Issuer Name, exact DER. */
  issuerDer: Buffer;
  /** Subject Name, exact DER. */
  subjectDer: Buffer;
  /** Subject in readable `CN=…, O=…` form (for messages). */
  subject: string;
  /** Issuer in readable form. */
  issuer: string;
  /** SubjectPublicKeyInfo, exact DER. */
  spkiDer: Buffer;
  /** The subjectPublicKey BIT STRING contents without the unused-bits octet. */
  publicKeyBits: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** AIA OCSP URIs, in certificate order. */
  ocspUrls: string[];
  /** AIA caIssuers URIs. */
  caIssuersUrls: string[];
  subjectKeyId?: Buffer;
  authorityKeyId?: Buffer;
  /** basicConstraints cA. */
  isCA: boolean;
  /** extendedKeyUsage OIDs (empty if the extension is absent). */
  extKeyUsage: string[];
  /** keyUsage bits as a number (bit 0 = digitalSignature, as in RFC 5280 order), if present. */
  keyUsage?: number;
  /** True if the id-pkix-ocsp-nocheck extension is present (RFC 6960 §4.2.2.2.1). */
  ocspNoCheck: boolean;
  /** The outer signatureAlgorithm, exact DER of the AlgorithmIdentifier. */
  signatureAlgorithmDer: Buffer;
  /** The signature bits. */
  signature: Buffer;
  /** OIDs of critical extensions we do not understand. */
  unknownCriticalExtensions: string[];
  /**
   * CRL distribution points (RFC 5280 §4.2.1.13), in certificate order: the
   * `uniformResourceIdentifier` names of each point's `fullName`. A point that
   * names its CRL issuer (`cRLIssuer`, an indirect CRL) or only some reasons is
   * flagged: staplekeeper does not watch those.
   */
  crlDistributionPoints: CrlDistributionPoint[];
  /** Every http(s) URI of {@link crlDistributionPoints}, in order, without duplicates. */
  crlUrls: string[];
  /** The TLS Feature extension (RFC 7633) lists status_request (5): "must-staple". */
  mustStaple: boolean;
  /** The noRevAvail extension (RFC 9608): the CA publishes no revocation information for it. */
  noRevAvail: boolean;
}

/** One CRL distribution point of a certificate. */
export interface CrlDistributionPoint {
  /** The URIs of its `fullName` (any scheme; only http: and https: are fetched). */
  urls: string[];
  /** The point restricts itself to some revocation reasons. */
  someReasons: boolean;
  /** The point names a CRL issuer other than the certificate's issuer (indirect CRL). */
  indirect: boolean;
}

const OID = {
  AIA: '1.3.6.1.5.5.7.1.1',
  AD_OCSP: '1.3.6.1.5.5.7.48.1',
  AD_CA_ISSUERS: '1.3.6.1.5.5.7.48.2',
  SKI: '2.5.29.14',
  AKI: '2.5.29.35',
  BASIC_CONSTRAINTS: '2.5.29.19',
  KEY_USAGE: '2.5.29.15',
  EXT_KEY_USAGE: '2.5.29.37',
  SAN: '2.5.29.17',
  CERT_POLICIES: '2.5.29.32',
  CRL_DP: '2.5.29.31',
  NAME_CONSTRAINTS: '2.5.29.30',
  POLICY_CONSTRAINTS: '2.5.29.36',
  INHIBIT_ANY: '2.5.29.54',
  OCSP_NOCHECK: '1.3.6.1.5.5.7.48.1.5',
  TLS_FEATURE: '1.3.6.1.5.5.7.1.24',
  NO_REV_AVAIL: '2.5.29.56',
  CT_PRECERT_POISON: '1.3.6.1.4.1.11129.2.4.3',
} as const;

/** id-kp-OCSPSigning (RFC 6960 §4.2.2.2). */
export const OID_KP_OCSP_SIGNING = '1.3.6.1.5.5.7.3.9';

const KNOWN_EXTENSIONS = new Set<string>(Object.values(OID));

const NAME_ATTRS: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.5': 'serialNumber',
  '0.9.2342.19200300.100.1.25': 'DC',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

/** Formats a DER Name for messages (`CN=a, O=b`). */
export function formatName(der: Buffer): string {
  try {
    const r = new DerReader(der, 0, der.length, 'NOT_A_CERTIFICATE');
    const seq = r.next(TAG.SEQUENCE);
    const rdns = DerReader.inside(der, seq, 'NOT_A_CERTIFICATE');
    const parts: string[] = [];
    while (!rdns.done) {
      const set = rdns.next(TAG.SET);
      const atvs = DerReader.inside(der, set, 'NOT_A_CERTIFICATE');
      while (!atvs.done) {
        const atv = DerReader.inside(der, atvs.next(TAG.SEQUENCE), 'NOT_A_CERTIFICATE');
        const oid = decodeOid(contents(der, atv.next(TAG.OID)));
        const v = atv.next();
        const text = v.tag === 0x1e ? decodeBmp(contents(der, v)) : contents(der, v).toString('utf8');
        parts.push(`${NAME_ATTRS[oid] ?? oid}=${text}`);
      }
    }
    return parts.join(', ');
  } catch {
    return '(unreadable name)';
  }
}

function decodeBmp(b: Buffer): string {
  let s = '';
  for (let i = 0; i + 1 < b.length; i += 2) s += String.fromCharCode(((b[i] as number) << 8) | (b[i + 1] as number));
  return s;
}

/**
 * Parses one DER certificate. Throws `NOT_A_CERTIFICATE` for anything that
 * is not a well-formed X.509 certificate.
 */
export function parseCertificate(der: Buffer): Certificate {
  const code = 'NOT_A_CERTIFICATE' as const;
  const top = new DerReader(der, 0, der.length, code);
  const certTlv = top.next(TAG.SEQUENCE);
  top.end('the certificate');
  const cert = DerReader.inside(der, certTlv, code);
  const tbsTlv = cert.next(TAG.SEQUENCE);
  const sigAlgTlv = cert.next(TAG.SEQUENCE);
  const sigTlv = cert.next(TAG.BIT_STRING);
  cert.end('the certificate signature');

  const tbs = DerReader.inside(der, tbsTlv, code);
  const versionTlv = tbs.optional(0xa0);
  if (versionTlv) {
    // version [0] EXPLICIT INTEGER; we accept v1–v3
    DerReader.inside(der, versionTlv, code).next(TAG.INTEGER);
  }
  const serialTlv = tbs.next(TAG.INTEGER);
  tbs.next(TAG.SEQUENCE); // signature algorithm (inner)
  const issuerTlv = tbs.next(TAG.SEQUENCE);
  const validity = DerReader.inside(der, tbs.next(TAG.SEQUENCE), code);
  const notBefore = decodeTime(der, validity.next(), code);
  const notAfter = decodeTime(der, validity.next(), code);
  const subjectTlv = tbs.next(TAG.SEQUENCE);
  const spkiTlv = tbs.next(TAG.SEQUENCE);
  const spki = DerReader.inside(der, spkiTlv, code);
  spki.next(TAG.SEQUENCE);
  const pkBits = spki.next(TAG.BIT_STRING);
  if (pkBits.end - pkBits.valueStart < 1) top.fail('empty public key');

  const serial = contents(der, serialTlv);
  const issuerDer = whole(der, issuerTlv);
  const subjectDer = whole(der, subjectTlv);
  // formatted on first use: most certificates of a run never appear in a message
  let serialHex: string | undefined;
  let subject: string | undefined;
  let issuer: string | undefined;
  const result: Certificate = {
    der,
    tbsDer: whole(der, tbsTlv),
    serial,
    get serialHex(): string {
      return (serialHex ??= serial.toString('hex').toUpperCase());
    },
    issuerDer,
    subjectDer,
    get subject(): string {
      return (subject ??= formatName(subjectDer));
    },
    get issuer(): string {
      return (issuer ??= formatName(issuerDer));
    },
    spkiDer: whole(der, spkiTlv),
    publicKeyBits: der.subarray(pkBits.valueStart + 1, pkBits.end),
    notBefore,
    notAfter,
    ocspUrls: [],
    caIssuersUrls: [],
    isCA: false,
    extKeyUsage: [],
    ocspNoCheck: false,
    signatureAlgorithmDer: whole(der, sigAlgTlv),
    signature: der.subarray(sigTlv.valueStart + 1, sigTlv.end),
    unknownCriticalExtensions: [],
    crlDistributionPoints: [],
    crlUrls: [],
    mustStaple: false,
    noRevAvail: false,
  };

  // skip issuerUniqueID [1] and subjectUniqueID [2]
  tbs.optional(0x81);
  tbs.optional(0x82);
  const extsTlv = tbs.optional(0xa3);
  if (extsTlv) readExtensions(der, DerReader.inside(der, extsTlv, code).next(TAG.SEQUENCE), result);
  return result;
}

function readExtensions(der: Buffer, extsSeq: Tlv, out: Certificate): void {
  const code = 'NOT_A_CERTIFICATE' as const;
  const exts = DerReader.inside(der, extsSeq, code);
  while (!exts.done) {
    const ext = DerReader.inside(der, exts.next(TAG.SEQUENCE), code);
    const oid = decodeOid(contents(der, ext.next(TAG.OID)));
    let critical = false;
    const crit = ext.optional(TAG.BOOLEAN);
    if (crit) critical = der[crit.valueStart] !== 0;
    const valueTlv = ext.next(TAG.OCTET_STRING);
    const v = new DerReader(der, valueTlv.valueStart, valueTlv.end, code);
    switch (oid) {
      case OID.AIA: {
        const seq = DerReader.inside(der, v.next(TAG.SEQUENCE), code);
        while (!seq.done) {
          const ad = DerReader.inside(der, seq.next(TAG.SEQUENCE), code);
          const method = decodeOid(contents(der, ad.next(TAG.OID)));
          const loc = ad.next();
          if (loc.tag !== 0x86) continue; // only uniformResourceIdentifier
          const uri = contents(der, loc).toString('latin1');
          if (method === OID.AD_OCSP) out.ocspUrls.push(uri);
          else if (method === OID.AD_CA_ISSUERS) out.caIssuersUrls.push(uri);
        }
        break;
      }
      case OID.SKI:
        out.subjectKeyId = Buffer.from(contents(der, v.next(TAG.OCTET_STRING)));
        break;
      case OID.AKI: {
        const seq = DerReader.inside(der, v.next(TAG.SEQUENCE), code);
        const keyId = seq.optional(0x80);
        if (keyId) out.authorityKeyId = Buffer.from(contents(der, keyId));
        break;
      }
      case OID.BASIC_CONSTRAINTS: {
        const seq = DerReader.inside(der, v.next(TAG.SEQUENCE), code);
        const ca = seq.optional(TAG.BOOLEAN);
        out.isCA = ca !== undefined && der[ca.valueStart] !== 0;
        break;
      }
      case OID.KEY_USAGE: {
        const bits = v.next(TAG.BIT_STRING);
        let n = 0;
        for (let i = bits.valueStart + 1, shift = 0; i < bits.end && shift < 16; i++, shift += 8) {
          // bit 0 (digitalSignature) is the most significant bit of the first octet
          const byte = der[i] as number;
          for (let b = 0; b < 8; b++) if (byte & (0x80 >> b)) n |= 1 << (shift + b);
        }
        out.keyUsage = n;
        break;
      }
      case OID.EXT_KEY_USAGE: {
        const seq = DerReader.inside(der, v.next(TAG.SEQUENCE), code);
        while (!seq.done) out.extKeyUsage.push(decodeOid(contents(der, seq.next(TAG.OID))));
        break;
      }
      case OID.OCSP_NOCHECK:
        out.ocspNoCheck = true;
        break;
      case OID.TLS_FEATURE: {
        // Features ::= SEQUENCE OF INTEGER; status_request is 5 (RFC 7633 §4, RFC 6066 §8)
        const seq = DerReader.inside(der, v.next(TAG.SEQUENCE), code);
        while (!seq.done) {
          const n = contents(der, seq.next(TAG.INTEGER));
          if (n.length === 1 && n[0] === 5) out.mustStaple = true;
        }
        break;
      }
      case OID.NO_REV_AVAIL:
        out.noRevAvail = true;
        break;
      case OID.CRL_DP:
        readCrlDistributionPoints(der, v.next(TAG.SEQUENCE), out);
        break;
      default:
        if (critical && !KNOWN_EXTENSIONS.has(oid)) out.unknownCriticalExtensions.push(oid);
    }
  }
}

/**
 * CRLDistributionPoints ::= SEQUENCE OF DistributionPoint (RFC 5280 §4.2.1.13):
 * `distributionPoint [0]` holding `fullName [0] GeneralNames`, `reasons [1]`,
 * `cRLIssuer [2]`. Only URIs (`[6]`) of a fullName are kept.
 */
function readCrlDistributionPoints(der: Buffer, seqTlv: Tlv, out: Certificate): void {
  const code = 'NOT_A_CERTIFICATE' as const;
  const seq = DerReader.inside(der, seqTlv, code);
  while (!seq.done) {
    const dp = DerReader.inside(der, seq.next(TAG.SEQUENCE), code);
    const point: CrlDistributionPoint = { urls: [], someReasons: false, indirect: false };
    const name = dp.optional(0xa0);
    if (name) {
      const n = DerReader.inside(der, name, code);
      const full = n.optional(0xa0);
      if (full) {
        const names = DerReader.inside(der, full, code);
        while (!names.done) {
          const gn = names.next();
          if (gn.tag === 0x86) point.urls.push(contents(der, gn).toString('latin1'));
        }
      }
    }
    if (dp.optional(0x81)) point.someReasons = true;
    if (dp.optional(0xa2)) point.indirect = true;
    out.crlDistributionPoints.push(point);
    for (const u of point.urls) {
      if (/^https?:\/\//i.test(u) && !out.crlUrls.includes(u)) out.crlUrls.push(u);
    }
  }
}

/** One PEM block. */
export interface PemBlock {
  label: string;
  der: Buffer;
}

/** The label after `-----BEGIN `/`-----END ` at `start`: `[A-Z0-9 ]+` followed by `-----`, else undefined. */
function pemLabelAt(text: string, start: number): string | undefined {
  let end = start;
  for (; end < text.length; end++) {
    const c = text.charCodeAt(end);
    const ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x20;
    if (!ok) break;
  }
  if (end === start || !text.startsWith('-----', end)) return undefined;
  return text.slice(start, end);
}

/**
 * Finds every PEM block in `text` (`-----BEGIN L-----` … the next
 * `-----END L-----`). Base64 that does not decode cleanly is an error.
 *
 * A linear scan: the END markers are indexed once, and each BEGIN looks up
 * the first END of its label after it. A backtracking regular expression
 * takes quadratic time on a file of many BEGIN lines without END (a 1 MiB
 * hostile staple file would take seconds, a 4 MiB certificate file minutes).
 */
export function decodePem(
  text: string,
  code: 'NOT_A_CERTIFICATE' | 'OCSP_MALFORMED' = 'NOT_A_CERTIFICATE',
): PemBlock[] {
  const BEGIN = '-----BEGIN ';
  const END = '-----END ';
  const ends = new Map<string, number[]>();
  for (let i = text.indexOf(END); i >= 0; i = text.indexOf(END, i + 1)) {
    const label = pemLabelAt(text, i + END.length);
    if (label === undefined) continue;
    let list = ends.get(label);
    if (!list) ends.set(label, (list = []));
    list.push(i);
  }
  const cursor = new Map<string, number>();
  const blocks: PemBlock[] = [];
  for (let pos = 0; ;) {
    const begin = text.indexOf(BEGIN, pos);
    if (begin < 0) break;
    const label = pemLabelAt(text, begin + BEGIN.length);
    if (label === undefined) {
      pos = begin + 1;
      continue;
    }
    const bodyStart = begin + BEGIN.length + label.length + 5;
    const list = ends.get(label) ?? [];
    let k = cursor.get(label) ?? 0;
    while (k < list.length && (list[k] as number) < bodyStart) k++;
    cursor.set(label, k);
    if (k >= list.length) {
      pos = begin + 1;
      continue;
    }
    const endAt = list[k] as number;
    const body = text.slice(bodyStart, endAt).replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      throw new StapleError(code, `the PEM block "${label}" has broken base64`);
    }
    blocks.push({ label, der: Buffer.from(body, 'base64') });
    pos = endAt + END.length + label.length + 5;
  }
  return blocks;
}

/** True when the bytes look like PEM text rather than DER. */
export function looksLikePem(data: Buffer): boolean {
  return data.includes('-----BEGIN ');
}

/**
 * Loads all certificates from file contents: a PEM bundle (any order, other
 * block types such as private keys skipped) or a single DER certificate.
 * Throws `NOT_A_CERTIFICATE` when there is none.
 */
export function loadCertificates(data: Buffer, name = 'input'): Certificate[] {
  if (data.length === 0) throw new StapleError('NOT_A_CERTIFICATE', `${name}: the file is empty`);
  if (looksLikePem(data)) {
    let blocks: PemBlock[];
    try {
      blocks = decodePem(data.toString('latin1'));
    } catch (e) {
      throw new StapleError('NOT_A_CERTIFICATE', `${name}: ${(e as Error).message}`, { cause: e });
    }
    const certs = blocks.filter((b) => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE');
    if (certs.length === 0) {
      const labels = blocks.map((b) => b.label).join(', ') || 'no complete PEM block';
      throw new StapleError('NOT_A_CERTIFICATE', `${name}: no CERTIFICATE block found (found: ${labels})`);
    }
    return certs.map((b, i) => wrapParse(b.der, `${name} (certificate #${i + 1})`));
  }
  return [wrapParse(data, name)];
}

function wrapParse(der: Buffer, name: string): Certificate {
  try {
    return parseCertificate(der);
  } catch (e) {
    const msg = e instanceof StapleError ? e.message : String(e);
    throw new StapleError('NOT_A_CERTIFICATE', `${name}: ${msg}`, { cause: e });
  }
}

/**
 * Values derived from one parsed certificate object, computed when first
 * asked and kept with it (a non-enumerable property, so the certificate's
 * data, equality and JSON are unchanged): its public key as a KeyObject, the
 * SHA-1 of its key (ResponderID byKey) and its CertID hashes as an issuer.
 * Thousands of certificates share one issuer object (pipeline/pass-memo.ts
 * parses a chain file once per pass), so each is computed once per pass.
 * Nothing here is a table of its own: it lives and dies with the certificate.
 */
export class CertificateMemo {
  key?: KeyObject;
  keyHashSha1?: Buffer;
  /** CertID issuer hashes by hash name. */
  readonly issuerHashes = new Map<string, { name: Buffer; key: Buffer }>();
}

const MEMO = Symbol('staplekeeper.certificateMemo');

/** The {@link CertificateMemo} of a certificate object (a fresh, unkept one for a frozen object). */
export function certificateMemo(cert: Certificate): CertificateMemo {
  const own = (cert as { [MEMO]?: CertificateMemo })[MEMO];
  if (own !== undefined) return own;
  const memo = new CertificateMemo();
  if (Object.isExtensible(cert)) Object.defineProperty(cert, MEMO, { value: memo });
  return memo;
}

/**
 * The certificate's public key as a node:crypto KeyObject (kept with the
 * certificate object). With a {@link SignatureMemo}, every copy of a
 * certificate gets the same KeyObject, so checks remembered under it are found.
 */
export function publicKeyOf(cert: Certificate, signatures?: SignatureMemo): KeyObject {
  const memo = certificateMemo(cert);
  if (memo.key === undefined) {
    const create = (): KeyObject => {
      try {
        return createPublicKey({ key: cert.spkiDer, format: 'der', type: 'spki' });
      } catch (e) {
        throw new StapleError('NOT_A_CERTIFICATE', `unsupported public key in certificate ${cert.subject}`, {
          cause: e,
        });
      }
    };
    memo.key = signatures ? signatures.keyFor(cert.spkiDer, create) : create();
  }
  return memo.key;
}

/**
 * True when `issuer` signed `cert` (the signature over tbsCertificate verifies
 * with the issuer's key). `memo`: checks made before (core/signature.ts).
 */
export function isSignedBy(cert: Certificate, issuer: Certificate, memo?: SignatureMemo): boolean {
  if (!cert.issuerDer.equals(issuer.subjectDer)) return false;
  try {
    return verifySignature(cert.signatureAlgorithmDer, cert.tbsDer, publicKeyOf(issuer, memo), cert.signature, memo);
  } catch {
    return false;
  }
}

/** True when `candidate` could be the issuer of `cert` by name and key identifier (no signature check). */
export function couldBeIssuer(cert: Certificate, candidate: Certificate): boolean {
  if (!cert.issuerDer.equals(candidate.subjectDer)) return false;
  if (cert.authorityKeyId && candidate.subjectKeyId) return cert.authorityKeyId.equals(candidate.subjectKeyId);
  return true;
}

/**
 * Picks the issuer of `cert` from candidates: first by Authority/Subject Key
 * Identifier, then by name, and in each case only one that really signed it.
 */
export function findIssuer(
  cert: Certificate,
  candidates: readonly Certificate[],
  memo?: SignatureMemo,
): Certificate | undefined {
  const byKeyId = candidates.filter(
    (c) => cert.authorityKeyId && c.subjectKeyId && cert.authorityKeyId.equals(c.subjectKeyId),
  );
  for (const c of byKeyId) if (isSignedBy(cert, c, memo)) return c;
  for (const c of candidates) if (!byKeyId.includes(c) && isSignedBy(cert, c, memo)) return c;
  return undefined;
}

/** SHA-1 of the subjectPublicKey bits, as in a ResponderID byKey (RFC 6960 §4.2.1); do not modify the result. */
export function keyHashSha1(cert: Certificate): Buffer {
  const memo = certificateMemo(cert);
  memo.keyHashSha1 ??= createHash('sha1').update(cert.publicKeyBits).digest();
  return memo.keyHashSha1;
}

/** SHA-256 fingerprint of the certificate DER, hex. */
export function fingerprint(cert: Certificate): string {
  return createHash('sha256').update(cert.der).digest('hex');
}
