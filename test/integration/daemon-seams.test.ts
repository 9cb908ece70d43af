/**
 * The daemon's seams, in process: the environment it is given reaches the
 * hooks (as `runOnce`'s `env` does), and a caIssuers download goes through
 * the same per-host backoff as responder requests.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { StapleDaemon, sourceFromConfig, type LogEvent } from '../../src/daemon/daemon.js';
import { buildTestPki, mintCert } from '../helpers/mint.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

describe('daemon seams (in process)', () => {
  let dir: string;
  let daemon: StapleDaemon | undefined;
  const logs: LogEvent[] = [];

  beforeAll(async () => {
    dir = await tempDir('sk-seams-');
  });
  afterAll(async () => {
    await daemon?.stop();
    await cleanUp();
  });

  it('runs hooks with the env it was given, and counts a failed caIssuers host in the host backoff', async () => {
    const now = new Date();
    const pki = buildTestPki({ keyType: 'ec-p256', delegated: false, now, leafCount: 1 });
    // nothing listens on port 1: the issuer download fails at the network level
    const leaf = mintCert({
      subjectCN: 'seams.example',
      issuer: pki.root,
      notBefore: new Date(now.getTime() - 86_400_000),
      notAfter: new Date(now.getTime() + 30 * 86_400_000),
      ocspUrls: ['http://127.0.0.1:9/ocsp'],
      caIssuersUrls: ['http://127.0.0.1:1/ca.der'],
    });
    const ocsp = join(dir, 'ocsp');
    await mkdir(ocsp);
    await writeFile(join(dir, 'leaf.pem'), leaf.pem);
    const out = join(dir, 'hook-env.txt');
    const file = join(dir, 'staplekeeper.yaml');
    await writeFile(
      file,
      [
        `ocsp_folder: ${ocsp}`,
        'hooks:',
        `  on_failure: 'printf %s "$SK_SEAMS_MARK" > ${out}'`,
        'domains:',
        '  seams:',
        `    cert: ${join(dir, 'leaf.pem')}`,
        '    ocsp: seams.der',
      ].join('\n'),
    );
    const config = await loadConfig(file);
    daemon = await StapleDaemon.start({
      source: sourceFromConfig(config),
      log: (e) => logs.push(e),
      watch: false,
      env: { PATH: process.env.PATH, SK_SEAMS_MARK: 'given-to-the-daemon' },
    });
    const deadline = Date.now() + 20_000;
    let text: string | undefined;
    while (text === undefined && Date.now() < deadline) {
      text = await readFile(out, 'utf8').catch(() => undefined);
      if (text === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(text).toBe('given-to-the-daemon');
    const snap = daemon.snapshot();
    const cert = snap.certificates.find((c) => c.id === 'seams');
    expect(cert?.lastCode).toBe('NO_ISSUER');
    // the caIssuers host failed at the network level: it is in backoff like a responder would be
    expect(snap.hostsInBackoff).toBe(1);
    // and it is not reported as the responder
    expect(cert?.responderUrl ?? null).toBeNull();
  }, 30_000);
});
