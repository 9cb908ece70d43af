/**
 * Helpers shared by the commands (`fetch`, `inspect`, …) and cli/main.ts.
 * They live here, not in main.ts, so that a command never imports the
 * module that dispatches to it (no import cycle).
 */
import { type StapleError, toStapleError } from '../core/errors.js';
import type { CliIo } from './io.js';

/** Exit codes of `fetch` and `inspect`. `run` uses the ocspbot codes (see run.ts), `check` the Nagios ones. */
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

/** Prints an error as one line (with the stack under --verbose). */
export function reportError(io: CliIo, e: unknown, verbose: boolean, prog = 'staplekeeper'): StapleError {
  const err = toStapleError(e);
  io.stderr.write(`${prog}: error ${err.code}: ${err.message}\n`);
  if (verbose) io.stderr.write(`${(e instanceof Error && e.stack) || String(e)}\n`);
  return err;
}
