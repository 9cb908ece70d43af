/**
 * The layering rules (.dependency-cruiser.cjs, run by `npm run lint`) fail
 * where they should: test/fixtures/lint/ breaks each rule on purpose, and
 * src/ breaks none.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(root, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

/** Runs dependency-cruiser as `npm run lint` does, on `paths`, and returns its violations. */
function cruise(paths: string[]): Promise<Violation[]> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [bin, ...paths, '--config', '.dependency-cruiser.cjs', '--output-type', 'json'],
      { cwd: root, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 },
      (error, stdout, stderr) => {
        try {
          const out = JSON.parse(stdout) as { summary: { violations: Violation[] } };
          resolve(out.summary.violations);
        } catch {
          reject(new Error(`dependency-cruiser failed: ${error?.message ?? ''}\n${stderr}`));
        }
      },
    );
  });
}

const F = 'test/fixtures/lint/src/';

/** `rule from → to` for each violation, fixture prefix and resolved package paths shortened. */
function describeAll(vs: Violation[]): string[] {
  const short = (p: string): string => p.replace(F, '').replace(/^node_modules\/(@peculiar\/[^/]+)\/.*$/, '$1');
  return vs.map((v) => `${v.rule.name} ${short(v.from)} → ${short(v.to)}`).sort();
}

describe('layering rules (dependency-cruiser)', () => {
  it('flag each broken rule in the fixtures, and nothing else', async () => {
    const found = describeAll(await cruise(['test/fixtures/lint']));
    expect(found).toEqual(
      [
        // core imports only core and node:crypto/node:buffer
        'core-is-pure core/impure.ts → fs',
        'core-is-pure core/impure.ts → engine/helper.ts',
        // @peculiar only in core/asn1.ts: import, require through createRequire, import()
        'asn1-only-in-core-asn1 engine/static-peculiar.ts → @peculiar/asn1-schema',
        'asn1-only-in-core-asn1 engine/required-peculiar.ts → @peculiar/asn1-cms',
        'asn1-only-in-core-asn1 engine/dynamic-peculiar.ts → @peculiar/asn1-ocsp',
        // nothing outside cli/ imports cli/
        'nothing-imports-cli engine/uses-cli.ts → cli/tool.ts',
        // no cycles, type-only imports included
        'no-cycles engine/cycle-a.ts → engine/cycle-b.ts',
      ].sort(),
    );
  });

  it('find nothing in src/', async () => {
    expect(describeAll(await cruise(['src']))).toEqual([]);
  });
});
