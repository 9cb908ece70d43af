/**
 * Staple storage on the file system.
 *
 * Contract of {@link StapleStore.write}: after it returns, the file holds the
 * new bytes durably; if it throws, the file holds exactly the old bytes (or
 * still does not exist). At no moment is the path missing or partial: the new
 * content is written to a temporary file in the same directory (opened
 * exclusively), fsynced, given the old file's mode (and owner where
 * permitted), renamed over the old path, and the directory is fsynced
 * (docs/servers.md). `remove` then `rename` — a moment with no file — is
 * never used.
 *
 * A staple path that is a symbolic link is resolved first: the link's target
 * is replaced atomically and the link itself is left alone, so a layout
 * where `/etc/nginx/ocsp/site.der -> /var/lib/staplekeeper/site.der` keeps
 * working.
 *
 * Only staples are replaced (docs/SECURITY.md): a staple path (or a link's
 * target) that is a directory, device, FIFO or socket is refused with
 * `FILE_WRITE` before anything is opened for writing; an existing file
 * holding a certificate or a key (PEM or DER) is refused with
 * `STAPLE_PATH_REFUSED`, and so is any other non-empty file that is not an
 * OCSP response unless {@link WriteOptions.overwriteNonOcsp}. Nothing is
 * written then. The staple's folder must exist; only folders below
 * {@link WriteOptions.createBelow} (an existing staple folder) are created.
 * A backup that fails after the staple was renamed into place does not undo
 * or hide the write: it is reported in {@link WriteResult.backupError}.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { StapleError } from '../core/errors.js';
import { classifyFile } from '../core/filekind.js';
import { describeFsError, fileTypeName, isProcessAlive } from './files.js';

/** The prefix of temporary files; stale ones from an interrupted run are cleaned up. */
export const TEMP_MARKER = '.sk-tmp-';

/** Options of one write. */
export interface WriteOptions {
  /** Also keep a copy named `<path>-YYYYMMDD-HHMMSS` (UTC), as ocspbot's `make_backups`. */
  backup?: boolean;
  /** Keep only this many backups of this staple (oldest removed); undefined keeps all. */
  backupKeep?: number;
  /** The time used for the backup name. */
  now?: Date;
  /**
   * An existing folder below which missing folders on the way to the staple
   * are created (a recursive scan's subfolders under `ocsp_folder`). Without
   * it, or for a staple outside it, a missing folder is an error naming it.
   */
  createBelow?: string;
  /** Replace an existing non-empty file that is not an OCSP response (never a certificate or key). */
  overwriteNonOcsp?: boolean;
}

/** The result of a write. */
export interface WriteResult {
  /** The file actually replaced (the symlink target for a link). */
  path: string;
  backupPath?: string;
  /** Why the backup could not be kept (the staple itself was written). */
  backupError?: string;
  /** Backups removed by `backupKeep`. */
  pruned: string[];
}

/** Where staples live. */
export interface StapleStore {
  /** Reads a staple; undefined when there is none. Other failures throw `FILE_UNREADABLE`. */
  read(path: string): Promise<Buffer | undefined>;
  /**
   * Optional: `read` without the thread pool, same contract. A staple is a
   * few KiB on a local disk: a synchronous read costs ~7 µs, the five
   * asynchronous calls of `read` ~50–90 µs, which is most of a warm check of
   * 10,000 staples (the engine uses it when present).
   */
  readSync?(path: string): Buffer | undefined;
  /** Replaces a staple atomically and durably (see the module contract). */
  write(path: string, data: Buffer, options?: WriteOptions): Promise<WriteResult>;
}

/**
 * Follows symbolic links of the final path component, up to 40 hops (the
 * kernel's limit). A relative link target is resolved against the real path
 * of the link's folder, as the kernel does: with `/etc/ocsp -> /srv/ocsp` and
 * `/etc/ocsp/a.der -> ../var/a.der`, nginx reads `/srv/var/a.der`, not
 * `/etc/var/a.der`.
 */
async function resolveTarget(path: string): Promise<string> {
  let p = resolve(path);
  for (let i = 0; i < 40; i++) {
    let st;
    try {
      st = await lstat(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return p;
      throw e;
    }
    if (!st.isSymbolicLink()) return p;
    const link = await readlink(p);
    p = isAbsolute(link) ? resolve(link) : resolve(await realpath(dirname(p)), link);
  }
  const err = new Error('symlink loop') as NodeJS.ErrnoException;
  err.code = 'ELOOP';
  throw err;
}

function stamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

/** The name of a staple's backup taken at `now`: `<path>-YYYYMMDD-HHMMSS` (UTC), as ocspbot names them. */
export function backupPathFor(path: string, now: Date): string {
  return `${path}-${stamp(now)}`;
}

/** Fsyncs a folder so a rename in it survives a crash; best effort (some file systems refuse). */
async function syncDir(dir: string): Promise<void> {
  let dh;
  try {
    dh = await open(dir, constants.O_RDONLY);
    await dh.sync();
  } catch {
    // EINVAL/EISDIR on file systems without directory fsync; the rename itself is done
  } finally {
    await dh?.close().catch(() => undefined);
  }
}

/** Writes `data` to `target` through a temporary file and a rename; a new file gets `newMode`. */
async function atomicReplace(target: string, data: Buffer, newMode = DEFAULT_NEW_MODE): Promise<void> {
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}${TEMP_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`);
  let mode = newMode;
  let owner: { uid: number; gid: number } | undefined;
  try {
    const st = await stat(target);
    mode = st.mode & 0o7777;
    // an old file nobody could read was not a working staple: its replacement gets the default mode
    if ((mode & 0o444) === 0) mode = newMode;
    owner = { uid: st.uid, gid: st.gid };
  } catch {
    // a new file: default mode
  }
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  let renamed = false;
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
      await fh.chmod(mode);
      if (owner && process.getuid?.() === 0) await fh.chown(owner.uid, owner.gid).catch(() => undefined);
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
    renamed = true;
    // The new bytes are in place now; failing here would tell the operator
    // "the old staple was kept", which is no longer true. Fsyncing the folder
    // makes the rename durable where the file system supports it.
    await syncDir(dir);
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}

/** Removes temporary files left in `dir` by processes that no longer run. Returns the removed names. */
export async function cleanStaleTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const i = name.indexOf(TEMP_MARKER);
    if (!name.startsWith('.') || i < 0) continue;
    const pid = Number(name.slice(i + TEMP_MARKER.length).split('-')[0]);
    if (isProcessAlive(pid) && pid !== process.pid) continue;
    if (pid === process.pid) continue;
    try {
      await unlink(join(dir, name));
      removed.push(name);
    } catch {
      // already gone, or not ours to remove
    }
  }
  return removed;
}

async function pruneBackups(target: string, keep: number): Promise<string[]> {
  const dir = dirname(target);
  const base = basename(target);
  const re = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-\\d{8}-\\d{6}$`);
  const backups = (await readdir(dir)).filter((n) => re.test(n)).sort();
  const excess = backups.slice(0, Math.max(0, backups.length - keep));
  for (const n of excess) await unlink(join(dir, n)).catch(() => undefined);
  return excess.map((n) => join(dir, n));
}

/** Folders whose stale temporary files were cleaned recently, by this process (once a minute is enough). */
const cleaned = new Map<string, number>();
const CLEAN_INTERVAL_MS = 60_000;

/** True when `dir` lies strictly below `root`. */
function isBelow(dir: string, root: string): boolean {
  const rel = relative(resolve(root), resolve(dir));
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/** Refuses what an existing file holds: a certificate, a key, or not an OCSP response. */
function refused(message: string): StapleError {
  return new StapleError('STAPLE_PATH_REFUSED', message);
}

/** Refuses a staple path that is not a regular file (directory, device, FIFO, socket). */
function notRegular(message: string): StapleError {
  return new StapleError('FILE_WRITE', message);
}

async function prepareFolder(dir: string, createBelow: string | undefined, path: string): Promise<void> {
  const last = cleaned.get(dir);
  if (last !== undefined && Date.now() - last < CLEAN_INTERVAL_MS) return;
  let st;
  try {
    st = await stat(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (st === undefined) {
    // Don't create what the operator mistyped: only subfolders below an existing staple folder
    const root = createBelow === undefined ? undefined : await stat(createBelow).catch(() => undefined);
    if (createBelow === undefined || !root?.isDirectory() || !isBelow(dir, createBelow)) {
      throw new StapleError(
        'FILE_WRITE',
        `${path}: cannot write the staple: the folder ${dir} does not exist (create it, or correct the path); nothing was written`,
      );
    }
    await mkdir(dir, { recursive: true });
  } else if (!st.isDirectory()) {
    throw new StapleError(
      'FILE_WRITE',
      `${path}: cannot write the staple: ${dir} is not a directory; the old staple was kept`,
    );
  }
  await cleanStaleTemps(dir);
  cleaned.set(dir, Date.now());
}

/** The largest existing file inspected before it is replaced (a staple is a few KiB). */
const MAX_INSPECT = 1024 * 1024;

/**
 * Refuses to replace anything but a regular file holding an OCSP response
 * (or nothing). Reads at most {@link MAX_INSPECT} bytes, through a
 * descriptor opened without blocking and checked with `fstat` first.
 */
async function guardExisting(target: string, path: string, overwriteNonOcsp: boolean): Promise<void> {
  const shown = target === resolve(path) ? path : `${path} (-> ${target})`;
  // looked at before it is opened: opening a device may itself do something
  let pre;
  try {
    pre = await lstat(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!pre.isFile()) {
    throw notRegular(
      `${shown}: is a ${fileTypeName(pre)}, not a regular file; refusing to replace it, nothing was written`,
    );
  }
  let fh;
  try {
    fh = await open(target, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'EISDIR') throw notRegular(`${shown}: is a directory, not a staple file; nothing was written`);
    if (code === 'ENXIO') throw notRegular(`${shown}: is a socket or FIFO, not a regular file; nothing was written`);
    if (code === 'EACCES' || code === 'EPERM') return; // unreadable: the write itself reports it
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw notRegular(
        `${shown}: is a ${fileTypeName(st)}, not a regular file; refusing to replace it, nothing was written`,
      );
    }
    if (st.size === 0) return;
    if (st.size > MAX_INSPECT) {
      if (overwriteNonOcsp) return;
      throw refused(
        `${shown}: holds ${st.size} bytes, not an OCSP response; refusing to overwrite it (set overwrite_non_ocsp: true, or fetch --overwrite, to allow it); nothing was written`,
      );
    }
    const buf = Buffer.alloc(st.size);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    const kind = classifyFile(buf.subarray(0, n));
    if (kind === 'certificate' || kind === 'key') {
      throw refused(
        `${shown}: holds a ${kind === 'key' ? 'key' : 'certificate'}; a staple never replaces an input file, nothing was written (correct the staple path)`,
      );
    }
    if (kind === 'other' && !overwriteNonOcsp) {
      throw refused(
        `${shown}: is not an OCSP response; refusing to overwrite it (set overwrite_non_ocsp: true, or fetch --overwrite, to allow it); nothing was written`,
      );
    }
  } finally {
    await fh.close();
  }
}

/**
 * Reads a regular file from an open descriptor whose `fstat` gave `size`:
 * one read call for the usual case, more if the file grew meanwhile
 * (`readFileSync(fd)` would `fstat` it a second time).
 */
function readWhole(fd: number, size: number, path: string): Buffer {
  let buf = Buffer.allocUnsafe(size + 1);
  let n = 0;
  for (;;) {
    const got = readSync(fd, buf, n, buf.length - n, n);
    if (got === 0) return buf.subarray(0, n);
    n += got;
    if (n === buf.length) {
      if (n > 1024 * 1024) throw new StapleError('FILE_UNREADABLE', `${path}: the staple file is larger than 1 MiB`);
      const bigger = Buffer.allocUnsafe(buf.length * 2);
      buf.copy(bigger, 0, 0, n);
      buf = bigger;
    }
  }
}

/** Reads a staple (the store's `read` and `readSync`). */
function readStapleSync(path: string): Buffer | undefined {
  try {
    // the kernel follows symbolic links as resolveTarget does; O_NONBLOCK keeps a FIFO from blocking
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const st = fstatSync(fd);
      if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      // a FIFO or device would block or never end: refuse it rather than hang the event loop
      if (!st.isFile()) throw new StapleError('FILE_UNREADABLE', `${path}: the staple is not a regular file`);
      if (st.size > 1024 * 1024) {
        throw new StapleError('FILE_UNREADABLE', `${path}: the staple file is larger than 1 MiB`);
      }
      return readWhole(fd, st.size, path);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    if (e instanceof StapleError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StapleError('FILE_UNREADABLE', `${path}: cannot read the staple: ${describeFsError(e)}`, {
      cause: e,
    });
  }
}

/** The mode of a staple file that did not exist before (an existing file keeps its mode). */
export const DEFAULT_NEW_MODE = 0o644;

/** Options of {@link createFileStore}. */
export interface FileStoreOptions {
  /**
   * The mode of staple (and backup) files that do not exist yet; default
   * {@link DEFAULT_NEW_MODE}. The `ocsprenewer` command passes 0o600, the
   * mode ocsprenewer gives new staples.
   */
  newFileMode?: number;
}

/** The file-system store. */
export function createFileStore(options: FileStoreOptions = {}): StapleStore {
  const newMode = options.newFileMode ?? DEFAULT_NEW_MODE;
  return {
    readSync: readStapleSync,

    // one implementation: a staple is a few KiB on a local disk, read at once
    read: async (path) => readStapleSync(path),

    async write(path, data, options = {}) {
      let target: string;
      try {
        target = await resolveTarget(path);
      } catch (e) {
        throw new StapleError(
          'FILE_WRITE',
          `${path}: cannot write the staple: ${describeFsError(e)}; the old staple was kept`,
          { cause: e },
        );
      }
      const result: WriteResult = { path: target, pruned: [] };
      try {
        await prepareFolder(dirname(target), options.createBelow, path);
        await guardExisting(target, path, options.overwriteNonOcsp ?? false);
        await atomicReplace(target, data, newMode);
      } catch (e) {
        if (e instanceof StapleError) throw e;
        throw new StapleError(
          'FILE_WRITE',
          `${path}: cannot write the staple: ${describeFsError(e)}; the old staple was kept`,
          { cause: e },
        );
      }
      if (options.backup) {
        const backupPath = backupPathFor(target, options.now ?? new Date());
        try {
          await atomicReplace(backupPath, data, newMode);
          result.backupPath = backupPath;
          if (options.backupKeep !== undefined) result.pruned = await pruneBackups(target, options.backupKeep);
        } catch (e) {
          // the staple is in place: that is the event; the backup is a warning
          result.backupError = `${backupPath}: the staple was written, but its backup failed: ${describeFsError(e)}`;
        }
      }
      return result;
    },
  };
}
