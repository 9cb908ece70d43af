/**
 * The OCSP request: CertID (RFC 6960 §4.1.1) and the DER OCSPRequest, encoded
 * by core/asn1.ts. No requestorName, no signature; a nonce only when
 * asked for (RFC 5019 §2.1: responders that pre-produce responses ignore or
 * reject nonces, so the interoperable default is none).
 */
import { randomBytes } from 'node:crypto';
import { encodeOcspRequest } from './asn1.js';
import type { CertId } from './certid.js';

export { computeCertId, type CertId, type CertIdHash } from './certid.js';

/** Options for {@link buildRequest}. */
export interface RequestOptions {
  /** Send a nonce of this many bytes (RFC 8954: 1–32). Off by default. */
  nonce?: boolean | Buffer;
}

/** An encoded request, with the nonce we sent (if any). */
export interface EncodedRequest {
  der: Buffer;
  nonce?: Buffer;
}

/** Encodes an OCSPRequest for one CertID. */
export function buildRequest(certId: CertId, options: RequestOptions = {}): EncodedRequest {
  const nonce = options.nonce ? (Buffer.isBuffer(options.nonce) ? options.nonce : randomBytes(16)) : undefined;
  const der = encodeOcspRequest(certId, nonce);
  return nonce ? { der, nonce } : { der };
}
