/**
 * A lock file in the staple folder so that two overlapping runs (two cron
 * jobs, or a run while the daemon works) never write the same staples at
 * once. The holder's PID is in the file; a lock whose holder is dead is taken
 * over. The second run waits up to `timeoutMs`, then fails with LOCK_TIMEOUT
 * naming the holder.
 */
import { constants } from 'node:fs';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StapleError } from '../core/errors.js';
import { describeFsError } from '../io/files.js';

/** The lock file name inside the staple folder. */
export const LOCK_NAME = '.staplekeeper.lock';

/** A held lock. */
export interface HeldLock {
  path: string;
  /** True when we waited for another holder first. */
  waited: boolean;
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readHolder(path: string): Promise<number | undefined> {
  try {
    const n = Number.parseInt((await readFile(path, 'utf8')).trim(), 10);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock in `dir`. `onWait` is called once if another live process
 * holds it.
 */
export async function acquireLock(
  dir: string,
  timeoutMs: number,
  onWait?: (holderPid: number) => void,
): Promise<HeldLock> {
  const path = join(dir, LOCK_NAME);
  await mkdir(dir, { recursive: true }).catch(() => undefined);
  const deadline = Date.now() + timeoutMs;
  let waited = false;
  let told = false;
  for (;;) {
    try {
      const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      try {
        await fh.writeFile(`${process.pid}\n`);
      } finally {
        await fh.close();
      }
      return {
        path,
        waited,
        async release() {
          if ((await readHolder(path)) === process.pid) await unlink(path).catch(() => undefined);
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StapleError('FILE_WRITE', `${path}: cannot create the lock file: ${describeFsError(e)}`, { cause: e });
      }
    }
    const holder = await readHolder(path);
    if (holder === undefined || !alive(holder) || holder === process.pid) {
      // a stale lock (dead holder, or an empty file left by a crash between create and write)
      if (holder === undefined) await new Promise((r) => setTimeout(r, 50));
      const again = await readHolder(path);
      if (again === holder) await unlink(path).catch(() => undefined);
      continue;
    }
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
    await new Promise((r) => setTimeout(r, Math.min(200, Math.max(10, deadline - Date.now()))));
  }
}
