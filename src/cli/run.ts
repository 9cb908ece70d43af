/**
 * `staplekeeper run` and the shared output of `run` and the `ocspbot` drop-in.
 *
 * Exit codes (the ocspbot 0.9.3 contract, docs/migrating.md):
 * 0 nothing renewed; N renewed (capped at 250, so that 256 renewals never
 * read as "nothing changed"); 255 retrieval errors (also: a failing hook,
 * another run holding the lock); 254 YAML or log-file errors; 253
 * configuration errors; 252 bad arguments.
 */
import { closeSync, createWriteStream, existsSync, ftruncateSync, openSync, type WriteStream } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { configCacheDir } from '../config/config-cache.js';
import { findDefaultConfig, loadConfig } from '../config/load.js';
import type { LoadConfigOptions } from '../config/load.js';
import type { LoadedConfig } from '../config/types.js';
import { StapleError, toStapleError } from '../core/errors.js';
import { EXIT } from '../core/exit-codes.js';
import { failureLine, shortUrl, tidyMessage } from '../core/message.js';
import { SignatureVerifier } from '../pipeline/signature-verifier.js';
import { VerdictCache } from '../pipeline/verdict-cache.js';
import { exitCodeOf, runOnce, type RunReport } from '../batch/run.js';
import type { TargetOutcome } from '../pipeline/context.js';
import { escapeControls, escapeLines } from '../core/text.js';
import type { CliIo } from './io.js';
import { bufferStdout } from './line-buffer.js';

interface RunOpts {
  config?: string;
  dryRun: boolean;
  force: boolean;
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  only?: string[];
  crl?: boolean;
}

/** Line-oriented output that may go to log files (ocspbot's output_log/error_log). */
export interface RunOutput {
  /** Writes one line; control characters in it are escaped (core/text.ts), then `sgr` colours it. */
  out(line: string, sgr?: string): void;
  err(line: string, sgr?: string): void;
  close(): Promise<void>;
}

/** Fills ocspbot's `{year}`…`{second}` placeholders (local time, as ocspbot does). */
export function formatLogName(template: string, d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return template
    .replaceAll('{year}', String(d.getFullYear()))
    .replaceAll('{month}', p(d.getMonth() + 1))
    .replaceAll('{day}', p(d.getDate()))
    .replaceAll('{hour}', p(d.getHours()))
    .replaceAll('{minute}', p(d.getMinutes()))
    .replaceAll('{second}', p(d.getSeconds()));
}

async function openLog(path: string, truncate: boolean, key = 'output_log'): Promise<WriteStream> {
  const folder = dirname(path);
  if (!existsSync(folder)) {
    throw new StapleError(
      'FILE_WRITE',
      `${key}: the folder ${folder} of the log file ${path} does not exist; create it (mkdir -p ${folder}) or change ${key}`,
    );
  }
  if (truncate) {
    // ocspbot's open(name, 'w'), but appending: a run that waits for the lock while another writes
    // the same log cuts it to nothing, yet never leaves a hole of NUL bytes in it
    let fd: number;
    try {
      fd = openSync(path, 'a');
    } catch (e) {
      throw new StapleError('FILE_WRITE', `${path}: cannot open the log file: ${(e as Error).message}`, { cause: e });
    }
    try {
      ftruncateSync(fd, 0);
    } catch (e) {
      closeSync(fd);
      throw new StapleError('FILE_WRITE', `${path}: cannot truncate the log file: ${(e as Error).message}`, {
        cause: e,
      });
    }
    return createWriteStream(path, { fd });
  }
  return await new Promise((resolvePromise, reject) => {
    const s = createWriteStream(path, { flags: 'a' });
    s.once('open', () => resolvePromise(s));
    s.once('error', (e) =>
      reject(new StapleError('FILE_WRITE', `${path}: cannot open the log file: ${e.message}`, { cause: e })),
    );
  });
}

/** How the log files are written. */
export interface RunOutputOptions {
  /**
   * ocspbot's log files (the `ocspbot` command): each run starts the files
   * afresh (ocspbot opens them with `'w'`) and every error and warning line
   * also goes to the output stream when that is not the error stream (also
   * stdout beside stderr), as ocspbot writes them. Default: `staplekeeper
   * run` appends, and errors go to the error stream only.
   */
  ocspbot?: boolean;
  /** Also show every line on the terminal when it goes to a log file (`--dry-run`: the operator is watching). */
  terminalToo?: boolean;
}

/** Opens the output: log files when configured, else the CLI streams. */
export async function openRunOutput(
  config: LoadedConfig | undefined,
  io: CliIo,
  options: RunOutputOptions = {},
): Promise<RunOutput> {
  const now = new Date();
  const ocspbot = options.ocspbot ?? false;
  const outPath = config?.settings.outputLog ? formatLogName(config.settings.outputLog, now) : undefined;
  const errPath = config?.settings.errorLog ? formatLogName(config.settings.errorLog, now) : undefined;
  const outStream = outPath ? await openLog(outPath, ocspbot, 'output_log') : undefined;
  let errStream: WriteStream | undefined;
  try {
    errStream = errPath ? (errPath === outPath ? outStream : await openLog(errPath, ocspbot, 'error_log')) : undefined;
  } catch (e) {
    outStream?.end();
    throw e;
  }
  const mirror = ocspbot && (outStream ?? io.stdout) !== (errStream ?? io.stderr);
  const tee = options.terminalToo ?? false;
  // a file name, id or message with a newline or an ESC in it must not forge or hide a line
  const text = (line: string, sgr: string | undefined): string => {
    const l = escapeControls(line);
    return sgr === undefined ? l : `\u001b[${sgr}m${l}\u001b[0m`;
  };
  const out = (line: string, sgr?: string): unknown => {
    const l = text(line, sgr);
    if (outStream && tee) io.stdout.write(`${l}\n`);
    return outStream ? outStream.write(`${l}\n`) : io.stdout.write(`${l}\n`);
  };
  return {
    out,
    err: (line, sgr) => {
      if (mirror) out(line, sgr);
      const l = text(line, sgr);
      if (errStream && tee) io.stderr.write(`${l}\n`);
      return errStream ? errStream.write(`${l}\n`) : io.stderr.write(`${l}\n`);
    },
    async close() {
      for (const s of new Set([outStream, errStream])) {
        if (s) await new Promise<void>((r) => s.end(r));
      }
    },
  };
}

/** Loads the configuration named on the command line or the default one, mapping errors to exit codes. */
/** How the CLI loads configurations: from its working directory, with the configuration cache of its environment. */
export function configLoadOptions(io: CliIo): LoadConfigOptions {
  const cacheDir = configCacheDir(io.env);
  // a missing or broken certificate file fails that certificate, not the run (not for ocspbot)
  const base: LoadConfigOptions = { cwd: io.cwd, certFilesPerTarget: true };
  return cacheDir === undefined ? base : { ...base, cacheDir };
}

export async function loadConfigForCli(
  file: string | undefined,
  io: CliIo,
  fallbackNames = true,
  extra: Pick<LoadConfigOptions, 'ocspbot'> = {},
): Promise<{ config: LoadedConfig } | { exit: number; error: StapleError }> {
  // (the signature thread starts at the first signature check, so a warm run, all verdicts from the
  // staple-folder cache, never starts it: ~10 MB and a V8 isolate less)
  try {
    let path: string | undefined;
    if (file) path = resolve(io.cwd, file);
    else if (fallbackNames) path = findDefaultConfig(io.cwd);
    if (!path) {
      return {
        exit: EXIT.CONFIG,
        error: new StapleError(
          'CONFIG_INVALID',
          `no configuration file: neither staplekeeper.yaml nor ocspbot.yaml in ${io.cwd}; use -c FILE`,
        ),
      };
    }
    return { config: await loadConfig(path, { ...configLoadOptions(io), ...extra }) };
  } catch (e) {
    const err = toStapleError(e, 'CONFIG_INVALID');
    const exit = err.code === 'CONFIG_YAML' || err.code === 'FILE_UNREADABLE' ? EXIT.YAML : EXIT.CONFIG;
    return { exit, error: err };
  }
}

/** ` [crl]`, ` [ocsp, must-staple]`: the triage of a certificate (core/triage.ts), for --dry-run. */
export function triageTag(o: Pick<TargetOutcome, 'triage'>): string {
  const t = o.triage;
  if (!t) return '';
  const flags = [t.mechanism, ...(t.mustStaple ? ['must-staple'] : []), ...(t.shortLived ? ['short-lived'] : [])];
  return ` [${flags.join(', ')}]`;
}

/** `; CRL: not revoked (thisUpdate …)` or `; CRL not checked: …` when the CRL was watched. */
function crlText(o: TargetOutcome): string {
  const c = o.crl;
  if (!c) return '';
  if (c.status === 'good')
    return `; CRL ${c.url}: not revoked (CRL of ${c.thisUpdate ?? '?'}, next by ${c.nextUpdate ?? '?'})`;
  if (c.status === 'unavailable') return `; CRL not checked: ${c.error?.code ?? ''}: ${c.error?.message ?? ''}`;
  return '';
}

function outcomeLine(o: TargetOutcome, dryRun: boolean): string {
  const tag = `[${o.id}] `;
  const triaged = o.triage !== undefined && o.triage.mechanism !== 'ocsp';
  if (dryRun && o.decision && !triaged) {
    const d = o.decision;
    const tt = triageTag(o);
    if (d.action === 'renew') return `${tag}would renew (${d.reason}): ${d.detail}${tt}`;
    if (d.action === 'keep') return `${tag}keep (${d.reason}): ${d.detail}; next refresh at ${d.at.toISOString()}${tt}`;
  }
  if (o.revoked && o.crl?.status === 'revoked') {
    return failureLine({
      code: 'CRL_REVOKED',
      message: `certificate REVOKED at ${o.revoked.time ?? '?'} (reason: ${o.revoked.reason ?? 'unspecified'}) according to its CRL ${o.crl.url}`,
      command: 'run',
      id: o.id,
      file: o.certPath,
      after: ['there is no staple to keep'],
    });
  }
  if (o.result === 'updated' && o.revoked) {
    return failureLine({
      code: 'OCSP_REVOKED',
      message: `certificate REVOKED at ${o.revoked.time ?? '?'} (reason: ${o.revoked.reason ?? 'unspecified'})`,
      command: 'run',
      id: o.id,
      file: o.certPath,
      after: ['the revoked response was written because on_revoked_write is on'],
    });
  }
  if (o.result === 'updated') {
    const s = o.staple;
    const from =
      o.fleet?.role === 'hit' ? (o.fleet.detail ?? 'from the fleet') : `${o.method} ${shortUrl(o.url ?? '')}`;
    const warn = o.backupError ? `; warning: ${o.backupError}` : '';
    return `${tag}updated OCSP response: ${s?.status ?? '?'}, valid until ${s?.nextUpdate ?? '?'} (${from})${warn}`;
  }
  if (o.kept) return `${tag}${o.kept.message}`;
  if (o.result === 'skipped') {
    const n = triaged
      ? (o.notices.find((x) => x.startsWith('no OCSP responder')) ?? o.notices.at(-1))
      : o.notices.at(-1);
    return `${tag}skipped: ${n ?? 'nothing to do'}${crlText(o)}${dryRun ? triageTag(o) : ''}`;
  }
  if (o.result === 'failed') {
    const kept = [o.staple ? 'the current staple was kept' : 'no usable staple is on disk (the file was not touched)'];
    if (o.revoked) {
      return failureLine({
        code: 'OCSP_REVOKED',
        message: `certificate REVOKED at ${o.revoked.time ?? '?'} (reason: ${o.revoked.reason ?? 'unspecified'})`,
        command: 'run',
        id: o.id,
        file: o.certPath,
        after: kept,
      });
    }
    return failureLine({
      code: o.error?.code ?? 'INTERNAL',
      message: o.error?.message ?? '',
      command: 'run',
      id: o.id,
      file: o.certPath,
    });
  }
  if (o.fleet?.role === 'kept' || o.fleet?.role === 'pending') return `${tag}unchanged: ${o.fleet.detail ?? ''}`;
  return `${tag}unchanged: ${o.decision?.detail ?? 'staple is fresh'}`;
}

/** The ocspbot closing line. */
export function summaryLine(r: RunReport): string {
  const revokedWritten = r.outcomes.filter((o) => o.result === 'updated' && o.revoked).length;
  const failures = r.failed + revokedWritten + r.hookErrors.length;
  return `${failures === 0 ? 'Success' : 'Failure'}: ${r.unchanged + r.skipped} unchanged OCSP responses, ${r.updated} updated OCSP responses and ${failures} failures.`;
}

/** Certificates a dry run would renew. */
function wouldRenew(r: RunReport): number {
  return r.outcomes.filter((o) => o.result !== 'failed' && o.decision?.action === 'renew').length;
}

/** The closing line of a dry run: what would be renewed is counted apart from what would stay. */
export function dryRunSummaryLine(r: RunReport): string {
  const would = wouldRenew(r);
  const failures = r.failed + r.hookErrors.length;
  const stay = r.outcomes.length - would - r.failed;
  return `Dry run (nothing fetched or written): ${would} would be renewed, ${stay} would stay unchanged and ${failures} failures.`;
}

/** Options shared by `run` and the ocspbot drop-in. */
export interface ExecuteRunOptions {
  dryRun: boolean;
  force: boolean;
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  only?: string[];
  prog: string;
  /** ocspbot: a certificate without an OCSP URL fails (NO_OCSP_URL, exit 255). */
  strictOcsp?: boolean;
  /** Check the CRLs of certificates without a responder (`run --crl`). */
  crl?: boolean;
  /** ocspbot's log files and error lines (the `ocspbot` command; see {@link RunOutputOptions}). */
  ocspbot?: boolean;
}

/** Runs a loaded configuration and prints the results; returns the exit code. */
export async function executeRun(config: LoadedConfig, opts: ExecuteRunOptions, terminalIo: CliIo): Promise<number> {
  // a line per certificate: standard output in blocks, in the same order (line-buffer.ts)
  const io = bufferStdout(terminalIo);
  try {
    return await executeRunWith(config, opts, io);
  } finally {
    io.flush();
  }
}

async function executeRunWith(config: LoadedConfig, opts: ExecuteRunOptions, io: CliIo): Promise<number> {
  let output: RunOutput;
  try {
    output = await openRunOutput(config, io, { ocspbot: opts.ocspbot ?? false, terminalToo: opts.dryRun });
  } catch (e) {
    const err = toStapleError(e);
    io.stderr.write(`${opts.prog}: error ${err.code}: ${escapeLines(err.message)}\n`);
    return EXIT.YAML;
  }
  // no colour codes in log files
  const colour = io.isTTY && !opts.json && !io.env.NO_COLOR && !config.settings.outputLog && !config.settings.errorLog;
  const paint = (code: string): string | undefined => (colour ? code : undefined);
  const progress = io.isTTY && !opts.json && config.targets.length > 20;
  try {
    for (const note of config.settings.notes) if (!opts.quiet && !opts.json) output.out(`note: ${note}`);
    for (const warning of config.warnings ?? []) output.err(`${opts.prog}: warning: ${warning}`);
    if (config.targets.length === 0) {
      output.err(
        `${opts.prog}: warning: the configuration names no certificates (no domains, and scan_keys and includes found none): nothing to do; add a domains entry or a scan_keys folder`,
      );
    }
    let report: RunReport;
    try {
      report = await runOnce(config, {
        force: opts.force,
        dryRun: opts.dryRun,
        // the CLI keeps the verdict cache beside the staples and checks signatures on its thread; one
        // process, one pass: records kept as their lines, and outcomes kept brief once printed
        verdicts: new VerdictCache({ env: io.env, oneShot: true }),
        briefOutcomes: true,
        signatures: new SignatureVerifier({ thread: true }),
        ...(opts.only ? { only: opts.only } : {}),
        ...(opts.strictOcsp ? { strictOcsp: true } : {}),
        ...(opts.crl ? { crl: true } : {}),
        env: io.env,
        // notices (e.g. waiting for the lock) go to the error stream even with --json, whose stdout is data
        onNotice: (m) => output.err(`${opts.prog}: ${m}`),
        onOutcome: (o, done, total) => {
          if (progress) io.stderr.write(`\r\u001b[K[${done}/${total}] ${escapeControls(o.id)}`);
          if (opts.json) {
            // --json is data for the caller: standard output, even with output_log
            io.stdout.write(`${JSON.stringify({ type: 'certificate', ...o })}\n`);
            return;
          }
          if (progress) io.stderr.write('\r\u001b[K');
          const line = outcomeLine(o, opts.dryRun);
          if (o.result === 'failed' || o.revoked) output.err(line, paint('31'));
          // a kept staple (the responder's answer was worse) and a failed backup are warnings, shown even with --quiet
          else if (o.kept || o.backupError) output.err(line, paint('33'));
          else if (!opts.quiet) output.out(line, o.result === 'updated' ? paint('32') : undefined);
          if (opts.verbose) {
            // the full message, URLs included (the line above shortens them)
            if (o.error && tidyMessage(o.error.message) !== o.error.message)
              output.out(`[${o.id}]   note: in full: ${o.error.message}`);
            for (const n of o.notices) output.out(`[${o.id}]   note: ${n}`);
          }
        },
      });
    } catch (e) {
      const err = toStapleError(e);
      output.err(`${opts.prog}: error ${err.code}: ${err.message}`);
      if (opts.verbose && e instanceof Error) for (const l of (e.stack ?? '').split('\n')) output.err(l);
      if (err.code === 'CONFIG_INVALID') return EXIT.CONFIG; // a missing ocsp_folder
      return err.code === 'BAD_ARGUMENTS' ? EXIT.USAGE : EXIT.RETRIEVAL;
    }
    if (progress) io.stderr.write('\r\u001b[K');
    for (const h of report.hookErrors) output.err(`${opts.prog}: error ${h.code}: ${h.message}`);
    const exit = exitCodeOf(report);
    if (opts.json) {
      io.stdout.write(
        `${JSON.stringify({
          type: 'summary',
          unchanged: report.unchanged,
          updated: report.updated,
          failed: report.failed,
          skipped: report.skipped,
          revoked: report.revoked,
          hookErrors: report.hookErrors,
          stopped: report.stopped,
          dryRun: opts.dryRun,
          ...(opts.dryRun ? { wouldRenew: wouldRenew(report) } : {}),
          exitCode: exit,
        })}\n`,
      );
    } else {
      if (report.stopped) output.err(`${opts.prog}: stop_on_error: stopped after the first failure`);
      const line = opts.dryRun ? dryRunSummaryLine(report) : summaryLine(report);
      output.out(line, paint(line.startsWith('Success') ? '32' : '31;1'));
    }
    return exit;
  } finally {
    await output.close();
  }
}

/** Runs `staplekeeper run`. */
export async function runCommand(opts: RunOpts, io: CliIo): Promise<number> {
  const loaded = await loadConfigForCli(opts.config, io);
  if ('exit' in loaded) {
    io.stderr.write(`staplekeeper: error ${loaded.error.code}: ${escapeLines(loaded.error.message)}\n`);
    return loaded.exit;
  }
  const exec: ExecuteRunOptions = {
    dryRun: opts.dryRun,
    force: opts.force,
    json: opts.json,
    quiet: opts.quiet,
    verbose: opts.verbose,
    prog: 'staplekeeper',
  };
  if (opts.only) exec.only = opts.only;
  if (opts.crl) exec.crl = true;
  return await executeRun(loaded.config, exec, io);
}
