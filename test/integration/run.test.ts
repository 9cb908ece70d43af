/**
 * `staplekeeper run` and the `ocspbot` drop-in against a real `openssl ocsp`
 * responder: the ocspbot README example, includes, recursive scans,
 * responder overrides, stop_on_error, every exit code, configuration errors,
 * --dry-run, hooks and overlapping runs.
 */
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../../src/cli/main.js';
import { ocspbotCli } from '../../src/cli/ocspbot.js';
import type { Pki } from '../helpers/mint.js';
import { memoryIo } from '../helpers/memory-io.js';
import { startOpensslPki, freePort, type Responder, domainLines } from '../helpers/servers.js';
import { cleanUp } from '../helpers/temp.js';

const exec = promisify(execFile);
const BIN = join(import.meta.dirname, '..', '..', 'bin');

let root: string;
let pki: Pki;
let responder: Responder;

beforeAll(async () => {
  // one week of validity, so that ocspbot's "3d" minimum validity leaves room
  ({ root, pki, responder } = await startOpensslPki(
    'sk-run-',
    { keyType: 'ec', leaves: [{ name: 'a' }, { name: 'b' }, { name: 'c' }, { name: 'revoked', status: 'revoked' }] },
    { nmin: 7 * 24 * 60 },
  ));
});

afterAll(cleanUp);

async function workdir(name: string): Promise<string> {
  const d = join(root, name);
  await mkdir(d, { recursive: true });
  return d;
}

/** One ocspbot `domains` entry for a leaf of the test PKI. */
function domain(id: string, leaf: string, ocsp: string, extra: string[] = []): string[] {
  return domainLines(pki, id, leaf, ocsp, extra);
}

describe('the ocspbot README example configuration', () => {
  it('first run renews all and exits with the count, second run exits 0, backups and a dated log', async () => {
    const wd = await workdir('readme');
    const config = [
      '---',
      'openssl_executable: openssl',
      'minimum_validity: 3d',
      'minimum_validity_percentage: 42.8',
      `ocsp_folder: ${join(wd, 'responses')}`,
      'parallel_threads: 1',
      `output_log: ${join(wd, 'logs')}/example-{year}{month}{day}-{hour}{minute}{second}.log`,
      'make_backups: True',
      'domains:',
      ...domain('example.com', 'a', 'example.com.ocsp-resp'),
      ...domain('example.org', 'b', 'example.org.ocsp-resp'),
      '',
    ].join('\n');
    await mkdir(join(wd, 'responses'));
    await mkdir(join(wd, 'logs'));
    await writeFile(join(wd, 'ocspbot.yaml'), config);

    const io = memoryIo(wd);
    expect(await ocspbotCli([], io)).toBe(2);
    expect(io.err()).toBe('');
    const files = (await readdir(join(wd, 'responses'))).sort();
    expect(files.filter((f) => !f.startsWith('.'))).toEqual(
      expect.arrayContaining(['example.com.ocsp-resp', 'example.org.ocsp-resp']),
    );
    const backups = files.filter((f) => /^example\.(com|org)\.ocsp-resp-\d{8}-\d{6}$/.test(f));
    expect(backups).toHaveLength(2);
    const backupOf = backups.find((b) => b.startsWith('example.com'))!;
    expect(await readFile(join(wd, 'responses', backupOf))).toEqual(
      await readFile(join(wd, 'responses', 'example.com.ocsp-resp')),
    );
    const logs = await readdir(join(wd, 'logs'));
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/^example-\d{8}-\d{6}\.log$/);
    const log = await readFile(join(wd, 'logs', logs[0]!), 'utf8');
    expect(log).toContain('note: openssl_executable is ignored');
    expect(log).toMatch(/^\[example\.com\] updated OCSP response: good/m);
    expect(log).toContain('Success: 0 unchanged OCSP responses, 2 updated OCSP responses and 0 failures.');

    const again = memoryIo(wd);
    expect(await ocspbotCli(['ocspbot.yaml'], again)).toBe(0);
    const logs2 = await readdir(join(wd, 'logs'));
    const all = (await Promise.all(logs2.map((l) => readFile(join(wd, 'logs', l), 'utf8')))).join('');
    expect(all).toContain('Success: 2 unchanged OCSP responses, 0 updated OCSP responses and 0 failures.');
  });

  it('the real ocspbot binary: same exit codes and closing line', async () => {
    const wd = await workdir('bin');
    await writeFile(
      join(wd, 'ocspbot.yaml'),
      ['ocsp_folder: out', 'domains:', ...domain('x', 'c', 'x.der'), ''].join('\n'),
    );
    await mkdir(join(wd, 'out'));
    const first = await exec(join(BIN, 'ocspbot'), [], { cwd: wd }).catch((e: { code: number; stdout: string }) => e);
    expect((first as { code?: number }).code).toBe(1);
    expect((first as { stdout: string }).stdout).toContain(
      'Success: 0 unchanged OCSP responses, 1 updated OCSP responses and 0 failures.',
    );
    const second = await exec(join(BIN, 'ocspbot'), ['ocspbot.yaml'], { cwd: wd });
    expect(second.stdout).toContain('Success: 1 unchanged');
    const v = await exec(join(BIN, 'ocspbot'), ['-version'], { cwd: wd });
    expect(v.stdout).toMatch(/ocspbot \(staplekeeper\) \d/);
    const bad = await exec(join(BIN, 'ocspbot'), ['a.yaml', 'b.yaml'], { cwd: wd }).catch((e: { code: number }) => e);
    expect((bad as { code: number }).code).toBe(252);
  });
});

describe('staplekeeper run', () => {
  it('reads includes from the include folder and recursive scan_keys keeping subfolders in the staple name', async () => {
    const wd = await workdir('scan');
    const certs = join(wd, 'certs');
    await mkdir(join(certs, 'sub', 'deeper'), { recursive: true });
    const place = async (leaf: string, rel: string, domainName: string): Promise<void> => {
      const l = pki.leaves[leaf]!;
      await copyFile(l.cert, join(certs, rel, `${domainName}.pem`));
      await copyFile(l.chain, join(certs, rel, `${domainName}-chain.pem`));
      await copyFile(l.rootchain, join(certs, rel, `${domainName}-rootchain.pem`));
    };
    await place('a', '', 'top');
    await place('b', 'sub/deeper', 'deep');
    await mkdir(join(wd, 'inc'));
    await writeFile(join(wd, 'inc', 'extra.yml'), ['domains:', ...domain('from-include', 'c', 'inc.der')].join('\n'));
    await writeFile(join(wd, 'inc', 'ignored.txt'), 'not yaml');
    await writeFile(
      join(wd, 'staplekeeper.yaml'),
      ['ocsp_folder: staples', 'includes:', '  - inc', 'scan_keys:', '  - folder: certs', ''].join('\n'),
    );
    await mkdir(join(wd, 'staples')); // the staple folder must exist; its scan subfolders are created
    const io = memoryIo(wd);
    const code = await cli(['run'], io);
    expect(io.err()).toBe('');
    expect(code).toBe(3);
    expect((await stat(join(wd, 'staples', 'top.ocsp-resp'))).size).toBeGreaterThan(100);
    expect((await stat(join(wd, 'staples', 'sub', 'deeper', 'deep.ocsp-resp'))).size).toBeGreaterThan(100);
    expect((await stat(join(wd, 'staples', 'inc.der'))).size).toBeGreaterThan(100);
    expect(io.out()).toContain('[sub/deeper/deep] updated');
  });

  it('honours ocsp_responder_uri and --only, and reports a dead responder with 255', async () => {
    const wd = await workdir('override');
    const dead = `http://127.0.0.1:${await freePort()}`;
    await writeFile(
      join(wd, 'staplekeeper.yaml'),
      [
        'ocsp_folder: .',
        'http: { timeout: 2s }',
        'domains:',
        ...domain('good', 'a', 'good.der', [`ocsp_responder_uri: ${responder.url}`]),
        ...domain('dead', 'b', 'dead.der', [`ocsp_responder_uri: ${dead}`]),
        '',
      ].join('\n'),
    );
    const only = memoryIo(wd);
    expect(await cli(['run', '--only', 'good'], only)).toBe(1);
    expect(only.out()).not.toContain('[dead]');
    // a staple only gets better: the forced run must get a newer answer (openssl ocsp stamps whole seconds)
    await new Promise((r) => setTimeout(r, 1100));
    const io = memoryIo(wd);
    expect(await cli(['run', '--force'], io)).toBe(255);
    expect(io.err()).toMatch(/\[dead\] error HTTP_NETWORK: .*ECONNREFUSED/);
    expect(io.out()).toContain('[good] updated');
    expect(io.out()).toContain('Failure: 0 unchanged OCSP responses, 1 updated OCSP responses and 1 failures.');
    const unknownId = memoryIo(wd);
    expect(await cli(['run', '--only', 'nope'], unknownId)).toBe(252);
  });

  it('stop_on_error stops after the first failure', async () => {
    const wd = await workdir('stop');
    const dead = `http://127.0.0.1:${await freePort()}`;
    await writeFile(
      join(wd, 'staplekeeper.yaml'),
      [
        'ocsp_folder: .',
        'stop_on_error: true',
        'concurrency: 1',
        'domains:',
        ...domain('first', 'a', 'first.der', [`ocsp_responder_uri: ${dead}`]),
        ...domain('second', 'b', 'second.der'),
        '',
      ].join('\n'),
    );
    const io = memoryIo(wd);
    expect(await cli(['run', '--json'], io)).toBe(255);
    const lines = io
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.type === 'certificate').map((l) => l.id)).toEqual(['first']);
    expect(lines.at(-1)).toMatchObject({ type: 'summary', failed: 1, updated: 0, stopped: true, exitCode: 255 });
    await expect(stat(join(wd, 'second.der'))).rejects.toThrow();
  });

  it('--dry-run prints decisions and writes nothing', async () => {
    const wd = await workdir('dry');
    await writeFile(
      join(wd, 'staplekeeper.yaml'),
      ['ocsp_folder: out', 'domains:', ...domain('a', 'a', 'a.der'), ''].join('\n'),
    );
    const before = responder.requests.length;
    const io = memoryIo(wd);
    expect(await cli(['run', '--dry-run'], io)).toBe(0);
    expect(io.out()).toContain('[a] would renew (missing): no staple on disk');
    expect(responder.requests.length).toBe(before);
    await expect(stat(join(wd, 'out'))).rejects.toThrow();
  });

  it('refuses a revoked certificate, keeps the good staple, runs on_revoked and on_failure hooks', async () => {
    const wd = await workdir('hooks');
    const log = join(wd, 'hook.log');
    await writeFile(
      join(wd, 'staplekeeper.yaml'),
      [
        'ocsp_folder: .',
        'hooks:',
        `  on_change: ["${process.execPath}", "${join(wd, 'hook.mjs')}", "${log}"]`,
        `  on_revoked: echo "revoked $STAPLEKEEPER_IDS" >> ${log}`,
        `  on_failure: echo "failure $STAPLEKEEPER_COUNT" >> ${log}`,
        'domains:',
        ...domain('a', 'a', 'a.der'),
        ...domain('b', 'b', 'b.der'),
        ...domain('gone', 'revoked', 'gone.der'),
        '',
      ].join('\n'),
    );
    await writeFile(
      join(wd, 'hook.mjs'),
      [
        "import { appendFileSync } from 'node:fs';",
        "let s = '';",
        "process.stdin.on('data', (d) => (s += d)).on('end', () => {",
        "  const ids = process.env.STAPLEKEEPER_IDS.split('\\n').sort().join(',');",
        '  appendFileSync(process.argv[2], `${process.env.STAPLEKEEPER_EVENT} ${ids} ${JSON.parse(s).items.length}\\n`);',
        '});',
      ].join('\n'),
    );
    await writeFile(join(wd, 'gone.der'), 'the previous good staple');
    const io = memoryIo(wd);
    const code = await cli(['run'], io);
    expect(io.err()).toMatch(
      // the file holds no staple: never "the current staple was kept" (docs/SECURITY.md "Revoked certificates")
      /\[gone\] error OCSP_REVOKED: certificate REVOKED at .* \(reason: keyCompromise\) \(certificate .*\); replace the certificate now; no usable staple is on disk \(the file was not touched\)/,
    );
    expect(code).toBe(255);
    expect(await readFile(join(wd, 'gone.der'), 'utf8')).toBe('the previous good staple');
    const hookLog = (await readFile(log, 'utf8')).split('\n').filter(Boolean).sort();
    expect(hookLog).toEqual(['failure 1', 'on_change a,b 2', 'revoked gone']);
  });

  it('a failing hook turns the exit code into an error but keeps the written staples', async () => {
    const wd = await workdir('badhook');
    await writeFile(
      join(wd, 'staplekeeper.yaml'),
      [
        'ocsp_folder: .',
        'hooks:',
        '  on_change: "echo broken >&2; exit 3"',
        'domains:',
        ...domain('a', 'a', 'a.der'),
        '',
      ].join('\n'),
    );
    const io = memoryIo(wd);
    expect(await cli(['run'], io)).toBe(255);
    expect(io.err()).toContain('error HOOK_FAILED: on_change: "/bin/sh" exited with 3: broken');
    expect((await stat(join(wd, 'a.der'))).size).toBeGreaterThan(100);
  });

  it('caps the renewal count at 250 in the exit code', async () => {
    const { exitCodeOf } = await import('../../src/batch/run.js');
    const base = { outcomes: [], unchanged: 0, failed: 0, skipped: 0, revoked: 0, hookErrors: [], stopped: false };
    expect(exitCodeOf({ ...base, updated: 256 })).toBe(250);
    expect(exitCodeOf({ ...base, updated: 7 })).toBe(7);
    expect(exitCodeOf({ ...base, updated: 0 })).toBe(0);
    expect(exitCodeOf({ ...base, updated: 3, failed: 1 })).toBe(255);
  });
});

describe('configuration errors', () => {
  it.each([
    ['YAML syntax', 'domains: [unclosed\n', 254, /^staplekeeper: error CONFIG_YAML: staplekeeper\.yaml:\d+:\d+/],
    ['an unknown key with a suggestion', 'ocsp_foldr: x\n', 253, /staplekeeper\.yaml:1:1 .*did you mean `ocsp_folder`/],
    ['a wrong type', 'parallel_threads: many\n', 253, /staplekeeper\.yaml:1:19 parallel_threads: /],
    ['a bad duration', 'minimum_validity: 3 fortnights\n', 253, /minimum_validity/],
  ])('%s', async (_name, yaml, exit, message) => {
    const wd = await workdir(`cfg-${exit}-${Math.random().toString(16).slice(2)}`);
    await writeFile(join(wd, 'staplekeeper.yaml'), yaml);
    const before = responder.requests.length;
    const io = memoryIo(wd);
    expect(await cli(['run'], io)).toBe(exit);
    expect(io.err()).toMatch(message);
    expect(io.err().trim().split('\n')[0]).toMatch(/^staplekeeper: error CONFIG_/);
    expect(responder.requests.length).toBe(before);
  });

  // a missing certificate file is that certificate's failure (docs/SECURITY.md "One bad certificate never stops the others"), not a configuration error
  it('a missing certificate fails that certificate alone (exit 255, the file named), not the configuration', async () => {
    const wd = await workdir(`cfg-missing-${Math.random().toString(16).slice(2)}`);
    await writeFile(join(wd, 'staplekeeper.yaml'), 'domains:\n  site:\n    cert: missing.pem\n    ocsp: s.der\n');
    const before = responder.requests.length;
    const io = memoryIo(wd);
    expect(await cli(['run'], io)).toBe(255);
    expect(io.err()).toMatch(/\[site\] error FILE_UNREADABLE: .*missing\.pem: cannot read certificate: no such file/);
    expect(io.err()).not.toMatch(/CONFIG_/);
    expect(responder.requests.length).toBe(before);
  });

  it('a duplicate domain identifier across files is an error naming both places', async () => {
    const wd = await workdir('dup');
    await mkdir(join(wd, 'inc'));
    await writeFile(join(wd, 'inc', 'x.yaml'), ['domains:', ...domain('same', 'b', 'b.der')].join('\n'));
    await writeFile(
      join(wd, 'staplekeeper.yaml'),
      ['includes: [inc]', 'domains:', ...domain('same', 'a', 'a.der'), ''].join('\n'),
    );
    const io = memoryIo(wd);
    expect(await cli(['run'], io)).toBe(253);
    expect(io.err()).toMatch(/duplicate domain identifier "same" \(first defined at staplekeeper\.yaml:\d+:\d+\)/);
  });

  it('no configuration file: 253; bad arguments: 252', async () => {
    const wd = await workdir('none');
    const io = memoryIo(wd);
    expect(await cli(['run'], io)).toBe(253);
    expect(io.err()).toContain('neither staplekeeper.yaml nor ocspbot.yaml');
    const bad = memoryIo(wd);
    expect(await cli(['run', '--bogus'], bad)).toBe(252);
    const obot = memoryIo(wd);
    expect(await ocspbotCli(['--bogus'], obot)).toBe(252);
    const missing = memoryIo(wd);
    expect(await ocspbotCli([], missing)).toBe(254);
  });

  it('a log file that cannot be opened exits 254', async () => {
    const wd = await workdir('badlog');
    await writeFile(
      join(wd, 'staplekeeper.yaml'),
      ['output_log: /nonexistent-dir/x.log', 'domains:', ...domain('a', 'a', 'a.der'), ''].join('\n'),
    );
    const io = memoryIo(wd);
    expect(await cli(['run'], io)).toBe(254);
    expect(io.err()).toContain(
      'output_log: the folder /nonexistent-dir of the log file /nonexistent-dir/x.log does not exist',
    );
  });
});

describe('overlapping runs', () => {
  it('the second run waits for the lock and both finish cleanly', async () => {
    const wd = await workdir('overlap');
    const domains = ['a', 'b', 'c'].flatMap((l) => domain(l, l, `${l}.der`));
    await writeFile(
      join(wd, 'staplekeeper.yaml'),
      ['ocsp_folder: out', 'lock_timeout: 30s', 'domains:', ...domains, ''].join('\n'),
    );
    await mkdir(join(wd, 'out'));
    const start = (): Promise<{ code: number | null; out: string; err: string }> =>
      new Promise((resolve) => {
        const p = spawn(process.execPath, [join(BIN, 'staplekeeper'), 'run', '--force'], { cwd: wd });
        let out = '';
        let err = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.stderr.on('data', (d: Buffer) => (err += d.toString()));
        p.on('close', (code) => resolve({ code, out, err }));
      });
    const [r1, r2] = await Promise.all([start(), start()]);
    // The run that gets the lock second asks again; a staple only gets better (docs/SECURITY.md): an answer from the
    // same second as the one on disk is no newer and is kept (reported "kept:"), a newer one is written.
    for (const r of [r1, r2]) {
      const kept = (r.err.match(/\] kept: the responder's answer/g) ?? []).length;
      expect(r.code! + kept, r.out + r.err).toBe(3);
    }
    expect(Math.max(r1.code!, r2.code!)).toBe(3);
    const waited = [r1, r2].filter((r) => /waiting for another staplekeeper \(PID \d+\)/.test(r.err));
    expect(waited.length).toBeLessThanOrEqual(1);
    for (const l of ['a', 'b', 'c']) expect((await stat(join(wd, 'out', `${l}.der`))).size).toBeGreaterThan(100);
    expect(
      (await readdir(join(wd, 'out'))).filter((f) => f.includes('.sk-tmp-') || f === '.staplekeeper.lock'),
    ).toEqual([]);
  });

  it('with lock_timeout 0s the second run gives up with 255 naming the holder PID', async () => {
    const wd = await workdir('locked');
    await mkdir(join(wd, 'out'));
    // a real holder: the lock is the kernel's (docs/SECURITY.md "Locks"), a PID in the file alone blocks nobody
    const lockModule = pathToFileURL(join(import.meta.dirname, '../../dist/batch/lock.js')).href;
    const holder = spawn(process.execPath, [
      '--input-type=module',
      '-e',
      `const { acquireLock } = await import(${JSON.stringify(lockModule)});
       await acquireLock(process.argv[1], 5000);
       process.stdout.write('held\\n');
       setTimeout(() => {}, 20000);`,
      join(wd, 'out'),
    ]);
    try {
      await new Promise<void>((r, j) => {
        holder.stdout?.on('data', (d: Buffer) => d.toString().includes('held') && r());
        holder.once('exit', () => j(new Error('the lock holder ended')));
      });
      await writeFile(
        join(wd, 'staplekeeper.yaml'),
        ['ocsp_folder: out', 'lock_timeout: 0s', 'domains:', ...domain('a', 'a', 'a.der'), ''].join('\n'),
      );
      const io = memoryIo(wd);
      expect(await cli(['run'], io)).toBe(255);
      expect(io.err()).toContain(`error LOCK_TIMEOUT: another staplekeeper (PID ${holder.pid}) holds`);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
