/**
 * The CertID of a certificate (RFC 6960 §4.1.1), apart from the request
 * encoder: the fleet keys and the engine need it on every run, the encoder
 * (core/asn1.ts, and @peculiar with it) only when a request is sent.
 */
import { createHash } from 'node:crypto';
import type { Certificate } from './certs.js';
import { oidForHashName } from './signature.js';

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
