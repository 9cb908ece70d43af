/**
 * Helpers shared by the commands (`fetch`, `inspect`, …) and cli/main.ts.
 * They live here, not in main.ts, so that a command never imports the
 * module that dispatches to it (no import cycle).
 */
import { type StapleError, toStapleError } from '../core/errors.js';
import { escapeLines } from '../core/text.js';
import type { CliIo } from './io.js';

/**
 * Exit codes of `fetch`, `inspect` and `daemon`. `run` uses the ocspbot codes
 * (see run.ts), `check` the Nagios ones. Bad arguments exit 252 in every
 * command but `check` (3, the plugin convention): outside 1–250, which `run`
 * uses for "that many staples renewed", so a typo never reads as renewals.
 */
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 252 } as const;

/** Prints an error as one line (with the stack under --verbose). */
export function reportError(io: CliIo, e: unknown, verbose: boolean, prog = 'staplekeeper'): StapleError {
  const err = toStapleError(e);
  io.stderr.write(`${prog}: error ${err.code}: ${escapeLines(err.message)}\n`);
  if (verbose) io.stderr.write(`${(e instanceof Error && e.stack) || String(e)}\n`);
  return err;
}
