/**
 * Triage: how revocation of one certificate is published, and so what
 * staplekeeper can do for it (docs/migrating.md "OCSP ends").
 *
 * - `ocsp`: a responder is known (the certificate's AIA OCSP URL, or one
 *   configured for it): staplekeeper fetches and keeps its staple;
 * - `crl`: no responder, but a CRL distribution point: there is nothing to
 *   staple; revocation can be watched on the CRL (engine/crl-watch.ts);
 * - `none`: neither (short-lived certificates, RFC 9608 noRevAvail, private
 *   CAs that publish nothing).
 *
 * Flags: `mustStaple` (TLS Feature status_request, RFC 7633: Firefox refuses
 * the site without a staple) and `shortLived` (CA/Browser Forum short-lived
 * subscriber certificate: validity of at most 10 days, 7 for certificates
 * issued from 2026-03-15).
 *
 * Pure: no I/O, no clock.
 */
import type { Certificate } from './certs.js';

/** How revocation of a certificate is published. */
export type RevocationMechanism = 'ocsp' | 'crl' | 'none';

/** The triage of one certificate. */
export interface Triage {
  mechanism: RevocationMechanism;
  /** TLS Feature extension with status_request (RFC 7633). */
  mustStaple: boolean;
  /** A short-lived certificate (see the module comment). */
  shortLived: boolean;
  /** RFC 9608 noRevAvail: the CA says it publishes no revocation information. */
  noRevAvail: boolean;
  /** The responder URLs that will be asked, after configuration overrides (empty unless `ocsp`). */
  ocspUrls: string[];
  /** The certificate's http(s) CRL distribution points. */
  crlUrls: string[];
}

/** The certificate facts triage needs (a {@link Certificate} has them all). */
export type TriageFacts = Pick<
  Certificate,
  'notBefore' | 'notAfter' | 'mustStaple' | 'noRevAvail' | 'crlUrls' | 'crlDistributionPoints'
>;

const DAY_MS = 86_400_000;
/** From this date a short-lived certificate has at most 7 days (CA/B BR §1.6.1 "Short-lived Subscriber Certificate"). */
const SHORT_LIVED_7_DAYS_FROM = Date.UTC(2026, 2, 15);

/** True for a short-lived certificate: validity of at most 10 days (7 when issued from 2026-03-15). */
export function isShortLived(notBefore: Date, notAfter: Date): boolean {
  const limit = notBefore.getTime() >= SHORT_LIVED_7_DAYS_FROM ? 7 * DAY_MS : 10 * DAY_MS;
  // the BR count the validity period inclusively: notAfter - notBefore + 1 s
  return notAfter.getTime() - notBefore.getTime() + 1000 <= limit;
}

/**
 * The CRL URLs staplekeeper can watch: http(s) URIs of distribution points
 * that cover every reason and name no other CRL issuer.
 */
export function watchableCrlUrls(cert: Pick<Certificate, 'crlDistributionPoints'>): string[] {
  const out: string[] = [];
  for (const dp of cert.crlDistributionPoints) {
    if (dp.someReasons || dp.indirect) continue;
    for (const u of dp.urls) if (/^https?:\/\//i.test(u) && !out.includes(u)) out.push(u);
  }
  return out;
}

/**
 * Triages a certificate. `ocspUrls` are the responder URLs that apply to it
 * after configuration (the AIA, or an override; empty when disabled or none).
 */
export function triage(cert: TriageFacts, ocspUrls: readonly string[]): Triage {
  const crlUrls = [...cert.crlUrls];
  const mechanism: RevocationMechanism = ocspUrls.length > 0 ? 'ocsp' : crlUrls.length > 0 ? 'crl' : 'none';
  return {
    mechanism,
    mustStaple: cert.mustStaple,
    shortLived: isShortLived(cert.notBefore, cert.notAfter),
    noRevAvail: cert.noRevAvail,
    ocspUrls: [...ocspUrls],
    crlUrls,
  };
}

/** Must-staple without a responder: the server cannot staple, so Firefox refuses the site once the last staple expires. */
export function mustStapleStranded(t: Triage): boolean {
  return t.mustStaple && t.mechanism !== 'ocsp';
}

/**
 * The one notice for a certificate with nothing to staple, e.g. "no OCSP
 * responder: nothing to staple; revocation is published by CRL at http://…".
 */
export function noOcspNotice(t: Triage): string {
  if (t.mechanism === 'crl') {
    return `no OCSP responder: nothing to staple; revocation is published by CRL at ${t.crlUrls.join(', ')}`;
  }
  const why = t.noRevAvail
    ? 'the CA publishes no revocation information for it (noRevAvail)'
    : t.shortLived
      ? 'a short-lived certificate: it is not revoked, it expires'
      : 'the certificate names neither an OCSP responder nor a CRL';
  return `no OCSP responder: nothing to staple; ${why}`;
}

/** What to do about a must-staple certificate without a usable responder. */
export function mustStapleAdvice(t: Triage, lastStapleUntil?: Date): string {
  const until = lastStapleUntil ? ` before the last staple expires at ${lastStapleUntil.toISOString()}` : ' now';
  const where = t.crlUrls.length > 0 ? ` (its revocation is published by CRL at ${t.crlUrls.join(', ')})` : '';
  return `the certificate is must-staple (TLS Feature status_request) but names no OCSP responder${where}: reissue it without must-staple${until}; Firefox refuses the site once no valid staple is served`;
}
