/**
 * watchFolders (src/daemon/watch.ts, folder-watch.ts) on real folders with
 * real inotify watches: the kinds decided after a burst, how ACME clients
 * write (in place, temporary file renamed over, certbot's link swap, a
 * target rewritten in place elsewhere), a folder removed and recreated, a
 * folder that is a re-pointed symbolic link, a folder missing at start, the
 * daemon's own files, the debounce, close(), and the one watch per folder.
 * The limits (EMFILE) are exercised in a child process that exhausts its
 * own file descriptors.
 */
import { spawnSync } from 'node:child_process';
import { appendFile, mkdir, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { watchFolders, type FileEvent, type FolderWatcher, type WatchDir } from '../../src/daemon/watch.js';
import { TEMP_MARKER } from '../../src/io/store.js';
import { LOCK_NAME } from '../../src/batch/lock.js';
import { cleanUp, tempDir } from '../helpers/temp.js';
import { ROOT, assertBuilt } from '../helpers/cli-harness.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A running watcher with every delivery recorded. */
interface Watching {
  batches: FileEvent[][];
  errors: Error[];
  watcher: FolderWatcher;
  /** Every event delivered so far (in order). */
  all(): FileEvent[];
  /** Waits until an event for `p` (of `kind`, when given) arrives after `from` deliveries. */
  waitFor(p: string, kind?: FileEvent['kind'], from?: number, ms?: number): Promise<FileEvent>;
}

const open: FolderWatcher[] = [];

async function watching(dirs: WatchDir[], debounceMs = 150): Promise<Watching> {
  const batches: FileEvent[][] = [];
  const errors: Error[] = [];
  const watcher = await watchFolders(dirs, (events) => batches.push(events), {
    debounceMs,
    onError: (e) => errors.push(e),
  });
  open.push(watcher);
  return {
    batches,
    errors,
    watcher,
    all: () => batches.flat(),
    async waitFor(p, kind, from = 0, ms = 10_000) {
      const end = Date.now() + ms;
      for (;;) {
        const hit = batches
          .slice(from)
          .flat()
          .find((e) => e.path === p && (kind === undefined || e.kind === kind));
        if (hit) return hit;
        if (Date.now() > end) {
          throw new Error(`no ${kind ?? 'event'} for ${p}; delivered: ${JSON.stringify(batches)}`);
        }
        await sleep(25);
      }
    },
  };
}

const flat = (p: string): WatchDir[] => [{ path: p, recursive: false }];

afterEach(async () => {
  for (const w of open.splice(0)) await w.close();
});
afterAll(cleanUp);

describe('watchFolders: a non-recursive folder, one fs.watch', () => {
  it('a new file is add, a write in place is change, a deletion is unlink', async () => {
    const dir = await tempDir('sk-watch-');
    const cert = path.join(dir, 'a.pem');
    const w = await watching(flat(dir));
    await writeFile(cert, 'one');
    expect((await w.waitFor(cert)).kind).toBe('add');

    let from = w.batches.length;
    await appendFile(cert, ' two'); // in place: no new name
    await w.waitFor(cert, 'change', from);
    expect(
      w.batches
        .slice(from)
        .flat()
        .filter((e) => e.path === cert),
    ).toEqual([{ path: cert, kind: 'change' }]);

    from = w.batches.length;
    await writeFile(cert, 'three'); // truncate and write, as an in-place writer does
    await w.waitFor(cert, 'change', from);

    from = w.batches.length;
    await unlink(cert);
    await w.waitFor(cert, 'unlink', from);
    expect(w.errors).toEqual([]);
  });

  it('a temporary file renamed over the certificate (lego, acme.sh) reports the certificate as present again', async () => {
    const dir = await tempDir('sk-watch-');
    const cert = path.join(dir, 'a.pem');
    await writeFile(cert, 'old');
    const w = await watching(flat(dir));
    const tmp = path.join(dir, '.a.pem.new');
    await writeFile(tmp, 'new');
    await rename(tmp, cert);
    expect((await w.waitFor(cert)).kind).toBe('add');
    // the temporary name is gone by the end of the burst: decided from what is there, never an add
    expect(w.all().filter((e) => e.path === tmp && e.kind !== 'unlink')).toEqual([]);
  });

  it('a burst is delivered once, after the quiet time, with the last state of each path', async () => {
    const dir = await tempDir('sk-watch-');
    const w = await watching(flat(dir), 400);
    const names = ['a.pem', 'b.pem', 'c.pem'].map((n) => path.join(dir, n));
    for (const p of names) await writeFile(p, 'x');
    await unlink(names[2]!);
    await w.waitFor(names[0]!);
    await sleep(600);
    expect(w.batches).toHaveLength(1);
    expect(new Map(w.batches[0]!.map((e) => [e.path, e.kind]))).toEqual(
      new Map([
        [names[0]!, 'add'],
        [names[1]!, 'add'],
        [names[2]!, 'unlink'],
      ]),
    );
  });

  it("never reports the daemon's own files (temporary staples, the lock), nor loops on its own writes", async () => {
    const dir = await tempDir('sk-watch-');
    const w = await watching(flat(dir));
    const staple = path.join(dir, 'a.ocsp-resp');
    // the store writes `<name>.sk-tmp-…` and renames it over the staple
    const tmp = path.join(dir, `a.ocsp-resp${TEMP_MARKER}123`);
    await writeFile(tmp, 'staple');
    await rename(tmp, staple);
    await writeFile(path.join(dir, LOCK_NAME), 'pid');
    expect((await w.waitFor(staple)).kind).toBe('add');
    await sleep(500);
    expect(w.all().map((e) => path.basename(e.path))).toEqual(['a.ocsp-resp']);
  });

  it("certbot's renewal: new archive files, then the live/ links swapped, is a change of each link", async () => {
    const le = await tempDir('sk-watch-le-');
    const live = path.join(le, 'live', 'example.com');
    const archive = path.join(le, 'archive', 'example.com');
    await mkdir(live, { recursive: true });
    await mkdir(archive, { recursive: true });
    for (const kind of ['cert', 'chain', 'fullchain']) {
      await writeFile(path.join(archive, `${kind}1.pem`), `${kind} 1`);
      await symlink(`../../archive/example.com/${kind}1.pem`, path.join(live, `${kind}.pem`));
    }
    const w = await watching(flat(live));
    // certbot (storage.py) writes the new versions, then unlinks each link and makes it again
    for (const kind of ['cert', 'chain', 'fullchain']) {
      await writeFile(path.join(archive, `${kind}2.pem`), `${kind} 2`);
    }
    for (const kind of ['cert', 'chain', 'fullchain']) {
      await unlink(path.join(live, `${kind}.pem`));
      await symlink(`../../archive/example.com/${kind}2.pem`, path.join(live, `${kind}.pem`));
    }
    for (const kind of ['cert', 'chain', 'fullchain']) {
      expect((await w.waitFor(path.join(live, `${kind}.pem`))).kind).toBe('add');
    }
    // nothing is reported under archive/: the links are what the daemon reads
    expect(w.all().every((e) => e.path.startsWith(live + path.sep))).toBe(true);
  });

  it('a symbolic link to a file elsewhere reports a change when its target is rewritten in place, and follows a swap', async () => {
    const le = await tempDir('sk-watch-le-');
    const live = path.join(le, 'live', 'x');
    const archive = path.join(le, 'archive', 'x');
    await mkdir(live, { recursive: true });
    await mkdir(archive, { recursive: true });
    const link = path.join(live, 'cert.pem');
    await writeFile(path.join(archive, 'cert1.pem'), 'v1');
    await symlink('../../archive/x/cert1.pem', link);
    const w = await watching(flat(live));

    await appendFile(path.join(archive, 'cert1.pem'), ' edited');
    expect((await w.waitFor(link)).kind).toBe('change');

    // swapped to cert2.pem: after the swap, a write to cert2 is the link's change, a write to cert1 is nothing
    let from = w.batches.length;
    await writeFile(path.join(archive, 'cert2.pem'), 'v2');
    const tmpLink = path.join(live, 'cert.pem.tmp-link');
    await symlink('../../archive/x/cert2.pem', tmpLink);
    await rename(tmpLink, link);
    expect((await w.waitFor(link, 'add', from)).kind).toBe('add');

    from = w.batches.length;
    await appendFile(path.join(archive, 'cert1.pem'), ' old one');
    await appendFile(path.join(archive, 'cert2.pem'), ' new one');
    await w.waitFor(link, 'change', from);
    await sleep(400);
    expect(
      w.batches
        .slice(from)
        .flat()
        .filter((e) => e.path === link),
    ).toEqual([{ path: link, kind: 'change' }]);

    // the target deleted: the link dangles, which is an unlink of the link
    from = w.batches.length;
    await unlink(path.join(archive, 'cert2.pem'));
    await w.waitFor(link, 'unlink', from);
  });

  it('a folder removed and created again is watched again, and what it holds reported', async () => {
    const base = await tempDir('sk-watch-');
    const dir = path.join(base, 'certs');
    await mkdir(dir);
    await writeFile(path.join(dir, 'a.pem'), 'a');
    const w = await watching(flat(dir));
    await rm(dir, { recursive: true });
    await w.waitFor(path.join(dir, 'a.pem'), 'unlink');
    await w.waitFor(dir, 'unlink');

    let from = w.batches.length;
    await mkdir(dir);
    await writeFile(path.join(dir, 'b.pem'), 'b');
    expect((await w.waitFor(path.join(dir, 'b.pem'), undefined, from)).kind).toBe('add');

    // and the new folder is the one watched from then on
    from = w.batches.length;
    await writeFile(path.join(dir, 'c.pem'), 'c');
    await appendFile(path.join(dir, 'b.pem'), 'b');
    await w.waitFor(path.join(dir, 'c.pem'), 'add', from);
    await w.waitFor(path.join(dir, 'b.pem'), 'change', from);
    expect(w.errors).toEqual([]);
  });

  it('a folder replaced at once (renamed over) reports what the new folder holds', async () => {
    const base = await tempDir('sk-watch-');
    const dir = path.join(base, 'certs');
    await mkdir(dir);
    await writeFile(path.join(dir, 'a.pem'), 'a');
    const w = await watching(flat(dir));
    const next = path.join(base, 'certs.new');
    await mkdir(next);
    await writeFile(path.join(next, 'b.pem'), 'b');
    await rm(dir, { recursive: true });
    await rename(next, dir);
    await w.waitFor(path.join(dir, 'b.pem'), 'add');
    const from = w.batches.length;
    await appendFile(path.join(dir, 'b.pem'), 'more');
    await w.waitFor(path.join(dir, 'b.pem'), 'change', from);
  });

  it('a watched folder that is a symbolic link, re-pointed elsewhere, is followed to the new folder', async () => {
    const base = await tempDir('sk-watch-');
    const one = path.join(base, 'one');
    const two = path.join(base, 'two');
    const current = path.join(base, 'current');
    await mkdir(one);
    await mkdir(two);
    await writeFile(path.join(two, 'b.pem'), 'b');
    await symlink('one', current);
    const w = await watching(flat(current));
    await writeFile(path.join(one, 'a.pem'), 'a');
    expect((await w.waitFor(path.join(current, 'a.pem'))).kind).toBe('add'); // reported under the configured path

    let from = w.batches.length;
    const tmp = path.join(base, 'current.tmp');
    await symlink('two', tmp);
    await rename(tmp, current); // `ln -sfn two current`
    expect((await w.waitFor(path.join(current, 'b.pem'), undefined, from)).kind).toBe('add');

    from = w.batches.length;
    await writeFile(path.join(two, 'c.pem'), 'c');
    await writeFile(path.join(one, 'old.pem'), 'old');
    await w.waitFor(path.join(current, 'c.pem'), 'add', from);
    await sleep(400);
    expect(w.all().some((e) => e.path.endsWith('old.pem'))).toBe(false);
  });

  it('a folder missing at start is watched once it appears', async () => {
    const base = await tempDir('sk-watch-');
    const dir = path.join(base, 'later');
    const w = await watching(flat(dir));
    await mkdir(dir);
    await writeFile(path.join(dir, 'a.pem'), 'a');
    await w.waitFor(path.join(dir, 'a.pem'), 'add');
    expect(w.errors).toEqual([]);
  });

  it('a subfolder of a non-recursive folder is not reported, nor what happens inside it', async () => {
    const dir = await tempDir('sk-watch-');
    const w = await watching(flat(dir));
    await mkdir(path.join(dir, 'sub'));
    await writeFile(path.join(dir, 'sub', 'x.pem'), 'x');
    await writeFile(path.join(dir, 'a.pem'), 'a');
    await w.waitFor(path.join(dir, 'a.pem'), 'add');
    await sleep(400);
    expect(w.all().map((e) => e.path)).toEqual([path.join(dir, 'a.pem')]);
  });

  it('close() stops every delivery, including a burst in progress', async () => {
    const dir = await tempDir('sk-watch-');
    const w = await watching(flat(dir), 300);
    await writeFile(path.join(dir, 'a.pem'), 'a');
    await sleep(50);
    await w.watcher.close();
    await writeFile(path.join(dir, 'b.pem'), 'b');
    await sleep(700);
    expect(w.batches).toEqual([]);
  });

  it('a recursive folder and a flat one together: one delivery per burst', async () => {
    const base = await tempDir('sk-watch-');
    const deep = path.join(base, 'deep');
    const flatDir = path.join(base, 'flat');
    await mkdir(path.join(deep, 'sub'), { recursive: true });
    await mkdir(flatDir);
    const w = await watching([
      { path: deep, recursive: true },
      { path: flatDir, recursive: false },
    ]);
    await writeFile(path.join(deep, 'sub', 'a.pem'), 'a');
    await writeFile(path.join(flatDir, 'b.pem'), 'b');
    await w.waitFor(path.join(deep, 'sub', 'a.pem'), 'add');
    await w.waitFor(path.join(flatDir, 'b.pem'), 'add');
    expect(w.batches).toHaveLength(1);
  });
});

describe('watchFolders: a recursive folder, one fs.watch per subfolder', () => {
  const deep = (p: string): WatchDir[] => [{ path: p, recursive: true }];

  it('files in subfolders: add, change, unlink, and a rename over one', async () => {
    const dir = await tempDir('sk-watch-r-');
    await mkdir(path.join(dir, 'a', 'b'), { recursive: true });
    const cert = path.join(dir, 'a', 'b', 'x.pem');
    const w = await watching(deep(dir));
    await writeFile(cert, '1');
    expect((await w.waitFor(cert)).kind).toBe('add');
    let from = w.batches.length;
    await appendFile(cert, '2');
    await w.waitFor(cert, 'change', from);
    from = w.batches.length;
    await writeFile(path.join(dir, 'a', 'b', '.x.tmp'), '3');
    await rename(path.join(dir, 'a', 'b', '.x.tmp'), cert);
    await w.waitFor(cert, 'add', from);
    from = w.batches.length;
    await unlink(cert);
    await w.waitFor(cert, 'unlink', from);
  });

  it('a subfolder that appears (with files already in it) is reported and watched from then on', async () => {
    const dir = await tempDir('sk-watch-r-');
    const w = await watching(deep(dir));
    // made elsewhere and moved in whole: no event for its files but the folder's own
    const outside = await tempDir('sk-watch-r-src-');
    await mkdir(path.join(outside, 'site', 'inner'), { recursive: true });
    await writeFile(path.join(outside, 'site', 'a.pem'), 'a');
    await writeFile(path.join(outside, 'site', 'inner', 'b.pem'), 'b');
    await rename(path.join(outside, 'site'), path.join(dir, 'site'));
    await w.waitFor(path.join(dir, 'site', 'a.pem'), 'add');
    await w.waitFor(path.join(dir, 'site', 'inner', 'b.pem'), 'add');
    expect(w.all().some((e) => e.path === path.join(dir, 'site'))).toBe(false); // folders are not reported

    const from = w.batches.length;
    await writeFile(path.join(dir, 'site', 'inner', 'c.pem'), 'c');
    await w.waitFor(path.join(dir, 'site', 'inner', 'c.pem'), 'add', from);
  });

  it('a subfolder removed is reported (its files too when deleted one by one), and no longer watched', async () => {
    const dir = await tempDir('sk-watch-r-');
    await mkdir(path.join(dir, 'one'));
    await mkdir(path.join(dir, 'two'));
    await writeFile(path.join(dir, 'one', 'a.pem'), 'a');
    await writeFile(path.join(dir, 'two', 'b.pem'), 'b');
    const w = await watching(deep(dir));
    const before = inotifyWatches();
    await rm(path.join(dir, 'one'), { recursive: true });
    await w.waitFor(path.join(dir, 'one', 'a.pem'), 'unlink');
    await w.waitFor(path.join(dir, 'one'), 'unlink');
    let from = w.batches.length;
    await rename(path.join(dir, 'two'), path.join(await tempDir('sk-watch-r-away-'), 'two')); // moved away whole
    await w.waitFor(path.join(dir, 'two'), 'unlink', from);
    expect(inotifyWatches()).toBe(before - 2);
    // created again under the same name: watched again
    from = w.batches.length;
    await mkdir(path.join(dir, 'one'));
    await writeFile(path.join(dir, 'one', 'c.pem'), 'c');
    await w.waitFor(path.join(dir, 'one', 'c.pem'), 'add', from);
  });

  it('links to folders are followed, each real folder watched once (a link loop cannot multiply watches)', async () => {
    const dir = await tempDir('sk-watch-r-');
    const elsewhere = await tempDir('sk-watch-r-else-');
    await mkdir(path.join(dir, 'sub'));
    await symlink('..', path.join(dir, 'sub', 'loop')); // sub/loop -> dir
    await symlink(elsewhere, path.join(dir, 'ext')); // a folder outside, by a link
    const before = inotifyWatches();
    const w = await watching(deep(dir));
    // dir, sub, ext's target, and dir's parent: four, whatever the loop
    expect(inotifyWatches() - before).toBe(4);
    await writeFile(path.join(elsewhere, 'e.pem'), 'e');
    await w.waitFor(path.join(dir, 'ext', 'e.pem'), 'add'); // reported under the path the scan sees
    await writeFile(path.join(dir, 'sub', 's.pem'), 's');
    await w.waitFor(path.join(dir, 'sub', 's.pem'), 'add');
  });
});

describe('watchFolders: one watch per folder, whatever it holds', () => {
  it('a recursive tree of 20 folders and 2,000 files costs 22 inotify watches (its 21 folders and its parent)', async () => {
    const dir = await tempDir('sk-watch-many-r-');
    for (let d = 0; d < 20; d++) {
      await mkdir(path.join(dir, `d${d}`));
      for (let i = 0; i < 100; i++) await writeFile(path.join(dir, `d${d}`, `c${i}.pem`), 'x');
    }
    const before = inotifyWatches();
    const w = await watching([{ path: dir, recursive: true }]);
    expect(inotifyWatches() - before).toBe(22);
    await appendFile(path.join(dir, 'd7', 'c42.pem'), 'y');
    await w.waitFor(path.join(dir, 'd7', 'c42.pem'), 'change');
  });

  it('a folder of 2,000 files costs one inotify watch (plus its parent), not one per file', async () => {
    const dir = await tempDir('sk-watch-many-');
    for (let i = 0; i < 2000; i++) await writeFile(path.join(dir, `c${i}.pem`), 'x');
    const before = inotifyWatches();
    const w = await watching(flat(dir));
    const added = inotifyWatches() - before;
    expect(added).toBeGreaterThanOrEqual(1);
    expect(added).toBeLessThanOrEqual(2);
    const from = w.batches.length;
    await appendFile(path.join(dir, 'c1234.pem'), 'y');
    await w.waitFor(path.join(dir, 'c1234.pem'), 'change', from);
  });
});

/** The inotify watches this process holds (/proc/self/fdinfo lists one `inotify wd:` line per watch). */
function inotifyWatches(): number {
  const r = spawnSync('sh', ['-c', `cat /proc/${process.pid}/fdinfo/* 2>/dev/null | grep -c '^inotify wd:' || true`], {
    encoding: 'utf8',
  });
  return Number(r.stdout.trim());
}

describe('watchFolders at the system limits', () => {
  it('EMFILE: one clear warning, no crash, and close() still works', () => {
    assertBuilt();
    // a child that uses up its file descriptors first: its first fs.watch cannot get an inotify instance
    const script = `
      import { openSync } from 'node:fs';
      const { watchFolders } = await import(${JSON.stringify(path.join(ROOT, 'dist', 'daemon', 'watch.js'))});
      await import(${JSON.stringify(path.join(ROOT, 'dist', 'daemon', 'folder-watch.js'))}); // loaded before the descriptors are gone
      const dirs = process.argv.slice(1).map((p) => ({ path: p, recursive: false }));
      const held = [];
      try { for (;;) held.push(openSync('/dev/null', 'r')); } catch {}
      const errors = [];
      const w = await watchFolders(dirs, () => {}, { onError: (e) => errors.push(e.message) });
      await w.close();
      console.log(JSON.stringify(errors));
    `;
    const a = spawnSync(
      'sh',
      ['-c', 'ulimit -n 64 && exec "$0" --input-type=module -e "$1" /tmp /var/tmp', process.execPath, script],
      {
        encoding: 'utf8',
      },
    );
    expect(a.status, a.stderr).toBe(0);
    const errors = JSON.parse(a.stdout) as string[];
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(
      /^cannot watch \/\S*: the system's limit of open files is reached \((EMFILE|ENFILE)\); changes in the folders not watched are picked up by the periodic sweep$/,
    );
  });
});
