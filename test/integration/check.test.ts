/**
 * `staplekeeper check` through the real binary, on staples that
 * `staplekeeper run` fetched from a real `openssl ocsp` responder: the plugin
 * states and exit codes a monitoring system sees, and proof that the check
 * never asks the responder anything.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, runCli, writeConfig } from '../helpers/cli-harness.js';
import type { Pki } from '../helpers/mint.js';
import { startOpensslPki, freePort, type Responder, startResponder } from '../helpers/servers.js';
import { cleanUp } from '../helpers/temp.js';

describe('staplekeeper check (binary, real responder)', () => {
  let dir: string;
  let pki: Pki;
  let responder: Responder;

  beforeAll(async () => {
    assertBuilt();
    // a week of validity, as public CAs give
    ({
      root: dir,
      pki,
      responder,
    } = await startOpensslPki(
      'sk-check-',
      { leaves: [{ name: 'www' }, { name: 'mail' }, { name: 'bad', status: 'revoked' }] },
      { nmin: 7 * 24 * 60 },
    ));
  });

  afterAll(cleanUp);

  it('reports OK, CRITICAL for revoked and missing staples, and UNKNOWN for a broken configuration, without fetching', async () => {
    const leaves = pki.leaves;
    await mkdir(join(dir, 'staples'), { recursive: true }); // the staple folder must exist (README.md, "Configuration")
    const config = await writeConfig(join(dir, 'staplekeeper.yaml'), {
      ocsp_folder: join(dir, 'staples'),
      on_revoked_write: true, // so that a revoked staple lies on disk for the check to find
      domains: {
        www: { cert: leaves.www!.bundle, ocsp: 'www.der' },
        mail: { cert: leaves.mail!.bundle, ocsp: 'mail.der' },
        bad: { cert: leaves.bad!.bundle, ocsp: 'bad.der' },
        'not-stapled': { cert: leaves.www!.bundle, ocsp: 'off.der', ocsp_responder_uri: 'disabled' },
      },
    });
    const run = await runCli(['run', '-c', config], { cwd: dir });
    expect(run.stdout + run.stderr).toContain('[bad] ');
    expect(run.code).toBe(255); // a revoked certificate is a failure of the run

    const asked = responder.requests.length;
    const crit = await runCli(['check', '-c', config], { cwd: dir });
    expect(crit.code).toBe(2);
    expect(crit.stderr).toBe('');
    expect(crit.stdout).toMatch(
      /^STAPLEKEEPER CRITICAL - 1 of 3 staples critical: bad REVOKED at \S+ \(keyCompromise\)[^|]* \| expiry_min=0s;;;0 certs=3 critical=1 warning=0 unknown=0\n$/,
    );

    const json = await runCli(['check', '-c', config, '--json'], { cwd: dir });
    expect(json.code).toBe(2);
    const doc = JSON.parse(json.stdout) as {
      certificates: Array<{ id: string; level: string; state: string; expiresInSeconds: number }>;
    };
    expect(doc.certificates.map((c) => [c.id, c.level, c.state])).toEqual([
      ['www', 'ok', 'good'],
      ['mail', 'ok', 'good'],
      ['bad', 'critical', 'revoked'],
    ]);
    // 7 days from the responder, minus the seconds the test took
    expect(doc.certificates[0]!.expiresInSeconds).toBeGreaterThan(7 * 86400 - 120);

    await rm(join(dir, 'staples', 'mail.der'));
    const missing = await runCli(['check', '-c', config, '-v'], { cwd: dir });
    expect(missing.code).toBe(2);
    expect(missing.stdout.split('\n')[0]).toContain('2 of 3 staples critical: mail no staple, bad REVOKED');
    expect(missing.stdout).toMatch(/\n\[www\] OK: expires in 6d 23h \(.*www\.der\)\n/);

    const healthy = await writeConfig(join(dir, 'healthy.yaml'), {
      ocsp_folder: join(dir, 'staples'),
      domains: { www: { cert: leaves.www!.bundle, ocsp: 'www.der' } },
    });
    const ok = await runCli(['check', '-c', healthy], { cwd: dir });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(
      /^STAPLEKEEPER OK - 1 staple good, earliest expiry in 6d 23h \(www\) \| expiry_min=\d+s;151\d{3}:;75\d{3}:;0 certs=1 critical=0 warning=0 unknown=0\n$/,
    );
    // within --warn 8d, it warns
    expect((await runCli(['check', '-c', healthy, '--warn', '8d'], { cwd: dir })).code).toBe(1);

    // the check only reads files
    expect(responder.requests.length).toBe(asked);

    await writeFile(join(dir, 'broken.yaml'), 'domains:\n  www:\n    cert: nowhere.pem\n    ocsp: www.der\n');
    // a missing certificate file is CRITICAL for that certificate (docs/SECURITY.md "One bad certificate never stops the others"); a broken configuration is UNKNOWN
    const broken = await runCli(['check', '-c', 'broken.yaml'], { cwd: dir });
    expect(broken.code).toBe(2);
    expect(broken.stdout).toMatch(/^STAPLEKEEPER CRITICAL - 1 of 1 staple critical: www /);
    await writeFile(join(dir, 'invalid.yaml'), 'domains:\n  www:\n    cert: [nowhere.pem]\n    ocsp: www.der\n');
    const invalid = await runCli(['check', '-c', 'invalid.yaml'], { cwd: dir });
    expect(invalid.code).toBe(3);
    expect(invalid.stdout).toMatch(/^STAPLEKEEPER UNKNOWN - configuration: CONFIG_INVALID: invalid\.yaml:3:/);
    const usage = await runCli(['check', '--warn'], { cwd: dir });
    expect(usage.code).toBe(3);
    expect(usage.stdout).toMatch(/^STAPLEKEEPER UNKNOWN - invalid arguments: /);
  });

  it('is OK for a freshly fetched 3-day staple with the default thresholds (no false alarm)', async () => {
    const short = await startResponder({ pki, port: await freePort(), nmin: 3 * 24 * 60 });
    try {
      await mkdir(join(dir, 'three'), { recursive: true }); // the staple folder must exist (README.md, "Configuration")
      const config = await writeConfig(join(dir, 'three.yaml'), {
        ocsp_folder: join(dir, 'three'),
        domains: { www: { cert: pki.leaves.www!.bundle, ocsp: 'www.der', ocsp_responder_uri: short.url } },
      });
      const run = await runCli(['run', '-c', config], { cwd: dir });
      expect(run.stderr).toBe('');
      const ok = await runCli(['check', '-c', config], { cwd: dir });
      expect(ok.stdout).toMatch(/^STAPLEKEEPER OK - 1 staple good, earliest expiry in 2d 23h \(www\) /);
      expect(ok.code).toBe(0);
      // with the absolute thresholds of old (--warn 3d), the same staple is a WARNING
      expect((await runCli(['check', '-c', config, '--warn', '3d'], { cwd: dir })).code).toBe(1);
    } finally {
      await short.stop();
    }
  });
});
