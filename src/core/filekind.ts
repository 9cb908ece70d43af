/**
 * What an existing file at a staple path holds, so that a write never
 * destroys an input (docs/SECURITY.md, "Only staples are replaced"):
 * a certificate or a key (PEM or DER) is never overwritten, and any other
 * non-empty file that is not an OCSP response only when the operator says
 * so (`overwrite_non_ocsp`, `fetch --overwrite`).
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { parseCertificate } from './certs.js';
import { decodeResponse } from './response.js';

/** The kinds of {@link classifyFile}. */
export type FileKind = 'empty' | 'ocsp' | 'certificate' | 'key' | 'other';

/** DER of the OID id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1), tag and length included. */
const OCSP_BASIC_OID = Buffer.from('06092b0601050507300101', 'hex');

const PEM_LABEL = /-----BEGIN ([A-Z0-9 ]{1,64})-----/g;

/** Classifies file contents: a staple (DER or PEM `OCSP RESPONSE`), a certificate, a key, or something else. */
export function classifyFile(data: Buffer): FileKind {
  if (data.length === 0 || /^\s*$/.test(data.toString('latin1'))) return 'empty';
  const text = data.toString('latin1');
  if (text.includes('-----BEGIN ')) {
    let kind: FileKind = 'other';
    for (const m of text.matchAll(PEM_LABEL)) {
      const label = m[1] as string;
      // an input anywhere in the file wins: a bundle with a key and a staple is still a key file
      if (label.endsWith('CERTIFICATE')) return 'certificate';
      if (label.endsWith('KEY') || label.endsWith('PARAMETERS')) return 'key';
      if (label === 'OCSP RESPONSE') kind = 'ocsp';
    }
    return kind;
  }
  try {
    decodeResponse(data);
    return 'ocsp';
  } catch {
    // not a response: maybe an input
  }
  try {
    parseCertificate(data);
    return 'certificate';
  } catch {
    // not a certificate
  }
  if (isDerKey(data)) return 'key';
  // a damaged staple (cut short, a byte flipped) still names the basic response type: it is one of ours
  if (data[0] === 0x30 && data.includes(OCSP_BASIC_OID)) return 'ocsp';
  return 'other';
}

function isDerKey(data: Buffer): boolean {
  if (data[0] !== 0x30) return false;
  for (const type of ['pkcs8', 'pkcs1', 'sec1'] as const) {
    try {
      createPrivateKey({ key: data, format: 'der', type });
      return true;
    } catch {
      // try the next form
    }
  }
  for (const type of ['spki', 'pkcs1'] as const) {
    try {
      createPublicKey({ key: data, format: 'der', type });
      return true;
    } catch {
      // try the next form
    }
  }
  return false;
}
