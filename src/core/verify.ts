/**
 * Accepting a response: every acceptance rule (RFC 6960 §3.2,
 * §4.2.2.1, §4.2.2.2; RFC 5019 §4). A response may become a staple only if
 * {@link verifyResponse} returns and its status is `good`
 * ({@link assertGood}). The same rules are applied to the staple already on
 * disk at every run: a stored staple that fails them counts as missing.
 */
import { createHash } from 'node:crypto';
import {
  type Certificate,
  OID_KP_OCSP_SIGNING,
  certificateMemo,
  isSignedBy,
  keyHashSha1,
  parseCertificate,
  publicKeyOf,
} from './certs.js';
import { StapleError, type ErrorCode } from './errors.js';
import {
  type CertStatus,
  type DecodedResponse,
  type Extension,
  type SingleResponse,
  OID_OCSP_NONCE,
  REVOCATION_REASONS,
  RESPONSE_STATUS_NAMES,
  decodeResponse,
} from './response.js';
import { hashNameForOid, nodeVerifyParams, verifySignature, type SignatureMemo } from './signature.js';
import { DerReader, TAG, contents } from './der.js';

/** Default tolerance for clock differences: 5 minutes, as HAProxy and Exim use. */
export const DEFAULT_SKEW_MS = 5 * 60 * 1000;

/**
 * The oldest thisUpdate accepted: 366 days before now. Responses are
 * produced for days (at most 10 under the CA/Browser Forum rules); one that
 * claims to be older than a year (thisUpdate 1950) is not a real answer.
 */
export const MAX_THIS_UPDATE_AGE_MS = 366 * 24 * 3600_000;

/** A response that passed every check. */
export interface VerifiedResponse {
  status: CertStatus;
  thisUpdate: Date;
  nextUpdate: Date;
  producedAt: Date;
  revocationTime?: Date;
  /** CRLReason name, e.g. `keyCompromise`. */
  revocationReason?: string;
  /** Subject of the certificate that signed the response. */
  responder: string;
  /** True when a delegated OCSP signing certificate signed it (not the issuer). */
  delegated: boolean;
  /** When the staple stops being usable: nextUpdate, capped by a delegated signer's notAfter. */
  usableUntil: Date;
  /** Things worth telling the operator that do not make the response unusable. */
  warnings: string[];
  /** The raw DER, exactly as received. */
  der: Buffer;
}

/** What {@link verifyResponse} needs. */
export interface VerifyOptions {
  cert: Certificate;
  issuer: Certificate;
  now: Date;
  /** Clock skew tolerance in ms (default 5 min). */
  skewMs?: number;
  /** The nonce we sent; when given, the response must echo it. */
  nonce?: Buffer;
  /** Signature checks made before (core/signature.ts); the answer is the same without. */
  signatures?: SignatureMemo;
}

const KNOWN_RESPONSE_EXTENSIONS = new Set([
  OID_OCSP_NONCE,
  '1.3.6.1.5.5.7.48.1.9', // extended revoke (RFC 6960 §4.4.8)
  '1.3.6.1.5.5.7.48.1.8', // preferred signature algorithms
]);
const KNOWN_SINGLE_EXTENSIONS = new Set([
  '1.3.6.1.5.5.7.48.1.3', // CRL references
  '1.3.6.1.5.5.7.48.1.6', // archive cutoff
  '1.3.6.1.4.1.11129.2.4.5', // CT SCT list (RFC 6962 §3.3)
  '2.5.29.21', // CRL reason
  '2.5.29.24', // invalidity date
  '2.5.29.29', // certificate issuer
]);

const STATUS_CODES: Record<number, ErrorCode> = {
  1: 'OCSP_MALFORMED_REQUEST',
  2: 'OCSP_INTERNAL_ERROR',
  3: 'OCSP_TRY_LATER',
  5: 'OCSP_SIG_REQUIRED',
  6: 'OCSP_UNAUTHORIZED',
};

/**
 * Verifies a response (DER or already decoded) for `cert`/`issuer` at `now`.
 * Throws a {@link StapleError} naming the first rule that fails. The status
 * may be good, revoked or unknown: use {@link assertGood} before storing.
 */
export function verifyResponse(input: Buffer | DecodedResponse, opts: VerifyOptions): VerifiedResponse {
  const decoded = Buffer.isBuffer(input) ? decodeResponse(input) : input;
  const { cert, issuer, now } = opts;
  const skew = opts.skewMs ?? DEFAULT_SKEW_MS;
  const nowMs = now.getTime();

  // RFC 6960 §4.2.1: only "successful" carries an answer; each other status has its own code
  if (decoded.responseStatus !== 0) {
    const code = STATUS_CODES[decoded.responseStatus] ?? 'OCSP_BAD_STATUS';
    const name = RESPONSE_STATUS_NAMES[decoded.responseStatus] ?? 'undefined';
    throw new StapleError(
      code,
      `responder returned status ${decoded.responseStatus} (${name})${code === 'OCSP_BAD_STATUS' ? '' : ''}`,
      {
        details: { responseStatus: decoded.responseStatus },
      },
    );
  }
  const basic = decoded.basic;
  if (!basic) throw new StapleError('OCSP_NO_RESPONSE_BYTES');

  // Exactly one SingleResponse must match all four CertID fields (Go's x/crypto checks the serial only).
  const single = findOurSingle(basic.singles, cert, issuer);

  // The signature algorithm must be one we can check before anything depends on the signature.
  const sigParams = nodeVerifyParams(basic.signatureAlgorithmDer, opts.signatures);

  // Identify the signer from the ResponderID among the issuer and the included certificates.
  const included: Certificate[] = [];
  for (const der of basic.certs) {
    try {
      included.push(parseCertificate(der));
    } catch {
      // an unparseable included certificate cannot be the signer; ignore it
    }
  }
  const candidates = [issuer, ...included];
  const rid = basic.responderId;
  const matchesRid = (c: Certificate): boolean =>
    'byName' in rid ? c.subjectDer.equals(rid.byName) : keyHashSha1(c).equals(rid.byKey);
  // the signature is checked once, while the signer is identified; its verdict is used below
  const verifiedSigner = candidates.find((c) => matchesRid(c) && sigOk(c));
  const signer = verifiedSigner ?? candidates.find(matchesRid);

  function sigOk(c: Certificate): boolean {
    let key;
    try {
      key = publicKeyOf(c, opts.signatures);
    } catch {
      // an included certificate with an unusable key cannot be the signer; look at the others
      return false;
    }
    return verifySignature(basic!.signatureAlgorithmDer, basic!.tbsDer, key, basic!.signature, opts.signatures);
  }

  if (!signer) {
    const actual = candidates.find(sigOk);
    if (actual) {
      throw new StapleError(
        'OCSP_RESPONDER_ID_MISMATCH',
        `the responder ID does not name the certificate that signed the response (${actual.subject})`,
      );
    }
    throw new StapleError(
      'OCSP_UNAUTHORIZED_SIGNER',
      'the response is signed by a responder that is neither the issuer nor a certificate included in the response',
    );
  }

  // RFC 6960 §4.2.2.2: the issuer itself, or a certificate it issued with id-kp-OCSPSigning, valid now.
  const isIssuer =
    signer === issuer || (signer.subjectDer.equals(issuer.subjectDer) && signer.spkiDer.equals(issuer.spkiDer));
  let delegated = false;
  if (!isIssuer) {
    delegated = true;
    const who = `the response signer "${signer.subject}"`;
    if (!signer.issuerDer.equals(issuer.subjectDer) || !isSignedBy(signer, issuer, opts.signatures)) {
      throw new StapleError(
        'OCSP_UNAUTHORIZED_SIGNER',
        `${who} was not issued by the certificate's issuer "${issuer.subject}"`,
      );
    }
    if (!signer.extKeyUsage.includes(OID_KP_OCSP_SIGNING)) {
      throw new StapleError('OCSP_UNAUTHORIZED_SIGNER', `${who} lacks the id-kp-OCSPSigning extended key usage`);
    }
    if (signer.notAfter.getTime() <= nowMs) {
      throw new StapleError('OCSP_UNAUTHORIZED_SIGNER', `${who} expired on ${signer.notAfter.toISOString()}`);
    }
    if (signer.notBefore.getTime() > nowMs + skew) {
      throw new StapleError('OCSP_UNAUTHORIZED_SIGNER', `${who} is not valid before ${signer.notBefore.toISOString()}`);
    }
  }

  if (!verifiedSigner) {
    throw new StapleError(
      'OCSP_BAD_SIGNATURE',
      `the response signature (${sigParams.name}) does not verify with the key of "${signer.subject}"`,
    );
  }

  // Unknown critical extensions make the response unusable (RFC 5280 §4.2 semantics).
  rejectUnknownCritical(basic.extensions, KNOWN_RESPONSE_EXTENSIONS, 'response');
  rejectUnknownCritical(single.extensions, KNOWN_SINGLE_EXTENSIONS, 'single response');

  if (opts.nonce) {
    const ext = basic.extensions.find((e) => e.oid === OID_OCSP_NONCE);
    if (!ext || !nonceValue(ext.value).equals(opts.nonce)) {
      throw new StapleError(
        'OCSP_NONCE_MISMATCH',
        ext ? 'the response nonce differs from ours' : 'the response carries no nonce',
      );
    }
  }

  // Times (RFC 6960 §3.2 items 4–5, RFC 5019 §4): thisUpdate not in the future, nextUpdate present and ahead.
  if (single.thisUpdate.getTime() > nowMs + skew) {
    throw new StapleError(
      'OCSP_NOT_YET_VALID',
      `the response thisUpdate ${single.thisUpdate.toISOString()} lies in the future; check this machine's clock`,
    );
  }
  if (single.thisUpdate.getTime() < nowMs - MAX_THIS_UPDATE_AGE_MS) {
    throw new StapleError(
      'OCSP_STALE',
      `the response thisUpdate ${single.thisUpdate.toISOString()} is more than 366 days old; responders answer with fresh responses`,
    );
  }
  // producedAt (RFC 6960 §4.2.1) is when the responder signed: a time ahead of
  // the clock beyond the tolerance is as impossible as a future thisUpdate.
  if (basic.producedAt.getTime() > nowMs + skew) {
    throw new StapleError(
      'OCSP_NOT_YET_VALID',
      `the response producedAt ${basic.producedAt.toISOString()} lies in the future; check this machine's clock`,
    );
  }
  if (!single.nextUpdate) throw new StapleError('OCSP_NO_NEXT_UPDATE');
  if (single.nextUpdate.getTime() <= nowMs) {
    throw new StapleError('OCSP_STALE', `the response expired at ${single.nextUpdate.toISOString()} (nextUpdate)`);
  }
  if (single.nextUpdate.getTime() < single.thisUpdate.getTime()) {
    throw new StapleError('OCSP_MALFORMED', 'malformed OCSP response: nextUpdate is before thisUpdate');
  }

  if (cert.notAfter.getTime() <= nowMs) {
    throw new StapleError(
      'CERT_EXPIRED',
      `the certificate "${cert.subject}" expired on ${cert.notAfter.toISOString()}; renew the certificate first`,
    );
  }

  const warnings: string[] = [];
  let usableUntil = single.nextUpdate;
  if (delegated && signer.notAfter < usableUntil) {
    usableUntil = signer.notAfter;
    warnings.push(`the delegated responder certificate expires at ${signer.notAfter.toISOString()}, before nextUpdate`);
  }
  if (single.nextUpdate > cert.notAfter) {
    warnings.push('nextUpdate lies after the certificate expires');
  }
  if (basic.singles.length > 1) {
    warnings.push(`the response holds ${basic.singles.length} answers; HAProxy refuses such staples`);
  }

  const result: VerifiedResponse = {
    status: single.status,
    thisUpdate: single.thisUpdate,
    nextUpdate: single.nextUpdate,
    producedAt: basic.producedAt,
    responder: signer.subject,
    delegated,
    usableUntil,
    warnings,
    der: decoded.der,
  };
  if (single.revocationTime) result.revocationTime = single.revocationTime;
  if (single.revocationReason !== undefined) {
    result.revocationReason = REVOCATION_REASONS[single.revocationReason] ?? `reason ${single.revocationReason}`;
  }
  return result;
}

/** Throws `OCSP_REVOKED` or `OCSP_UNKNOWN_CERT` unless the response says good. */
export function assertGood(v: VerifiedResponse, subject = 'the certificate'): void {
  if (v.status === 'revoked') {
    const when = v.revocationTime ? ` at ${v.revocationTime.toISOString()}` : '';
    const why = v.revocationReason ? ` (reason: ${v.revocationReason})` : '';
    throw new StapleError('OCSP_REVOKED', `${subject} is REVOKED${when}${why}; replace it now`, {
      details: { revocationTime: v.revocationTime?.toISOString(), revocationReason: v.revocationReason },
    });
  }
  if (v.status === 'unknown') {
    throw new StapleError(
      'OCSP_UNKNOWN_CERT',
      `the responder does not know ${subject} (status unknown); check the responder URL and issuer`,
    );
  }
}

/** The CertID hashes of an issuer, kept with the certificate object: thousands of certificates share one issuer. */
function issuerHashes(issuer: Certificate, hashName: string): { name: Buffer; key: Buffer } {
  const byHash = certificateMemo(issuer).issuerHashes;
  let h = byHash.get(hashName);
  if (!h) {
    h = {
      name: createHash(hashName).update(issuer.subjectDer).digest(),
      key: createHash(hashName).update(issuer.publicKeyBits).digest(),
    };
    byHash.set(hashName, h);
  }
  return h;
}

function findOurSingle(singles: SingleResponse[], cert: Certificate, issuer: Certificate): SingleResponse {
  const matches: SingleResponse[] = [];
  let unsupportedHash: string | undefined;
  const hashes = new Map<string, { name: Buffer; key: Buffer }>();
  for (const s of singles) {
    const hashName = hashNameForOid(s.hashAlgorithm);
    if (!hashName) {
      if (s.serial.equals(cert.serial)) unsupportedHash = s.hashAlgorithm;
      continue;
    }
    let h = hashes.get(hashName);
    if (!h) {
      h = issuerHashes(issuer, hashName);
      hashes.set(hashName, h);
    }
    if (s.serial.equals(cert.serial) && s.issuerNameHash.equals(h.name) && s.issuerKeyHash.equals(h.key)) {
      matches.push(s);
    }
  }
  if (matches.length === 1) return matches[0] as SingleResponse;
  if (matches.length > 1) {
    throw new StapleError(
      'OCSP_CERTID_MISMATCH',
      `the response holds ${matches.length} answers for this certificate; refusing an ambiguous response`,
    );
  }
  if (unsupportedHash) {
    throw new StapleError(
      'OCSP_CERTID_MISMATCH',
      `the response answers with an unsupported CertID hash algorithm ${unsupportedHash}`,
      {
        details: { hashAlgorithm: unsupportedHash },
      },
    );
  }
  const serialMatch = singles.find((s) => s.serial.equals(cert.serial));
  const detail = serialMatch
    ? 'an answer with our serial number has a different issuer name or key hash'
    : `none of its ${singles.length} answer(s) is for serial ${cert.serialHex}`;
  throw new StapleError('OCSP_CERTID_MISMATCH', `the response is not for this certificate: ${detail}`);
}

function rejectUnknownCritical(exts: Extension[], known: Set<string>, where: string): void {
  for (const e of exts) {
    if (e.critical && !known.has(e.oid)) {
      throw new StapleError('OCSP_CRITICAL_EXTENSION', `the ${where} carries an unknown critical extension ${e.oid}`, {
        details: { extension: e.oid },
      });
    }
  }
}

/** The nonce extension value is an OCTET STRING wrapped in extnValue (RFC 8954); accept a bare value too. */
function nonceValue(v: Buffer): Buffer {
  try {
    const r = new DerReader(v);
    const t = r.next(TAG.OCTET_STRING);
    r.end('nonce');
    return contents(v, t);
  } catch {
    return v;
  }
}
