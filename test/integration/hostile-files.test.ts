/**
 * Hostile files and file-system faults, through the real executable.
 *
 * - Certificates, chains and staples that are empty, truncated, binary junk,
 *   PEM with broken base64, the wrong PEM type, a directory, unreadable, a
 *   symlink loop: a clear error naming the file, and the other certificate
 *   of the same run is still renewed.
 * - A read-only or full staple folder: the error says so; the old staple stays.
 * - A staple path that is a symlink: the link's target is replaced
 *   atomically, the link stays (docs/SECURITY.md).
 * - Stale temporary files of an interrupted run are removed by the next run.
 *
 * Root reads and writes files whatever their mode, and the tests usually run
 * as root: "unreadable" is then tested by running the child as `nobody`
 * (setpriv), "read-only" with a read-only bind mount (or `chattr +i`), "full"
 * with a 64 KiB tmpfs. Where none of that is possible the test is skipped
 * with the reason printed.
 */
import { spawn } from 'node:child_process';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  readFile,
  readdir,
  readlink,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import {
  assertBuilt,
  canRunAs,
  exists,
  isRoot,
  killAllChildren,
  NOBODY,
  outcomesById,
  removeTempDirs,
  runCli,
  showResult,
  snapshot,
  startGoodResponder,
  tempDir,
  trySync,
  writeCert,
  writeConfig,
} from '../helpers/cli-harness.js';
import type { GoodResponder } from '../helpers/cli-harness.js';
import { buildTestPki, goodResponseFor, toPem, type MintedCert, type TestPki } from '../helpers/mint.js';

let pki: TestPki;
let responder: GoodResponder;
let fine: MintedCert;
let other: MintedCert;
let base: string;

beforeAll(async () => {
  assertBuilt();
  pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: new Date(), leafCount: 3 });
  fine = pki.leaves[0]!;
  other = pki.leaves[1]!;
  responder = await startGoodResponder(pki, pki.leaves);
  base = await tempDir('sk-files-');
  await chmod(base, 0o755); // the `nobody` runs below must be able to reach their folders
});

afterAll(async () => {
  await killAllChildren();
  await responder?.close();
  await removeTempDirs();
});

function verifyFor(leaf: MintedCert, bytes: Buffer): string {
  const [cert] = loadCertificates(leaf.der);
  const [issuer] = loadCertificates(pki.root.der);
  return verifyResponse(bytes, { cert: cert!, issuer: issuer!, now: new Date() }).status;
}

let folderCount = 0;
async function folder(name: string): Promise<string> {
  const d = join(base, `${folderCount++}-${name}`);
  await mkdir(d, { recursive: true });
  await chmod(d, 0o755);
  return d;
}

/** A domain entry for `leaf`, its files written into `dir` under `name`. */
async function domain(
  dir: string,
  name: string,
  leaf: MintedCert,
): Promise<{ cert: string; chain: string; ocsp: string; ocsp_responder_uri: string }> {
  const files = await writeCert(dir, name, leaf, pki.root);
  return { ...files, ocsp: `${name}.der`, ocsp_responder_uri: responder.url };
}

const junk = Buffer.from(Array.from({ length: 700 }, (_, i) => (i * 151 + 7) & 0xff));
function brokenBase64(pem: string): string {
  const lines = pem.split('\n');
  lines[3] = `${lines[3]!.slice(0, 10)}!!**??${lines[3]!.slice(16)}`;
  return lines.join('\n');
}

/** The bad contents, each written in place of a certificate, chain or staple file. */
function badContents(leaf: MintedCert): Array<[string, Buffer | string]> {
  const half = Math.floor(leaf.der.length / 2);
  return [
    ['empty', Buffer.alloc(0)],
    ['truncated-der', leaf.der.subarray(0, half)],
    ['truncated-pem', leaf.pem.slice(0, Math.floor(leaf.pem.length / 2))],
    ['binary-junk', junk],
    ['pem-broken-base64', brokenBase64(leaf.pem)],
    ['pem-wrong-type', leaf.key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string],
    ['pem-of-junk', toPem(junk, 'CERTIFICATE')],
  ];
}

describe('hostile certificate and chain files', () => {
  it('each bad certificate file gives a coded error naming the file; the good domain is still renewed', async () => {
    const dir = await folder('bad-certs');
    const domains: Record<string, unknown> = { fine: await domain(dir, 'fine', fine) };
    const cases = badContents(other);
    for (const [name, content] of cases) {
      const d = await domain(dir, name, other);
      await writeFile(d.cert, content);
      domains[name] = d;
    }
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains });
    const r = await runCli(['run', '-c', cfg, '--json']);
    expect(r.code, showResult(r)).toBe(255);
    const out = outcomesById(r.stdout);
    expect(out.get('fine')?.result, showResult(r)).toBe('updated');
    expect(verifyFor(fine, await readFile(join(dir, 'fine.der')))).toBe('good');
    const expectations: Record<string, RegExp> = {
      empty: /the file is empty/,
      'truncated-der': /not a valid certificate/,
      'truncated-pem': /no CERTIFICATE block found \(found: no complete PEM block\)/,
      'binary-junk': /not a valid certificate/,
      'pem-broken-base64': /broken base64/,
      'pem-wrong-type': /no CERTIFICATE block found \(found: PRIVATE KEY\)/,
      'pem-of-junk': /certificate #1.*not a valid certificate/,
    };
    for (const [name] of cases) {
      const o = out.get(name);
      expect(o?.result, name).toBe('failed');
      expect(o?.error?.code, name).toBe('NOT_A_CERTIFICATE');
      expect(o?.error?.message, name).toContain(join(dir, `${name}.pem`));
      expect(o?.error?.message, name).toMatch(expectations[name]!);
      expect(await exists(join(dir, `${name}.der`)), name).toBe(false);
    }
    // text mode: one error line per bad file, each naming it
    const text = await runCli(['run', '-c', cfg, '--force']);
    for (const [name] of cases) {
      expect(text.stderr).toContain(`[${name}] error NOT_A_CERTIFICATE: ${join(dir, `${name}.pem`)}`);
    }
  });

  it('each bad chain file gives a coded error naming the chain file; the good domain is still renewed', async () => {
    const dir = await folder('bad-chains');
    const domains: Record<string, unknown> = { fine: await domain(dir, 'fine', fine) };
    const cases = badContents(pki.root);
    for (const [name, content] of cases) {
      const d = await domain(dir, name, other);
      await writeFile(d.chain, content);
      domains[name] = d;
    }
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains });
    const r = await runCli(['run', '-c', cfg, '--json']);
    expect(r.code, showResult(r)).toBe(255);
    const out = outcomesById(r.stdout);
    expect(out.get('fine')?.result, showResult(r)).toBe('updated');
    for (const [name] of cases) {
      const o = out.get(name);
      expect(o?.error?.code, name).toBe('NOT_A_CERTIFICATE');
      expect(o?.error?.message, name).toContain(join(dir, `${name}-chain.pem`));
    }
  });

  it('a directory or a symlink loop in place of a certificate fails that certificate alone, naming file and reason (exit 255)', async () => {
    const dir = await folder('cert-dir-loop');
    const a = await domain(dir, 'isdir', other);
    const b = await domain(dir, 'loop', other);
    const { rm } = await import('node:fs/promises');
    await rm(a.cert);
    await mkdir(a.cert);
    await rm(b.cert);
    await symlink(join(dir, 'loop2.pem'), b.cert);
    await symlink(b.cert, join(dir, 'loop2.pem'));
    const cfg = await writeConfig(join(dir, 'c.yaml'), {
      ocsp_folder: dir,
      domains: { fine: await domain(dir, 'fine', fine), isdir: a, loop: b },
    });
    const r = await runCli(['run', '-c', cfg]);
    // One bad certificate never stops the others (docs/SECURITY.md): a certificate path
    // that is not a readable file fails that certificate, naming the file and why;
    // the good one is still renewed, and the run fails (255).
    expect(r.code, showResult(r)).toBe(255);
    expect(r.stderr).toContain(`[isdir] error FILE_UNREADABLE: ${a.cert}: cannot read certificate: is a directory`);
    expect(r.stderr).toMatch(/\[loop\] error FILE_UNREADABLE: .*loop.*symbolic links/);
    expect(r.stderr).toContain(b.cert);
    expect(await exists(join(dir, 'fine.der'))).toBe(true);
  });

  it('a directory or a symlink loop given to `fetch --cert` is FILE_UNREADABLE with the reason', async () => {
    const dir = await folder('fetch-dir-loop');
    await mkdir(join(dir, 'isdir.pem'));
    await symlink(join(dir, 'l2.pem'), join(dir, 'l1.pem'));
    await symlink(join(dir, 'l1.pem'), join(dir, 'l2.pem'));
    for (const [file, reason] of [
      ['isdir.pem', 'is a directory'],
      ['l1.pem', 'symlink loop'],
    ] as const) {
      const r = await runCli(['fetch', '--cert', join(dir, file), '--url', responder.url, '--out', join(dir, 'x.der')]);
      expect(r.code, showResult(r)).toBe(1);
      expect(r.stderr).toContain(`error FILE_UNREADABLE: ${join(dir, file)}: cannot read certificate: `);
      expect(r.stderr).toContain(reason);
    }
  });

  it('scan_keys skips a directory, a dangling link and a link loop named like a certificate, and renews the real one', async () => {
    const dir = await folder('scan');
    const certs = join(dir, 'certs');
    await mkdir(certs);
    await writeFile(join(certs, 'fine.pem'), fine.pem);
    await writeFile(join(certs, 'fine-chain.pem'), pki.root.pem);
    await writeFile(join(certs, 'fine-rootchain.pem'), pki.root.pem);
    for (const n of ['isdir', 'dangling', 'loop']) {
      await writeFile(join(certs, `${n}-chain.pem`), pki.root.pem);
      await writeFile(join(certs, `${n}-rootchain.pem`), pki.root.pem);
    }
    await mkdir(join(certs, 'isdir.pem'));
    await symlink(join(certs, 'nothing-here.pem'), join(certs, 'dangling.pem'));
    await symlink(join(certs, 'loop.pem'), join(certs, 'loop.pem'));
    await mkdir(join(dir, 'ocsp')); // the staple folder must exist (README.md, "Configuration")
    const cfg = await writeConfig(join(dir, 'c.yaml'), {
      ocsp_folder: join(dir, 'ocsp'),
      scan_keys: [{ folder: certs }],
      responders: { fine: responder.url },
    });
    const r = await runCli(['run', '-c', cfg, '--json']);
    expect(r.code, showResult(r)).toBe(1);
    expect([...outcomesById(r.stdout).keys()]).toEqual(['fine']);
  });

  it('an unreadable certificate (mode 000, run as nobody): FILE_UNREADABLE, permission denied, named; the good domain is renewed', async (ctx) => {
    if (!isRoot()) {
      // not root: mode 000 is enough on its own
    } else if (!canRunAs(NOBODY)) {
      console.warn('skipped: running as root without setpriv, and root reads files whatever their mode');
      ctx.skip();
    }
    const dir = await folder('unreadable');
    const a = await domain(dir, 'fine', fine);
    const b = await domain(dir, 'locked', other);
    await chmod(b.cert, 0o000);
    if (isRoot()) await chown(dir, NOBODY.uid, NOBODY.gid); // nobody writes the staples and the lock
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains: { fine: a, locked: b } });
    const r = await runCli(['run', '-c', cfg, '--json'], isRoot() ? { as: NOBODY } : {});
    expect(r.code, showResult(r)).toBe(255);
    const out = outcomesById(r.stdout);
    expect(out.get('fine')?.result, showResult(r)).toBe('updated');
    expect(out.get('locked')?.error?.code).toBe('FILE_UNREADABLE');
    expect(out.get('locked')?.error?.message).toBe(`${b.cert}: cannot read certificate: permission denied`);
  });
});

describe('hostile staple files', () => {
  it('a bad staple on disk counts as missing: it is replaced by a verified one, with a notice naming what was wrong', async () => {
    const dir = await folder('bad-staples');
    const domains: Record<string, unknown> = {};
    const good = goodResponseFor(pki, other, new Date());
    // what the engine may replace on its own: nothing, or an OCSP response (any, even a damaged one)
    const cases: Array<[string, Buffer | string]> = [
      ['empty', Buffer.alloc(0)],
      ['staple-of-another-cert', goodResponseFor(pki, fine, new Date())],
      ['truncated-staple', good.subarray(0, Math.floor(good.length / 2))],
      ['pem-truncated-staple', toPem(good.subarray(0, Math.floor(good.length / 2)), 'OCSP RESPONSE')],
    ];
    for (const [name, content] of cases) {
      const d = await domain(dir, name, other);
      await writeFile(join(dir, d.ocsp), content);
      domains[name] = d;
    }
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains });
    const r = await runCli(['run', '-c', cfg, '--json']); // no --force: a bad staple must be renewed on its own
    expect(r.code, showResult(r)).toBe(cases.length);
    const out = outcomesById(r.stdout);
    for (const [name] of cases) {
      const o = out.get(name);
      expect(o?.result, name).toBe('updated');
      expect(o?.decision?.reason, name).toMatch(/^(invalid|missing)$/);
      expect(o?.notices?.join('\n') ?? '', name).toMatch(
        /the staple on disk is not usable: (OCSP_MALFORMED|OCSP_CERTID_MISMATCH)/,
      );
      expect(verifyFor(other, await readFile(join(dir, `${name}.der`))), name).toBe('good');
    }
  });

  it('a staple path holding something else is never replaced on its own: a certificate or key never, other content only with overwrite_non_ocsp (docs/SECURITY.md)', async () => {
    const dir = await folder('not-staples');
    const domains: Record<string, unknown> = {};
    const cases: Array<[string, Buffer | string, 'input' | 'other']> = [
      ...badContents(other)
        .filter(([n]) => n !== 'empty')
        .map(([n, c]): [string, Buffer | string, 'input' | 'other'] => [
          n,
          c,
          n === 'binary-junk' || n === 'truncated-der' ? 'other' : 'input',
        ]),
      ['pem-wrong-type-cert', other.pem, 'input'],
      ['der-certificate', pki.root.der, 'input'],
      ['der-private-key', other.key.privateKey.export({ type: 'pkcs8', format: 'der' }), 'input'],
      ['notes', 'my notes about this server\n', 'other'],
    ];
    for (const [name, content] of cases) {
      const d = await domain(dir, name, other);
      await writeFile(join(dir, d.ocsp), content);
      domains[name] = d;
    }
    const before = new Map<string, Buffer>();
    for (const [name] of cases) before.set(name, await readFile(join(dir, `${name}.der`)));
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains });
    const r = await runCli(['run', '-c', cfg, '--json']);
    expect(r.code, showResult(r)).toBe(255);
    const out = outcomesById(r.stdout);
    for (const [name, , kind] of cases) {
      const o = out.get(name);
      expect(o?.result, name).toBe('failed');
      expect(o?.error?.code, name).toBe('STAPLE_PATH_REFUSED');
      expect(o?.error?.message, name).toContain(join(dir, `${name}.der`));
      expect(o?.error?.message, name).toMatch(
        kind === 'input' ? /holds a (certificate|key); a staple never replaces an input file/ : /not an OCSP response/,
      );
      expect(await readFile(join(dir, `${name}.der`)), name).toEqual(before.get(name));
    }
    // the operator says so: other content is replaced, certificates and keys still never
    const cfg2 = await writeConfig(join(dir, 'c2.yaml'), { ocsp_folder: dir, overwrite_non_ocsp: true, domains });
    const r2 = await runCli(['run', '-c', cfg2, '--json']);
    const out2 = outcomesById(r2.stdout);
    for (const [name, , kind] of cases) {
      const o = out2.get(name);
      if (kind === 'other') {
        expect(o?.result, name).toBe('updated');
        expect(verifyFor(other, await readFile(join(dir, `${name}.der`))), name).toBe('good');
      } else {
        expect(o?.error?.code, name).toBe('STAPLE_PATH_REFUSED');
        expect(await readFile(join(dir, `${name}.der`)), name).toEqual(before.get(name));
      }
    }
  });

  it('a staple path that is a directory or a symlink loop: FILE_WRITE naming it and the reason; the good domain is renewed', async () => {
    const dir = await folder('staple-dir-loop');
    const a = await domain(dir, 'isdir', other);
    const b = await domain(dir, 'loop', other);
    await mkdir(join(dir, a.ocsp));
    await writeFile(join(dir, a.ocsp, 'keep-me'), 'x');
    await symlink(join(dir, 'loop2.der'), join(dir, b.ocsp));
    await symlink(join(dir, b.ocsp), join(dir, 'loop2.der'));
    const cfg = await writeConfig(join(dir, 'c.yaml'), {
      ocsp_folder: dir,
      domains: { fine: await domain(dir, 'fine', fine), isdir: a, loop: b },
    });
    const r = await runCli(['run', '-c', cfg, '--json']);
    expect(r.code, showResult(r)).toBe(255);
    const out = outcomesById(r.stdout);
    expect(out.get('fine')?.result).toBe('updated');
    expect(out.get('isdir')?.error?.code).toBe('FILE_WRITE');
    expect(out.get('isdir')?.error?.message).toContain(join(dir, a.ocsp));
    expect(out.get('isdir')?.error?.message).toMatch(/directory/);
    expect(out.get('loop')?.error?.code).toBe('FILE_WRITE');
    expect(out.get('loop')?.error?.message).toContain(join(dir, b.ocsp));
    expect(out.get('loop')?.error?.message).toMatch(/symlink loop/);
    expect(await readFile(join(dir, a.ocsp, 'keep-me'), 'utf8')).toBe('x');
    expect((await lstat(join(dir, b.ocsp))).isSymbolicLink()).toBe(true);
    expect((await readdir(dir)).filter((n) => n.includes('.sk-tmp-'))).toEqual([]);
  });

  it('an unreadable staple (run as nobody) counts as missing and is replaced', async (ctx) => {
    if (isRoot() && !canRunAs(NOBODY)) {
      console.warn('skipped: running as root without setpriv');
      ctx.skip();
    }
    const dir = await folder('unreadable-staple');
    const a = await domain(dir, 'locked', other);
    const staple = join(dir, a.ocsp);
    await writeFile(staple, goodResponseFor(pki, other, new Date()));
    await chmod(staple, 0o000);
    if (isRoot()) await chown(dir, NOBODY.uid, NOBODY.gid);
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains: { locked: a } });
    const r = await runCli(['run', '-c', cfg, '--json'], isRoot() ? { as: NOBODY } : {});
    expect(r.code, showResult(r)).toBe(1);
    const o = outcomesById(r.stdout).get('locked');
    expect(o?.notices?.join('\n')).toContain(`${staple}: cannot read the staple: permission denied`);
  });
});

// ---------------------------------------------------------------------------
// Read-only and full staple folders
// ---------------------------------------------------------------------------

/** Makes `dir` read-only by the strongest means available; returns how, and an undo, or undefined. */
function makeReadOnly(dir: string): { how: string; undo: () => void } | undefined {
  if (isRoot()) {
    if (trySync('mount', ['--bind', dir, dir])) {
      if (trySync('mount', ['-o', 'remount,bind,ro', dir, dir])) {
        return { how: 'read-only bind mount', undo: () => void trySync('umount', ['-l', dir]) };
      }
      trySync('umount', ['-l', dir]);
    }
    if (trySync('chattr', ['+i', dir])) return { how: 'chattr +i', undo: () => void trySync('chattr', ['-i', dir]) };
    return undefined;
  }
  return { how: 'chmod 0555', undo: () => void chmod(dir, 0o755) };
}

describe('read-only and full staple folders', () => {
  it('a read-only staple folder: FILE_WRITE says why and that the old staple was kept; other domains renewed', async (ctx) => {
    const dir = await folder('ro');
    const staples = join(dir, 'staples');
    await mkdir(staples);
    const a = await domain(dir, 'fine', fine);
    const b = await domain(dir, 'ro', other);
    b.ocsp = join(staples, 'ro.der'); // an absolute staple path in the read-only folder; the lock stays in ocsp_folder
    const old = goodResponseFor(pki, other, new Date());
    await writeFile(b.ocsp, old);
    const ro = makeReadOnly(staples);
    if (!ro) {
      console.warn('skipped: as root, neither a read-only bind mount nor chattr +i is available');
      ctx.skip();
      return;
    }
    try {
      const before = await snapshot(b.ocsp);
      const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains: { fine: a, ro: b } });
      const r = await runCli(['run', '-c', cfg, '--force', '--json']);
      expect(r.code, showResult(r)).toBe(255);
      const out = outcomesById(r.stdout);
      expect(out.get('fine')?.result).toBe('updated');
      const e = out.get('ro')?.error;
      expect(e?.code, `${ro.how}\n${showResult(r)}`).toBe('FILE_WRITE');
      expect(e?.message).toContain(b.ocsp);
      expect(e?.message).toMatch(ro.how === 'read-only bind mount' ? /read-only file system/ : /permission denied/);
      expect(e?.message).toContain('the old staple was kept');
      const after = await snapshot(b.ocsp);
      expect(after).toEqual(before);
    } finally {
      ro.undo();
    }
  });

  it('a read-only ocsp_folder: the run stops before fetching, saying it cannot create its lock file and why', async (ctx) => {
    const dir = await folder('ro-folder');
    const a = await domain(dir, 'fine', fine);
    const staple = join(dir, a.ocsp);
    await writeFile(staple, goodResponseFor(pki, fine, new Date()));
    const before = await snapshot(staple);
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains: { fine: a } });
    const ro = makeReadOnly(dir);
    if (!ro) {
      console.warn('skipped: no way to make a folder read-only for root here');
      ctx.skip();
      return;
    }
    try {
      const count = responder.count();
      const r = await runCli(['run', '-c', cfg, '--force']);
      expect(r.code, showResult(r)).toBe(255);
      expect(r.stderr).toMatch(
        /error FILE_WRITE: .*\.staplekeeper\.lock: cannot create the lock file: (read-only file system|permission denied)/,
      );
      expect(responder.count()).toBe(count);
      expect(await snapshot(staple)).toEqual(before);
    } finally {
      ro.undo();
    }
  });

  it('a full file system (64 KiB tmpfs): FILE_WRITE "no space left on device", the old staple kept, no temporary file left', async (ctx) => {
    if (!isRoot()) {
      console.warn('skipped: mounting a small tmpfs needs root');
      ctx.skip();
      return;
    }
    const dir = await folder('full');
    const mnt = join(dir, 'full');
    await mkdir(mnt);
    if (!trySync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs', mnt])) {
      console.warn('skipped: mount -t tmpfs is not permitted here');
      ctx.skip();
      return;
    }
    try {
      const a = await domain(dir, 'fine', fine);
      const b = await domain(dir, 'full', other);
      b.ocsp = join(mnt, 'full.der');
      await writeFile(b.ocsp, goodResponseFor(pki, other, new Date()));
      // fill the rest of the file system
      const filler = Buffer.alloc(4096, 0x55);
      for (let i = 0; ; i++) {
        try {
          await writeFile(join(mnt, `fill-${i}`), filler);
        } catch {
          break;
        }
      }
      // and the last partial page too
      const { appendFile } = await import('node:fs/promises');
      for (;;) {
        try {
          await appendFile(join(mnt, 'fill-last'), Buffer.alloc(1));
        } catch {
          break;
        }
      }
      const before = await snapshot(b.ocsp);
      const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains: { fine: a, full: b } });
      const r = await runCli(['run', '-c', cfg, '--force', '--json']);
      expect(r.code, showResult(r)).toBe(255);
      const out = outcomesById(r.stdout);
      expect(out.get('fine')?.result).toBe('updated');
      const e = out.get('full')?.error;
      expect(e?.code, showResult(r)).toBe('FILE_WRITE');
      expect(e?.message).toContain(b.ocsp);
      expect(e?.message).toContain('no space left on device');
      expect(e?.message).toContain('the old staple was kept');
      expect(await snapshot(b.ocsp)).toEqual(before);
      expect((await readdir(mnt)).filter((n) => n.includes('.sk-tmp-'))).toEqual([]);
    } finally {
      trySync('umount', ['-l', mnt]);
    }
  });
});

// ---------------------------------------------------------------------------
// Symlinked staples and stale temporary files
// ---------------------------------------------------------------------------

describe('symlinked staples', () => {
  it("a staple path that is a symlink: the link's target is replaced atomically (new inode), the link stays as it was", async () => {
    const dir = await folder('symlink');
    const real = join(dir, 'real');
    await mkdir(real);
    const a = await domain(dir, 'linked', other);
    const target = join(real, 'linked.der');
    await writeFile(target, goodResponseFor(pki, other, new Date()));
    await symlink('real/linked.der', join(dir, a.ocsp)); // relative, as operators write them
    const linkBefore = await lstat(join(dir, a.ocsp));
    const targetBefore = await snapshot(target);
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains: { linked: a } });
    const r = await runCli(['run', '-c', cfg, '--force', '--json']);
    expect(r.code, showResult(r)).toBe(1);
    const linkAfter = await lstat(join(dir, a.ocsp));
    expect(linkAfter.isSymbolicLink()).toBe(true);
    expect(linkAfter.ino).toBe(linkBefore.ino);
    expect(await readlink(join(dir, a.ocsp))).toBe('real/linked.der');
    const targetAfter = await snapshot(target);
    expect(targetAfter.bytes.equals(targetBefore.bytes)).toBe(false);
    expect(targetAfter.ino).not.toBe(targetBefore.ino); // renamed into place, not rewritten in place
    expect(verifyFor(other, targetAfter.bytes)).toBe('good');
    expect((await readdir(real)).sort()).toEqual(['linked.der']);
  });

  it('a dangling symlink: the target is created, the link stays', async () => {
    const dir = await folder('dangling');
    await mkdir(join(dir, 'real'));
    const a = await domain(dir, 'dangling', other);
    await symlink(join(dir, 'real', 'new.der'), join(dir, a.ocsp));
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains: { dangling: a } });
    const r = await runCli(['run', '-c', cfg, '--json']);
    expect(r.code, showResult(r)).toBe(1);
    expect((await lstat(join(dir, a.ocsp))).isSymbolicLink()).toBe(true);
    expect(verifyFor(other, await readFile(join(dir, 'real', 'new.der')))).toBe('good');
  });
});

describe('stale temporary files', () => {
  it('temporary files of dead processes are removed by the next run; those of live processes are kept', async () => {
    const dir = await folder('stale');
    const a = await domain(dir, 'fine', fine);
    // a PID that surely belongs to no running process: one that has just exited
    const dead = await new Promise<number>((resolvePid) => {
      const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
      c.once('exit', () => resolvePid(c.pid!));
    });
    const stale = [`.fine.der.sk-tmp-${dead}-0a1b2c3d`, `.other.der.sk-tmp-${dead}-deadbeef`];
    const livePid = `.fine.der.sk-tmp-${process.pid}-01234567`; // this test process is alive
    for (const n of [...stale, livePid]) await writeFile(join(dir, n), 'partial');
    const old = new Date(Date.now() - 3_600_000);
    for (const n of stale) await utimes(join(dir, n), old, old);
    const cfg = await writeConfig(join(dir, 'c.yaml'), { ocsp_folder: dir, domains: { fine: a } });
    const r = await runCli(['run', '-c', cfg, '--json']);
    expect(r.code, showResult(r)).toBe(1);
    const left = await readdir(dir);
    for (const n of stale) expect(left).not.toContain(n);
    expect(left).toContain(livePid);
    expect((await stat(join(dir, 'fine.der'))).size).toBeGreaterThan(0);
  });
});
