import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, StapleError, isStapleError, toStapleError } from '../../src/core/errors.js';
import { VERSION } from '../../src/version.js';

describe('StapleError', () => {
  it('pins every stable code (renaming one is a breaking change)', () => {
    expect(Object.keys(ERROR_CODES).sort()).toEqual(
      [
        'BAD_ARGUMENTS',
        'CERT_EXPIRED',
        'CERT_NOT_YET_VALID',
        'CONFIG_INVALID',
        'CONFIG_YAML',
        'CRL_BAD_SIGNATURE',
        'CRL_CRITICAL_EXTENSION',
        'CRL_MALFORMED',
        'CRL_NOT_YET_VALID',
        'CRL_REVOKED',
        'CRL_SCOPE',
        'CRL_STALE',
        'CRL_WRONG_ISSUER',
        'FILE_UNREADABLE',
        'FILE_WRITE',
        'FLEET_NO_STAPLE',
        'FLEET_UNAVAILABLE',
        'HOOK_FAILED',
        'HTTP_BAD_URL',
        'HTTP_NETWORK',
        'HTTP_REDIRECT',
        'HTTP_STATUS',
        'HTTP_TIMEOUT',
        'HTTP_TOO_LARGE',
        'INTERNAL',
        'ISSUER_MISMATCH',
        'LOCK_TIMEOUT',
        'MUST_STAPLE_NO_RESPONDER',
        'NOT_A_CERTIFICATE',
        'NO_ISSUER',
        'NO_OCSP_URL',
        'OCSP_BAD_SIGNATURE',
        'OCSP_BAD_STATUS',
        'OCSP_CERTID_MISMATCH',
        'OCSP_CRITICAL_EXTENSION',
        'OCSP_INTERNAL_ERROR',
        'OCSP_MALFORMED',
        'OCSP_MALFORMED_REQUEST',
        'OCSP_NONCE_MISMATCH',
        'OCSP_NOT_YET_VALID',
        'OCSP_NO_NEXT_UPDATE',
        'OCSP_NO_RESPONSE_BYTES',
        'OCSP_RESPONDER_ID_MISMATCH',
        'OCSP_REVOKED',
        'OCSP_SIG_REQUIRED',
        'OCSP_STALE',
        'OCSP_TRY_LATER',
        'OCSP_UNAUTHORIZED',
        'OCSP_UNAUTHORIZED_SIGNER',
        'OCSP_UNKNOWN_CERT',
        'OCSP_UNKNOWN_RESPONSE_TYPE',
        'OCSP_UNSUPPORTED_ALGORITHM',
        'OCSP_UNSUPPORTED_HASH',
        'PUSH_FAILED',
        'STAPLE_MISSING',
        'STAPLE_PATH_REFUSED',
      ].sort(),
    );
  });

  it.each(Object.entries(ERROR_CODES))('%s has an operator message', (code, message) => {
    const e = new StapleError(code as keyof typeof ERROR_CODES);
    expect(e.code).toBe(code);
    expect(e.name).toBe('StapleError');
    expect(e.message).toBe(message);
    expect(message.length).toBeGreaterThan(15);
    expect(isStapleError(e, code as keyof typeof ERROR_CODES)).toBe(true);
  });

  it('keeps cause and details', () => {
    const cause = new Error('inner');
    const e = new StapleError('HTTP_STATUS', 'HTTP 500', { cause, details: { httpStatus: 500 } });
    expect(e.cause).toBe(cause);
    expect(e.details).toEqual({ httpStatus: 500 });
  });

  it('wraps foreign errors and keeps StapleErrors', () => {
    const s = new StapleError('OCSP_STALE');
    expect(toStapleError(s)).toBe(s);
    const w = toStapleError(new TypeError('boom'), 'OCSP_MALFORMED');
    expect(w.code).toBe('OCSP_MALFORMED');
    expect(w.message).toContain('boom');
  });

  it('VERSION matches package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(VERSION).toBe(pkg.version);
  });
});
