/**
 * Signature checks started ahead, on the signature thread
 * (pipeline/signature-thread.ts), which remembers their results
 * (core/signature.ts) so that the synchronous rules that follow — issuer
 * discovery, verifyResponse — find them done. Nothing is decided here: a
 * check of the same inputs gives the same answer either way; this only lets
 * the checks of several certificates run on every core while the main thread
 * reads and parses the next ones. Without a signature verifier with a thread
 * (pipeline/signature-verifier.ts) nothing is started ahead.
 */
import type { KeyObject } from 'node:crypto';
import { type Certificate, keyHashSha1, publicKeyOf } from '../core/certs.js';
import { decodeResponse, type DecodedResponse } from '../core/response.js';
import type { HttpTransport } from '../io/http.js';
import type { EngineMemos } from './context.js';
import { parseIncludedCert, type PassMemo } from './pass-memo.js';

/** One signature check: data, signature, algorithm and the key to check it with. */
export interface SignatureCheck {
  alg: Buffer;
  data: Buffer;
  signature: Buffer;
  signer: Certificate;
}

/**
 * Runs signature checks on the signature thread (see the module doc);
 * resolves when all are done. `checks` is only called when there is a thread.
 */
export async function checkAhead(memos: EngineMemos, checks: () => SignatureCheck[]): Promise<void> {
  const verifier = memos.signatures;
  if (!verifier?.threaded) return;
  const jobs: Array<Promise<void>> = [];
  for (const c of checks()) {
    let key: KeyObject;
    try {
      key = publicKeyOf(c.signer, verifier.memo);
    } catch {
      continue; // the synchronous rule reports the unusable key
    }
    // every key type: batched, even an RSA-2048 check (~20 µs) is cheaper there than here
    jobs.push(verifier.checkAhead(c.alg, c.data, c.signature, key));
  }
  if (jobs.length > 0) await Promise.all(jobs);
}

/** A certificate included in a response, parsed (once per pass with a {@link PassMemo}). */
export function parseIncluded(der: Buffer, pass: PassMemo | undefined): Certificate | undefined {
  return pass ? pass.included(der) : parseIncludedCert(der);
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
export function responseChecks(
  decoded: DecodedResponse,
  issuer: Certificate,
  pass: PassMemo | undefined,
): SignatureCheck[] {
  const basic = decoded.basic;
  if (!basic) return [];
  const rid = basic.responderId;
  const out: SignatureCheck[] = [];
  const candidates: Certificate[] = [issuer];
  for (const der of basic.certs) {
    const c = parseIncluded(der, pass);
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
export function checkingAhead(transport: HttpTransport, issuer: Certificate, memos: EngineMemos): HttpTransport {
  if (!memos.signatures?.threaded) return transport;
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
        if (decoded) await checkAhead(memos, () => responseChecks(decoded, issuer, memos.pass));
      }
      return res;
    },
    close: () => transport.close(),
  };
}
