/**
 * Output names: the placeholders of `domains.*.ocsp` and
 * `scan_keys[].ocsp_mask`, their expansion, and the message for an unknown one.
 */
import path from 'node:path';
import { closestMatch } from './suggest.js';

/**
 * The placeholders of output names (`domains.*.ocsp` and `scan_keys[].ocsp_mask`),
 * so that each server's naming convention is one line of configuration:
 * HAProxy loads `<crt file>.ocsp` beside the certificate, so `ocsp: "{cert}.ocsp"`;
 * nginx and Exim read any name. A name that is absolute after substitution is
 * used as is; a relative one lies under `ocsp_folder` (and, for a scan, the
 * certificate's subfolder), exactly as a name without placeholders does.
 */
export const OUTPUT_PLACEHOLDERS = {
  '{cert}': 'the certificate path',
  '{cert_dir}': "the certificate's folder",
  '{cert_name}': "the certificate's file name",
  '{cert_stem}': "the certificate's file name without its extension",
  '{domain}': 'the domain identifier (for a scan: the {domain} of cert_mask)',
} as const;

/** Placeholders whose value differs between certificates, so each certificate gets its own staple. */
export const DISTINCT_PLACEHOLDERS = ['{domain}', '{cert}', '{cert_name}', '{cert_stem}'] as const;

/** `{word}` tokens of a template that are not known placeholders. */
function unknownPlaceholders(template: string): string[] {
  return [...template.matchAll(/\{[A-Za-z_][A-Za-z0-9_]*\}/g)]
    .map((m) => m[0])
    .filter((p) => !(p in OUTPUT_PLACEHOLDERS));
}

/** True when `template` uses any placeholder other than ocspbot's `{domain}`. */
export function hasCertPlaceholder(template: string): boolean {
  return ['{cert}', '{cert_dir}', '{cert_name}', '{cert_stem}'].some((p) => template.includes(p));
}

/**
 * Fills the placeholders of an output name. `certPath` should be absolute
 * (as in a loaded configuration); the result is not resolved here.
 */
export function expandOutputTemplate(template: string, vars: { certPath: string; domain: string }): string {
  if (!template.includes('{')) return template;
  const name = path.basename(vars.certPath);
  const values: Record<keyof typeof OUTPUT_PLACEHOLDERS, string> = {
    '{cert}': vars.certPath,
    '{cert_dir}': path.dirname(vars.certPath),
    '{cert_name}': name,
    '{cert_stem}': path.parse(name).name,
    '{domain}': vars.domain,
  };
  // one pass, so that a value containing "{domain}" (a file name can) is never expanded again
  return template.replace(/\{(?:cert|cert_dir|cert_name|cert_stem|domain)\}/g, (p) => values[p as keyof typeof values]);
}

/** The problem with an output template, if any (unknown placeholders, with a suggestion). */
export function templateProblem(template: string): string | undefined {
  if (!template.includes('{')) return undefined;
  const unknown = unknownPlaceholders(template);
  if (unknown.length === 0) return undefined;
  const first = unknown[0] as string;
  const suggestion = closestMatch(first, Object.keys(OUTPUT_PLACEHOLDERS));
  return (
    `unknown placeholder ${first}` +
    (suggestion === undefined ? '' : `; did you mean ${suggestion}?`) +
    ` (placeholders: ${Object.keys(OUTPUT_PLACEHOLDERS).join(' ')})`
  );
}
