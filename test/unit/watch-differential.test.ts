/**
 * The folder watcher against the library it replaced: the same changes made
 * under watchFolders (src/daemon/watch.ts: one `fs.watch` per folder,
 * folder-watch.ts) and under chokidar with the options the daemon used
 * before (ignoreInitial, atomic, followSymlinks, depth 0 for a non-recursive
 * folder, the daemon's own files ignored). chokidar stays a development
 * dependency for this test only.
 *
 * What is compared: for every file that exists before or after a change
 * (names that appear and go within one burst say nothing to the daemon),
 * whether it is reported, and whether as gone (`unlink`) or present (`add`
 * or `change`: the kernel does not say whether a renamed-in name existed
 * before, and the daemon treats the two alike; see docs/daemon.md). A file
 * that chokidar reports gone may be covered by its folder reported gone.
 * Where the two may differ on purpose, the test says so: a folder removed
 * and created again is followed by watchFolders, not by chokidar.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isOwnFile, watchFolders, type FileEvent, type FolderWatcher, type WatchDir } from '../../src/daemon/watch.js';
import { cleanUp, tempDir } from '../helpers/temp.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type Seen = Map<string, 'present' | 'gone'>;
const classOf = (kind: string): 'present' | 'gone' => (kind === 'unlink' || kind === 'unlinkDir' ? 'gone' : 'present');

interface Pair {
  ours: Seen;
  theirs: Seen;
  last: number;
  close(): Promise<void>;
}

const running: Pair[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.close()));
});
afterAll(cleanUp);

async function watchBoth(dirs: WatchDir[]): Promise<Pair> {
  const pair: Pair = { ours: new Map(), theirs: new Map(), last: Date.now(), close: async () => {} };
  const ours: FolderWatcher = await watchFolders(
    dirs,
    (events: FileEvent[]) => {
      for (const e of events) pair.ours.set(e.path, classOf(e.kind));
      pair.last = Date.now();
    },
    { debounceMs: 150 },
  );
  const watchers: FSWatcher[] = [];
  for (const recursive of [true, false]) {
    const group = dirs.filter((d) => d.recursive === recursive).map((d) => d.path);
    if (group.length === 0) continue;
    const w = chokidarWatch(group, {
      ignoreInitial: true,
      persistent: true,
      atomic: true,
      followSymlinks: true,
      ignorePermissionErrors: true,
      ...(recursive ? {} : { depth: 0 }),
      ignored: (p: string) => isOwnFile(p),
    });
    w.on('all', (kind: string, p: string) => {
      if (kind === 'addDir') return; // folders are not reported as present, by either
      pair.theirs.set(p, classOf(kind));
      pair.last = Date.now();
    });
    await new Promise<void>((resolve) => w.once('ready', () => resolve()));
    watchers.push(w);
  }
  pair.close = async () => {
    await ours.close();
    await Promise.all(watchers.map((w) => w.close()));
  };
  running.push(pair);
  // inotify watches are in place once both have resolved; give the kernel a moment before the first change
  await sleep(100);
  return pair;
}

/** Waits until neither watcher has reported anything for a while (both debounce: ours 150 ms, chokidar's atomic 100 ms). */
async function settle(pair: Pair): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < 15_000) {
    await sleep(200);
    if (Date.now() - pair.last > 1_200 && Date.now() - start > 1_500) return;
  }
}

/** The reports on `files` (those that exist before or after the change), as [path, class] rows. */
function onFiles(seen: Seen, files: readonly string[]): string[] {
  return files.flatMap((f) => {
    const c = seen.get(f);
    return c === undefined ? [] : [`${f} ${c}`];
  });
}

/** chokidar's reports on `files`, each of which watchFolders must have made too (a gone file may be covered by its gone folder). */
function expectSame(pair: Pair, files: readonly string[]): void {
  const theirs = onFiles(pair.theirs, files);
  const ours = onFiles(pair.ours, files);
  const covered = (row: string): boolean => {
    if (ours.includes(row)) return true;
    const [file, c] = row.split(' ') as [string, string];
    if (c !== 'gone') return false;
    for (let d = path.dirname(file); d !== path.dirname(d); d = path.dirname(d)) {
      if (pair.ours.get(d) === 'gone') return true;
    }
    return false;
  };
  expect(theirs.length, 'chokidar saw the change').toBeGreaterThan(0);
  expect(theirs.filter((r) => !covered(r))).toEqual([]);
  // and nothing chokidar did not report, but for files it missed whose state the report gets right
  for (const row of ours.filter((r) => !theirs.includes(r))) {
    const [file, c] = row.split(' ') as [string, string];
    expect(c === 'gone' ? !existsSync(file) : existsSync(file), row).toBe(true);
  }
}

const PEM = (n: number): string => `-----BEGIN CERTIFICATE-----\n${'A'.repeat(60 + n)}\n-----END CERTIFICATE-----\n`;

describe('watchFolders against chokidar on the same changes', { timeout: 30_000 }, () => {
  it('a new file, a file written in place, a temporary file renamed over, a deletion (one folder)', async () => {
    const dir = await tempDir();
    const a = path.join(dir, 'a.pem');
    const b = path.join(dir, 'b.pem');
    const c = path.join(dir, 'c.pem');
    const d = path.join(dir, 'd.pem');
    await writeFile(a, PEM(1));
    await writeFile(b, PEM(2));
    await writeFile(c, PEM(3));
    const pair = await watchBoth([{ path: dir, recursive: false }]);
    await writeFile(d, PEM(4)); // new
    await writeFile(a, PEM(5)); // in place (truncate and write)
    await appendFile(a, '\n');
    await writeFile(path.join(dir, 'b.pem.new'), PEM(6)); // lego / acme.sh: a temporary file renamed over
    await rename(path.join(dir, 'b.pem.new'), b);
    await unlink(c); // deleted
    await settle(pair);
    expectSame(pair, [a, b, c, d]);
    expect(onFiles(pair.ours, [a, b, c, d])).toEqual([`${a} present`, `${b} present`, `${c} gone`, `${d} present`]);
  });

  it("certbot's renewal: new archive files, then the live/ links re-pointed", async () => {
    const root = await tempDir();
    const archive = path.join(root, 'archive', 'example.org');
    const live = path.join(root, 'live', 'example.org');
    await mkdir(archive, { recursive: true });
    await mkdir(live, { recursive: true });
    await writeFile(path.join(archive, 'cert1.pem'), PEM(1));
    await writeFile(path.join(archive, 'chain1.pem'), PEM(2));
    const cert = path.join(live, 'cert.pem');
    const chain = path.join(live, 'chain.pem');
    await symlink('../../archive/example.org/cert1.pem', cert);
    await symlink('../../archive/example.org/chain1.pem', chain);
    const pair = await watchBoth([{ path: live, recursive: false }]);
    await writeFile(path.join(archive, 'cert2.pem'), PEM(3));
    await writeFile(path.join(archive, 'chain2.pem'), PEM(4));
    for (const [name, target] of [
      ['cert.pem', 'cert2.pem'],
      ['chain.pem', 'chain2.pem'],
    ] as const) {
      const tmp = path.join(live, `${name}.tmp`);
      await symlink(`../../archive/example.org/${target}`, tmp);
      await rename(tmp, path.join(live, name));
    }
    await settle(pair);
    expectSame(pair, [cert, chain]);
  });

  it('a recursive folder: a file written in a subfolder, a new subfolder with a file, a subfolder removed', async () => {
    const dir = await tempDir();
    const keep = path.join(dir, 'keep');
    const old = path.join(dir, 'old');
    await mkdir(path.join(keep, 'deeper'), { recursive: true });
    await mkdir(old);
    const deep = path.join(keep, 'deeper', 'x.pem');
    const gone = path.join(old, 'y.pem');
    await writeFile(deep, PEM(1));
    await writeFile(gone, PEM(2));
    const pair = await watchBoth([{ path: dir, recursive: true }]);
    await writeFile(deep, PEM(3));
    await sleep(300);
    const fresh = path.join(dir, 'new', 'z.pem');
    await mkdir(path.dirname(fresh));
    await sleep(300); // a new folder is watched once it is seen (both libraries)
    await writeFile(fresh, PEM(4));
    await rm(old, { recursive: true });
    await settle(pair);
    expectSame(pair, [deep, fresh, gone]);
  });

  it('a folder removed and created again: followed by watchFolders (chokidar lost it until the sweep)', async () => {
    const parent = await tempDir();
    const dir = path.join(parent, 'certs');
    await mkdir(dir);
    const a = path.join(dir, 'a.pem');
    await writeFile(a, PEM(1));
    const pair = await watchBoth([{ path: dir, recursive: false }]);
    await rm(dir, { recursive: true });
    await settle(pair);
    expectSame(pair, [a]);
    pair.ours.clear();
    pair.theirs.clear();
    await mkdir(dir);
    await sleep(300);
    await writeFile(a, PEM(2));
    await settle(pair);
    expect(onFiles(pair.ours, [a])).toEqual([`${a} present`]);
    // whatever chokidar reports here, it must agree with ours
    for (const row of onFiles(pair.theirs, [a])) expect(onFiles(pair.ours, [a])).toContain(row);
  });
});
