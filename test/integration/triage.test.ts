/**
 * Triage and no false alarms (README.md "Certificates without OCSP"): a configuration mixing an OCSP
 * certificate, a CRL-only one, one with neither, and must-staple ones with
 * and without a responder, through `run`, `check` and the ocspbot drop-in,
 * against a real `openssl ocsp` responder.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../../src/cli/main.js';
import { ocspbotCli } from '../../src/cli/ocspbot.js';
import type { Pki } from '../helpers/mint.js';
import { memoryIo } from '../helpers/memory-io.js';
import { startOpensslPki } from '../helpers/servers.js';
import { cleanUp } from '../helpers/temp.js';

let root: string;
let pki: Pki;

beforeAll(async () => {
  ({ root, pki } = await startOpensslPki(
    'sk-triage-',
    {
      keyType: 'ec',
      leaves: [
        { name: 'ocsp' },
        { name: 'crlonly', noOcspUrl: true, crlUrl: 'http://127.0.0.1:9/ca.crl' },
        { name: 'bare', noOcspUrl: true },
        { name: 'ms', mustStaple: true },
        { name: 'msx', mustStaple: true, noOcspUrl: true, crlUrl: 'http://127.0.0.1:9/ca.crl' },
      ],
    },
    { nmin: 7 * 24 * 60 },
  ));
});

afterAll(cleanUp);

async function configFor(name: string, leaves: string[]): Promise<{ dir: string; file: string }> {
  const dir = join(root, name);
  await mkdir(join(dir, 'ocsp'), { recursive: true });
  const lines = ['---', `ocsp_folder: ${join(dir, 'ocsp')}`, 'domains:'];
  for (const l of leaves) {
    const leaf = pki.leaves[l]!;
    lines.push(`  ${l}:`, `    cert: ${leaf.cert}`, `    chain: ${leaf.chain}`, `    ocsp: ${l}.der`);
  }
  const file = join(dir, 'staplekeeper.yaml');
  await writeFile(file, `${lines.join('\n')}\n`);
  return { dir, file };
}

describe('a mixed configuration (OCSP, CRL-only, none, must-staple with a responder)', () => {
  it('run exits with the number renewed, one notice per certificate without a responder; check is OK', async () => {
    const { dir, file } = await configFor('mixed', ['ocsp', 'crlonly', 'bare', 'ms']);
    const io = memoryIo(dir);
    const code = await cli(['run', '-c', file], io);
    expect(io.err()).toBe('');
    expect(code).toBe(2);
    const out = io.out();
    expect(out).toContain(
      '[crlonly] skipped: no OCSP responder: nothing to staple; revocation is published by CRL at http://127.0.0.1:9/ca.crl',
    );
    expect(out).toMatch(/\[bare\] skipped: no OCSP responder: nothing to staple; the certificate names neither/);
    expect(out.match(/no OCSP responder/g)).toHaveLength(2);
    expect(out).toContain('Success: 2 unchanged OCSP responses, 2 updated OCSP responses and 0 failures.');

    // the second run renews nothing: exit 0
    const io2 = memoryIo(dir);
    expect(await cli(['run', '-c', file], io2)).toBe(0);

    const chk = memoryIo(dir);
    expect(await cli(['check', '-c', file, '--no-crl'], chk)).toBe(0);
    const line = chk.out();
    expect(line).toMatch(
      /^STAPLEKEEPER OK - 2 staples good, earliest expiry in .*; 2 without an OCSP responder \(nothing to staple\): crlonly \(CRL\), bare \(none\) \|/,
    );

    const json = memoryIo(dir);
    expect(await cli(['check', '-c', file, '--json', '--no-crl'], json)).toBe(0);
    const doc = JSON.parse(json.out()) as {
      certificates: Array<Record<string, unknown>>;
      counts: Record<string, number>;
    };
    expect(doc.counts).toMatchObject({ certs: 4, ok: 4, noOcsp: 2 });
    const by = new Map(doc.certificates.map((c) => [c.id as string, c]));
    expect(by.get('crlonly')).toMatchObject({ state: 'no-ocsp', level: 'ok', mechanism: 'crl', mustStaple: false });
    expect(by.get('ms')).toMatchObject({ state: 'good', mechanism: 'ocsp', mustStaple: true });
  });

  it('--dry-run and --json show the triage', async () => {
    const { dir, file } = await configFor('dry', ['ocsp', 'crlonly', 'ms']);
    const io = memoryIo(dir);
    expect(await cli(['run', '-c', file, '--dry-run'], io)).toBe(0);
    expect(io.out()).toMatch(/\[ocsp\] would renew \(missing\): .* \[ocsp\]/);
    expect(io.out()).toMatch(/\[ms\] would renew .* \[ocsp, must-staple\]/);
    expect(io.out()).toMatch(/\[crlonly\] skipped: no OCSP responder: .* \[crl\]/);
    const js = memoryIo(dir);
    expect(await cli(['run', '-c', file, '--json'], js)).toBe(2);
    const lines = js
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const crl = lines.find((l) => l.id === 'crlonly')!;
    expect(crl).toMatchObject({
      result: 'skipped',
      triage: { mechanism: 'crl', mustStaple: false, crlUrls: ['http://127.0.0.1:9/ca.crl'], ocspUrls: [] },
    });
    expect(lines.find((l) => l.id === 'ms')).toMatchObject({ result: 'updated', triage: { mustStaple: true } });
    expect(lines.at(-1)).toMatchObject({ type: 'summary', failed: 0, skipped: 1, exitCode: 2 });
  });
});

describe('must-staple without a responder', () => {
  it('is a failure in run (255, with what to do) and CRITICAL in check', async () => {
    const { dir, file } = await configFor('msx', ['ocsp', 'msx']);
    const io = memoryIo(dir);
    expect(await cli(['run', '-c', file], io)).toBe(255);
    expect(io.err()).toMatch(
      /\[msx\] error MUST_STAPLE_NO_RESPONDER: the certificate is must-staple .* reissue it without must-staple now; Firefox refuses/,
    );
    const chk = memoryIo(dir);
    expect(await cli(['check', '-c', file, '--no-crl'], chk)).toBe(2);
    expect(chk.out()).toMatch(/^STAPLEKEEPER CRITICAL - 1 of 2 staples critical: msx the certificate is must-staple/);
  });
});

describe('the ocspbot drop-in keeps ocspbot behaviour', () => {
  it('a certificate without an OCSP URL fails the run with 255 (NO_OCSP_URL)', async () => {
    const { dir, file } = await configFor('ocspbot', ['ocsp', 'crlonly']);
    const io = memoryIo(dir);
    expect(await ocspbotCli([file], io)).toBe(255);
    expect(io.err()).toMatch(/\[crlonly\] error NO_OCSP_URL: /);
  });
});

describe('staplekeeper list (the migration report)', () => {
  it('shows every certificate with its triage, expiry, staple state and URLs, in text and JSON', async () => {
    const { dir, file } = await configFor('list', ['ocsp', 'crlonly', 'bare', 'ms', 'msx']);
    await cli(['run', '-c', file], memoryIo(dir));
    const io = memoryIo(dir);
    expect(await cli(['list', '-c', file], io)).toBe(0);
    const text = io.out();
    expect(text).toMatch(/^ocsp \[ocsp\]\n {2}certificate: .*ocsp\.crt \(expires /m);
    expect(text).toMatch(/^ms \[ocsp, must-staple\]$/m);
    expect(text).toContain('  CRL:         http://127.0.0.1:9/ca.crl');
    expect(text).toMatch(/^crlonly \[crl\]$/m);
    expect(text).toMatch(/^msx \[crl, must-staple\]$/m);
    expect(text).toContain('to do:       must-staple without a responder: reissue it without must-staple now');
    expect(text).toContain('5 certificate(s): 2 ocsp, 2 crl, 1 none; 2 must-staple');
    expect(text).toContain(
      '3 lose stapling (no OCSP responder):\n  crlonly: no usable staple\n  bare: no usable staple\n  msx: no usable staple — MUST-STAPLE',
    );
    const js = memoryIo(dir);
    expect(await cli(['list', '-c', file, '--json'], js)).toBe(0);
    const doc = JSON.parse(js.out()) as { certificates: Array<Record<string, unknown>> };
    const by = new Map(doc.certificates.map((c) => [c.id as string, c]));
    expect(by.get('ocsp')).toMatchObject({ mechanism: 'ocsp', staple: 'good', mustStaple: false });
    expect(typeof by.get('ocsp')!.stapleUntil).toBe('string');
    expect(by.get('crlonly')).toMatchObject({
      mechanism: 'crl',
      staple: 'missing',
      crlUrls: ['http://127.0.0.1:9/ca.crl'],
    });
    expect(by.get('bare')).toMatchObject({ mechanism: 'none', crlUrls: [], responderUrls: [] });
  });
});
