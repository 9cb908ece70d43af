/**
 * Reading input files with errors that name the file and say what is wrong.
 */
import { readFile } from 'node:fs/promises';
import { StapleError } from '../core/errors.js';

/** Upper bound for any certificate, chain or staple file we read (they are a few KiB). */
export const MAX_INPUT_FILE = 4 * 1024 * 1024;

/** Reads a whole file; every failure is `FILE_UNREADABLE` with the path and the reason. */
export async function readInputFile(path: string, what = 'file'): Promise<Buffer> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (e) {
    throw new StapleError('FILE_UNREADABLE', `${path}: cannot read ${what}: ${describeFsError(e)}`, { cause: e });
  }
  if (data.length > MAX_INPUT_FILE) {
    throw new StapleError('FILE_UNREADABLE', `${path}: ${what} is larger than ${MAX_INPUT_FILE} bytes`);
  }
  return data;
}

/** A short, operator-friendly reason for a file-system error. */
export function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory, not a file';
    case 'ELOOP':
      return 'too many levels of symbolic links (symlink loop)';
    case 'ENOTDIR':
      return 'a parent path is not a directory';
    case 'ENOSPC':
      return 'no space left on device';
    case 'EROFS':
      return 'read-only file system';
    case 'EDQUOT':
      return 'disk quota exceeded';
    default:
      return e instanceof Error ? e.message : String(e);
  }
}

/**
 * True when a process with this PID exists (EPERM means it exists but is not
 * ours). Used to tell stale lock and temporary files of dead runs from live ones.
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
