/**
 * What a test file makes and must undo at its end: temporary folders, and
 * anything else registered with {@link onCleanup} (servers, responders).
 *
 * ```ts
 * let dir: string;
 * beforeEach(async () => (dir = await tempDir('sk-store-')));
 * afterEach(cleanUp);
 * ```
 *
 * The one temp-folder helper of the tests: every folder is made with
 * `mkdtemp` under the system's temporary folder, remembered, and removed by
 * {@link cleanUp} (or {@link removeTempDirs}). Child processes of the CLI
 * are killed by cli-harness.ts `killAllChildren`, which a test file calls
 * before `cleanUp` (a process may still write into a folder). Folders made
 * unwritable with {@link makeUnwritable} are made writable again first.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dirs = new Set<string>();
const undo: Array<() => unknown> = [];

/** A fresh temporary folder (`<tmp>/<prefix>XXXXXX`), removed by {@link cleanUp}. */
export async function tempDir(prefix = 'sk-test-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

/** {@link tempDir} with every symlink of its path resolved (for tests that compare real paths). */
export async function realTempDir(prefix = 'sk-test-'): Promise<string> {
  return realpath(await tempDir(prefix));
}

/** {@link tempDir}, synchronously (for set-ups that cannot await). */
export function tempDirSync(prefix = 'sk-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

/** Removes every folder made by {@link tempDir} so far. */
export async function removeTempDirs(): Promise<void> {
  for (const d of dirs) await rm(d, { recursive: true, force: true }).catch(() => undefined);
  dirs.clear();
}

/** Registers `fn` to run at the next {@link cleanUp} (the last registered runs first). */
export function onCleanup(fn: () => unknown): void {
  undo.push(fn);
}

/**
 * Runs what {@link onCleanup} registered, newest first (an error is kept and
 * thrown after the rest has run), then removes the temporary folders.
 */
export async function cleanUp(): Promise<void> {
  let first: unknown;
  for (const fn of undo.splice(0).reverse()) {
    try {
      await fn();
    } catch (e) {
      first ??= e;
    }
  }
  await removeTempDirs();
  if (first !== undefined) throw first;
}

// ---------------------------------------------------------------- folders and files that cannot be changed

const asRoot = process.getuid?.() === 0;

/**
 * Makes `path` unwritable for this process until {@link cleanUp}: `chmod`
 * (0555 by default) for a normal user, `chattr +i` for root, whom modes do
 * not stop. False when neither is possible here (root on a file system
 * without the immutable flag).
 */
export function makeUnwritable(path: string, mode = 0o555): boolean {
  if (!asRoot) {
    execFileSync('chmod', [mode.toString(8), path]);
    onCleanup(() => execFileSync('chmod', ['755', path]));
    return true;
  }
  try {
    execFileSync('chattr', ['+i', path], { stdio: 'ignore' });
  } catch {
    return false;
  }
  onCleanup(() => execFileSync('chattr', ['-i', path], { stdio: 'ignore' }));
  return true;
}

let unwritable: boolean | undefined;

/** True when {@link makeUnwritable} works here (tried once on a probe folder). */
export function canMakeUnwritable(): boolean {
  if (unwritable !== undefined) return unwritable;
  if (!asRoot) return (unwritable = true);
  const probe = mkdtempSync(join(tmpdir(), 'sk-chattr-probe-'));
  try {
    execFileSync('chattr', ['+i', probe], { stdio: 'ignore' });
    execFileSync('chattr', ['-i', probe], { stdio: 'ignore' });
    unwritable = true;
  } catch {
    unwritable = false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
  return unwritable;
}
