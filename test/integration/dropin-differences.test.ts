/**
 * The differences of the drop-ins from the originals (docs/migrating.md), each
 * through the real command (`bin/ocspbot`, `bin/ocsprenewer` as child
 * processes) against a real `openssl ocsp` responder. Each test shows the
 * behaviour chosen for one item of the issue; docs/migrating.md lists the
 * differences that remain on purpose. Needs `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pki } from '../helpers/mint.js';
import { assertBuilt, cleanEnv } from '../helpers/cli-harness.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { startOpensslPki, freePort, type Responder, domainLines } from '../helpers/servers.js';
import { cleanUp } from '../helpers/temp.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** Runs `bin/<prog> …args` in `cwd` to completion (killed after 60 s). */
function run(
  prog: 'ocspbot' | 'ocsprenewer' | 'staplekeeper',
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'bin', prog), ...args], {
      cwd,
      env: cleanEnv({ STAPLEKEEPER_CACHE_DIR: 'off', ...env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(p);
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      children.delete(p);
      resolve({ code, stdout, stderr });
    });
  });
}

let root: string;
let pki: Pki;
let responder: Responder;

beforeAll(async () => {
  assertBuilt();
  // a week of validity, so that ocspbot's minimum_validity keeps a fresh staple
  ({ root, pki, responder } = await startOpensslPki(
    'sk-dropin18-',
    { leaves: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] },
    { nmin: 7 * 24 * 60 },
  ));
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await cleanUp();
});

let n = 0;
async function workdir(): Promise<string> {
  const d = path.join(root, `w${++n}`);
  await mkdir(d, { recursive: true });
  return d;
}

async function modeOf(p: string): Promise<number> {
  return (await stat(p)).mode & 0o777;
}

describe('ocsprenewer drop-in: the differences docs/migrating.md lists', () => {
  it('7: the same file twice, the same folder twice, x.crt and x.pem with one certificate: renewed once, exit 0', async () => {
    const wd = await workdir();
    await mkdir(path.join(wd, 'certs'));
    await mkdir(path.join(wd, 'out'));
    await copyFile(pki.leaves.a!.bundle, path.join(wd, 'certs', 'x.crt'));
    await copyFile(pki.leaves.a!.bundle, path.join(wd, 'certs', 'x.pem'));
    const before = responder.requests.length;

    const files = await run('ocsprenewer', ['-out-dir', 'out', 'certs/x.crt', 'certs/x.crt'], wd);
    expect(files.stderr).toBe('');
    expect(files.code).toBe(0);
    expect(files.stdout.match(/renewed .*out\/x\.ocsp/g)).toHaveLength(1);

    // the responder stamps answers to the second; only a newer answer replaces a staple
    await sleep(1100);
    const folders = await run('ocsprenewer', ['-out-dir', 'out', '-dirs', 'certs', 'certs'], wd);
    expect(folders.stderr).toBe('');
    expect(folders.code).toBe(0);
    expect(folders.stdout.match(/renewed .*out\/x\.ocsp/g)).toHaveLength(1);

    await sleep(1100);
    const verbose = await run('ocsprenewer', ['-v', '-out-dir', 'out', '-dirs', 'certs'], wd);
    expect(verbose.code).toBe(0);
    expect(verbose.stdout).toMatch(
      /skipped ".*x\.pem": the same certificate as .*x\.crt, whose staple .*x\.ocsp it shares/,
    );
    expect(await readdir(path.join(wd, 'out'))).toEqual(['x.ocsp']);
    // one request per run: the duplicate was not fetched a second time
    expect(responder.requests.length - before).toBe(3);

    // two DIFFERENT certificates under one staple name stay an error
    await copyFile(pki.leaves.b!.bundle, path.join(wd, 'certs', 'x.pem'));
    const clash = await run('ocsprenewer', ['-out-dir', 'out', '-dirs', 'certs'], wd);
    expect(clash.code).toBe(1);
    expect(clash.stderr).toMatch(
      /x\.pem: its staple .*x\.ocsp would also be the staple of .*x\.crt, a different certificate/,
    );
  });

  it('8: a folder where every certificate has a .noocsp flag exits 1 (no certificates), as ocsprenewer', async () => {
    const wd = await workdir();
    await mkdir(path.join(wd, 'certs'));
    await copyFile(pki.leaves.a!.bundle, path.join(wd, 'certs', 'one.crt'));
    await copyFile(pki.leaves.b!.bundle, path.join(wd, 'certs', 'two.crt'));
    await writeFile(path.join(wd, 'certs', 'one.crt.noocsp'), '');
    await writeFile(path.join(wd, 'certs', 'two.crt.noocsp'), '');
    const r = await run('ocsprenewer', ['-dirs', 'certs'], wd);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /certs: no certificate files found in the directory \(every one has a \.noocsp flag file\)/,
    );
    expect((await readdir(wd)).filter((f) => f.endsWith('.ocsp'))).toEqual([]);
    // one certificate left to try: renewed, exit 0
    await rm(path.join(wd, 'certs', 'two.crt.noocsp'));
    const one = await run('ocsprenewer', ['-dirs', 'certs'], wd);
    expect(one.stderr).toBe('');
    expect(one.code).toBe(0);
    expect((await readdir(wd)).filter((f) => f.endsWith('.ocsp'))).toEqual(['two.ocsp']);
  });

  it('9: -cert-extensions "" cuts nothing from the name (x.crt.ocsp) and a folder scan looks for *.crt', async () => {
    const wd = await workdir();
    await mkdir(path.join(wd, 'certs'));
    await copyFile(pki.leaves.a!.bundle, path.join(wd, 'certs', 'x.crt'));
    await copyFile(pki.leaves.b!.bundle, path.join(wd, 'certs', 'y.pem'));
    const file = await run('ocsprenewer', ['-cert-extensions', '', 'certs/x.crt'], wd);
    expect(file.stderr).toBe('');
    expect(file.code).toBe(0);
    expect(await readdir(wd)).toContain('x.crt.ocsp');
    const dir = await run('ocsprenewer', ['-cert-extensions=', '-out-dir', 'certs', '-dirs', 'certs'], wd);
    expect(dir.stderr).toBe('');
    expect(dir.code).toBe(0);
    const names = await readdir(path.join(wd, 'certs'));
    expect(names).toContain('x.crt.ocsp');
    expect(names.filter((f) => f.startsWith('y') && f.endsWith('.ocsp'))).toEqual([]);
  });

  it("10: -timer-t1 takes Go's float syntax: inf is too large (exit 1), 0x1p-1 is 0.5, 1e400 is out of range (exit 2)", async () => {
    const wd = await workdir();
    await copyFile(pki.leaves.a!.bundle, path.join(wd, 'x.crt'));
    const inf = await run('ocsprenewer', ['-timer-t1', 'inf', 'x.crt'], wd);
    expect(inf.code).toBe(1);
    expect(inf.stderr).toMatch(/^configuring OCSP renewer failed: timer T1 set too large \(95% maximum\)/);
    const negInf = await run('ocsprenewer', ['-timer-t1=-Infinity', 'x.crt'], wd);
    expect(negInf.code).toBe(1);
    expect(negInf.stderr).toMatch(/timer T1 set too small \(10% minimum\)/);
    for (const half of ['0x1p-1', '0X.8P0', '5e-1', '.5', '0_0.5', '0x_1p-1']) {
      const r = await run('ocsprenewer', ['-timer-t1', half, '-if-needed', '-v', 'x.crt'], wd);
      expect({ half, code: r.code, stderr: r.stderr }).toEqual({ half, code: 0, stderr: '' });
    }
    const range = await run('ocsprenewer', ['-timer-t1', '1e400', 'x.crt'], wd);
    expect(range.code).toBe(2);
    expect(range.stderr).toMatch(
      /^invalid value "1e400" for flag -timer-t1: value out of range\nUsage of ocsprenewer:/,
    );
    for (const bad of ['0x1', '1__0', '_5', '5_', '+nan', 'infin', '0x', '1e', '0.5 ']) {
      const r = await run('ocsprenewer', ['-timer-t1', bad, 'x.crt'], wd);
      expect({ bad, code: r.code, parse: /: parse error\n/.test(r.stderr) }).toEqual({ bad, code: 2, parse: true });
    }
    const nan = await run('ocsprenewer', ['-timer-t1', 'NaN', 'x.crt'], wd);
    expect(nan.code).toBe(1);
    expect(nan.stderr).toMatch(/timer T1 must be a number, got NaN/);
  });

  it('11: a new staple is created with mode 0600, as ocsprenewer does; an existing staple keeps its mode', async () => {
    const wd = await workdir();
    await copyFile(pki.leaves.a!.bundle, path.join(wd, 'x.crt'));
    await copyFile(pki.leaves.b!.bundle, path.join(wd, 'y.crt'));
    const first = await run('ocsprenewer', ['x.crt'], wd);
    expect(first.code).toBe(0);
    expect(await modeOf(path.join(wd, 'x.ocsp'))).toBe(0o600);
    await chmod(path.join(wd, 'x.ocsp'), 0o640);
    const again = await run('ocsprenewer', ['x.crt', 'y.crt'], wd);
    expect(again.code).toBe(0);
    expect(await modeOf(path.join(wd, 'x.ocsp'))).toBe(0o640);
    expect(await modeOf(path.join(wd, 'y.ocsp'))).toBe(0o600);
    expect((await readFile(path.join(wd, 'x.ocsp'))).length).toBeGreaterThan(0);
  });
});

/** One ocspbot `domains` entry for a leaf of the test PKI. */
function domain(id: string, leaf: string, ocsp: string, extra: string[] = []): string[] {
  return domainLines(pki, id, leaf, ocsp, extra);
}

/**
 * Writes `ocspbot.yaml` in `wd`: a three-day minimum_validity, the staple
 * folder `out` (made now: the staple folder must exist, README.md
 * "Configuration"), then `lines`.
 */
async function ocspbotFolder(wd: string, lines: string[]): Promise<void> {
  await mkdir(path.join(wd, 'out'));
  await writeFile(path.join(wd, 'ocspbot.yaml'), ['minimum_validity: 3d', 'ocsp_folder: out', ...lines, ''].join('\n'));
}

/** A URL where nothing listens: that domain's renewal fails. */
async function deadUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

describe('ocspbot drop-in: the differences docs/migrating.md lists', () => {
  it('1: stop_on_error with the default parallel_threads (1) goes one at a time and writes nothing after the first failure', async () => {
    const wd = await workdir();
    await ocspbotFolder(wd, [
      'stop_on_error: True',
      'domains:',
      ...domain('first', 'a', 'first.der'),
      ...domain('second', 'b', 'second.der', [`ocsp_responder_uri: ${await deadUrl()}`]),
      ...domain('third', 'c', 'third.der'),
      ...domain('fourth', 'a', 'fourth.der'),
    ]);
    const r = await run('ocspbot', [], wd);
    expect(r.code).toBe(255);
    expect(r.stdout).toMatch(/^\[first\] updated OCSP response: good/m);
    expect(r.stderr).toMatch(/^\[second\] error HTTP_NETWORK: /m);
    expect(r.stdout + r.stderr).not.toMatch(/\[third\]|\[fourth\]/);
    expect(r.stdout).toContain('Failure: 0 unchanged OCSP responses, 1 updated OCSP responses and 1 failures.');
    expect((await readdir(path.join(wd, 'out'))).filter((f) => !f.startsWith('.'))).toEqual(['first.der']);

    // without stop_on_error every domain is tried: the failure does not stop the others
    await writeFile(
      path.join(wd, 'ocspbot.yaml'),
      (await readFile(path.join(wd, 'ocspbot.yaml'), 'utf8')).replace('stop_on_error: True', 'stop_on_error: False'),
    );
    const all = await run('ocspbot', [], wd);
    expect(all.code).toBe(255);
    expect(all.stdout).toContain('Failure: 1 unchanged OCSP responses, 2 updated OCSP responses and 1 failures.');
  });

  it('2 and 3: output_log holds the ERROR lines too, and a fixed name is started afresh at each run', async () => {
    const wd = await workdir();
    const dead = await deadUrl();
    await ocspbotFolder(wd, [
      'output_log: run.log',
      'domains:',
      ...domain('good', 'a', 'good.der'),
      ...domain('bad', 'b', 'bad.der', [`ocsp_responder_uri: ${dead}`]),
    ]);
    const first = await run('ocspbot', [], wd);
    expect(first.code).toBe(255);
    expect(first.stdout).toBe('');
    // the error line goes to stderr (no error_log) and, as ocspbot writes it, into the output log too
    expect(first.stderr).toMatch(/^\[bad\] error HTTP_NETWORK: /m);
    const log1 = await readFile(path.join(wd, 'run.log'), 'utf8');
    expect(log1).toMatch(/^\[good\] updated OCSP response: good/m);
    expect(log1).toMatch(/^\[bad\] error HTTP_NETWORK: /m);
    expect(log1).toContain('Failure: 0 unchanged OCSP responses, 1 updated OCSP responses and 1 failures.');

    const second = await run('ocspbot', [], wd);
    expect(second.code).toBe(255);
    const log2 = await readFile(path.join(wd, 'run.log'), 'utf8');
    // this run only: ocspbot opens the log with 'w'
    expect(log2).not.toContain('[good] updated');
    expect(log2).toMatch(/^\[good\] unchanged/m);
    expect(log2.match(/^Failure: /gm)).toHaveLength(1);
    expect(log2).toContain('Failure: 1 unchanged OCSP responses, 0 updated OCSP responses and 1 failures.');

    // output_log and error_log naming one file: each line once
    await writeFile(
      path.join(wd, 'ocspbot.yaml'),
      (await readFile(path.join(wd, 'ocspbot.yaml'), 'utf8')).replace(
        'output_log: run.log',
        'output_log: both.log\nerror_log: both.log',
      ),
    );
    const same = await run('ocspbot', [], wd);
    expect(same.code).toBe(255);
    expect(same.stdout + same.stderr).toBe('');
    const both = await readFile(path.join(wd, 'both.log'), 'utf8');
    expect(both.match(/^\[bad\] error /gm)).toHaveLength(1);

    // without log files, ocspbot prints its ERROR lines on stdout as well as stderr
    await writeFile(
      path.join(wd, 'ocspbot.yaml'),
      (await readFile(path.join(wd, 'ocspbot.yaml'), 'utf8')).replace(
        'output_log: both.log\nerror_log: both.log\n',
        '',
      ),
    );
    const plain = await run('ocspbot', [], wd);
    expect(plain.code).toBe(255);
    expect(plain.stdout).toMatch(/^\[bad\] error HTTP_NETWORK: /m);
    expect(plain.stderr).toMatch(/^\[bad\] error HTTP_NETWORK: /m);

    // `staplekeeper run` keeps appending to a log file, and its errors stay on the error stream
    await writeFile(
      path.join(wd, 'ocspbot.yaml'),
      (await readFile(path.join(wd, 'ocspbot.yaml'), 'utf8')).replace('domains:', 'output_log: native.log\ndomains:'),
    );
    for (let i = 0; i < 2; i++) {
      const native = await run('staplekeeper', ['run', '-c', 'ocspbot.yaml'], wd);
      expect(native.code).toBe(255);
    }
    const nativeLog = await readFile(path.join(wd, 'native.log'), 'utf8');
    expect(nativeLog.match(/^Failure: /gm)).toHaveLength(2);
    expect(nativeLog).not.toContain('[bad] error');
  });

  it('4: a missing includes folder is a warning ("Cannot find include file"); the rest is renewed, exit as ocspbot', async () => {
    const wd = await workdir();
    await mkdir(path.join(wd, 'out')); // the staple folder must exist (README.md, "Configuration")
    await mkdir(path.join(wd, 'conf.d'));
    await writeFile(
      path.join(wd, 'conf.d', 'x.yml'),
      ['domains:', ...domain('included', 'c', 'included.der'), ''].join('\n'),
    );
    await writeFile(
      path.join(wd, 'ocspbot.yaml'),
      ['minimum_validity: 3d', 'ocsp_folder: out', 'includes:', '  - gone.d', '  - conf.d', ''].join('\n'),
    );
    const r = await run('ocspbot', [], wd);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^ocspbot: warning: ocspbot\.yaml:4:5 includes\[0\]: Cannot find include file "gone\.d"!/m,
    );
    // as ocspbot, the warning is in the output too
    expect(r.stdout).toMatch(/warning: .*Cannot find include file "gone\.d"!/);
    expect(r.stdout).toMatch(/^\[included\] updated OCSP response: good/m);
    expect(await readdir(path.join(wd, 'out'))).toContain('included.der');
    // `staplekeeper run` still refuses it
    const native = await run('staplekeeper', ['run', '-c', 'ocspbot.yaml'], wd);
    expect(native.code).toBe(253);
    expect(native.stderr).toMatch(/includes\[0\]: include folder not found/);
    // an include that is a file, not a folder, stays a configuration error in ocspbot too
    await writeFile(path.join(wd, 'gone.d'), '');
    const file = await run('ocspbot', [], wd);
    expect(file.code).toBe(253);
    expect(file.stderr).toMatch(/includes\[0\]: not a folder/);
  });

  it('5: a staple path that is a folder is a configuration error at load (253): nothing fetched, nothing written', async () => {
    const wd = await workdir();
    await mkdir(path.join(wd, 'out', 'blocked.der'), { recursive: true });
    await writeFile(
      path.join(wd, 'ocspbot.yaml'),
      [
        'minimum_validity: 3d',
        'ocsp_folder: out',
        'domains:',
        ...domain('fine', 'a', 'fine.der'),
        ...domain('blocked', 'b', 'blocked.der'),
        '',
      ].join('\n'),
    );
    const before = responder.requests.length;
    const r = await run('ocspbot', [], wd);
    expect(r.code).toBe(253);
    expect(r.stderr).toMatch(
      /ocspbot: error CONFIG_INVALID: ocspbot\.yaml:\d+:\d+ domain blocked: the staple file .*blocked\.der exists, but is a folder/,
    );
    expect(responder.requests.length).toBe(before);
    expect(await readdir(path.join(wd, 'out'))).toEqual(['blocked.der']);
  });

  it('6: an unknown option is a bad argument (252), where ocspbot took it for the configuration file name (254)', async () => {
    const wd = await workdir();
    const r = await run('ocspbot', ['--verbose'], wd);
    expect(r.code).toBe(252);
    expect(r.stderr).toMatch(/^ocspbot: error BAD_ARGUMENTS: unknown option "--verbose"/);
    // a file name that starts with a dash still works after a path: ./--verbose
    await writeFile(path.join(wd, '--verbose'), 'minimum_validity: 3d\ndomains: {}\n');
    const file = await run('ocspbot', ['./--verbose'], wd);
    expect(file.code).toBe(0);
  });

  it('12: backups are stamped in UTC whatever the local time zone (ocspbot used local time)', async () => {
    const wd = await workdir();
    await ocspbotFolder(wd, ['make_backups: True', 'domains:', ...domain('x', 'a', 'x.der')]);
    const stamp = (d: Date): string => d.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
    const from = Date.now();
    const r = await run('ocspbot', [], wd, { TZ: 'Asia/Kolkata' });
    const to = Date.now();
    expect(r.code).toBe(1);
    const backups = (await readdir(path.join(wd, 'out'))).filter((f) => f.startsWith('x.der-'));
    expect(backups).toHaveLength(1);
    const utc = new Set<string>();
    for (let t = Math.floor(from / 1000) * 1000; t <= to; t += 1000) utc.add(`x.der-${stamp(new Date(t))}`);
    // UTC+05:30 is never the same stamp as UTC
    expect(utc.has(backups[0]!)).toBe(true);
  });
});
