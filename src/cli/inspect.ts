/**
 * `staplekeeper inspect`: a stored staple in readable form. With --cert (and
 * the issuer, given or found), it also says whether the staple is valid for
 * that certificate now and how long it has left.
 */
import { resolve } from 'node:path';
import { formatName, parseCertificate } from '../core/certs.js';
import { StapleError, toStapleError } from '../core/errors.js';
import { RESPONSE_STATUS_NAMES, REVOCATION_REASONS, decodeResponse } from '../core/response.js';
import { assertGood, verifyResponse } from '../core/verify.js';
import { hashNameForOid, nodeVerifyParams } from '../core/signature.js';
import { readInputFile } from '../io/files.js';
import { IssuerResolver } from '../pipeline/issuer.js';
import { loadTargetCert, stapleBytes } from '../pipeline/judge.js';
import { escapeControls } from '../core/text.js';
import type { CliIo } from './io.js';
import { EXIT, reportError } from './common.js';

interface InspectOpts {
  cert?: string;
  issuer?: string;
  chain?: string;
  at?: string;
  json: boolean;
  verbose: boolean;
}

const EXTENSION_NAMES: Record<string, string> = {
  '1.3.6.1.5.5.7.48.1.2': 'nonce',
  '1.3.6.1.5.5.7.48.1.3': 'crlReferences',
  '1.3.6.1.5.5.7.48.1.6': 'archiveCutoff',
  '1.3.6.1.5.5.7.48.1.9': 'extendedRevoke',
  '1.3.6.1.4.1.11129.2.4.5': 'ctSignedCertificateTimestamps',
};

/** Formats a duration for people: `2d 3h`, `45m`. */
export function formatDuration(ms: number): string {
  const neg = ms < 0;
  let s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  const parts = d ? [`${d}d`, `${h}h`] : h ? [`${h}h`, `${m}m`] : [`${m}m`];
  return `${neg ? '-' : ''}${parts.join(' ')}`;
}

/** Runs `inspect`; returns the exit code (1 when the staple is not valid for --cert). */
export async function inspectCommand(file: string, opts: InspectOpts, io: CliIo): Promise<number> {
  try {
    const path = resolve(io.cwd, file);
    const der = stapleBytes(await readInputFile(path, 'staple'), path);
    const decoded = decodeResponse(der);
    const now = opts.at ? new Date(opts.at) : new Date();
    if (Number.isNaN(now.getTime())) throw new StapleError('BAD_ARGUMENTS', `--at: "${opts.at}" is not a date`);
    const basic = decoded.basic;
    const info: Record<string, unknown> = {
      file: path,
      responseStatus: RESPONSE_STATUS_NAMES[decoded.responseStatus] ?? `undefined (${decoded.responseStatus})`,
    };
    if (basic) {
      info.responderId =
        'byName' in basic.responderId
          ? { byName: formatName(basic.responderId.byName) }
          : { byKey: basic.responderId.byKey.toString('hex') };
      info.producedAt = basic.producedAt.toISOString();
      info.signatureAlgorithm = signatureName(basic.signatureAlgorithmDer, basic.signatureAlgorithm);
      info.signers = basic.certs.map((c) => {
        try {
          const p = parseCertificate(c);
          return { subject: p.subject, issuer: p.issuer, notAfter: p.notAfter.toISOString() };
        } catch {
          return { subject: '(unparseable certificate)' };
        }
      });
      info.extensions = basic.extensions.map((e) => ({
        oid: e.oid,
        name: EXTENSION_NAMES[e.oid],
        critical: e.critical,
      }));
      info.responses = basic.singles.map((s) => ({
        certId: {
          hashAlgorithm: hashNameForOid(s.hashAlgorithm) ?? s.hashAlgorithm,
          issuerNameHash: s.issuerNameHash.toString('hex'),
          issuerKeyHash: s.issuerKeyHash.toString('hex'),
          serial: s.serial.toString('hex').toUpperCase(),
        },
        status: s.status,
        ...(s.revocationTime ? { revocationTime: s.revocationTime.toISOString() } : {}),
        ...(s.revocationReason !== undefined
          ? { revocationReason: REVOCATION_REASONS[s.revocationReason] ?? s.revocationReason }
          : {}),
        thisUpdate: s.thisUpdate.toISOString(),
        nextUpdate: s.nextUpdate?.toISOString() ?? null,
        extensions: s.extensions.map((e) => ({ oid: e.oid, name: EXTENSION_NAMES[e.oid], critical: e.critical })),
      }));
    }
    let exit: number = EXIT.OK;
    if (opts.cert) {
      const certPath = resolve(io.cwd, opts.cert);
      const target = { id: certPath, certPath, staplePath: path } as Parameters<typeof loadTargetCert>[0];
      if (opts.issuer) target.issuerPath = resolve(io.cwd, opts.issuer);
      if (opts.chain) target.chainPath = resolve(io.cwd, opts.chain);
      const loaded = await loadTargetCert(target, new IssuerResolver());
      try {
        const v = verifyResponse(decoded, { cert: loaded.cert, issuer: loaded.issuer, now });
        assertGood(v, `the certificate "${loaded.cert.subject}"`);
        info.validity = {
          valid: true,
          certificate: loaded.cert.subject,
          signer: v.responder,
          delegated: v.delegated,
          timeLeft: formatDuration(v.usableUntil.getTime() - now.getTime()),
          usableUntil: v.usableUntil.toISOString(),
          warnings: v.warnings,
        };
      } catch (e) {
        const err = toStapleError(e);
        info.validity = { valid: false, certificate: loaded.cert.subject, code: err.code, error: err.message };
        exit = EXIT.FAILURE;
      }
    }
    io.stdout.write(opts.json ? `${JSON.stringify(info, null, 2)}\n` : render(info));
    return exit;
  } catch (e) {
    reportError(io, e, opts.verbose);
    return EXIT.FAILURE;
  }
}

function signatureName(der: Buffer, oid: string): string {
  try {
    return nodeVerifyParams(der).name;
  } catch {
    return `${oid} (unsupported)`;
  }
}

function render(info: Record<string, unknown>): string {
  const lines: string[] = [];
  lines.push(`File:               ${info.file as string}`);
  lines.push(`Response status:    ${info.responseStatus as string}`);
  if (info.producedAt) {
    const rid = info.responderId as { byName?: string; byKey?: string };
    lines.push(`Responder ID:       ${rid.byName ? `name ${rid.byName}` : `key ${rid.byKey}`}`);
    lines.push(`Produced at:        ${info.producedAt as string}`);
    lines.push(`Signature:          ${info.signatureAlgorithm as string}`);
    for (const s of info.signers as Array<{ subject: string; issuer?: string; notAfter?: string }>) {
      lines.push(
        `Signer certificate: ${s.subject}${s.issuer ? ` (issued by ${s.issuer}, expires ${s.notAfter})` : ''}`,
      );
    }
    for (const e of info.extensions as Array<{ oid: string; name?: string; critical: boolean }>) {
      lines.push(`Extension:          ${e.name ?? e.oid}${e.critical ? ' (critical)' : ''}`);
    }
    for (const r of info.responses as Array<Record<string, unknown>>) {
      const id = r.certId as Record<string, string>;
      lines.push(`Certificate serial: ${id.serial}`);
      lines.push(`  CertID:           hash ${id.hashAlgorithm}, name ${id.issuerNameHash}, key ${id.issuerKeyHash}`);
      lines.push(
        `  Status:           ${r.status as string}${r.revocationTime ? ` since ${r.revocationTime as string}${r.revocationReason ? ` (${String(r.revocationReason)})` : ''}` : ''}`,
      );
      lines.push(`  This update:      ${r.thisUpdate as string}`);
      lines.push(`  Next update:      ${(r.nextUpdate as string | null) ?? '(none)'}`);
    }
  }
  const v = info.validity as Record<string, unknown> | undefined;
  if (v) {
    if (v.valid) {
      lines.push(
        `Valid for:          ${v.certificate as string}: yes, ${v.timeLeft as string} left (until ${v.usableUntil as string})`,
      );
      for (const w of v.warnings as string[]) lines.push(`Warning:            ${w}`);
    } else {
      lines.push(`Valid for:          ${v.certificate as string}: NO: ${v.code as string}: ${v.error as string}`);
    }
  }
  // a file name or responder name with a newline or an ESC in it must not forge or hide a line
  return `${lines.map(escapeControls).join('\n')}\n`;
}
