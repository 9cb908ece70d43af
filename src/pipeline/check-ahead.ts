/**
 * Signature checks started ahead, on the signature thread
 * (pipeline/signature-thread.ts), which remembers their results
 * (core/signature.ts) so that the synchronous rules that follow — issuer
 * discovery, verifyResponse — find them done. Nothing is decided here: a
 * check of the same inputs gives the same answer either way; this only lets
 * the checks of several certificates run on every core while the main thread
 * reads and parses the next ones.
 */
import type { KeyObject } from 'node:crypto';
import { type Certificate, keyHashSha1, parseCertificate, publicKeyOf } from '../core/certs.js';
import { decodeResponse, type DecodedResponse } from '../core/response.js';
import { contentHash } from '../io/fingerprint.js';
import type { HttpTransport } from '../io/http.js';
import { checkOnThread } from './signature-thread.js';

/** One signature check: data, signature, algorithm and the key to check it with. */
export interface SignatureCheck {
  alg: Buffer;
  data: Buffer;
  signature: Buffer;
  signer: Certificate;
}

/** Runs signature checks on the signature thread (see the module doc); resolves when all are done. */
export async function checkAhead(checks: SignatureCheck[]): Promise<void> {
  if (checks.length === 0) return;
  const jobs: Array<Promise<void>> = [];
  for (const c of checks) {
    let key: KeyObject;
    try {
      key = publicKeyOf(c.signer);
    } catch {
      continue; // the synchronous rule reports the unusable key
    }
    // every key type: batched, even an RSA-2048 check (~20 µs) is cheaper there than here
    jobs.push(checkOnThread(c.alg, c.data, c.signature, key));
  }
  if (jobs.length > 0) await Promise.all(jobs);
}

/**
 * Certificates included in responses, parsed, by content: every staple of a
 * CA usually carries the same delegated responder certificate.
 */
const includedCerts = new Map<string, Certificate | null>();
const MAX_INCLUDED_CERTS = 256;

/** The last included certificate parsed: a run's responses usually all carry the same one. */
let lastIncluded: { der: Buffer; cert: Certificate | null } | undefined;

export function parseIncluded(der: Buffer): Certificate | undefined {
  if (lastIncluded !== undefined && lastIncluded.der.equals(der)) return lastIncluded.cert ?? undefined;
  const c = parseIncludedByHash(der);
  lastIncluded = { der: Buffer.from(der), cert: c ?? null };
  return c;
}

function parseIncludedByHash(der: Buffer): Certificate | undefined {
  const key = contentHash(der);
  let c = includedCerts.get(key);
  if (c === undefined) {
    try {
      c = parseCertificate(der);
    } catch {
      c = null; // verifyResponse ignores an unparseable included certificate too
    }
    if (includedCerts.size >= MAX_INCLUDED_CERTS) includedCerts.clear();
    includedCerts.set(key, c);
  }
  return c ?? undefined;
}

/** The checks issuer discovery will make: the leaf's signature under each candidate named as its issuer. */
export function leafChecks(leaf: Certificate, lists: Array<Certificate[] | undefined>): SignatureCheck[] {
  const out: SignatureCheck[] = [];
  const seen = new Set<Certificate>();
  for (const list of lists) {
    for (const c of list ?? []) {
      if (c === leaf || seen.has(c) || !leaf.issuerDer.equals(c.subjectDer)) continue;
      seen.add(c);
      out.push({ alg: leaf.signatureAlgorithmDer, data: leaf.tbsDer, signature: leaf.signature, signer: c });
    }
  }
  return out;
}

/**
 * The checks {@link verifyResponse} will make on a response: its signature
 * under the issuer or an included certificate named by the responder ID, and
 * an included signer's certificate under the issuer (RFC 6960 §4.2.2.2).
 */
export function responseChecks(decoded: DecodedResponse, issuer: Certificate): SignatureCheck[] {
  const basic = decoded.basic;
  if (!basic) return [];
  const rid = basic.responderId;
  const out: SignatureCheck[] = [];
  const candidates: Certificate[] = [issuer];
  for (const der of basic.certs) {
    const c = parseIncluded(der);
    if (c) candidates.push(c);
  }
  for (const c of candidates) {
    const named = 'byName' in rid ? c.subjectDer.equals(rid.byName) : keyHashSha1(c).equals(rid.byKey);
    if (!named) continue;
    out.push({ alg: basic.signatureAlgorithmDer, data: basic.tbsDer, signature: basic.signature, signer: c });
    if (c !== issuer && c.issuerDer.equals(issuer.subjectDer)) {
      out.push({ alg: c.signatureAlgorithmDer, data: c.tbsDer, signature: c.signature, signer: issuer });
    }
  }
  return out;
}

/**
 * The transport, with the signature checks of each answer started in the
 * check thread as soon as it arrives; fetchResponse's verification then finds
 * them done. The answer itself is passed on untouched.
 */
export function checkingAhead(transport: HttpTransport, issuer: Certificate): HttpTransport {
  return {
    async send(req) {
      const res = await transport.send(req);
      if (res.status === 200) {
        let decoded: DecodedResponse | undefined;
        try {
          decoded = decodeResponse(res.body);
        } catch {
          // fetchResponse reports it
        }
        if (decoded) await checkAhead(responseChecks(decoded, issuer));
      }
      return res;
    },
    close: () => transport.close(),
  };
}
