/**
 * The one file that uses @peculiar/asn1-* (ASN.1 schemas): the encoder of
 * the OCSP request and the reader of PKCS#7 "certs-only" bundles. Everything
 * else reads DER with core/der.ts. `npm run lint` (the `asn1-only-in-core-asn1`
 * rule of .dependency-cruiser.cjs) keeps it the only one.
 *
 * Loading @peculiar costs tens to hundreds of milliseconds, so this module is
 * itself loaded only when needed: by core/request.ts, which pipeline/renew.ts
 * loads with the fetcher (not for `check` or a run with nothing due), and by
 * pipeline/issuer.ts only when a caIssuers URL is downloaded. The CMS schema
 * loads only for a PKCS#7 answer.
 */
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Extension, Extensions } from '@peculiar/asn1-x509';
import { CertID, OCSPRequest, Request, TBSRequest } from '@peculiar/asn1-ocsp';
import { type Certificate, decodePem, loadCertificates, looksLikePem } from './certs.js';
import { StapleError } from './errors.js';
import { OID_OCSP_NONCE } from './response.js';

/** The fields of the one CertID of a request (RFC 6960 §4.1.1). */
export interface CertIdFields {
  /** OID of the hash algorithm. */
  hashAlgorithm: string;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  serial: Buffer;
}

/**
 * DER of an OCSPRequest for one CertID (RFC 6960 §4.1.1): no requestorName,
 * no signature, and a nonce extension (RFC 8954) only when `nonce` is given.
 */
export function encodeOcspRequest(certId: CertIdFields, nonce?: Buffer): Buffer {
  const reqCert = new CertID({
    // RFC 5019 §2.1.1: the hash AlgorithmIdentifier carries NULL parameters (as OpenSSL sends)
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: certId.hashAlgorithm, parameters: null }),
    issuerNameHash: new OctetString(certId.issuerNameHash),
    issuerKeyHash: new OctetString(certId.issuerKeyHash),
    serialNumber: toArrayBuffer(certId.serial),
  });
  const tbs = new TBSRequest({ requestList: [new Request({ reqCert })] });
  if (nonce) {
    const value = AsnConvert.serialize(new OctetString(nonce));
    tbs.requestExtensions = new Extensions([
      new Extension({ extnID: OID_OCSP_NONCE, critical: false, extnValue: new OctetString(value) }),
    ]);
  }
  return Buffer.from(AsnConvert.serialize(new OCSPRequest({ tbsRequest: tbs })));
}

function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/**
 * Parses caIssuers content (RFC 5280 §4.2.2.1): a DER certificate, PEM, or a
 * PKCS#7 "certs-only" SignedData (DER or PEM `PKCS7`). Throws
 * `NOT_A_CERTIFICATE` naming `url` when it is none of them.
 */
export async function parseCaIssuersContent(data: Buffer, url: string): Promise<Certificate[]> {
  if (looksLikePem(data)) {
    const blocks = decodePem(data.toString('latin1'));
    const p7 = blocks.find((b) => b.label === 'PKCS7');
    if (p7) return parsePkcs7(p7.der, url);
    return loadCertificates(data, url);
  }
  try {
    return loadCertificates(data, url);
  } catch {
    return parsePkcs7(data, url);
  }
}

async function parsePkcs7(der: Buffer, url: string): Promise<Certificate[]> {
  try {
    // loaded here, on the rare caIssuers PKCS#7 bundle, not with the rest
    const { ContentInfo, SignedData, id_signedData } = await import('@peculiar/asn1-cms');
    const ci = AsnConvert.parse(der, ContentInfo);
    if (ci.contentType !== id_signedData) throw new Error(`content type ${ci.contentType} is not signedData`);
    const sd = AsnConvert.parse(ci.content, SignedData);
    const out: Certificate[] = [];
    for (const choice of sd.certificates ?? []) {
      if (choice.certificate) {
        out.push(...loadCertificates(Buffer.from(AsnConvert.serialize(choice.certificate)), url));
      }
    }
    if (out.length === 0) throw new Error('no certificates in the PKCS#7 bundle');
    return out;
  } catch (e) {
    throw new StapleError('NOT_A_CERTIFICATE', `${url}: not a certificate or PKCS#7 bundle: ${(e as Error).message}`, {
      cause: e,
    });
  }
}
