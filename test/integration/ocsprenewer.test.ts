/**
 * The `ocsprenewer` drop-in as a real process against a real `openssl ocsp`
 * responder: ocsprenewer's flags and file naming, `.noocsp`, `*.issuer.crt`,
 * certificates without an OCSP URL, one-shot and persist mode with the flags
 * of ocsprenewer's own README. Needs `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addLeaf, createPki, type Pki } from '../helpers/mint.js';
import { freePort, startResponder, type Responder } from '../helpers/servers.js';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/ocsprenewer');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

function ocsprenewer(args: string[], cwd: string): Promise<Result> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => {
      children.delete(p);
      resolve({ code, stdout, stderr });
    });
  });
}

async function stapleFor(staple: string, certFile: string, caFile: string): Promise<string | undefined> {
  const [cert] = loadCertificates(await readFile(certFile), certFile);
  const [ca] = loadCertificates(await readFile(caFile), caFile);
  try {
    return verifyResponse(await readFile(staple), { cert: cert!, issuer: ca!, now: new Date() }).status;
  } catch {
    return undefined;
  }
}

describe('ocsprenewer drop-in (real process, real responder)', () => {
  let dir: string;
  let pki: Pki;
  let responder: Responder;
  let certs: string;
  let out: string;

  beforeAll(async () => {
    dir = await tempDir('sk-renewer-');
    certs = path.join(dir, 'certs');
    out = path.join(dir, 'out');
    await mkdir(certs);
    await mkdir(out);
    const port = await freePort();
    pki = await createPki({
      dir: path.join(dir, 'pki'),
      ocspUrl: `http://127.0.0.1:${port}`,
      leaves: [
        { name: 'bundled' },
        { name: 'separate' },
        { name: 'flagged' },
        { name: 'private', noOcspUrl: true },
        { name: 'later' },
      ],
    });
    responder = await startResponder({ pki, port });
    // the issuer in the same PEM file (ocsprenewer's convention)
    await copyFile(pki.leaves.bundled!.bundle, path.join(certs, 'bundled.crt'));
    // the leaf alone, its issuer beside it as <name>.issuer.crt (never renewed itself)
    await copyFile(pki.leaves.separate!.cert, path.join(certs, 'separate.crt'));
    await copyFile(pki.ca.cert, path.join(certs, 'separate.issuer.crt'));
    // skipped by its flag file
    await copyFile(pki.leaves.flagged!.bundle, path.join(certs, 'flagged.crt'));
    await writeFile(path.join(certs, 'flagged.crt.noocsp'), '');
    // a private-CA certificate without an OCSP URL
    await copyFile(pki.leaves.private!.bundle, path.join(certs, 'private.crt'));
    // not a certificate extension: ignored in a folder scan
    await writeFile(path.join(certs, 'README.txt'), 'not a certificate');
  }, 60_000);

  afterAll(async () => {
    for (const c of children) {
      c.kill('SIGKILL');
    }
    await responder?.stop();
    await cleanUp();
  });

  const readmeFlags = ['-out-dir', 'out', '-cert-extensions', '.crt', '-extension', '.ocsp.der'];

  it('one-shot over a folder: renews every certificate, names staples like ocsprenewer, fails on a certificate without OCSP URL', async () => {
    const r = await ocsprenewer([...readmeFlags, '-dirs', 'certs'], dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^\[bundled\] renewed .*out\/bundled\.ocsp\.der: good/m);
    expect(r.stdout).toMatch(/^\[separate\] renewed .*out\/separate\.ocsp\.der: good/m);
    expect(r.stderr).toMatch(/error NO_OCSP_URL: .*private\.crt.*use -allow-nonocsp-in-dir/);
    expect((await readdir(out)).sort()).toEqual(['bundled.ocsp.der', 'separate.ocsp.der']);
    expect(await stapleFor(path.join(out, 'bundled.ocsp.der'), pki.leaves.bundled!.cert, pki.ca.cert)).toBe('good');
    expect(await stapleFor(path.join(out, 'separate.ocsp.der'), pki.leaves.separate!.cert, pki.ca.cert)).toBe('good');
  });

  it('-allow-nonocsp-in-dir skips such certificates quietly and exits 0; -v says what was skipped', async () => {
    const r = await ocsprenewer([...readmeFlags, '-allow-nonocsp-in-dir', '-dirs', 'certs'], dir);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).not.toMatch(/private|flagged/);
    const v = await ocsprenewer([...readmeFlags, '-allow-nonocsp-in-dir', '-v', '-dirs', 'certs'], dir);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/skipped ".*flagged\.crt": a flagged\.crt\.noocsp flag file is present/);
    expect(v.stdout).toMatch(/skipped ".*private\.crt": the certificate names no OCSP responder/);
  });

  it('one-shot renews everything (force) unless -if-needed', async () => {
    const staple = path.join(out, 'bundled.ocsp.der');
    const before = await readFile(staple);
    const ifNeeded = await ocsprenewer([...readmeFlags, '-allow-nonocsp-in-dir', '-if-needed', '-dirs', 'certs'], dir);
    expect(ifNeeded.code).toBe(0);
    expect(ifNeeded.stdout).toBe('');
    expect((await readFile(staple)).equals(before)).toBe(true);
    // the responder stamps answers to the second, and only a newer answer replaces a staple
    await sleep(1100);
    const forced = await ocsprenewer([...readmeFlags, '-allow-nonocsp-in-dir', '-dirs', 'certs'], dir);
    expect(forced.code).toBe(0);
    expect((await readFile(staple)).equals(before)).toBe(false);
  });

  it('takes certificate files as arguments with the default extension, and -not-really writes nothing', async () => {
    const other = path.join(dir, 'other');
    await mkdir(other);
    const requestsBefore = responder.requests.length;
    const dry = await ocsprenewer(['-n', '-out-dir', 'other', 'certs/bundled.crt'], dir);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/\[bundled\] would renew .*other\/bundled\.ocsp \(forced\)/);
    expect(await readdir(other)).toEqual([]);
    expect(responder.requests.length).toBe(requestsBefore); // no network either
    const real = await ocsprenewer(['--out-dir=other', 'certs/bundled.crt'], dir);
    expect(real.code).toBe(0);
    expect(await readdir(other)).toEqual(['bundled.ocsp']);
    // a file argument without an OCSP URL is an error even with -allow-nonocsp-in-dir
    const priv = await ocsprenewer(['-out-dir', 'other', '-allow-nonocsp-in-dir', 'certs/private.crt'], dir);
    expect(priv.code).toBe(1);
    expect(priv.stderr).toMatch(/NO_OCSP_URL/);
  });

  it('parses flags as Go does: exit 2 for unparseable ones, 1 for bad values, 0 for -help and -version', async () => {
    const unknown = await ocsprenewer(['-bogus', 'certs'], dir);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^flag provided but not defined: -bogus\nUsage of ocsprenewer:/);
    const noValue = await ocsprenewer(['-out-dir'], dir);
    expect(noValue.code).toBe(2);
    expect(noValue.stderr).toMatch(/flag needs an argument: -out-dir/);
    const badFloat = await ocsprenewer(['-timer-t1', 'half', 'certs/bundled.crt'], dir);
    expect(badFloat.code).toBe(2);
    expect(badFloat.stderr).toMatch(/invalid value "half" for flag -timer-t1: parse error/);
    const tooSmall = await ocsprenewer(['-timer-t1=5', 'certs/bundled.crt'], dir);
    expect(tooSmall.code).toBe(1);
    expect(tooSmall.stderr).toMatch(/timer T1 set too small \(10% minimum\)/);
    const tooLarge = await ocsprenewer(['-timer-t1', '0.99', 'certs/bundled.crt'], dir);
    expect(tooLarge.code).toBe(1);
    expect(tooLarge.stderr).toMatch(/timer T1 set too large \(95% maximum\)/);
    const percent = await ocsprenewer(['-out-dir', 'out', '-timer-t1', '75', '-if-needed', 'certs/bundled.crt'], dir);
    expect(percent.code).toBe(0);
    const help = await ocsprenewer(['-help'], dir);
    expect(help.code).toBe(0);
    expect(help.stderr).toMatch(/-timer-t1 float\n\s+how far through .* \(default 0\.5\)/);
    expect(help.stderr).toMatch(/-cert-extensions string\n.*\(default "\.crt \.cert \.pem"\)/);
    const version = await ocsprenewer(['-version'], dir);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/ocsprenewer \(staplekeeper \d+\.\d+\.\d+\)/);
    const noArgs = await ocsprenewer([], dir);
    expect(noArgs.code).toBe(1);
    expect(noArgs.stderr).toMatch(/no input paths to examine/);
    const noOut = await ocsprenewer(['-out-dir', 'missing', 'certs/bundled.crt'], dir);
    expect(noOut.code).toBe(1);
    expect(noOut.stderr).toMatch(/output directory "missing" does not exist or is not a directory/);
  });

  it('-persist with the README flags: renews at start (-now), picks up new certificates, obeys SIGHUP/SIGUSR2/SIGTERM', async () => {
    const persistOut = path.join(dir, 'persist-out');
    await mkdir(persistOut);
    const p = spawn(
      process.execPath,
      [
        BIN,
        '-out-dir',
        'persist-out',
        '-cert-extensions',
        '.crt',
        '-extension',
        '.ocsp.der',
        '-now',
        '-allow-nonocsp-in-dir',
        '-dirs',
        '-persist',
        'certs',
      ],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.add(p);
    let output = '';
    p.stdout.on('data', (d: Buffer) => (output += d.toString()));
    p.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    const waitFor = async (re: RegExp, from = 0, ms = 10_000): Promise<void> => {
      const end = Date.now() + ms;
      while (!re.test(output.slice(from))) {
        if (Date.now() > end || p.exitCode !== null) throw new Error(`no ${re} in:\n${output}`);
        await sleep(50);
      }
    };
    try {
      await waitFor(/^\[bundled\] renewed \(forced\) OCSP response: good/m);
      await waitFor(/^\[separate\] renewed \(forced\) OCSP response: good/m);
      // (the daemon may still hold its lock file while it finishes the batch)
      const staples = (await readdir(persistOut)).filter((n) => !n.startsWith('.')).sort();
      expect(staples).toEqual(['bundled.ocsp.der', 'separate.ocsp.der']);
      expect(output).not.toMatch(/private|flagged/);

      // a new certificate dropped into the folder is stapled at once
      let from = output.length;
      const later = pki.leaves.later!;
      await copyFile(later.bundle, path.join(certs, 'later.crt'));
      await waitFor(/^\[later\] new certificate .*later\.crt; fetching its staple now/m, from);
      await waitFor(/^\[later\] updated OCSP response: good/m, from);
      expect(await stapleFor(path.join(persistOut, 'later.ocsp.der'), later.cert, pki.ca.cert)).toBe('good');

      // a renewed certificate (written in place) gets a staple for the new certificate
      from = output.length;
      const renewed = await addLeaf(pki, { name: 'later2' });
      await writeFile(path.join(certs, 'later.crt'), await readFile(renewed.bundle));
      await waitFor(/^\[later\] updated OCSP response: good/m, from);
      expect(await stapleFor(path.join(persistOut, 'later.ocsp.der'), renewed.cert, pki.ca.cert)).toBe('good');

      // SIGHUP is SIGUSR1 here: check per the timers, renew nothing fresh
      from = output.length;
      const before = (await stat(path.join(persistOut, 'bundled.ocsp.der'))).mtimeMs;
      p.kill('SIGHUP');
      await waitFor(/^SIGHUP: checking every certificate now/m, from);
      await sleep(500);
      expect((await stat(path.join(persistOut, 'bundled.ocsp.der'))).mtimeMs).toBe(before);
      expect(p.exitCode).toBeNull();

      // SIGUSR2: renew everything now (a second later, so that the answers are newer)
      await sleep(1100);
      from = output.length;
      p.kill('SIGUSR2');
      await waitFor(/^\[bundled\] renewed \(forced\)/m, from);
      await waitFor(/^\[later\] renewed \(forced\)/m, from);

      const sent = Date.now();
      p.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(Date.now() - sent).toBeLessThan(10_000);
      expect(output).toMatch(/^stopped$/m);
    } finally {
      if (p.exitCode === null) p.kill('SIGKILL');
    }
  }, 40_000);
});
