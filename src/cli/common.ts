/**
 * Helpers shared by the commands (`fetch`, `inspect`, …) and cli/main.ts.
 * They live here, not in main.ts, so that a command never imports the
 * module that dispatches to it (no import cycle).
 */
import { type StapleError, toStapleError } from '../core/errors.js';
import { EXIT } from '../core/exit-codes.js';
import { escapeLines } from '../core/text.js';
import type { CliIo } from './io.js';

/** The exit codes of every command: one table, core/exit-codes.ts (with `check`'s and ocsprenewer's own). */
export { EXIT };

/** Prints an error as one line (with the stack under --verbose). */
export function reportError(io: CliIo, e: unknown, verbose: boolean, prog = 'staplekeeper'): StapleError {
  const err = toStapleError(e);
  io.stderr.write(`${prog}: error ${err.code}: ${escapeLines(err.message)}\n`);
  if (verbose) io.stderr.write(`${(e instanceof Error && e.stack) || String(e)}\n`);
  return err;
}
