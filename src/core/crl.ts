/**
 * Certificate revocation lists (RFC 5280 §5): decoding, verification and
 * serial lookup, for certificates without an OCSP responder (issue 13).
 *
 * Lean by design. A CA's CRL can list a million certificates (~30 MB): the
 * structure around the list (version, algorithm, issuer, times, extensions)
 * is decoded with the strict DER reader (core/der.ts), but the list of
 * revokedCertificates is only delimited. {@link findRevoked} walks it with a
 * tight loop that checks every entry's framing and compares serials in place,
 * allocating nothing per entry, so a lookup costs one pass over the bytes and
 * memory stays at the size of the CRL itself. The lean reading is checked
 * against @peculiar/asn1-x509's CertificateList on generated CRLs
 * (test/unit/crl-differential.test.ts); the measurement is in
 * scripts/bench-crl.mjs.
 *
 * Verification ({@link verifyCrl}) follows RFC 5280 §6.3.3 as far as a
 * monitoring tool needs: the CRL is signed by the certificate's issuer, or by
 * a CRL signer that the issuer certified with keyUsage cRLSign and the same
 * name as the CRL issuer; thisUpdate is not in the future and nextUpdate has
 * not passed; an issuing distribution point limits the CRL to a scope that
 * covers the certificate (the distribution point it was fetched from, user or
 * CA certificates, all reasons, not indirect); unknown critical extensions of
 * the CRL or of the certificate's entry are refused.
 *
 * Pure: no I/O, no clock (`now` is given).
 */
import { type Certificate, formatName, publicKeyOf } from './certs.js';
import { DerReader, TAG, contents, decodeOid, decodeTime, whole, type Tlv } from './der.js';
import { StapleError } from './errors.js';
import { REVOCATION_REASONS } from './response.js';
import { verifySignature } from './signature.js';

const CODE = 'CRL_MALFORMED' as const;

const OID = {
  AKI: '2.5.29.35',
  CRL_NUMBER: '2.5.29.20',
  DELTA_CRL_INDICATOR: '2.5.29.27',
  IDP: '2.5.29.28',
  FRESHEST_CRL: '2.5.29.46',
  ISSUER_ALT_NAME: '2.5.29.18',
  AIA: '1.3.6.1.5.5.7.1.1',
  // entry extensions
  REASON_CODE: '2.5.29.21',
  INVALIDITY_DATE: '2.5.29.24',
  CERTIFICATE_ISSUER: '2.5.29.29',
  HOLD_INSTRUCTION: '2.5.29.23',
} as const;

/** CRL extensions staplekeeper understands (a critical one of these is accepted). */
const KNOWN_CRL_EXTENSIONS = new Set<string>([
  OID.AKI,
  OID.CRL_NUMBER,
  OID.IDP,
  OID.FRESHEST_CRL,
  OID.ISSUER_ALT_NAME,
  OID.AIA,
]);

/** Entry extensions staplekeeper understands. certificateIssuer is not: indirect CRLs are refused. */
const KNOWN_ENTRY_EXTENSIONS = new Set<string>([OID.REASON_CODE, OID.INVALIDITY_DATE, OID.HOLD_INSTRUCTION]);

/** The issuingDistributionPoint extension (RFC 5280 §5.2.5). */
export interface IssuingDistributionPoint {
  /** URIs of its distributionPoint fullName (empty when absent). */
  urls: string[];
  /** A distributionPoint is named (as a fullName or relative to the issuer). */
  named: boolean;
  onlyContainsUserCerts: boolean;
  onlyContainsCACerts: boolean;
  onlySomeReasons: boolean;
  indirectCRL: boolean;
  onlyContainsAttributeCerts: boolean;
}

/** A decoded CRL; the revoked list is delimited, not decoded. */
export interface DecodedCrl {
  der: Buffer;
  /** tbsCertList, exact DER (what the signature covers). */
  tbsDer: Buffer;
  /** The outer signatureAlgorithm, exact DER. */
  signatureAlgorithmDer: Buffer;
  /** The signature bits. */
  signature: Buffer;
  /** 2 for a v2 CRL, 1 without a version field. */
  version: 1 | 2;
  /** Issuer Name, exact DER. */
  issuerDer: Buffer;
  /** Issuer in readable form. */
  issuer: string;
  thisUpdate: Date;
  nextUpdate?: Date;
  /** cRLNumber, hex (upper case), if present. */
  crlNumber?: string;
  authorityKeyId?: Buffer;
  idp?: IssuingDistributionPoint;
  /** A delta CRL (deltaCRLIndicator): staplekeeper uses complete CRLs only. */
  delta: boolean;
  /** OIDs of critical CRL extensions staplekeeper does not understand. */
  unknownCriticalExtensions: string[];
  /** Byte range of the revokedCertificates contents in `der` (empty when there are none). */
  entriesStart: number;
  entriesEnd: number;
}

/** One entry of the list, decoded. */
export interface CrlEntry {
  /** Contents octets of the serial INTEGER. */
  serial: Buffer;
  revocationDate: Date;
  /** CRLReason name, when the entry has a reasonCode. */
  reason?: string;
  /** OIDs of critical entry extensions staplekeeper does not understand. */
  unknownCriticalExtensions: string[];
}

function fail(what: string): never {
  throw new StapleError(CODE, `malformed CRL: ${what}`);
}

/**
 * Decodes a DER CRL. Throws `CRL_MALFORMED` for anything that is not a
 * well-formed CertificateList; the revoked list is only delimited here, its
 * entries are checked as {@link findRevoked} walks them.
 */
export function decodeCrl(der: Buffer): DecodedCrl {
  const top = new DerReader(der, 0, der.length, CODE);
  const listTlv = top.next(TAG.SEQUENCE);
  top.end('the CRL');
  const list = DerReader.inside(der, listTlv, CODE);
  const tbsTlv = list.next(TAG.SEQUENCE);
  const sigAlgTlv = list.next(TAG.SEQUENCE);
  const sigTlv = list.next(TAG.BIT_STRING);
  list.end('the CRL signature');
  if (sigTlv.end - sigTlv.valueStart < 1 || der[sigTlv.valueStart] !== 0) fail('bad signature BIT STRING');

  const tbs = DerReader.inside(der, tbsTlv, CODE);
  let version: 1 | 2 = 1;
  const vTlv = tbs.optional(TAG.INTEGER);
  if (vTlv) {
    const v = contents(der, vTlv);
    if (v.length !== 1 || v[0] !== 1) fail('only v2 CRLs carry a version, and it must be 1 (v2)');
    version = 2;
  }
  const innerAlg = tbs.next(TAG.SEQUENCE);
  const issuerTlv = tbs.next(TAG.SEQUENCE);
  const thisUpdate = decodeTime(der, tbs.next(), CODE);
  let nextUpdate: Date | undefined;
  const pt = tbs.peekTag();
  if (pt === TAG.UTC_TIME || pt === TAG.GENERALIZED_TIME) nextUpdate = decodeTime(der, tbs.next(), CODE);
  let entriesStart = tbsTlv.end;
  let entriesEnd = tbsTlv.end;
  const entries = tbs.optional(TAG.SEQUENCE);
  if (entries) {
    entriesStart = entries.valueStart;
    entriesEnd = entries.end;
  }
  const issuerDer = whole(der, issuerTlv);
  const crl: DecodedCrl = {
    der,
    tbsDer: whole(der, tbsTlv),
    signatureAlgorithmDer: whole(der, sigAlgTlv),
    signature: der.subarray(sigTlv.valueStart + 1, sigTlv.end),
    version,
    issuerDer,
    get issuer(): string {
      return formatName(issuerDer);
    },
    thisUpdate,
    delta: false,
    unknownCriticalExtensions: [],
    entriesStart,
    entriesEnd,
  };
  if (nextUpdate) crl.nextUpdate = nextUpdate;
  const extsTlv = tbs.optional(0xa0);
  tbs.end('tbsCertList');
  if (!whole(der, innerAlg).equals(crl.signatureAlgorithmDer)) {
    fail('the signature algorithm inside tbsCertList differs from the outer one');
  }
  if (extsTlv) {
    if (version !== 2) fail('extensions in a v1 CRL');
    readCrlExtensions(der, DerReader.inside(der, extsTlv, CODE).next(TAG.SEQUENCE), crl);
  }
  return crl;
}

function readCrlExtensions(der: Buffer, seqTlv: Tlv, crl: DecodedCrl): void {
  const exts = DerReader.inside(der, seqTlv, CODE);
  const seen = new Set<string>();
  while (!exts.done) {
    const ext = DerReader.inside(der, exts.next(TAG.SEQUENCE), CODE);
    const oid = decodeOid(contents(der, ext.next(TAG.OID)));
    if (seen.has(oid)) fail(`extension ${oid} appears twice`);
    seen.add(oid);
    const critTlv = ext.optional(TAG.BOOLEAN);
    const critical = critTlv !== undefined && der[critTlv.valueStart] !== 0;
    const valueTlv = ext.next(TAG.OCTET_STRING);
    ext.end('an extension');
    const v = new DerReader(der, valueTlv.valueStart, valueTlv.end, CODE);
    switch (oid) {
      case OID.AKI: {
        const seq = DerReader.inside(der, v.next(TAG.SEQUENCE), CODE);
        const kid = seq.optional(0x80);
        if (kid) crl.authorityKeyId = Buffer.from(contents(der, kid));
        break;
      }
      case OID.CRL_NUMBER:
        crl.crlNumber = contents(der, v.next(TAG.INTEGER)).toString('hex').toUpperCase();
        break;
      case OID.IDP:
        crl.idp = readIdp(der, v.next(TAG.SEQUENCE));
        break;
      case OID.DELTA_CRL_INDICATOR:
        crl.delta = true;
        if (critical) crl.unknownCriticalExtensions.push(oid); // a delta CRL is not used on its own
        break;
      default:
        if (critical && !KNOWN_CRL_EXTENSIONS.has(oid)) crl.unknownCriticalExtensions.push(oid);
    }
  }
}

function readIdp(der: Buffer, seqTlv: Tlv): IssuingDistributionPoint {
  const r = DerReader.inside(der, seqTlv, CODE);
  const idp: IssuingDistributionPoint = {
    urls: [],
    named: false,
    onlyContainsUserCerts: false,
    onlyContainsCACerts: false,
    onlySomeReasons: false,
    indirectCRL: false,
    onlyContainsAttributeCerts: false,
  };
  const bool = (t: Tlv): boolean => t.end - t.valueStart === 1 && der[t.valueStart] !== 0;
  while (!r.done) {
    const t = r.next();
    switch (t.tag) {
      case 0xa0: {
        idp.named = true;
        const name = DerReader.inside(der, t, CODE);
        const full = name.optional(0xa0);
        if (full) {
          const names = DerReader.inside(der, full, CODE);
          while (!names.done) {
            const gn = names.next();
            if (gn.tag === 0x86) idp.urls.push(contents(der, gn).toString('latin1'));
          }
        }
        break;
      }
      case 0x81:
        idp.onlyContainsUserCerts = bool(t);
        break;
      case 0x82:
        idp.onlyContainsCACerts = bool(t);
        break;
      case 0x83:
        idp.onlySomeReasons = true;
        break;
      case 0x84:
        idp.indirectCRL = bool(t);
        break;
      case 0x85:
        idp.onlyContainsAttributeCerts = bool(t);
        break;
      default:
        fail(`unexpected field 0x${t.tag.toString(16)} in the issuing distribution point`);
    }
  }
  return idp;
}

/** Where the contents of the last {@link lengthAt} start (a module variable: no allocation per entry). */
let lenStart = 0;

/**
 * Reads one DER length at `p` (the octet after the tag) within `limit`.
 * Returns the contents start and end, or fails: the same strictness as
 * DerReader, without an object per call.
 */
function lengthAt(buf: Buffer, p: number, limit: number): number {
  if (p >= limit) fail('truncated length in the revoked list');
  const first = buf[p] as number;
  if (first < 0x80) {
    lenStart = p + 1;
    return first;
  }
  const n = first & 0x7f;
  if (n === 0 || n > 4) fail('bad length in the revoked list');
  if (p + 1 + n > limit) fail('truncated length in the revoked list');
  let len = 0;
  for (let i = 1; i <= n; i++) len = len * 256 + (buf[p + i] as number);
  if (len < 0x80 || (n > 1 && buf[p + 1] === 0)) fail('length is not minimally encoded in the revoked list');
  lenStart = p + 1 + n;
  return len;
}

/** Walks the revoked list, calling `visit(entryStart, entryEnd, serialStart, serialEnd)` for each entry. */
function walkEntries(
  crl: DecodedCrl,
  visit: (entryStart: number, entryEnd: number, serialStart: number, serialEnd: number) => boolean,
): void {
  const buf = crl.der;
  const end = crl.entriesEnd;
  let p = crl.entriesStart;
  while (p < end) {
    if (buf[p] !== TAG.SEQUENCE) fail(`expected an entry at offset ${p}`);
    const elen = lengthAt(buf, p + 1, end);
    const eStart = lenStart;
    const eEnd = eStart + elen;
    if (eEnd > end) fail(`entry at offset ${p} runs past the end of the list`);
    if (buf[eStart] !== TAG.INTEGER || eStart >= eEnd) fail(`entry at offset ${p} does not start with a serial`);
    const slen = lengthAt(buf, eStart + 1, eEnd);
    const sStart = lenStart;
    const sEnd = sStart + slen;
    if (slen === 0 || sEnd > eEnd) fail(`bad serial in the entry at offset ${p}`);
    // the revocationDate follows the serial: a time tag
    const tt = buf[sEnd];
    if (sEnd >= eEnd || (tt !== TAG.UTC_TIME && tt !== TAG.GENERALIZED_TIME))
      fail(`entry at offset ${p} has no revocation date`);
    if (visit(p, eEnd, sStart, sEnd)) return;
    p = eEnd;
  }
}

/** Decodes one entry fully (its serial, date and extensions). */
function decodeEntry(buf: Buffer, start: number, end: number): CrlEntry {
  const r = new DerReader(buf, start, end, CODE);
  const e = DerReader.inside(buf, r.next(TAG.SEQUENCE), CODE);
  const serial = Buffer.from(contents(buf, e.next(TAG.INTEGER)));
  const revocationDate = decodeTime(buf, e.next(), CODE);
  const entry: CrlEntry = { serial, revocationDate, unknownCriticalExtensions: [] };
  const extsTlv = e.optional(TAG.SEQUENCE);
  e.end('a revoked entry');
  if (extsTlv) {
    const exts = DerReader.inside(buf, extsTlv, CODE);
    while (!exts.done) {
      const ext = DerReader.inside(buf, exts.next(TAG.SEQUENCE), CODE);
      const oid = decodeOid(contents(buf, ext.next(TAG.OID)));
      const critTlv = ext.optional(TAG.BOOLEAN);
      const critical = critTlv !== undefined && buf[critTlv.valueStart] !== 0;
      const valueTlv = ext.next(TAG.OCTET_STRING);
      if (oid === OID.REASON_CODE) {
        const v = new DerReader(buf, valueTlv.valueStart, valueTlv.end, CODE);
        const code = contents(buf, v.next(TAG.ENUMERATED));
        const n = code.length === 1 ? (code[0] as number) : -1;
        entry.reason = REVOCATION_REASONS[n] ?? `reason ${n}`;
      } else if (critical && !KNOWN_ENTRY_EXTENSIONS.has(oid)) {
        entry.unknownCriticalExtensions.push(oid);
      }
    }
  }
  return entry;
}

/** The serial's contents octets at `start..end` equal `serial` (DER is minimal, so equal numbers have equal octets). */
function sameSerial(buf: Buffer, start: number, end: number, serial: Buffer): boolean {
  if (end - start !== serial.length) return false;
  return buf.compare(serial, 0, serial.length, start, end) === 0;
}

/**
 * Looks `serial` (the contents octets of the certificate's serial INTEGER)
 * up in the revoked list: the entry, or undefined when it is not listed.
 * Every entry before it is checked for framing; the matching one is decoded
 * fully. Throws `CRL_MALFORMED` for a damaged list.
 */
export function findRevoked(crl: DecodedCrl, serial: Buffer): CrlEntry | undefined {
  let found: CrlEntry | undefined;
  walkEntries(crl, (eStart, eEnd, sStart, sEnd) => {
    if (!sameSerial(crl.der, sStart, sEnd, serial)) return false;
    found = decodeEntry(crl.der, eStart, eEnd);
    return true;
  });
  return found;
}

/** Every entry, decoded (for tests and `inspect`; a lookup uses {@link findRevoked}). */
export function listRevoked(crl: DecodedCrl): CrlEntry[] {
  const out: CrlEntry[] = [];
  walkEntries(crl, (eStart, eEnd) => {
    out.push(decodeEntry(crl.der, eStart, eEnd));
    return false;
  });
  return out;
}

/** The number of entries (a framing pass). */
export function countRevoked(crl: DecodedCrl): number {
  let n = 0;
  walkEntries(crl, () => {
    n++;
    return false;
  });
  return n;
}

/** What {@link verifyCrl} needs. */
export interface VerifyCrlOptions {
  /** The certificate whose revocation is looked up. */
  cert: Certificate;
  /** Its issuer. */
  issuer: Certificate;
  /** Other certificates that may be the CRL signer (e.g. from the chain file). */
  candidates?: readonly Certificate[];
  /** The distribution point URL the CRL was fetched from. */
  url: string;
  now: Date;
  /** Allowed clock skew for thisUpdate in the future (default 5 min). */
  skewMs?: number;
}

/** The verdict on a verified CRL for one certificate. */
export interface CrlCheck {
  status: 'good' | 'revoked';
  thisUpdate: Date;
  nextUpdate?: Date;
  crlNumber?: string;
  revocationDate?: Date;
  reason?: string;
  /** Subject of the CRL signer. */
  signer: string;
}

const DEFAULT_SKEW_MS = 5 * 60 * 1000;
/** keyUsage bit 6 (cRLSign), RFC 5280 §4.2.1.3, in certs.ts's numbering (bit 0 = digitalSignature). */
const KU_CRL_SIGN = 1 << 6;

function signedBy(crl: DecodedCrl, signer: Certificate): boolean {
  try {
    return verifySignature(crl.signatureAlgorithmDer, crl.tbsDer, publicKeyOf(signer), crl.signature);
  } catch (e) {
    if (e instanceof StapleError && e.code === 'OCSP_UNSUPPORTED_ALGORITHM') {
      throw new StapleError('CRL_BAD_SIGNATURE', `the CRL is signed with an unsupported algorithm: ${e.message}`);
    }
    return false;
  }
}

/**
 * Verifies a decoded CRL for `cert` and looks its serial up. Throws a
 * `CRL_*` StapleError for every rule it breaks; never says `good` about a CRL
 * it could not verify.
 */
export function verifyCrl(crl: DecodedCrl, opts: VerifyCrlOptions): CrlCheck {
  const { cert, issuer, now } = opts;
  const skew = opts.skewMs ?? DEFAULT_SKEW_MS;
  // 1. issued for this certificate's issuer: same name (RFC 5280 §6.3.3 b.1; indirect CRLs refused below)
  if (!crl.issuerDer.equals(cert.issuerDer)) {
    throw new StapleError(
      'CRL_WRONG_ISSUER',
      `the CRL from ${opts.url} is issued by "${crl.issuer}", not by the certificate's issuer "${cert.issuer}"`,
    );
  }
  // 2. signed by the issuer, or by a CRL signer the issuer certified with cRLSign (§6.3.3 f)
  let signer: Certificate | undefined;
  if (signedBy(crl, issuer)) {
    if (issuer.keyUsage !== undefined && (issuer.keyUsage & KU_CRL_SIGN) === 0) {
      throw new StapleError('CRL_WRONG_ISSUER', `the issuer "${issuer.subject}" may not sign CRLs (no cRLSign)`);
    }
    signer = issuer;
  } else {
    for (const c of opts.candidates ?? []) {
      if (c === issuer || !c.subjectDer.equals(crl.issuerDer)) continue;
      if (!c.issuerDer.equals(issuer.subjectDer) && !c.issuerDer.equals(issuer.issuerDer)) continue;
      if (c.keyUsage === undefined || (c.keyUsage & KU_CRL_SIGN) === 0) continue;
      if (c.notBefore.getTime() > now.getTime() || c.notAfter.getTime() <= now.getTime()) continue;
      let certified = false;
      try {
        certified = verifySignature(c.signatureAlgorithmDer, c.tbsDer, publicKeyOf(issuer), c.signature);
      } catch {
        certified = false;
      }
      if (certified && signedBy(crl, c)) {
        signer = c;
        break;
      }
    }
    if (!signer) {
      throw new StapleError(
        'CRL_BAD_SIGNATURE',
        `the CRL from ${opts.url} is not signed by the issuer "${issuer.subject}" or a CRL signer it certified`,
      );
    }
  }
  // 3. complete, and nothing critical it cannot read
  if (crl.unknownCriticalExtensions.length > 0 || crl.delta) {
    throw new StapleError(
      'CRL_CRITICAL_EXTENSION',
      `the CRL from ${opts.url} carries ${crl.delta ? 'a delta-CRL indicator (not a complete CRL)' : `critical extension(s) ${crl.unknownCriticalExtensions.join(', ')}`}`,
    );
  }
  // 4. times
  if (crl.thisUpdate.getTime() > now.getTime() + skew) {
    throw new StapleError(
      'CRL_NOT_YET_VALID',
      `the CRL from ${opts.url} has thisUpdate ${crl.thisUpdate.toISOString()}, in the future; check this machine's clock`,
    );
  }
  if (crl.nextUpdate && crl.nextUpdate.getTime() <= now.getTime()) {
    throw new StapleError(
      'CRL_STALE',
      `the CRL from ${opts.url} expired at ${crl.nextUpdate.toISOString()} (nextUpdate) and no newer one is published there`,
    );
  }
  // 5. scope of a partitioned CRL (§6.3.3 b.2)
  const idp = crl.idp;
  if (idp) {
    const scope = (why: string): never => {
      throw new StapleError('CRL_SCOPE', `the CRL from ${opts.url} does not cover this certificate: ${why}`);
    };
    if (idp.indirectCRL) scope('it is an indirect CRL (not supported)');
    if (idp.onlySomeReasons) scope('it lists only some revocation reasons');
    if (idp.onlyContainsAttributeCerts) scope('it lists attribute certificates only');
    if (idp.onlyContainsCACerts && !cert.isCA) scope('it lists CA certificates only');
    if (idp.onlyContainsUserCerts && cert.isCA) scope('it lists end-entity certificates only');
    if (idp.named) {
      const dps = new Set(cert.crlDistributionPoints.flatMap((d) => d.urls));
      if (!idp.urls.some((u) => dps.has(u))) {
        scope(`its distribution point (${idp.urls.join(', ') || 'a relative name'}) is none of the certificate's`);
      }
    }
  }
  // 6. the serial
  const entry = findRevoked(crl, cert.serial);
  const result: CrlCheck = { status: 'good', thisUpdate: crl.thisUpdate, signer: signer.subject };
  if (crl.nextUpdate) result.nextUpdate = crl.nextUpdate;
  if (crl.crlNumber) result.crlNumber = crl.crlNumber;
  if (entry) {
    if (entry.unknownCriticalExtensions.length > 0) {
      throw new StapleError(
        'CRL_CRITICAL_EXTENSION',
        `the CRL entry for this certificate carries critical extension(s) ${entry.unknownCriticalExtensions.join(', ')}`,
      );
    }
    if (entry.reason !== 'removeFromCRL') {
      result.status = 'revoked';
      result.revocationDate = entry.revocationDate;
      if (entry.reason) result.reason = entry.reason;
    }
  }
  return result;
}
