/**
 * The exit codes have one home, core/exit-codes.ts: each code is defined
 * there once with its meaning, `check` and the ocsprenewer drop-in keep their
 * own only where their convention differs, and no other source file defines
 * an exit code of its own (a guard: the three tables of cli/common.ts,
 * cli/run.ts and status/check.ts are gone for good).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exitCodeOf, type RunReport } from '../../src/batch/run.js';
import { EXIT as CLI_EXIT } from '../../src/cli/common.js';
import { CHECK_EXIT, EXIT, OCSPRENEWER_EXIT } from '../../src/core/exit-codes.js';
import { CHECK_EXIT as STATUS_CHECK_EXIT } from '../../src/status/check.js';

const SRC = join(import.meta.dirname, '..', '..', 'src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The code of a file without its comments and strings (what defines something, not what talks about it). */
function code(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '')
    .replace(/`(?:\\.|[^`\\])*`/g, '``')
    .replace(/'(?:\\.|[^'\\])*'/g, "''");
}

describe('exit codes: one table', () => {
  it('pins every code and its name', () => {
    expect(EXIT).toEqual({ OK: 0, FAILURE: 1, RENEWED_MAX: 250, USAGE: 252, CONFIG: 253, YAML: 254, RETRIEVAL: 255 });
    expect(CHECK_EXIT).toEqual({ ok: 0, warning: 1, critical: 2, unknown: 3 });
    expect(OCSPRENEWER_EXIT).toEqual({ OK: 0, FAILURE: 1, USAGE: 2 });
  });

  it('is the very table the command line and the check use', () => {
    expect(CLI_EXIT).toBe(EXIT);
    expect(STATUS_CHECK_EXIT).toBe(CHECK_EXIT);
    const report = { failed: 0, revoked: 0, hookErrors: [], updated: 300 } as unknown as RunReport;
    expect(exitCodeOf(report)).toBe(EXIT.RENEWED_MAX);
    expect(exitCodeOf({ ...report, failed: 1 })).toBe(EXIT.RETRIEVAL);
  });

  it('no other source file defines an exit code (no exit-code table; no 250–255 where commands end)', () => {
    const offenders: string[] = [];
    for (const file of sources(SRC)) {
      const rel = relative(SRC, file);
      if (rel === join('core', 'exit-codes.ts')) continue;
      const c = code(readFileSync(file, 'utf8'));
      if (/^(cli|batch|status|daemon|discovery)\//.test(rel) && /(?<![\w.])25[0-5](?![\w.])/.test(c))
        offenders.push(`${rel}: a literal 250–255`);
      if (/\b[A-Z_]*EXIT[A-Z_]*\s*(?::[^=]*)?=\s*\{\s*\w+:\s*\d/.test(c)) offenders.push(`${rel}: an exit-code table`);
    }
    expect(offenders).toEqual([]);
  });
});
