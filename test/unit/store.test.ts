/**
 * The file store against a real file system (a fresh temporary folder per test).
 *
 * Failure paths: the obvious way to make a folder unwritable is `chmod 0555`,
 * but the tests may run as root, where permission bits are not checked. As
 * root we use the ext4/xfs "immutable" attribute (`chattr +i`), which even
 * root cannot write through; where that is unavailable (no CAP_LINUX_IMMUTABLE
 * or a file system without attributes) those two tests are skipped, and
 * failures are still covered by layouts that fail for everyone: a staple
 * path whose folder is a regular file (ENOTDIR), and a staple path that is a directory (EISDIR on rename).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, lstat, mkdir, readFile, readdir, readlink, realpath, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StapleError } from '../../src/core/errors.js';
import { TEMP_MARKER, cleanStaleTemps, createFileStore, type StapleStore } from '../../src/io/store.js';
import { buildTestPki, goodResponseFor, toPem } from '../helpers/mint.js';
import { tempDir, cleanUp, makeUnwritable, canMakeUnwritable } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const fileStore = createFileStore();
/**
 * Most tests here are about how a file is replaced (atomicity, modes, links,
 * backups) and use short text as staple contents; the content rules (only
 * OCSP responses are replaced) and the folder rule have their own tests, on
 * `fileStore` itself.
 */
const store: StapleStore = {
  ...fileStore,
  write: (p, d, o = {}) => fileStore.write(p, d, { overwriteNonOcsp: true, createBelow: dir, ...o }),
};
let dir: string;

beforeEach(async () => {
  dir = await realpath(await tempDir('sk-store-'));
});
afterEach(async () => {
  await cleanUp();
});

/** A PID that is certainly not running: a child that has already exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  expect(r.pid).toBeGreaterThan(0);
  return r.pid as number;
}

let sleeper: ChildProcess;
beforeAll(() => {
  sleeper = spawn(process.execPath, ['-e', 'setTimeout(()=>{},10000)'], { stdio: 'ignore' });
});
afterAll(() => {
  sleeper.kill('SIGKILL');
});

async function temps(d = dir): Promise<string[]> {
  return (await readdir(d)).filter((n) => n.includes(TEMP_MARKER));
}

async function expectStapleError(p: Promise<unknown>, code: string, ...fragments: string[]): Promise<StapleError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(StapleError);
  const se = e as StapleError;
  expect(se.code).toBe(code);
  for (const f of fragments) expect(se.message).toContain(f);
  return se;
}

describe('read', () => {
  it('returns undefined for a missing file', async () => {
    await expect(store.read(join(dir, 'none.der'))).resolves.toBeUndefined();
  });

  it('returns undefined for a missing folder too', async () => {
    await expect(store.read(join(dir, 'no', 'such', 'x.der'))).resolves.toBeUndefined();
  });

  it('returns the bytes of a file', async () => {
    await writeFile(join(dir, 'a.der'), Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x00]));
    expect(await store.read(join(dir, 'a.der'))).toEqual(Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x00]));
  });

  it('rejects a directory with FILE_UNREADABLE "is a directory"', async () => {
    await mkdir(join(dir, 'sub.der'));
    await expectStapleError(
      store.read(join(dir, 'sub.der')),
      'FILE_UNREADABLE',
      'is a directory',
      join(dir, 'sub.der'),
    );
  });

  it('rejects a file over 1 MiB', async () => {
    await writeFile(join(dir, 'big.der'), Buffer.alloc(1024 * 1024 + 1));
    await expectStapleError(store.read(join(dir, 'big.der')), 'FILE_UNREADABLE', 'larger than 1 MiB');
  });

  it('reads through a symlink', async () => {
    await writeFile(join(dir, 'real.der'), 'R');
    await symlink('real.der', join(dir, 'link.der'));
    expect((await store.read(join(dir, 'link.der')))?.toString()).toBe('R');
  });

  it('reports a symlink loop as FILE_UNREADABLE "symlink loop"', async () => {
    await symlink('b.der', join(dir, 'a.der'));
    await symlink('a.der', join(dir, 'b.der'));
    await expectStapleError(store.read(join(dir, 'a.der')), 'FILE_UNREADABLE', 'symlink loop');
  });

  it('reports a path below a regular file as FILE_UNREADABLE (not as "missing")', async () => {
    await writeFile(join(dir, 'file'), 'x');
    await expectStapleError(store.read(join(dir, 'file', 'x.der')), 'FILE_UNREADABLE', 'not a directory');
  });
});

describe('write', () => {
  it('creates a new file with mode 0644 and leaves no temporary file', async () => {
    const p = join(dir, 'new.der');
    const r = await store.write(p, Buffer.from('hello'));
    expect(r).toEqual({ path: p, pruned: [] });
    expect(await readFile(p, 'utf8')).toBe('hello');
    expect((await stat(p)).mode & 0o777).toBe(0o644);
    expect(await temps()).toEqual([]);
    expect(await readdir(dir)).toEqual(['new.der']);
  });

  it('replaces a file by rename (new inode), keeping its mode 0640', async () => {
    const p = join(dir, 'site.der');
    await writeFile(p, 'old');
    await chmod(p, 0o640);
    const before = await stat(p);
    await store.write(p, Buffer.from('new'));
    const after = await stat(p);
    expect(await readFile(p, 'utf8')).toBe('new');
    expect(after.mode & 0o7777).toBe(0o640);
    expect(after.ino).not.toBe(before.ino); // a new file renamed over the old one, never rewritten in place
    expect(await temps()).toEqual([]);
  });

  it('keeps unusual modes too (0600, 0444) regardless of the umask', async () => {
    for (const mode of [0o600, 0o444]) {
      const p = join(dir, `m${mode.toString(8)}.der`);
      await writeFile(p, 'old');
      await chmod(p, mode);
      await store.write(p, Buffer.from('new'));
      expect((await stat(p)).mode & 0o7777).toBe(mode);
      expect(await readFile(p, 'utf8')).toBe('new');
    }
  });

  it('keeps the owner of the old file when running as root', async () => {
    if (!isRoot) return expect(isRoot).toBe(false); // chown needs root; nothing to check otherwise
    const p = join(dir, 'owned.der');
    await writeFile(p, 'old');
    execFileSync('chown', ['1234:5678', p]);
    await store.write(p, Buffer.from('new'));
    const st = await stat(p);
    expect([st.uid, st.gid]).toEqual([1234, 5678]);
  });

  it('writes an empty buffer and binary data exactly', async () => {
    const p = join(dir, 'bin.der');
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await store.write(p, bytes);
    expect(await readFile(p)).toEqual(bytes);
    await store.write(p, Buffer.alloc(0));
    expect((await readFile(p)).length).toBe(0);
  });

  it('survives concurrent writes of the same path: one complete version wins, no temp is left', async () => {
    const p = join(dir, 'race.der');
    const versions = Array.from({ length: 10 }, (_, i) => Buffer.alloc(4096, i + 1));
    await Promise.all(versions.map((v) => store.write(p, v)));
    const final = await readFile(p);
    expect(versions.some((v) => v.equals(final))).toBe(true);
    expect(await temps()).toEqual([]);
  });

  describe('symlinks', () => {
    it('replaces the target of a link and leaves the link alone', async () => {
      const real = join(dir, 'var', 'site.der');
      await mkdir(join(dir, 'var'));
      await mkdir(join(dir, 'etc'));
      await writeFile(real, 'old');
      await chmod(real, 0o640);
      const link = join(dir, 'etc', 'site.der');
      await symlink('../var/site.der', link);
      const r = await store.write(link, Buffer.from('new'));
      expect(r.path).toBe(real);
      expect((await lstat(link)).isSymbolicLink()).toBe(true);
      expect(await readlink(link)).toBe('../var/site.der');
      expect(await readFile(real, 'utf8')).toBe('new');
      expect((await stat(real)).mode & 0o777).toBe(0o640);
      expect(await temps(join(dir, 'etc'))).toEqual([]);
      expect(await temps(join(dir, 'var'))).toEqual([]);
    });

    it('follows a chain of links and creates the target of a dangling link', async () => {
      await symlink('l2', join(dir, 'l1'));
      await symlink(join(dir, 'final.der'), join(dir, 'l2'));
      const r = await store.write(join(dir, 'l1'), Buffer.from('x'));
      expect(r.path).toBe(join(dir, 'final.der'));
      expect(await readFile(join(dir, 'final.der'), 'utf8')).toBe('x');
      expect((await lstat(join(dir, 'l1'))).isSymbolicLink()).toBe(true);
      expect((await lstat(join(dir, 'l2'))).isSymbolicLink()).toBe(true);
    });

    it('resolves a relative link target the way the kernel does, through a symlinked folder', async () => {
      // <dir>/etc-ocsp -> real/ocsp (a linked folder); real/ocsp/site.der -> ../var/site.der.
      // The kernel reads <dir>/real/var/site.der; a purely textual resolve would pick <dir>/var/site.der.
      await mkdir(join(dir, 'real', 'ocsp'), { recursive: true });
      await mkdir(join(dir, 'real', 'var'));
      await mkdir(join(dir, 'var')); // the wrong place exists too, so a wrong write would succeed silently
      await writeFile(join(dir, 'real', 'var', 'site.der'), 'old');
      await symlink('real/ocsp', join(dir, 'etc-ocsp'));
      await symlink('../var/site.der', join(dir, 'real', 'ocsp', 'site.der'));
      const r = await store.write(join(dir, 'etc-ocsp', 'site.der'), Buffer.from('new'));
      expect(await readFile(join(dir, 'etc-ocsp', 'site.der'), 'utf8')).toBe('new'); // what nginx would read
      expect(r.path).toBe(join(dir, 'real', 'var', 'site.der'));
      expect(await readdir(join(dir, 'var'))).toEqual([]);
      expect((await store.read(join(dir, 'etc-ocsp', 'site.der')))?.toString()).toBe('new');
    });

    it('fails on a symlink loop with FILE_WRITE "symlink loop" and changes nothing', async () => {
      await symlink('b.der', join(dir, 'a.der'));
      await symlink('a.der', join(dir, 'b.der'));
      await symlink('self.der', join(dir, 'self.der'));
      await expectStapleError(
        store.write(join(dir, 'a.der'), Buffer.from('x')),
        'FILE_WRITE',
        'symlink loop',
        'old staple was kept',
      );
      await expectStapleError(store.write(join(dir, 'self.der'), Buffer.from('x')), 'FILE_WRITE', 'symlink loop');
      expect(await readlink(join(dir, 'a.der'))).toBe('b.der');
      expect((await readdir(dir)).sort()).toEqual(['a.der', 'b.der', 'self.der']);
    });
  });

  describe('failures leave the old bytes and no temporary file', () => {
    it('a staple path whose folder is a regular file → FILE_WRITE, the file is untouched', async () => {
      await writeFile(join(dir, 'ocsp'), 'I am a file');
      await expectStapleError(
        store.write(join(dir, 'ocsp', 'site.der'), Buffer.from('x')),
        'FILE_WRITE',
        'not a directory',
        'old staple was kept',
      );
      expect(await readFile(join(dir, 'ocsp'), 'utf8')).toBe('I am a file');
      expect(await readdir(dir)).toEqual(['ocsp']);
    });

    it('a folder below createBelow (an existing staple folder) is created: scan subfolders', async () => {
      await store.write(join(dir, 'missing', 'deeper', 'site.der'), Buffer.from('x'));
      expect(await readFile(join(dir, 'missing', 'deeper', 'site.der'), 'utf8')).toBe('x');
    });

    it('any other missing folder is an error naming it, and nothing is created', async () => {
      await expectStapleError(
        fileStore.write(join(dir, 'typo', 'site.der'), Buffer.from('x')),
        'FILE_WRITE',
        `the folder ${join(dir, 'typo')} does not exist`,
      );
      await expectStapleError(
        fileStore.write(join(dir, 'typo', 'deeper', 'site.der'), Buffer.from('x'), { createBelow: join(dir, 'typo') }),
        'FILE_WRITE',
        'does not exist',
      );
      await expectStapleError(
        fileStore.write(join(dir, 'elsewhere', 'site.der'), Buffer.from('x'), { createBelow: join(dir, 'ocsp') }),
        'FILE_WRITE',
        'does not exist',
      );
      expect(await readdir(dir)).toEqual([]);
    });

    it('a staple path that is a directory → FILE_WRITE, the directory and its content survive', async () => {
      await mkdir(join(dir, 'site.der'));
      await writeFile(join(dir, 'site.der', 'keep'), 'k');
      await expectStapleError(store.write(join(dir, 'site.der'), Buffer.from('x')), 'FILE_WRITE', 'directory');
      expect(await readFile(join(dir, 'site.der', 'keep'), 'utf8')).toBe('k');
      expect(await temps()).toEqual([]);
    });

    it.skipIf(!canMakeUnwritable())(
      `a read-only folder (${isRoot ? 'chattr +i, as root' : 'chmod 0555'}) → FILE_WRITE, old bytes and mode kept`,
      async () => {
        const sub = join(dir, 'ro');
        await mkdir(sub);
        const p = join(sub, 'site.der');
        await writeFile(p, 'old bytes');
        await chmod(p, 0o640);
        expect(makeUnwritable(sub)).toBe(true);
        await expectStapleError(
          store.write(p, Buffer.from('new bytes')),
          'FILE_WRITE',
          'permission denied',
          'old staple was kept',
        );
        expect(await readFile(p, 'utf8')).toBe('old bytes');
        expect((await stat(p)).mode & 0o777).toBe(0o640);
        expect(await readdir(sub)).toEqual(['site.der']);
      },
    );

    it.skipIf(!isRoot || !canMakeUnwritable())(
      'a file that cannot be replaced (chattr +i): the temp file is created, rename fails, the temp is removed',
      async () => {
        const p = join(dir, 'site.der');
        await writeFile(p, 'old bytes');
        expect(makeUnwritable(p)).toBe(true);
        await expectStapleError(store.write(p, Buffer.from('new bytes')), 'FILE_WRITE', 'permission denied');
        expect(await readFile(p, 'utf8')).toBe('old bytes');
        expect(await temps()).toEqual([]); // the temp existed (rename is what failed) and was cleaned up
      },
    );
  });

  describe('backups', () => {
    it('keeps a copy named <path>-YYYYMMDD-HHMMSS in UTC', async () => {
      const p = join(dir, 'site.der');
      // 23:59:58 UTC is already the next day in any zone east of UTC and the same day west of it
      const now = new Date('2026-03-09T23:59:58Z');
      const r = await store.write(p, Buffer.from('v1'), { backup: true, now });
      expect(r.backupPath).toBe(`${p}-20260309-235958`);
      expect(await readFile(`${p}-20260309-235958`, 'utf8')).toBe('v1');
      expect(await readFile(p, 'utf8')).toBe('v1');
      expect(r.pruned).toEqual([]);
    });

    it('makes no backup unless asked', async () => {
      const r = await store.write(join(dir, 'site.der'), Buffer.from('v1'), { backupKeep: 1, now: new Date() });
      expect(r.backupPath).toBeUndefined();
      expect(await readdir(dir)).toEqual(['site.der']);
    });

    it('prunes the oldest backups beyond backupKeep, and only those of this staple', async () => {
      const p = join(dir, 'site.der');
      await writeFile(join(dir, 'other.der-20200101-000000'), 'other staple backup');
      await writeFile(join(dir, 'site.der-notes'), 'not a backup');
      const times = ['2026-01-01T00:00:01Z', '2026-01-02T00:00:00Z', '2026-01-10T12:00:00Z', '2026-02-01T00:00:00Z'];
      const results = [];
      for (const [i, t] of times.entries()) {
        results.push(await store.write(p, Buffer.from(`v${i}`), { backup: true, backupKeep: 2, now: new Date(t) }));
      }
      expect(results[2]?.pruned).toEqual([`${p}-20260101-000001`]);
      expect(results[3]?.pruned).toEqual([`${p}-20260102-000000`]);
      expect((await readdir(dir)).sort()).toEqual(
        [
          'other.der-20200101-000000',
          'site.der',
          'site.der-20260110-120000',
          'site.der-20260201-000000',
          'site.der-notes',
        ].sort(),
      );
      expect(await readFile(`${p}-20260201-000000`, 'utf8')).toBe('v3');
      expect(await readFile(`${p}-20260110-120000`, 'utf8')).toBe('v2');
    });

    it('keeps every backup when backupKeep is not set', async () => {
      const p = join(dir, 'site.der');
      for (let i = 0; i < 3; i++)
        await store.write(p, Buffer.from(`v${i}`), { backup: true, now: new Date(Date.UTC(2026, 0, 1, 0, 0, i)) });
      expect((await readdir(dir)).filter((n) => n.startsWith('site.der-'))).toHaveLength(3);
    });

    it('puts the backup beside the symlink target', async () => {
      await mkdir(join(dir, 'var'));
      await symlink(join(dir, 'var', 'site.der'), join(dir, 'site.der'));
      const r = await store.write(join(dir, 'site.der'), Buffer.from('v'), {
        backup: true,
        now: new Date('2026-05-05T05:05:05Z'),
      });
      expect(r.backupPath).toBe(join(dir, 'var', 'site.der-20260505-050505'));
      expect(await readdir(join(dir, 'var'))).toContain('site.der-20260505-050505');
    });
  });
});

describe('stale temporary files', () => {
  it('the next write removes temps of dead PIDs (of any staple in the folder) and keeps those of live ones', async () => {
    const dead = deadPid();
    const live = sleeper.pid as number;
    const staleA = `.site.der${TEMP_MARKER}${dead}-0a1b2c3d`;
    const staleB = `.other.der${TEMP_MARKER}${dead}-deadbeef`;
    const alive = `.site.der${TEMP_MARKER}${live}-12345678`;
    for (const n of [staleA, staleB, alive]) await writeFile(join(dir, n), 'partial');
    await writeFile(join(dir, '.hidden'), 'not a temp');
    await store.write(join(dir, 'site.der'), Buffer.from('x'));
    expect((await readdir(dir)).sort()).toEqual(['.hidden', alive, 'site.der'].sort());
  });

  it('cleanStaleTemps removes only dead-PID temps and returns their names', async () => {
    const dead = deadPid();
    const live = sleeper.pid as number;
    const stale = `.site.der${TEMP_MARKER}${dead}-aaaa0000`;
    const liveTemp = `.site.der${TEMP_MARKER}${live}-bbbb1111`;
    const own = `.site.der${TEMP_MARKER}${process.pid}-cccc2222`; // may be a write in flight in this very process
    const notHidden = `site.der${TEMP_MARKER}${dead}-dddd3333`; // our temps always start with a dot
    for (const n of [stale, liveTemp, own, notHidden]) await writeFile(join(dir, n), 'partial');
    expect(await cleanStaleTemps(dir)).toEqual([stale]);
    expect((await readdir(dir)).sort()).toEqual([liveTemp, own, notHidden].sort());
    expect(await cleanStaleTemps(dir)).toEqual([]); // idempotent
  });

  it('cleanStaleTemps of a missing folder returns an empty list', async () => {
    await expect(cleanStaleTemps(join(dir, 'missing'))).resolves.toEqual([]);
  });
});

describe('only staples are replaced (docs/SECURITY.md)', () => {
  const pki = buildTestPki({ keyType: 'ec-p256', delegated: true });
  const staple = goodResponseFor(pki, pki.leaves[0]!);
  const newer = goodResponseFor(pki, pki.leaves[0]!, new Date(pki.now.getTime() + 60_000));

  async function refusedUntouched(path: string, code: string, ...fragments: string[]): Promise<void> {
    const before = await lstat(path);
    await expectStapleError(fileStore.write(path, newer), code, ...fragments);
    const after = await lstat(path);
    expect(after.ino).toBe(before.ino);
    expect(after.mode).toBe(before.mode);
    expect(await temps()).toEqual([]);
  }

  it('replaces an OCSP response (DER or PEM, even a damaged one) and creates a missing file', async () => {
    await writeFile(join(dir, 'cut.der'), staple.subarray(0, Math.floor(staple.length * 0.8)));
    await fileStore.write(join(dir, 'cut.der'), newer);
    expect(await readFile(join(dir, 'cut.der'))).toEqual(newer);
    await writeFile(join(dir, 'a.der'), staple);
    await fileStore.write(join(dir, 'a.der'), newer);
    expect(await readFile(join(dir, 'a.der'))).toEqual(newer);
    await writeFile(join(dir, 'b.pem'), toPem(staple, 'OCSP RESPONSE'));
    await fileStore.write(join(dir, 'b.pem'), newer);
    await fileStore.write(join(dir, 'c.der'), newer);
    await writeFile(join(dir, 'empty.der'), '');
    await fileStore.write(join(dir, 'empty.der'), newer);
    expect(await readFile(join(dir, 'empty.der'))).toEqual(newer);
  });

  it('a FIFO, a unix socket and a symlink to either are refused, and nothing is opened for writing', async () => {
    execFileSync('mkfifo', [join(dir, 'fifo.der')]);
    await refusedUntouched(join(dir, 'fifo.der'), 'FILE_WRITE', 'FIFO');
    await symlink(join(dir, 'fifo.der'), join(dir, 'link.der'));
    await refusedUntouched(join(dir, 'link.der'), 'FILE_WRITE', 'FIFO', '->');
    const server = createServer();
    await new Promise<void>((r) => server.listen(join(dir, 'sock.der'), () => r()));
    try {
      await refusedUntouched(join(dir, 'sock.der'), 'FILE_WRITE', 'socket');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it.skipIf(!isRoot)(
    'a symlink to a character device (a node made here, as root) is refused; the node stays',
    async () => {
      // never the real /dev/zero or /dev/null: a device node of our own, in the temporary folder
      execFileSync('mknod', ['-m', '0666', join(dir, 'node'), 'c', '1', '3']);
      await symlink(join(dir, 'node'), join(dir, 'dev.der'));
      await expectStapleError(fileStore.write(join(dir, 'dev.der'), newer), 'FILE_WRITE', 'character device');
      expect((await lstat(join(dir, 'node'))).isCharacterDevice()).toBe(true);
      expect(await temps()).toEqual([]);
    },
  );

  it.each([
    ['a PEM certificate', () => pki.leaves[0]!.pem, 'certificate'],
    ['a DER certificate', () => pki.root.der, 'certificate'],
    ['a PEM private key', () => pki.root.key.privateKey.export({ type: 'pkcs8', format: 'pem' }), 'key'],
    ['a DER private key', () => pki.root.key.privateKey.export({ type: 'pkcs8', format: 'der' }), 'key'],
    ['a DER SEC1 key', () => pki.root.key.privateKey.export({ type: 'sec1', format: 'der' }), 'key'],
    ['a DER public key', () => pki.root.key.spkiDer, 'key'],
  ])('%s is never overwritten, not even with overwriteNonOcsp', async (_name, content, word) => {
    const p = join(dir, 'input.der');
    await writeFile(p, content());
    const bytes = await readFile(p);
    await refusedUntouched(p, 'STAPLE_PATH_REFUSED', word);
    await expectStapleError(fileStore.write(p, newer, { overwriteNonOcsp: true }), 'STAPLE_PATH_REFUSED', word);
    expect(await readFile(p)).toEqual(bytes);
  });

  it('other non-empty content is replaced only with overwriteNonOcsp', async () => {
    const p = join(dir, 'notes.der');
    await writeFile(p, 'my notes, not a staple\n');
    await refusedUntouched(p, 'STAPLE_PATH_REFUSED', 'not an OCSP response', 'overwrite_non_ocsp');
    expect(await readFile(p, 'utf8')).toBe('my notes, not a staple\n');
    await fileStore.write(p, newer, { overwriteNonOcsp: true });
    expect(await readFile(p)).toEqual(newer);
  });

  it('a failed backup after the staple was renamed into place is a warning: the write is reported', async () => {
    const p = join(dir, 'site.der');
    await writeFile(p, staple);
    const now = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
    // the backup's name is taken by a folder: its rename fails (EISDIR), after the staple's succeeded
    await mkdir(`${p}-20260102-030405`);
    const r = await fileStore.write(p, newer, { backup: true, now });
    expect(await readFile(p)).toEqual(newer);
    expect(r.backupPath).toBeUndefined();
    expect(r.backupError).toContain('the staple was written, but its backup failed');
  });
});
