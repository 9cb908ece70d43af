/**
 * What the file system says about a path during one load (file, folder,
 * other, missing or unusable), asked once per path, and for many paths in one
 * folder from a single listing.
 */
import { accessSync, constants, readdirSync, statSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { describeFsError } from '../io/files.js';

export type FsKind = 'file' | 'folder' | 'other' | 'missing' | `unusable: ${string}`;

const fsKinds = new Map<string, FsKind>();
/** {@link fsKindOnce}, once per path and load (a shared chain file is named by thousands of domains). */
export function fsKind(p: string): FsKind {
  let k = fsKinds.get(p);
  if (k === undefined) {
    k = fsKindOnce(p);
    fsKinds.set(p, k);
  }
  return k;
}

function fsKindOnce(p: string): FsKind {
  // synchronous: one stat is ~3 µs; 20,000 of them through the thread pool, awaited one by one, take ~0.5 s
  try {
    const s = statSync(p);
    return s.isFile() ? 'file' : s.isDirectory() ? 'folder' : 'other';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // a symlink loop or a permission problem is not "not found": say what it is
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : `unusable: ${describeFsError(e)}`;
  }
}

/** Below this many paths in one folder, {@link prefetchKinds} stats them one by one. */
const LIST_THRESHOLD = 16;

/**
 * Learns the kinds of many paths at once: for a folder that holds at least
 * {@link LIST_THRESHOLD} of them (10,000 certificates in one folder), one
 * listing tells which names are regular files, folders or absent, where a
 * `stat` per file costs ~4 µs each. Only answers a listing gives for sure
 * are taken from it: a regular file or a folder. A symbolic link, an entry
 * of unknown type, a name not listed, or a folder that cannot be listed or
 * searched is left to {@link fsKindOnce}, so every kind is the one `stat`
 * would give.
 */
export function prefetchKinds(paths: Iterable<string>): void {
  // paths are absolute and resolved: the folder is everything before the last separator
  const byDir = new Map<string, Map<string, string>>();
  for (const p of paths) {
    if (fsKinds.has(p)) continue;
    const cut = p.lastIndexOf(path.sep);
    const dir = cut <= 0 ? path.sep : p.slice(0, cut);
    let names = byDir.get(dir);
    if (names === undefined) byDir.set(dir, (names = new Map()));
    names.set(p.slice(cut + 1), p);
  }
  for (const [dir, group] of byDir) {
    if (group.size < LIST_THRESHOLD) continue;
    let entries: Dirent[];
    try {
      // stat needs search permission on the folder, a listing only read permission
      accessSync(dir, constants.X_OK);
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    // a name the listing lacks is left to stat too: it decides what "missing" is (and how names compare)
    for (const d of entries) {
      const p = group.get(d.name);
      if (p === undefined) continue;
      if (d.isFile()) fsKinds.set(p, 'file');
      else if (d.isDirectory()) fsKinds.set(p, 'folder');
    }
  }
}
/** Forgets every kind learnt: a load starts with what the file system says now. */
export function clearFsKinds(): void {
  fsKinds.clear();
}
