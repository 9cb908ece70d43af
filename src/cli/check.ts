/**
 * `staplekeeper check`: a monitoring plugin in the Nagios/Icinga convention.
 *
 * Output: one status line `STAPLEKEEPER <STATE> - <text> | <perfdata>` on
 * standard output (with `-v`, one more line per certificate: the plugin "long
 * output"), or one JSON document with `--json`. Exit codes: 0 OK, 1 WARNING,
 * 2 CRITICAL, 3 UNKNOWN (also for bad arguments and an unreadable
 * configuration: the plugin could not do its job). It never fetches.
 */
import { parseDuration } from '../config/duration.js';
import { toStapleError } from '../core/errors.js';
import { CHECK_EXIT } from '../core/exit-codes.js';
import { checkStaples, formatSpan, type CheckReport } from '../status/check.js';
import { escapeControls } from '../core/text.js';
import type { CliIo } from './io.js';
import { SignatureVerifier } from '../pipeline/signature-verifier.js';
import { loadConfigForCli } from './run.js';

interface CheckOpts {
  config?: string;
  warn?: string;
  crit?: string;
  json: boolean;
  verbose: boolean;
  certWarn?: string;
  certCrit?: string;
  /** false with --no-crl. */
  crl?: boolean;
}

function unknown(io: CliIo, json: boolean, message: string): number {
  const text = message.replaceAll('|', '/').split('\n').join('; ');
  if (json) {
    io.stdout.write(
      `${JSON.stringify({ status: 'UNKNOWN', exitCode: CHECK_EXIT.unknown, summary: `STAPLEKEEPER UNKNOWN - ${text}`, error: message })}\n`,
    );
  } else {
    io.stdout.write(`STAPLEKEEPER UNKNOWN - ${escapeControls(text)}\n`);
  }
  return CHECK_EXIT.unknown;
}

/** The `--json` document. */
export function checkJson(report: CheckReport): Record<string, unknown> {
  return {
    status: report.level.toUpperCase(),
    exitCode: report.exitCode,
    summary: report.line,
    checkedAt: report.checkedAt,
    thresholds: report.thresholds,
    ...(report.warnSeconds !== undefined ? { warnSeconds: report.warnSeconds } : {}),
    ...(report.critSeconds !== undefined ? { critSeconds: report.critSeconds } : {}),
    counts: report.counts,
    ...(report.expiryMinSeconds !== undefined ? { expiryMinSeconds: report.expiryMinSeconds } : {}),
    certificates: report.certs,
    ...('fleet' in report ? { fleet: report.fleet } : {}),
  };
}

/** Runs `check`; returns the plugin exit code. */
export async function checkCommand(opts: CheckOpts, io: CliIo): Promise<number> {
  let warnMs: number | undefined;
  let critMs: number | undefined;
  try {
    if (opts.warn !== undefined) warnMs = parseDuration(opts.warn);
  } catch (e) {
    return unknown(io, opts.json, `--warn: ${(e as Error).message}`);
  }
  try {
    if (opts.crit !== undefined) critMs = parseDuration(opts.crit);
  } catch (e) {
    return unknown(io, opts.json, `--crit: ${(e as Error).message}`);
  }
  if (warnMs !== undefined && critMs !== undefined && critMs > warnMs) {
    return unknown(
      io,
      opts.json,
      `--crit (${formatSpan(critMs)}) is longer than --warn (${formatSpan(warnMs)}); the warning would never fire`,
    );
  }
  let certWarnMs: number | undefined;
  let certCritMs: number | undefined;
  try {
    if (opts.certWarn !== undefined) certWarnMs = parseDuration(opts.certWarn);
  } catch (e) {
    return unknown(io, opts.json, `--cert-warn: ${(e as Error).message}`);
  }
  try {
    if (opts.certCrit !== undefined) certCritMs = parseDuration(opts.certCrit);
  } catch (e) {
    return unknown(io, opts.json, `--cert-crit: ${(e as Error).message}`);
  }
  const loaded = await loadConfigForCli(opts.config, io);
  if ('exit' in loaded) return unknown(io, opts.json, `configuration: ${loaded.error.code}: ${loaded.error.message}`);
  let report: CheckReport;
  try {
    report = await checkStaples(loaded.config, {
      ...(warnMs !== undefined ? { warnMs } : {}),
      ...(critMs !== undefined ? { critMs } : {}),
      ...(certWarnMs !== undefined ? { certWarnMs } : {}),
      ...(certCritMs !== undefined ? { certCritMs } : {}),
      ...(opts.crl === false ? { crl: false } : {}),
      // signatures checked on a thread (started at the first check) and remembered, as `run` does
      signatures: new SignatureVerifier({ thread: true }),
    });
  } catch (e) {
    const err = toStapleError(e);
    if (opts.verbose && e instanceof Error) io.stderr.write(`${e.stack ?? ''}\n`);
    return unknown(io, opts.json, `${err.code}: ${err.message}`);
  }
  const fleet = loaded.config.settings.fleet;
  if (fleet) {
    // fleet mode: a fleet that does not answer is a WARNING (docs/fleet.md)
    const { probeFleet, withFleet } = await import('../fleet/check.js');
    report = withFleet(report, await probeFleet(fleet, loaded.config.settings.http.timeoutMs));
  }
  if (opts.json) {
    io.stdout.write(`${JSON.stringify(checkJson(report), null, 2)}\n`);
    return report.exitCode;
  }
  io.stdout.write(`${escapeControls(report.line)}\n`);
  if (opts.verbose) {
    for (const c of report.certs)
      io.stdout.write(
        `${escapeControls(`[${c.id}] ${c.level.toUpperCase()}: ${c.reason.replaceAll('|', '/')} (${c.staplePath})`)}\n`,
      );
  }
  return report.exitCode;
}
