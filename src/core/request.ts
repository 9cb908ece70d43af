/**
 * The OCSP request: CertID (RFC 6960 §4.1.1) and the DER OCSPRequest, encoded
 * with @peculiar/asn1-ocsp. No requestorName, no signature; a nonce only when
 * asked for (RFC 5019 §2.1: responders that pre-produce responses ignore or
 * reject nonces, so the interoperable default is none).
 */
import { createHash, randomBytes } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Extension, Extensions } from '@peculiar/asn1-x509';
import { CertID, OCSPRequest, Request, TBSRequest } from '@peculiar/asn1-ocsp';
import type { Certificate } from './certs.js';
import { oidForHashName } from './signature.js';
import { OID_OCSP_NONCE } from './response.js';

/** The CertID hash algorithms we send. SHA-1 is the RFC 5019 default. */
export type CertIdHash = 'sha1' | 'sha256';

/** The four fields that identify a certificate to a responder. */
export interface CertId {
  hash: CertIdHash;
  hashAlgorithm: string;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  serial: Buffer;
}

/**
 * Computes the CertID: hash of the issuer's DER subject Name, hash of the
 * issuer's subjectPublicKey BIT STRING contents, and the serial.
 */
export function computeCertId(cert: Certificate, issuer: Certificate, hash: CertIdHash = 'sha1'): CertId {
  return {
    hash,
    hashAlgorithm: oidForHashName(hash),
    issuerNameHash: createHash(hash).update(issuer.subjectDer).digest(),
    issuerKeyHash: createHash(hash).update(issuer.publicKeyBits).digest(),
    serial: cert.serial,
  };
}

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
  const reqCert = new CertID({
    // RFC 5019 §2.1.1: the hash AlgorithmIdentifier carries NULL parameters (as OpenSSL sends)
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: certId.hashAlgorithm, parameters: null }),
    issuerNameHash: new OctetString(certId.issuerNameHash),
    issuerKeyHash: new OctetString(certId.issuerKeyHash),
    serialNumber: toArrayBuffer(certId.serial),
  });
  const tbs = new TBSRequest({ requestList: [new Request({ reqCert })] });
  let nonce: Buffer | undefined;
  if (options.nonce) {
    nonce = Buffer.isBuffer(options.nonce) ? options.nonce : randomBytes(16);
    const value = AsnConvert.serialize(new OctetString(nonce));
    tbs.requestExtensions = new Extensions([
      new Extension({ extnID: OID_OCSP_NONCE, critical: false, extnValue: new OctetString(value) }),
    ]);
  }
  const der = Buffer.from(AsnConvert.serialize(new OCSPRequest({ tbsRequest: tbs })));
  return nonce ? { der, nonce } : { der };
}

function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}
