/**
 * Log lines forged by file names (docs/SECURITY.md), through the real
 * executable: a scanned certificate named `x\n[other] renewed.pem` (or with
 * an ESC in its name) used to print a line of its own that looked like
 * staplekeeper's report on another certificate. Text output now escapes
 * every control character; JSON output was already safe.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertBuilt,
  killAllChildren,
  removeTempDirs,
  runCli,
  showResult,
  tempDir,
  writeConfig,
} from '../helpers/cli-harness.js';
import type { CliResult } from '../helpers/cli-harness.js';
import { buildTestPki, type TestPki } from '../helpers/mint.js';

let dir: string;
let pki: TestPki;
let cfg: string;

const FORGED = 'x\n[other] renewed';
const ESCAPED = 'x\\n[other] renewed';

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('sk-rel-escape-');
  // the leaves' AIA names a port nobody listens on: each certificate fails, and its line names it
  pki = buildTestPki({ keyType: 'ec-p256', delegated: false, now: new Date(), leafCount: 2 });
  const scan = join(dir, 'scan');
  await mkdir(scan);
  for (const [i, name] of [FORGED, 'esc\u001b[2Kcert'].entries()) {
    await writeFile(join(scan, `${name}.pem`), pki.leaves[i]!.pem);
    await writeFile(join(scan, `${name}-chain.pem`), pki.root.pem);
    await writeFile(join(scan, `${name}-rootchain.pem`), pki.root.pem);
  }
  cfg = await writeConfig(join(dir, 'sk.yaml'), {
    ocsp_folder: dir,
    http: { timeout: '2s' },
    scan_keys: [{ folder: scan }],
  });
});

afterAll(async () => {
  await killAllChildren();
  await removeTempDirs();
});

function lines(r: CliResult): string[] {
  return `${r.stdout}\n${r.stderr}`.split('\n');
}

describe('control characters in file names (docs/SECURITY.md "File names cannot forge log lines")', () => {
  it('run: no forged line, the name is shown escaped, no raw ESC', async () => {
    const r = await runCli(['run', '-c', cfg, '-v'], { timeoutMs: 60_000 });
    expect(r.code, showResult(r)).toBe(255);
    for (const l of lines(r)) expect(l.startsWith('[other]'), showResult(r)).toBe(false);
    expect(r.stdout + r.stderr, showResult(r)).toContain(`[${ESCAPED}]`);
    expect(r.stdout + r.stderr, showResult(r)).toContain('esc\\x1b[2Kcert');
    expect(r.stdout + r.stderr).not.toContain('\u001b');
  });

  it('check: no forged line either', async () => {
    const r = await runCli(['check', '-c', cfg, '-v'], { timeoutMs: 60_000 });
    for (const l of lines(r)) expect(l.startsWith('[other]'), showResult(r)).toBe(false);
    expect(r.stdout + r.stderr, showResult(r)).toContain(ESCAPED);
    expect(r.stdout + r.stderr).not.toContain('\u001b');
  });

  it('--json keeps the real name (JSON escapes it)', async () => {
    const r = await runCli(['run', '-c', cfg, '--json'], { timeoutMs: 60_000 });
    expect(r.stdout, showResult(r)).toContain(JSON.stringify(FORGED).slice(1, -1));
  });
});
