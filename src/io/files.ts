/**
 * Reading input files with errors that name the file and say what is wrong.
 */
import { closeSync, constants, openSync, readSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { StapleError } from '../core/errors.js';

/** Upper bound for any certificate, chain or staple file we read (they are a few KiB). */
export const MAX_INPUT_FILE = 4 * 1024 * 1024;

/** What a non-regular file is, for messages: "directory", "character device", "FIFO", … */
export function fileTypeName(st: Stats): string {
  if (st.isDirectory()) return 'directory';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  if (st.isFIFO()) return 'FIFO (named pipe)';
  if (st.isSocket()) return 'socket';
  if (st.isSymbolicLink()) return 'symbolic link';
  return st.isFile() ? 'regular file' : 'special file';
}

/**
 * Reads a whole input file, bounded: the file is opened without blocking
 * (a FIFO would otherwise wait for a writer), checked with `fstat` on the
 * open descriptor, and refused before any read when it is not a regular
 * file (FIFO, socket, device such as /dev/zero) or larger than `maxBytes`
 * (a sparse 2 GB file is never read). The read itself stops at `maxBytes`
 * too, for a file that grows meanwhile. Every failure is `FILE_UNREADABLE`
 * with the path and the reason.
 */
export async function readInputFile(path: string, what = 'file', maxBytes = MAX_INPUT_FILE): Promise<Buffer> {
  try {
    return await readBounded(path, maxBytes);
  } catch (e) {
    throw new StapleError('FILE_UNREADABLE', `${path}: cannot read ${what}: ${describeFsError(e)}`, { cause: e });
  }
}

/**
 * The bounded read of {@link readInputFile}. Throws a file-system error, or
 * an Error whose message says what is wrong ("it is a FIFO (named pipe), not
 * a regular file", "it is larger than … bytes"); {@link describeFsError}
 * gives the reason of either.
 */
export async function readBounded(path: string, maxBytes: number): Promise<Buffer> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    if (!st.isFile()) throw new Error(`it is a ${fileTypeName(st)}, not a regular file`);
    const tooLarge = (): Error => new Error(`it is larger than ${maxBytes} bytes`);
    if (st.size > maxBytes) throw new Error(`it is larger than ${maxBytes} bytes (${st.size} bytes)`);
    const chunks: Buffer[] = [];
    let total = 0;
    let buf = Buffer.alloc(st.size + 1);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      total += bytesRead;
      if (total > maxBytes) throw tooLarge();
      // it grew between fstat and read: read on, still bounded
      if (bytesRead === buf.length) buf = Buffer.alloc(64 * 1024);
      else buf = buf.subarray(bytesRead);
    }
    return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
  } finally {
    await fh.close().catch(() => undefined);
  }
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

/** Files up to this size are read in one synchronous call; larger ones take the ordinary path. */
const FAST_READ_MAX = 64 * 1024;
const readBuffer = Buffer.allocUnsafe(FAST_READ_MAX);

/**
 * Reads a small file synchronously, or returns undefined on anything
 * unusual (missing, a directory, a FIFO, larger than 64 KiB or `maxBytes`,
 * any error): the caller then takes the ordinary asynchronous path, which
 * produces the canonical result or error. Certificates and staples are a few
 * KiB on a local disk; one synchronous read (open, read, close) costs
 * ~7 µs where `fs.promises.readFile` costs ~50–90 µs in thread-pool round
 * trips, which is most of a warm run.
 */
export function readRegularFileSync(path: string, maxBytes = MAX_INPUT_FILE): Buffer | undefined {
  const view = readRegularFileViewSync(path, maxBytes);
  return view === undefined ? undefined : Buffer.from(view);
}

/**
 * {@link readRegularFileSync} without the copy: the bytes read, as a view of
 * one buffer that the next fast read (of any file) overwrites. For a caller
 * that only hashes or compares them, or copies them when it keeps them: a
 * read costs no allocation then (10,000 chain files are 10,000 buffers of
 * garbage otherwise). The same bytes as {@link readRegularFileSync}, and
 * undefined in the same cases.
 */
export function readRegularFileViewSync(path: string, maxBytes = MAX_INPUT_FILE): Buffer | undefined {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not block the event loop (its read then fails: ordinary path)
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const limit = Math.min(FAST_READ_MAX, maxBytes + 1);
    // a short read of a regular file is its end; a full buffer may be a larger file or a device
    // (a positioned read: a FIFO or terminal fails with ESPIPE; /dev/null reads nothing, /dev/zero fills the
    // buffer: every such file goes to the ordinary read, which refuses non-regular files before reading)
    const n = readSync(fd, readBuffer, 0, limit, 0);
    if (n >= limit || n === 0) return undefined;
    return readBuffer.subarray(0, n);
  } catch {
    return undefined;
  } finally {
    try {
      closeSync(fd);
    } catch {
      // nothing to do
    }
  }
}
