/**
 * Decoding OCSP responses (RFC 6960 §4.2.1) into our own types.
 *
 * This is a strict single-pass DER decoder: it keeps the exact bytes of
 * tbsResponseData for signature checking, rejects trailing data and
 * over-long lengths, and turns every structural problem into a coded
 * {@link StapleError}. It is differential-tested against the
 * @peculiar/asn1-ocsp decoder (test/unit/response-differential.test.ts).
 */
import { DerReader, TAG, contents, decodeOid, decodeTime, whole } from './der.js';
import { StapleError } from './errors.js';

/** A certificate status as the responder asserted it. */
export type CertStatus = 'good' | 'revoked' | 'unknown';

/** An extension (RFC 5280 §4.1). */
export interface Extension {
  oid: string;
  critical: boolean;
  /** extnValue contents. */
  value: Buffer;
}

/** One SingleResponse. */
export interface SingleResponse {
  /** CertID hash algorithm OID. */
  hashAlgorithm: string;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  /** Serial number INTEGER contents. */
  serial: Buffer;
  status: CertStatus;
  revocationTime?: Date;
  /** CRLReason code (RFC 5280 §5.3.1), if given. */
  revocationReason?: number;
  thisUpdate: Date;
  nextUpdate?: Date;
  extensions: Extension[];
}

/** ResponderID: by Name (exact DER) or by SHA-1 key hash. */
export type ResponderId = { byName: Buffer } | { byKey: Buffer };

/** The BasicOCSPResponse, decoded. */
export interface BasicResponse {
  /** The exact DER of tbsResponseData, which the signature covers. */
  tbsDer: Buffer;
  version: number;
  responderId: ResponderId;
  producedAt: Date;
  singles: SingleResponse[];
  extensions: Extension[];
  /** signatureAlgorithm AlgorithmIdentifier, exact DER. */
  signatureAlgorithmDer: Buffer;
  signatureAlgorithm: string;
  signature: Buffer;
  /** Certificates included to help verify the signature (DER). */
  certs: Buffer[];
}

/** A decoded OCSPResponse. `basic` is present only for successful responses. */
export interface DecodedResponse {
  der: Buffer;
  /** responseStatus (0 = successful). */
  responseStatus: number;
  /** responseType OID, when responseBytes is present. */
  responseType?: string;
  basic?: BasicResponse;
}

/** Names of responseStatus values (RFC 6960 §4.2.1). */
export const RESPONSE_STATUS_NAMES: Record<number, string> = {
  0: 'successful',
  1: 'malformedRequest',
  2: 'internalError',
  3: 'tryLater',
  5: 'sigRequired',
  6: 'unauthorized',
};

/** id-pkix-ocsp-basic. */
export const OID_OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1';
/** id-pkix-ocsp-nonce. */
export const OID_OCSP_NONCE = '1.3.6.1.5.5.7.48.1.2';

/** CRLReason names (RFC 5280 §5.3.1). */
export const REVOCATION_REASONS: Record<number, string> = {
  0: 'unspecified',
  1: 'keyCompromise',
  2: 'cACompromise',
  3: 'affiliationChanged',
  4: 'superseded',
  5: 'cessationOfOperation',
  6: 'certificateHold',
  8: 'removeFromCRL',
  9: 'privilegeWithdrawn',
  10: 'aACompromise',
};

/**
 * Decodes an OCSPResponse. Structural problems throw `OCSP_MALFORMED`;
 * an unknown responseType throws `OCSP_UNKNOWN_RESPONSE_TYPE`; a successful
 * status without responseBytes throws `OCSP_NO_RESPONSE_BYTES`. A
 * non-successful status is returned (not thrown): the verifier names it.
 */
export function decodeResponse(der: Buffer): DecodedResponse {
  if (der.length === 0) throw new StapleError('OCSP_MALFORMED', 'malformed OCSP response: empty body');
  const top = new DerReader(der);
  const respTlv = top.next(TAG.SEQUENCE);
  top.end('the OCSPResponse');
  const resp = DerReader.inside(der, respTlv);
  const statusTlv = resp.next(TAG.ENUMERATED);
  const statusBytes = contents(der, statusTlv);
  if (statusBytes.length !== 1) resp.fail('responseStatus must be one byte');
  // a one-byte ENUMERATED is two's complement: 0x80..0xff are -128..-1 (undefined values either way)
  const responseStatus = signedByte(statusBytes[0] as number);
  const out: DecodedResponse = { der, responseStatus };
  const rbTlv = resp.optional(0xa0);
  resp.end('responseBytes');
  if (!rbTlv) {
    if (responseStatus === 0) {
      throw new StapleError('OCSP_NO_RESPONSE_BYTES');
    }
    return out;
  }
  const rbOuter = DerReader.inside(der, rbTlv);
  const rb = DerReader.inside(der, rbOuter.next(TAG.SEQUENCE));
  rbOuter.end('ResponseBytes');
  out.responseType = decodeOid(contents(der, rb.next(TAG.OID)));
  const octets = rb.next(TAG.OCTET_STRING);
  rb.end('ResponseBytes');
  if (responseStatus !== 0) return out;
  if (out.responseType !== OID_OCSP_BASIC) {
    throw new StapleError(
      'OCSP_UNKNOWN_RESPONSE_TYPE',
      `the response type ${out.responseType} is not id-pkix-ocsp-basic`,
    );
  }
  out.basic = decodeBasic(der, octets.valueStart, octets.end);
  return out;
}

function decodeBasic(der: Buffer, start: number, end: number): BasicResponse {
  const outer = new DerReader(der, start, end);
  const basicTlv = outer.next(TAG.SEQUENCE);
  outer.end('BasicOCSPResponse');
  const b = DerReader.inside(der, basicTlv);
  const tbsTlv = b.next(TAG.SEQUENCE);
  const sigAlgTlv = b.next(TAG.SEQUENCE);
  const sigAlg = DerReader.inside(der, sigAlgTlv);
  const signatureAlgorithm = decodeOid(contents(der, sigAlg.next(TAG.OID)));
  const sigTlv = b.next(TAG.BIT_STRING);
  if (sigTlv.end - sigTlv.valueStart < 1 || der[sigTlv.valueStart] !== 0) b.fail('bad signature BIT STRING');
  const certs: Buffer[] = [];
  const certsTlv = b.optional(0xa0);
  if (certsTlv) {
    const inner = DerReader.inside(der, certsTlv);
    const seq = DerReader.inside(der, inner.next(TAG.SEQUENCE));
    inner.end('certs');
    while (!seq.done) certs.push(whole(der, seq.next(TAG.SEQUENCE)));
  }
  b.end('BasicOCSPResponse');

  const t = DerReader.inside(der, tbsTlv);
  let version = 0;
  const vTlv = t.optional(0xa0);
  if (vTlv) {
    const v = contents(der, DerReader.inside(der, vTlv).next(TAG.INTEGER));
    version = v.length === 1 ? (v[0] as number) : -1;
    if (version !== 0) t.fail(`unsupported ResponseData version ${version}`);
  }
  let responderId: ResponderId;
  const ridTlv = t.next();
  if (ridTlv.tag === 0xa1) {
    const r = DerReader.inside(der, ridTlv);
    responderId = { byName: whole(der, r.next(TAG.SEQUENCE)) };
    r.end('ResponderID');
  } else if (ridTlv.tag === 0xa2) {
    const r = DerReader.inside(der, ridTlv);
    responderId = { byKey: contents(der, r.next(TAG.OCTET_STRING)) };
    r.end('ResponderID');
  } else {
    return t.fail('bad ResponderID');
  }
  const producedAt = decodeTime(der, t.next(TAG.GENERALIZED_TIME));
  const singlesSeq = DerReader.inside(der, t.next(TAG.SEQUENCE));
  const singles: SingleResponse[] = [];
  while (!singlesSeq.done) singles.push(decodeSingle(der, singlesSeq));
  let extensions: Extension[] = [];
  const extTlv = t.optional(0xa1);
  if (extTlv) extensions = decodeExtensions(der, extTlv);
  t.end('ResponseData');
  if (singles.length === 0) t.fail('no SingleResponse');

  return {
    tbsDer: whole(der, tbsTlv),
    version,
    responderId,
    producedAt,
    singles,
    extensions,
    signatureAlgorithmDer: whole(der, sigAlgTlv),
    signatureAlgorithm,
    signature: der.subarray(sigTlv.valueStart + 1, sigTlv.end),
    certs,
  };
}

function decodeSingle(der: Buffer, parent: DerReader): SingleResponse {
  const s = DerReader.inside(der, parent.next(TAG.SEQUENCE));
  const cid = DerReader.inside(der, s.next(TAG.SEQUENCE));
  const alg = DerReader.inside(der, cid.next(TAG.SEQUENCE));
  const hashAlgorithm = decodeOid(contents(der, alg.next(TAG.OID)));
  alg.optional(TAG.NULL);
  alg.end('CertID hashAlgorithm');
  const issuerNameHash = contents(der, cid.next(TAG.OCTET_STRING));
  const issuerKeyHash = contents(der, cid.next(TAG.OCTET_STRING));
  const serial = contents(der, cid.next(TAG.INTEGER));
  cid.end('CertID');

  const st = s.next();
  let status: CertStatus;
  let revocationTime: Date | undefined;
  let revocationReason: number | undefined;
  if (st.tag === 0x80) {
    if (st.end !== st.valueStart) s.fail('good must be NULL');
    status = 'good';
  } else if (st.tag === 0xa1) {
    status = 'revoked';
    const ri = DerReader.inside(der, st);
    revocationTime = decodeTime(der, ri.next(TAG.GENERALIZED_TIME));
    const reasonTlv = ri.optional(0xa0);
    if (reasonTlv) {
      const e = DerReader.inside(der, reasonTlv).next(TAG.ENUMERATED);
      const v = contents(der, e);
      revocationReason = v.length === 1 ? signedByte(v[0] as number) : -1;
    }
    ri.end('RevokedInfo');
  } else if (st.tag === 0x82) {
    if (st.end !== st.valueStart) s.fail('unknown must be NULL');
    status = 'unknown';
  } else {
    return s.fail(`bad certStatus tag 0x${st.tag.toString(16)}`);
  }
  const thisUpdate = decodeTime(der, s.next(TAG.GENERALIZED_TIME));
  let nextUpdate: Date | undefined;
  const nu = s.optional(0xa0);
  if (nu) {
    const r = DerReader.inside(der, nu);
    nextUpdate = decodeTime(der, r.next(TAG.GENERALIZED_TIME));
    r.end('nextUpdate');
  }
  let extensions: Extension[] = [];
  const ext = s.optional(0xa1);
  if (ext) extensions = decodeExtensions(der, ext);
  s.end('SingleResponse');
  const single: SingleResponse = {
    hashAlgorithm,
    issuerNameHash,
    issuerKeyHash,
    serial,
    status,
    thisUpdate,
    extensions,
  };
  if (nextUpdate) single.nextUpdate = nextUpdate;
  if (revocationTime) single.revocationTime = revocationTime;
  if (revocationReason !== undefined) single.revocationReason = revocationReason;
  return single;
}

function decodeExtensions(
  der: Buffer,
  explicitTlv: { valueStart: number; end: number; tag: number; start: number },
): Extension[] {
  const outer = DerReader.inside(der, explicitTlv);
  const seq = DerReader.inside(der, outer.next(TAG.SEQUENCE));
  outer.end('extensions');
  const out: Extension[] = [];
  while (!seq.done) {
    const e = DerReader.inside(der, seq.next(TAG.SEQUENCE));
    const oid = decodeOid(contents(der, e.next(TAG.OID)));
    let critical = false;
    const c = e.optional(TAG.BOOLEAN);
    if (c) critical = der[c.valueStart] !== 0;
    const value = contents(der, e.next(TAG.OCTET_STRING));
    e.end('Extension');
    out.push({ oid, critical, value });
  }
  return out;
}

/** A one-octet DER INTEGER/ENUMERATED is two's complement. */
function signedByte(b: number): number {
  return b >= 0x80 ? b - 256 : b;
}
