/**
 * The daemon's watch of non-recursive folders (src/daemon/folder-watch.ts:
 * one `fs.watch` per folder) as a real `staplekeeper daemon` process with a
 * `domains` configuration against a real `openssl ocsp` responder: a
 * certificate written in place, a temporary file renamed over one, a new
 * file, a deletion, certbot's renewal (new archive files, the live/ links
 * swapped), a folder removed and created again, and the daemon's own staple
 * writes in a watched folder not making it loop. Every change must be acted
 * on within seconds (the sweep is hourly: only the watcher can do it).
 * Needs `npm run build` first.
 */
import { appendFile, copyFile, mkdir, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPki, type Pki } from '../helpers/mint.js';
import { freePort, startResponder, type Responder } from '../helpers/servers.js';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import { tempDir, cleanUp } from '../helpers/temp.js';
import { CliProcess, assertBuilt } from '../helpers/cli-harness.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('staplekeeper daemon: watching non-recursive folders (real process, real responder)', () => {
  let dir: string;
  let pki: Pki;
  let responder: Responder;
  let daemon: CliProcess;
  let certs: string;
  let other: string;
  let live: string;
  let archive: string;
  let scans: string;

  /** Is the staple at `staple` a good response for the certificate in `certFile`? */
  const stapleIsFor = async (staple: string, certFile: string): Promise<boolean> => {
    const [cert] = loadCertificates(await readFile(certFile), certFile);
    const [ca] = loadCertificates(await readFile(pki.ca.cert), pki.ca.cert);
    try {
      return verifyResponse(await readFile(staple), { cert: cert!, issuer: ca!, now: new Date() }).status === 'good';
    } catch {
      return false;
    }
  };
  /** Waits until `staple` is for the certificate in `certFile`. */
  const waitStaple = async (staple: string, certFile: string, ms = 20_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!(await stapleIsFor(staple, certFile))) {
      if (Date.now() > end) throw new Error(`${staple} is not for ${certFile}; output:\n${daemon.lines.join('\n')}`);
      await sleep(100);
    }
  };

  beforeAll(async () => {
    assertBuilt();
    dir = await tempDir('sk-daemon-watch-');
    certs = path.join(dir, 'certs');
    other = path.join(dir, 'other');
    live = path.join(dir, 'letsencrypt', 'live', 'x.test');
    archive = path.join(dir, 'letsencrypt', 'archive', 'x.test');
    scans = path.join(dir, 'scans');
    for (const d of [certs, other, live, archive, scans]) await mkdir(d, { recursive: true });
    const port = await freePort();
    pki = await createPki({
      dir: path.join(dir, 'pki'),
      ocspUrl: `http://127.0.0.1:${port}`,
      leaves: ['a', 'b', 'n', 'e', 'x', 'a2', 'b2', 'x2', 'e2', 's'].map((name) => ({ name })),
    });
    responder = await startResponder({ pki, port });
    const leaf = (name: string): string => pki.leaves[name]!.cert;
    await copyFile(leaf('a'), path.join(certs, 'a.pem'));
    await copyFile(leaf('b'), path.join(certs, 'b.pem'));
    await copyFile(leaf('e'), path.join(other, 'e.pem'));
    // certbot's layout: live/<name>/cert.pem -> ../../archive/<name>/cert1.pem
    await copyFile(leaf('x'), path.join(archive, 'cert1.pem'));
    await copyFile(pki.leaves.x!.chain, path.join(archive, 'chain1.pem'));
    await symlink('../../archive/x.test/cert1.pem', path.join(live, 'cert.pem'));
    await symlink('../../archive/x.test/chain1.pem', path.join(live, 'chain.pem'));
    const chain = pki.leaves.a!.chain;
    const domain = (name: string, cert: string, chainFile = chain): string[] => [
      `  ${name}:`,
      `    cert: ${cert}`,
      `    chain: ${chainFile}`,
      // the staples of certs/ lie in certs/ itself: the daemon's own writes land in a watched folder
      `    ocsp: ${name === 'a' || name === 'b' || name === 'n' ? path.join(certs, `${name}.der`) : `${name}.der`}`,
    ];
    await writeFile(
      path.join(dir, 'staplekeeper.yaml'),
      [
        `ocsp_folder: ${path.join(dir, 'ocsp')}`,
        'scan_keys:',
        `  - folder: ${scans}`, // recursive (the default)
        'domains:',
        ...domain('a', path.join(certs, 'a.pem')),
        ...domain('b', path.join(certs, 'b.pem')),
        ...domain('n', path.join(certs, 'n.pem')), // missing at start
        ...domain('e', path.join(other, 'e.pem')),
        ...domain('x', path.join(live, 'cert.pem'), path.join(live, 'chain.pem')),
        '',
      ].join('\n'),
    );
    await mkdir(path.join(dir, 'ocsp'));
    daemon = new CliProcess(['daemon', '-c', 'staplekeeper.yaml', '-v'], {
      cwd: dir,
      env: { ...process.env, JOURNAL_STREAM: '' },
    });
    await daemon.waitFor(/daemon started: 4 certificate\(s\)/, 30_000);
    for (const id of ['a', 'b', 'e', 'x'])
      await daemon.waitFor(new RegExp(`^\\[${id}\\] updated OCSP response: good`), 20_000);
  }, 90_000);

  afterAll(async () => {
    await daemon?.kill();
    await responder?.stop();
    await cleanUp();
  });

  it('does not react to its own staple writes in a watched folder (no loop)', async () => {
    const from = daemon.mark();
    await sleep(2500); // several debounce periods after the staples of the first pass were written
    const after = daemon.lines.slice(from);
    expect(
      after.filter((l) => /certificate changed|new certificate|updated OCSP response|removed; fetching/.test(l)),
    ).toEqual([]);
    expect(await stapleIsFor(path.join(certs, 'a.der'), path.join(certs, 'a.pem'))).toBe(true);
  });

  it('a certificate written in place is checked at once and its staple replaced', async () => {
    const from = daemon.mark();
    await writeFile(path.join(certs, 'a.pem'), await readFile(pki.leaves.a2!.cert)); // truncate and write
    await daemon.waitFor(/^\[a\] certificate changed: .*a\.pem; checking its staple now/, 15_000, from);
    await waitStaple(path.join(certs, 'a.der'), pki.leaves.a2!.cert);
  });

  it('a temporary file renamed over a certificate (lego, acme.sh) is checked at once', async () => {
    const from = daemon.mark();
    const tmp = path.join(certs, '.b.pem.tmp');
    await copyFile(pki.leaves.b2!.cert, tmp);
    await rename(tmp, path.join(certs, 'b.pem'));
    await daemon.waitFor(/^\[b\] certificate changed: .*b\.pem; checking its staple now/, 15_000, from);
    await waitStaple(path.join(certs, 'b.der'), pki.leaves.b2!.cert);
  });

  it('a certificate file that appears is stapled at once', async () => {
    const from = daemon.mark();
    await copyFile(pki.leaves.n!.cert, path.join(certs, 'n.pem'));
    await daemon.waitFor(/^\[n\] new certificate .*n\.pem; fetching its staple now/, 15_000, from);
    await waitStaple(path.join(certs, 'n.der'), pki.leaves.n!.cert);
  });

  it("certbot's renewal (new archive files, the live/ links swapped) is picked up at once", async () => {
    const staple = path.join(dir, 'ocsp', 'x.der');
    expect(await stapleIsFor(staple, pki.leaves.x!.cert)).toBe(true);
    const from = daemon.mark();
    await copyFile(pki.leaves.x2!.cert, path.join(archive, 'cert2.pem'));
    await copyFile(pki.leaves.x2!.chain, path.join(archive, 'chain2.pem'));
    // certbot's storage.py: unlink the link, then make it again to the new version
    for (const kind of ['cert', 'chain']) {
      await unlink(path.join(live, `${kind}.pem`));
      await symlink(`../../archive/x.test/${kind}2.pem`, path.join(live, `${kind}.pem`));
    }
    await daemon.waitFor(/^\[x\] certificate changed: .*cert\.pem; checking its staple now/, 15_000, from);
    await waitStaple(staple, pki.leaves.x2!.cert);
  });

  it('a certificate behind a link, rewritten in place where the link points, is checked at once', async () => {
    const staple = path.join(dir, 'ocsp', 'x.der');
    const from = daemon.mark();
    await writeFile(path.join(archive, 'cert2.pem'), await readFile(pki.leaves.x!.cert));
    await daemon.waitFor(/^\[x\] certificate changed: .*cert\.pem; checking its staple now/, 15_000, from);
    await waitStaple(staple, pki.leaves.x!.cert);
  });

  it('a deleted certificate stops being scheduled', async () => {
    const from = daemon.mark();
    await unlink(path.join(certs, 'b.pem'));
    await daemon.waitFor(/^\[b\] certificate .*b\.pem is gone; no longer scheduled/, 15_000, from);
  });

  it('a folder removed and created again: its certificate is dropped, then stapled again once it is back', async () => {
    let from = daemon.mark();
    await rm(other, { recursive: true });
    await daemon.waitFor(/^\[e\] certificate .*e\.pem is gone; no longer scheduled/, 15_000, from);
    from = daemon.mark();
    await mkdir(other);
    await copyFile(pki.leaves.e2!.cert, path.join(other, 'e.pem'));
    await daemon.waitFor(/^\[e\] new certificate .*e\.pem; fetching its staple now/, 15_000, from);
    await waitStaple(path.join(dir, 'ocsp', 'e.der'), pki.leaves.e2!.cert);
    // the new folder is the one watched now
    from = daemon.mark();
    await appendFile(path.join(other, 'e.pem'), '\n');
    await daemon.waitFor(/^\[e\] certificate changed: .*e\.pem; checking its staple now/, 15_000, from);
    expect(daemon.err.filter((l) => /watching folders/.test(l))).toEqual([]);
  });

  it('a recursive scan: a subfolder that appears with a certificate triple is stapled at once, and watched', async () => {
    const staging = path.join(dir, 'staging-site');
    await mkdir(staging);
    const leaf = pki.leaves.s!;
    await copyFile(leaf.cert, path.join(staging, 's.pem'));
    await copyFile(leaf.chain, path.join(staging, 's-chain.pem'));
    await copyFile(leaf.rootchain, path.join(staging, 's-rootchain.pem'));
    let from = daemon.mark();
    await rename(staging, path.join(scans, 'site')); // the whole folder at once: one event, in scans/
    await daemon.waitFor(/^\[site\/s\] new certificate .*s\.pem; fetching its staple now/, 15_000, from);
    await daemon.waitFor(/^\[site\/s\] updated OCSP response: good/, 15_000, from);
    // a change inside the new subfolder is seen: it is watched
    from = daemon.mark();
    await unlink(path.join(scans, 'site', 's-rootchain.pem'));
    await daemon.waitFor(/^\[site\/s\] certificate .*s\.pem is gone; no longer scheduled/, 15_000, from);
  });
});
