/**
 * One error class for the whole library, with stable codes.
 *
 * Every failure that an operator can see carries a `code` from {@link ErrorCode}
 * (stable across releases, safe to match in scripts and alerts) and a message
 * that says what went wrong and what to do about it. The codes follow the
 * undici/yaml habit of a string-literal union instead of subclasses.
 */

/** Every error code staplekeeper can report, with the advice shown to the operator. */
export const ERROR_CODES = {
  // OCSP responseStatus values other than successful (RFC 6960 §4.2.1)
  OCSP_MALFORMED_REQUEST:
    'the responder says our request was malformed (status 1); check the issuer certificate and hash algorithm',
  OCSP_INTERNAL_ERROR: 'the responder reported an internal error (status 2); retry later',
  OCSP_TRY_LATER: 'the responder asked us to try later (status 3); the current staple is kept',
  OCSP_SIG_REQUIRED: 'the responder requires signed requests (status 5); staplekeeper does not sign requests',
  OCSP_UNAUTHORIZED: 'the responder is not authoritative for this certificate (status 6); check the responder URL',
  OCSP_BAD_STATUS: 'the responder returned an undefined response status',
  // structure
  OCSP_MALFORMED: 'the response is not a well-formed OCSP response',
  OCSP_NO_RESPONSE_BYTES: 'the response says successful but carries no response body',
  OCSP_UNKNOWN_RESPONSE_TYPE: 'the response is not a basic OCSP response (id-pkix-ocsp-basic)',
  // content
  OCSP_CERTID_MISMATCH: 'the response does not contain exactly one answer for this certificate',
  OCSP_UNSUPPORTED_HASH: 'the response uses a CertID hash algorithm staplekeeper does not support',
  OCSP_BAD_SIGNATURE: 'the response signature does not verify',
  OCSP_UNSUPPORTED_ALGORITHM: 'the response is signed with an unsupported algorithm',
  OCSP_UNAUTHORIZED_SIGNER: 'the response is signed by a certificate that is not authorised to answer for this issuer',
  OCSP_RESPONDER_ID_MISMATCH: 'the responder ID in the response does not match its signer',
  OCSP_NO_NEXT_UPDATE: 'the response has no nextUpdate, so it cannot be used as a staple (RFC 5019 §4)',
  OCSP_STALE: 'the response is outside its validity window (nextUpdate passed)',
  OCSP_NOT_YET_VALID: 'the response thisUpdate lies in the future; check this machine clock',
  OCSP_CRITICAL_EXTENSION: 'the response carries an unknown critical extension',
  OCSP_NONCE_MISMATCH: 'the response nonce does not match the one we sent',
  OCSP_REVOKED: 'the certificate is REVOKED; replace it now',
  OCSP_UNKNOWN_CERT: 'the responder does not know this certificate (status unknown)',
  // transport
  HTTP_STATUS: 'the responder answered with an HTTP error',
  HTTP_TIMEOUT: 'the responder did not answer in time',
  HTTP_TOO_LARGE: 'the responder sent a body larger than the size cap',
  HTTP_NETWORK: 'could not reach the responder',
  HTTP_REDIRECT: 'the responder redirected too often or to a forbidden location',
  HTTP_BAD_URL: 'the responder URL is not an http: or https: URL',
  NO_OCSP_URL:
    'the certificate names no OCSP responder; set ocsp_responder_uri to its responder, or ocsp_responder_uri: disabled to turn OCSP off for it',
  MUST_STAPLE_NO_RESPONDER:
    'the certificate is must-staple but has no usable OCSP responder; reissue it without must-staple before the last staple expires',
  // certificate revocation lists (RFC 5280 §5)
  CRL_MALFORMED: 'the CRL is not a well-formed X.509 certificate revocation list',
  CRL_BAD_SIGNATURE: 'the CRL signature does not verify under its issuer',
  CRL_WRONG_ISSUER: 'the CRL was not issued by the certificate issuer or an authorised CRL signer',
  CRL_STALE: 'the CRL is past its nextUpdate; the CA has not published a newer one here',
  CRL_NOT_YET_VALID: 'the CRL thisUpdate lies in the future; check this machine clock',
  CRL_CRITICAL_EXTENSION: 'the CRL carries a critical extension staplekeeper does not understand',
  CRL_SCOPE: 'the CRL does not cover this certificate (issuing distribution point scope)',
  CRL_REVOKED: 'the certificate is listed as REVOKED on its CRL; replace it now',
  // certificates and files
  NO_ISSUER: 'the issuer certificate could not be found; give a chain file or a CA directory',
  ISSUER_MISMATCH: 'the given issuer did not sign this certificate',
  CERT_EXPIRED: 'the certificate has expired; renew the certificate first',
  CERT_NOT_YET_VALID: 'the certificate is not valid yet',
  FILE_UNREADABLE: 'the file cannot be read',
  FILE_WRITE: 'the staple could not be written; the old staple was kept',
  NOT_A_CERTIFICATE: 'the file does not contain a certificate',
  STAPLE_MISSING: 'there is no staple on disk',
  STAPLE_PATH_REFUSED:
    'the staple path is not a regular file, or holds a certificate, a key or another file that is not an OCSP response; nothing was written',
  // configuration, process
  CONFIG_YAML: 'the configuration is not valid YAML',
  CONFIG_INVALID: 'the configuration is invalid',
  BAD_ARGUMENTS: 'invalid command-line arguments',
  LOCK_TIMEOUT: 'another run holds the lock on the staple folder',
  HOOK_FAILED: 'a hook command failed',
  PUSH_FAILED: 'pushing the staple to the server failed',
  // fleet mode (docs/fleet.md)
  FLEET_UNAVAILABLE: 'the fleet store (Redis) cannot be reached; local staples are kept',
  FLEET_NO_STAPLE: 'fleet.fetch is false and the fleet holds no usable staple for this certificate yet',
  INTERNAL: 'internal error; please report it',
} as const;

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Options for {@link StapleError}. */
export interface StapleErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
  /** Extra structured facts for logs and `--json` output. */
  details?: Record<string, unknown>;
}

/** The mark every {@link StapleError} carries, the same in every copy of staplekeeper. */
const BRAND = Symbol.for('staplekeeper.error');

/**
 * The one error class of staplekeeper. `code` is stable; `message` is written
 * for an operator and already says what to do.
 *
 * `instanceof StapleError` is true for a StapleError of any copy of the
 * package (two versions installed side by side, a bundle and `node_modules`):
 * it checks a `Symbol.for` mark rather than the prototype chain, as undici's
 * errors do.
 */
export class StapleError extends Error {
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== StapleError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }

  override readonly name = 'StapleError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, options: StapleErrorOptions = {}) {
    super(message ?? ERROR_CODES[code], options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }
}
Object.defineProperty(StapleError.prototype, BRAND, { value: true });

/** True when `e` is a {@link StapleError} (optionally with the given code). */
export function isStapleError(e: unknown, code?: ErrorCode): e is StapleError {
  return e instanceof StapleError && (code === undefined || e.code === code);
}

/** Wraps anything thrown into a StapleError, keeping StapleErrors as they are. */
export function toStapleError(e: unknown, fallback: ErrorCode = 'INTERNAL'): StapleError {
  if (e instanceof StapleError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new StapleError(fallback, `${ERROR_CODES[fallback]}: ${msg}`, { cause: e });
}
