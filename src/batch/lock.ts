/**
 * A lock per staple folder so that two overlapping runs (two cron jobs, or a
 * run while the daemon works) never write the same staples at once. The
 * second one waits up to `timeoutMs`, then fails with LOCK_TIMEOUT naming the
 * holder. Two callers in one process exclude each other as well.
 *
 * The lock itself is held by the kernel, so it dies with its holder: on
 * Linux, a listening unix-domain socket in the abstract namespace named
 * after the lock file's real path (`\0staplekeeper-lock:<sha256>`). Only one
 * socket can have a name; the kernel frees it the moment the process ends,
 * however it ends (SIGKILL, OOM killer, power loss: no stale state). The
 * lock file `.staplekeeper.lock` in the folder only holds the holder's PID,
 * for messages: a PID in it never blocks anyone, whether the process is dead
 * or an unrelated process reused the number.
 *
 * Why not flock(2): Node has no API for it, and the packages that add one are
 * native addons, which the one-file build and the single binary cannot carry.
 * The trade-offs (docs/SECURITY.md, "Locks"): abstract sockets are per
 * network namespace (runs in different containers over one shared folder do
 * not exclude each other), and any local user in the namespace could bind
 * the name first (the run then waits and fails with LOCK_TIMEOUT; `ss -xlp`
 * shows who holds it). Where abstract sockets do not exist (not Linux) the
 * PID-file lock of earlier versions is used.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, realpath, rename, unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
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
 * The PID-file lock, used where abstract sockets do not exist (not Linux):
 * a lock file created exclusively, judged stale when its PID is not alive.
 */
async function acquirePidFileLock(
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
        `${describeHolder(holder)} holds ${path}; gave up after ${Math.round(timeoutMs / 1000)} s (raise lock_timeout if runs overlap)`,
        { details: { holderPid: holder } },
      );
    }
    await sleep(Math.min(200, Math.max(10, deadline - Date.now())));
  }
}

/** The abstract socket name of the lock at `path` (a lock file path with a real folder). */
export function lockSocketName(path: string): string {
  return `\0staplekeeper-lock:${createHash('sha256').update(path).digest('hex')}`;
}

/** Abstract sockets exist on Linux only. */
const KERNEL_LOCKS = process.platform === 'linux';

/** Socket names this process holds (a second bind in the same process fails too, but this is quicker). */
const socketsHere = new Set<string>();

/** Binds the abstract name; resolves with the server, or undefined when another socket has it. */
function bindName(name: string): Promise<Server | undefined> {
  return new Promise((resolveBind, reject) => {
    const server = createServer((conn) => conn.destroy()); // nobody has anything to say to a lock
    const onError = (e: NodeJS.ErrnoException): void => {
      server.close();
      if (e.code === 'EADDRINUSE') resolveBind(undefined);
      else reject(e);
    };
    server.once('error', onError);
    server.listen(name, () => {
      server.off('error', onError);
      server.on('error', () => undefined);
      server.unref(); // a held lock never keeps the process alive
      resolveBind(server);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((r) => server.close(() => r()));
}

/** Opens the lock file for writing our PID; refuses anything that is not a regular file. */
async function openLockFile(path: string): Promise<import('node:fs/promises').FileHandle> {
  let fh;
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_NONBLOCK, 0o644);
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTFILE' });
    return fh;
  } catch (e) {
    await fh?.close().catch(() => undefined);
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOTFILE' || code === 'EISDIR' || code === 'ENXIO' ? 'it is not a regular file' : describeFsError(e);
    throw new StapleError(
      'FILE_WRITE',
      `${path}: cannot create the lock file: ${why}; remove it if no staplekeeper runs`,
      {
        cause: e,
      },
    );
  }
}

/** The PID a lock file names (for messages only), or undefined. */
async function holderPid(path: string): Promise<number | undefined> {
  try {
    return (await inspect(path))?.pid;
  } catch {
    return undefined;
  }
}

/** How long a waiter looks for the holder's PID to appear in the lock file. */
const PID_WAIT_MS = 1000;

/**
 * The PID of the process holding the socket, for messages. A holder binds
 * the socket first and writes its PID just after, so a waiter that lost the
 * race by a moment finds the file empty, or still naming an earlier holder
 * that is gone: it reads again for up to {@link PID_WAIT_MS} until the file
 * names a live process, else undefined (the message then names no PID).
 */
async function livingHolderPid(path: string): Promise<number | undefined> {
  const until = Date.now() + PID_WAIT_MS;
  for (;;) {
    const pid = await holderPid(path);
    if (pid !== undefined && pid !== process.pid && isProcessAlive(pid)) return pid;
    if (Date.now() >= until) return undefined;
    await sleep(10);
  }
}

/**
 * Who holds a lock, for messages: "another staplekeeper (PID n)", or
 * "another staplekeeper" when the PID is not known (0).
 */
export function describeHolder(pid: number): string {
  return pid > 0 ? `another staplekeeper (PID ${pid})` : 'another staplekeeper';
}

/**
 * Takes the lock in `dir`. `onWait` is called once if another process (or
 * another caller in this process) holds it, with the holder's PID as its
 * lock file names it (0 when it names no live process within a second:
 * {@link describeHolder} words both cases).
 */
export async function acquireLock(
  dir: string,
  timeoutMs: number,
  onWait?: (holderPid: number) => void,
): Promise<HeldLock> {
  if (!KERNEL_LOCKS) return acquirePidFileLock(dir, timeoutMs, onWait);
  const path = resolve(join(dir, LOCK_NAME));
  await mkdir(dir, { recursive: true }).catch(() => undefined);
  const real = await realpath(dir).then(
    (d) => join(d, LOCK_NAME),
    () => path,
  );
  const name = lockSocketName(real);
  const deadline = Date.now() + timeoutMs;
  let waited = false;
  let told = false;
  let pid: number | undefined;
  for (;;) {
    // the file is checked first: a lock path that is a directory, a FIFO or in a missing folder is an error
    const fh = await openLockFile(path);
    let server: Server | undefined;
    try {
      server = socketsHere.has(name) ? undefined : await bindName(name);
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw new StapleError('FILE_WRITE', `${path}: cannot take the lock: ${describeFsError(e)}`, { cause: e });
    }
    if (server) {
      socketsHere.add(name);
      const token = Symbol(path);
      heldHere.set(path, token);
      try {
        await fh.truncate(0);
        await fh.write(`${process.pid}\n`, 0);
      } catch {
        // the PID is only for messages; the lock is the socket
      } finally {
        await fh.close().catch(() => undefined);
      }
      const held = server;
      let released = false;
      return {
        path,
        waited,
        async release() {
          if (released) return;
          released = true;
          try {
            // still holding the socket: nobody else can have written the file since we took the lock
            if ((await holderPid(path)) === process.pid) await unlink(path).catch(() => undefined);
          } finally {
            if (heldHere.get(path) === token) heldHere.delete(path);
            await closeServer(held);
            socketsHere.delete(name);
          }
        },
      };
    }
    await fh.close().catch(() => undefined);
    // the PID is looked for once, when we first find the lock taken (it is only for the messages)
    if (!told) pid = socketsHere.has(name) ? process.pid : await livingHolderPid(path);
    if (!told) {
      told = true;
      onWait?.(pid ?? 0);
    }
    waited = true;
    if (Date.now() >= deadline) {
      const last = await holderPid(path); // the holder may have changed while we waited
      if (last !== undefined && last !== process.pid && isProcessAlive(last)) pid = last;
      throw new StapleError(
        'LOCK_TIMEOUT',
        `${describeHolder(pid ?? 0)} holds ${path}; gave up after ${Math.round(timeoutMs / 1000)} s (raise lock_timeout if runs overlap)`,
        { details: { holderPid: pid ?? null } },
      );
    }
    await sleep(Math.min(200, Math.max(10, deadline - Date.now())));
  }
}
