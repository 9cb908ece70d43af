/**
 * docs/SECURITY.md, through the real executables: one bad certificate never
 * stops the others. A certificate file that is missing or not a certificate
 * is a failure of that certificate (exit 255 at the end, on_failure, `check`
 * CRITICAL for it); every other staple is still renewed. The daemon starts,
 * reports it, and picks the certificate up when its file appears. The
 * `ocspbot` drop-in keeps ocspbot's exit 253 for a missing file.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  endCliBench,
  exited,
  outcomesById,
  ROOT,
  runCli,
  showResult,
  spawnCli,
  startCliBench,
  writeConfig,
} from '../helpers/cli-harness.js';
import type { GoodResponder } from '../helpers/cli-harness.js';
import type { TestPki } from '../helpers/mint.js';

let dir: string;
let pki: TestPki;
let responder: GoodResponder;

beforeAll(async () => {
  ({ dir, pki, responder } = await startCliBench('sk-rel-badcert-', 3));
});

afterAll(endCliBench);

/** A folder with three domains: `good`, `missing` (no certificate file) and `junk` (not a certificate). */
async function setup(name: string): Promise<{ folder: string; cfg: string; hookOut: string }> {
  const folder = join(dir, name);
  await mkdir(folder);
  const chain = join(folder, 'chain.pem');
  await writeFile(chain, pki.root.pem);
  await writeFile(join(folder, 'good.pem'), pki.leaves[0]!.pem);
  await writeFile(join(folder, 'junk.pem'), 'this is not a certificate\n');
  const hookOut = join(folder, 'failed-ids.txt');
  const domain = (file: string, ocsp: string) => ({
    cert: join(folder, file),
    chain,
    ocsp,
    ocsp_responder_uri: responder.url,
  });
  const cfg = await writeConfig(join(folder, 'staplekeeper.yaml'), {
    ocsp_folder: folder,
    hooks: { on_failure: ['sh', '-c', `printf '%s' "$STAPLEKEEPER_IDS" > '${hookOut}'`] },
    domains: {
      good: domain('good.pem', 'good.der'),
      missing: domain('missing.pem', 'missing.der'),
      junk: domain('junk.pem', 'junk.der'),
    },
  });
  return { folder, cfg, hookOut };
}

describe('one bad certificate never stops the others (docs/SECURITY.md)', () => {
  it('`run`: the good staple is renewed, the bad certificates fail alone (exit 255, on_failure), `check` is CRITICAL for them', async () => {
    const { folder, cfg, hookOut } = await setup('run');
    const r = await runCli(['run', '-c', cfg, '--json'], { timeoutMs: 30_000 });
    expect(r.code, showResult(r)).toBe(255);
    const by = outcomesById(r.stdout);
    expect(by.get('good')?.result, showResult(r)).toBe('updated');
    expect(by.get('missing')?.result).toBe('failed');
    expect(by.get('missing')?.error?.code).toBe('FILE_UNREADABLE');
    expect(by.get('missing')?.error?.message).toContain(join(folder, 'missing.pem'));
    expect(by.get('junk')?.result).toBe('failed');
    expect(by.get('junk')?.error?.code).toBe('NOT_A_CERTIFICATE');
    expect(existsSync(join(folder, 'good.der'))).toBe(true);
    expect(existsSync(join(folder, 'missing.der'))).toBe(false);
    expect((await readFile(hookOut, 'utf8')).split('\n').sort()).toEqual(['junk', 'missing']);

    const c = await runCli(['check', '-c', cfg], { timeoutMs: 30_000 });
    expect(c.code, showResult(c)).toBe(2);
    expect(c.stdout).toMatch(/^STAPLEKEEPER CRITICAL - 2 of 3 staples critical: /);
    expect(c.stdout).toContain('missing');
    expect(c.stdout).toContain('junk');
  });

  it('`check` is CRITICAL (not UNKNOWN) for a certificate whose file vanished while its staple is still there', async () => {
    const { folder, cfg } = await setup('check-vanished');
    await writeFile(join(folder, 'missing.pem'), pki.leaves[1]!.pem);
    expect((await runCli(['run', '-c', cfg], { timeoutMs: 30_000 })).code).toBe(255); // junk still fails
    const { rm } = await import('node:fs/promises');
    await rm(join(folder, 'missing.pem'));
    const c = await runCli(['check', '-c', cfg, '-v'], { timeoutMs: 30_000 });
    expect(c.code, showResult(c)).toBe(2);
    expect(c.stdout).toMatch(/\[missing\] CRITICAL: certificate unusable: .*missing\.pem/);
  });

  it('the ocspbot drop-in keeps ocspbot 0.9.3: a missing certificate file is a configuration error (exit 253)', async () => {
    const { folder, cfg } = await setup('ocspbot');
    const { spawnSync } = await import('node:child_process');
    const o = spawnSync(process.execPath, [join(ROOT, 'bin', 'ocspbot'), cfg], { cwd: folder, encoding: 'utf8' });
    expect(o.status, `${o.stdout}\n${o.stderr}`).toBe(253);
    expect(existsSync(join(folder, 'good.der'))).toBe(false);
  });

  it('the daemon starts, reports the bad certificates, renews the good one, and picks a certificate up when its file appears', async () => {
    const { folder, cfg } = await setup('daemon');
    const d = spawnCli(['daemon', '-c', cfg]);
    let out = '';
    d.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    d.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    const waitFor = async (what: string, cond: () => boolean, ms = 30_000): Promise<void> => {
      const end = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > end || d.exitCode !== null) throw new Error(`no ${what}; daemon output:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      await waitFor('start', () => /daemon started/.test(out));
      await waitFor('good staple', () => existsSync(join(folder, 'good.der')));
      await waitFor('error for missing', () => /FILE_UNREADABLE.*missing\.pem \(domain missing\)/.test(out));
      await waitFor('error for junk', () => /\[junk\].*NOT_A_CERTIFICATE/.test(out));
      // the certificate appears: the watcher brings it in
      await writeFile(join(folder, 'missing.pem'), pki.leaves[1]!.pem);
      await waitFor('the staple of the new certificate', () => existsSync(join(folder, 'missing.der')));
    } finally {
      d.kill('SIGTERM');
      await exited(d);
    }
  }, 90_000);
});
