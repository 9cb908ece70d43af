/**
 * `staplekeeper fetch`: one certificate, one staple. Fetches (always: this is
 * the manual command), verifies, and writes atomically; on any failure the
 * file at --out is left untouched and the exit code is 1. A staple only gets
 * better: an answer that is not better than the valid staple already at --out
 * leaves it byte-for-byte (`kept: …`, exit 1). The folder of --out must
 * exist; an existing --out that is not an OCSP response is replaced only with
 * --overwrite, and never when it holds a certificate or a key.
 */
import { resolve } from 'node:path';
import { parseDuration } from '../config/duration.js';
import { StapleError } from '../core/errors.js';
import { failureLine, shortUrl, tidyMessage } from '../core/message.js';
import { DEFAULT_POLICY } from '../core/policy.js';
import { createHttpTransport } from '../io/http.js';
import { createFileStore } from '../io/store.js';
import { IssuerResolver } from '../pipeline/issuer.js';
import type { Target } from '../pipeline/context.js';
import { processTarget } from '../pipeline/process.js';
import { USER_AGENT } from '../version.js';
import { escapeControls } from '../core/text.js';
import type { CliIo } from './io.js';
import { EXIT, reportError } from './common.js';

interface FetchOpts {
  cert: string;
  issuer?: string;
  chain?: string;
  caDir?: string[];
  url?: string;
  out: string;
  method: 'auto' | 'get' | 'post';
  hash: 'sha1' | 'sha256';
  nonce: boolean;
  backup: boolean;
  overwrite?: boolean;
  timeout: string;
  json: boolean;
  verbose: boolean;
}

/** Runs `fetch`; returns the exit code. */
export async function fetchCommand(opts: FetchOpts, io: CliIo): Promise<number> {
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(opts.timeout);
  } catch (e) {
    reportError(io, new StapleError('BAD_ARGUMENTS', `--timeout: ${(e as Error).message}`), false);
    return EXIT.USAGE;
  }
  const transport = createHttpTransport({ timeoutMs, userAgent: USER_AGENT });
  try {
    const target: Target = {
      id: opts.cert,
      certPath: resolve(io.cwd, opts.cert),
      staplePath: resolve(io.cwd, opts.out),
    };
    if (opts.issuer) target.issuerPath = resolve(io.cwd, opts.issuer);
    if (opts.chain) target.chainPath = resolve(io.cwd, opts.chain);
    if (opts.url) target.responderUrls = [opts.url];
    const outcome = await processTarget(
      target,
      {
        store: createFileStore(),
        transport,
        resolver: new IssuerResolver({ caDirs: (opts.caDir ?? []).map((d) => resolve(io.cwd, d)), transport }),
        now: () => new Date(),
        policy: DEFAULT_POLICY,
        method: opts.method,
        hash: opts.hash,
        nonce: opts.nonce,
        makeBackups: opts.backup,
        overwriteNonOcsp: opts.overwrite ?? false,
        // `fetch` was asked for a staple: a certificate without a responder is an error (NO_OCSP_URL)
        strictOcsp: true,
        // each certificate gets 2 × --timeout over all its responder URLs
        fetchDeadlineMs: 2 * timeoutMs,
      },
      { force: true },
    );
    if (opts.verbose) for (const n of outcome.notices) io.stderr.write(`staplekeeper: note: ${escapeControls(n)}\n`);
    if (opts.json) io.stdout.write(`${JSON.stringify(outcome)}\n`);
    if (outcome.result === 'updated' && !outcome.error && outcome.staple) {
      if (!opts.json) {
        const s = outcome.staple;
        io.stdout.write(
          `${escapeControls(`${opts.out}: ${s.status}, valid until ${s.nextUpdate} (thisUpdate ${s.thisUpdate}), responder "${s.responder}" via ${outcome.method} ${shortUrl(outcome.url ?? '')}`)}\n`,
        );
        if (outcome.backupError) io.stderr.write(`staplekeeper: warning: ${escapeControls(outcome.backupError)}\n`);
      }
      return EXIT.OK;
    }
    if (!opts.json && outcome.kept) {
      io.stderr.write(`staplekeeper: ${escapeControls(`${outcome.kept.message}; ${opts.out} was left untouched`)}\n`);
      return EXIT.FAILURE;
    }
    if (!opts.json) {
      const err = outcome.error ?? { code: 'INTERNAL' as const, message: 'nothing was written' };
      const line = failureLine({
        code: err.code,
        message: err.message,
        command: 'fetch',
        file: opts.cert,
        after: [`${opts.out} was left untouched`],
      });
      io.stderr.write(`staplekeeper: ${escapeControls(line)}\n`);
      if (opts.verbose && tidyMessage(err.message) !== err.message)
        io.stderr.write(`staplekeeper: note: in full: ${escapeControls(err.message)}\n`);
    }
    return EXIT.FAILURE;
  } finally {
    await transport.close();
  }
}
