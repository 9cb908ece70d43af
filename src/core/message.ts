/**
 * One message style for every command (`run`, `fetch`, `daemon`, `check`):
 *
 *     [id] error CODE: why (certificate FILE); what to do
 *
 * - what failed: the code and the certificate (its id and file);
 * - why: the error's message, with every URL shortened to `scheme://host/`
 *   (the full URL is in `--verbose` notes and in `--json`), the same URL or
 *   clause never twice;
 * - what to do: advice that names a configuration key for the commands that
 *   read a configuration (`run`, `daemon`, `check`) and a flag for `fetch`,
 *   so a message never suggests a flag the command does not have.
 *
 * Pure: no I/O.
 */
import type { ErrorCode } from './errors.js';

/** A command whose messages follow this style. */
export type CommandName = 'run' | 'fetch' | 'daemon' | 'check';

/** The flags of each command (the `--help` of each lists them; tests hold messages to these). */
export const COMMAND_FLAGS: Readonly<Record<CommandName, readonly string[]>> = {
  fetch: [
    '--cert',
    '--issuer',
    '--chain',
    '--ca-dir',
    '--url',
    '--out',
    '--method',
    '--hash',
    '--nonce',
    '--backup',
    '--timeout',
    '--json',
    '--verbose',
    '--help',
  ],
  run: ['--config', '--dry-run', '--force', '--json', '--quiet', '--verbose', '--only', '--help'],
  check: ['--config', '--warn', '--crit', '--json', '--verbose', '--help'],
  daemon: ['--config', '--listen', '--log-format', '--verbose', '--help'],
};

/** What to do, per error code: `config` for run/daemon/check (configuration keys), `fetch` for fetch (flags). */
interface Advice {
  config?: string;
  fetch?: string;
}

const CONFIG_URL = 'set ocsp_responder_uri for it (or a responders entry for its CA)';
const CONFIG_ISSUER = 'set chain to a file that holds the issuer, or list a CA directory in ca_dirs';
const FETCH_ISSUER = 'give the issuer with --issuer, --chain or --ca-dir';

/** Advice per code. Codes without an entry need no advice beyond their message. */
export const ADVICE: Readonly<Partial<Record<ErrorCode, Advice>>> = {
  OCSP_MALFORMED_REQUEST: {
    config: `check that chain holds the right issuer`,
    fetch: 'check --issuer; try --hash sha256',
  },
  OCSP_INTERNAL_ERROR: { config: 'nothing to change: retried with backoff', fetch: 'try again later' },
  OCSP_TRY_LATER: { config: 'nothing to change: retried with backoff', fetch: 'try again later' },
  OCSP_SIG_REQUIRED: {
    config: `${CONFIG_URL} to a responder that answers unsigned requests, or ocsp_responder_uri: disabled`,
    fetch: 'give --url of a responder that answers unsigned requests',
  },
  OCSP_UNAUTHORIZED: {
    config: `check ocsp_responder_uri and responders: this responder does not serve the certificate's CA`,
    fetch: "check --url: this responder does not serve the certificate's CA",
  },
  OCSP_CERTID_MISMATCH: {
    config: 'check that chain holds the right issuer, and ocsp_responder_uri',
    fetch: 'check --issuer and --url',
  },
  OCSP_UNSUPPORTED_HASH: { fetch: 'try --hash sha1' },
  OCSP_UNAUTHORIZED_SIGNER: {
    config: 'check ocsp_responder_uri and responders: the answer came from a responder not authorised for this CA',
    fetch: 'check --url and --issuer',
  },
  OCSP_NOT_YET_VALID: { config: "check this machine's clock (NTP)", fetch: "check this machine's clock (NTP)" },
  OCSP_STALE: { config: "check this machine's clock; report it to the CA", fetch: "check this machine's clock" },
  OCSP_NONCE_MISMATCH: { fetch: 'try without --nonce' },
  OCSP_REVOKED: { config: 'replace the certificate now', fetch: 'replace the certificate now' },
  CRL_REVOKED: { config: 'replace the certificate now', fetch: 'replace the certificate now' },
  MUST_STAPLE_NO_RESPONDER: {
    config: 'set ocsp_responder_uri for it, or reissue the certificate without must-staple',
    fetch: 'give the responder with --url, or reissue the certificate without must-staple',
  },
  OCSP_UNKNOWN_CERT: {
    config: 'check that chain holds the right issuer and ocsp_responder_uri the right responder',
    fetch: 'check --issuer and --url',
  },
  HTTP_STATUS: { config: 'check ocsp_responder_uri and responders', fetch: 'check --url' },
  HTTP_TIMEOUT: { config: 'http.timeout raises the limit', fetch: '--timeout raises the limit' },
  HTTP_TOO_LARGE: { config: 'check ocsp_responder_uri and responders', fetch: 'check --url' },
  HTTP_NETWORK: {
    config: 'check the responder is reachable from here (http.proxy for a proxy); retried with backoff',
    fetch: 'check the responder is reachable from here (HTTPS_PROXY for a proxy)',
  },
  HTTP_REDIRECT: { config: 'set ocsp_responder_uri to the final URL', fetch: 'give the final URL with --url' },
  HTTP_BAD_URL: { config: 'use an http:// URL in ocsp_responder_uri or responders', fetch: 'give an http:// --url' },
  NO_OCSP_URL: {
    config: `${CONFIG_URL}, or ocsp_responder_uri: disabled to stop asking`,
    fetch: 'give the responder with --url',
  },
  NO_ISSUER: { config: CONFIG_ISSUER, fetch: FETCH_ISSUER },
  ISSUER_MISMATCH: { config: 'check chain: it holds another CA', fetch: 'check --issuer: it is another CA' },
  CERT_EXPIRED: { config: 'renew the certificate', fetch: 'renew the certificate' },
  CERT_NOT_YET_VALID: { config: "check this machine's clock", fetch: "check this machine's clock" },
  FILE_UNREADABLE: {
    config:
      'check the path and its permissions (relative paths resolve against the working directory; cron and systemd start in /)',
    fetch: 'check the path and its permissions (relative paths resolve against the working directory)',
  },
  FILE_WRITE: {
    config: 'check that ocsp_folder exists and is writable by this user',
    fetch: 'check that the folder of --out exists and is writable by this user',
  },
  NOT_A_CERTIFICATE: { config: 'point cert at a PEM or DER certificate', fetch: 'give a certificate to --cert' },
  LOCK_TIMEOUT: { config: 'wait for the other run, or raise lock_timeout' },
  HOOK_FAILED: { config: 'check the command under hooks' },
  INTERNAL: { config: 'please report it with --verbose output', fetch: 'please report it with --verbose output' },
};

/** The advice for `code` in `command`, if any. */
export function adviceFor(code: ErrorCode, command: CommandName): string | undefined {
  const a = ADVICE[code];
  if (!a) return undefined;
  return command === 'fetch' ? a.fetch : a.config;
}

/** `scheme://host/` of a URL; text that is not a URL is returned as is. */
export function shortUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return url;
    return `${u.protocol}//${u.host}/`;
  } catch {
    return url;
  }
}

const URL_RE = /\bhttps?:\/\/[^\s"'<>()[\]]+/g;

/**
 * The "why" part of a message: URLs shortened to `scheme://host/`, a URL
 * repeated right after itself (`URL: URL: …`) said once, and no clause
 * (`; `-separated) twice.
 */
export function tidyMessage(text: string): string {
  let s = text.replace(URL_RE, (m) => {
    const trail = /[.,:;]+$/.exec(m)?.[0] ?? '';
    return shortUrl(m.slice(0, m.length - trail.length)) + trail;
  });
  // "fetching http://h/: http://h/: ECONNREFUSED" → "fetching http://h/: ECONNREFUSED"
  for (;;) {
    const next = s.replace(/(https?:\/\/[^\s/]+\/)(:? +(?:fetching |GET |POST )?\1)+/g, '$1');
    if (next === s) break;
    s = next;
  }
  const seen = new Set<string>();
  const clauses: string[] = [];
  for (const c of s.split('; ')) {
    const key = c.trim().toLowerCase();
    if (key === '' || seen.has(key)) continue;
    seen.add(key);
    clauses.push(c);
  }
  return clauses.join('; ');
}

/** A clause of a message that is generic advice. */
const ADVICE_CLAUSE = /^(check|replace|renew|reissue|give|set|retry|try|disable|use|wait|please) /i;

/** What {@link failureLine} needs. */
export interface FailureFacts {
  code: ErrorCode;
  message: string;
  command: CommandName;
  /** The certificate's id (configuration key, or the --cert file for fetch). */
  id?: string;
  /** The certificate's file, when it is not the id. */
  file?: string;
  /** More facts after the advice (e.g. `retry at …`), already worded. */
  after?: string[];
}

/**
 * One line: `[id] error CODE: why (certificate FILE); what to do; after…`.
 * The advice is left out when the message already says it.
 */
export function failureLine(f: FailureFacts): string {
  const advice = adviceFor(f.code, f.command);
  let why = tidyMessage(f.message);
  if (advice) {
    // the command's own advice replaces the generic one the message may carry ("; check the responder URL")
    const kept = why.split('; ').filter((c, i) => i === 0 || !ADVICE_CLAUSE.test(c));
    why = kept.join('; ');
  }
  const parts = [why];
  const file = f.file && f.file !== f.id && !why.includes(f.file) ? ` (certificate ${f.file})` : '';
  if (advice && !why.toLowerCase().includes(advice.toLowerCase())) parts.push(advice);
  for (const a of f.after ?? []) if (a && !parts.includes(a)) parts.push(a);
  const head = `${f.id !== undefined ? `[${f.id}] ` : ''}error ${f.code}: `;
  return `${head}${parts[0]}${file}${parts.length > 1 ? `; ${parts.slice(1).join('; ')}` : ''}`;
}
