/**
 * Proving folders writable at start (and for each new scan subfolder), so
 * that a read-only mount or a wrong owner is reported at once and not as a
 * failure hours later when the first staple is due. ocsprenewer's drop-in
 * proves its output folder the same way.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StapleError } from '../core/errors.js';
import { describeFsError } from '../io/files.js';
import { TEMP_MARKER } from '../io/store.js';
import { isInside } from './watch.js';

/**
 * Proves that the daemon can write in each folder by creating and removing a
 * file there, so that a read-only mount or a wrong owner is reported at start
 * and not as a failure hours later when the first staple is due. Missing
 * folders inside `createWithin` (the ocsp_folder) are created, as scan_keys
 * subfolders need; others must exist.
 *
 * @throws StapleError `FILE_WRITE` naming the folder and the reason.
 */
export async function proveWritable(dirs: Iterable<string>, createWithin?: string): Promise<void> {
  for (const dir of new Set(dirs)) {
    let st;
    try {
      st = await stat(dir);
    } catch (e) {
      // only subfolders below the staple folder are created, never the folder itself (a mistyped ocsp_folder)
      if (
        (e as NodeJS.ErrnoException).code === 'ENOENT' &&
        createWithin &&
        resolve(dir) !== resolve(createWithin) &&
        isInside(dir, createWithin)
      ) {
        try {
          await mkdir(dir, { recursive: true });
          st = await stat(dir);
        } catch (e2) {
          throw new StapleError(
            'FILE_WRITE',
            `staple folder ${dir} does not exist and cannot be created: ${describeFsError(e2)}`,
            { cause: e2 },
          );
        }
      } else {
        throw new StapleError(
          'FILE_WRITE',
          `staple folder ${dir} cannot be used: ${describeFsError(e)}; create it or fix the configuration`,
          { cause: e },
        );
      }
    }
    if (!st.isDirectory()) throw new StapleError('FILE_WRITE', `staple folder ${dir} is not a folder`);
    const probe = join(dir, `.staplekeeper-probe${TEMP_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      const fh = await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      await fh.close();
      await unlink(probe);
    } catch (e) {
      const uid = process.getuid?.();
      throw new StapleError(
        'FILE_WRITE',
        `staple folder ${dir} is not writable: ${describeFsError(e)}${uid === undefined ? '' : ` (running as uid ${uid})`}; fix its owner or mode (under systemd: ReadWritePaths=)`,
        { cause: e },
      );
    }
  }
}
