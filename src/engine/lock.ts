/**
 * A lock file in the staple folder so that two overlapping runs (two cron
 * jobs, or a run while the daemon works) never write the same staples at
 * once. The holder's PID is in the file; a lock whose holder is dead is taken
 * over. The second run waits up to `timeoutMs`, then fails with LOCK_TIMEOUT
 * naming the holder. Two callers in one process exclude each other as well.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, rename, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StapleError } from '../core/errors.js';
import { describeFsError, isProcessAlive } from '../io/files.js';
import { TEMP_MARKER } from '../io/store.js';

/** The lock file name inside the staple folder. */
export const LOCK_NAME = '.staplekeeper.lock';

/** A held lock. */
export interface HeldLock {
  path: string;
  /** True when we waited for another holder first. */
  waited: boolean;
  release(): Promise<void>;
}

/**
 * Lock files held by this process, each with the token of its holder. A lock
 * file naming our own PID is ours only if it is in here; otherwise it was
 * left by an earlier process that had the same PID (common in containers,
 * where the daemon is PID 1 after every restart) and is stale.
 */
const heldHere = new Map<string, symbol>();

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function parsePid(text: string): number | undefined {
  const n = Number.parseInt(text.trim(), 10);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** What a lock file says: its holder (undefined for an empty or garbled file) and its inode. */
interface LockFacts {
  pid: number | undefined;
  ino: number;
}

/**
 * Reads a lock file; undefined when it does not exist (any more). A lock
 * path we cannot read, or that is not a regular file, is never judged stale
 * (it may be another user's live lock): that is a `FILE_WRITE` error.
 */
async function inspect(path: string): Promise<LockFacts | undefined> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTFILE' });
    return { pid: parsePid(await fh.readFile('utf8')), ino: st.ino };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    const why = (e as NodeJS.ErrnoException).code === 'ENOTFILE' ? 'it is not a regular file' : describeFsError(e);
    throw new StapleError(
      'FILE_WRITE',
      `${path}: cannot read the lock file: ${why}; remove it if no staplekeeper runs`,
      { cause: e },
    );
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** True when the lock file `facts` describes is held by a live process (this one included). */
function isHeld(path: string, facts: LockFacts): boolean {
  if (heldHere.has(path)) return true;
  return facts.pid !== undefined && facts.pid !== process.pid && isProcessAlive(facts.pid);
}

/**
 * Removes a stale lock without the race of "read, then unlink": between the
 * two, another run may have removed the same stale file and created its own
 * lock, which a plain unlink would delete. The file is renamed aside
 * atomically first; if what was moved is not the stale file we judged (a
 * live holder's, or another inode), it is linked back.
 */
async function removeStale(path: string, judged: LockFacts): Promise<void> {
  // named like a store temp file: folder watchers ignore it, and cleanStaleTemps removes it if we die here
  const aside = `${path}${TEMP_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it already
    throw new StapleError('FILE_WRITE', `${path}: cannot remove the stale lock file: ${describeFsError(e)}`, {
      cause: e,
    });
  }
  try {
    const moved = await inspect(aside);
    if (moved && (moved.ino !== judged.ino || isHeld(path, moved))) {
      await link(aside, path).catch(() => undefined); // put a fresh lock back (unless a newer one exists)
    }
  } finally {
    await unlink(aside).catch(() => undefined);
  }
}

/**
 * Takes the lock in `dir`. `onWait` is called once if another live process
 * (or another caller in this process) holds it.
 */
export async function acquireLock(
  dir: string,
  timeoutMs: number,
  onWait?: (holderPid: number) => void,
): Promise<HeldLock> {
  const path = resolve(join(dir, LOCK_NAME));
  await mkdir(dir, { recursive: true }).catch(() => undefined);
  const deadline = Date.now() + timeoutMs;
  let waited = false;
  let told = false;
  for (;;) {
    let fh;
    try {
      fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StapleError('FILE_WRITE', `${path}: cannot create the lock file: ${describeFsError(e)}`, {
          cause: e,
        });
      }
    }
    if (fh) {
      const token = Symbol(path);
      heldHere.set(path, token); // before the PID is written: an empty file of ours is not stale
      try {
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
      } catch (e) {
        await fh.close().catch(() => undefined);
        await unlink(path).catch(() => undefined);
        heldHere.delete(path);
        throw new StapleError('FILE_WRITE', `${path}: cannot write the lock file: ${describeFsError(e)}`, { cause: e });
      }
      let released = false;
      return {
        path,
        waited,
        async release() {
          if (released) return;
          released = true;
          try {
            if ((await inspect(path))?.pid === process.pid) await unlink(path).catch(() => undefined);
          } finally {
            if (heldHere.get(path) === token) heldHere.delete(path);
          }
        },
      };
    }

    const facts = await inspect(path);
    if (facts === undefined) continue; // released just now: try again
    if (!isHeld(path, facts)) {
      // stale: a dead holder, an earlier process that had our PID, or an empty/garbled file
      if (facts.pid === undefined) {
        // empty: maybe a holder between create and write; a crash only if it stays so
        await sleep(50);
        const again = await inspect(path);
        if (again === undefined || again.ino !== facts.ino || again.pid !== undefined || heldHere.has(path)) continue;
      }
      try {
        await removeStale(path, facts);
      } catch (e) {
        if (Date.now() >= deadline) throw e;
        await sleep(Math.min(200, Math.max(10, deadline - Date.now())));
      }
      continue;
    }
    const holder = heldHere.has(path) ? (facts.pid ?? process.pid) : (facts.pid as number);
    if (!told) {
      told = true;
      onWait?.(holder);
    }
    waited = true;
    if (Date.now() >= deadline) {
      throw new StapleError(
        'LOCK_TIMEOUT',
        `another staplekeeper (PID ${holder}) holds ${path}; gave up after ${Math.round(timeoutMs / 1000)} s (raise lock_timeout if runs overlap)`,
        { details: { holderPid: holder } },
      );
    }
    await sleep(Math.min(200, Math.max(10, deadline - Date.now())));
  }
}
