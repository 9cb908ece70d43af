import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, readdir, realpath, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StapleError } from '../../src/core/errors.js';
import { LOCK_NAME, acquireLock, describeHolder, lockSocketName } from '../../src/batch/lock.js';
import { tempDir, cleanUp, makeUnwritable, canMakeUnwritable } from '../helpers/temp.js';

let dir: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await tempDir('sk-lock-');
});
afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  await cleanUp();
});

const lockPath = (): string => join(dir, LOCK_NAME);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A real process that stays alive: its PID is a live lock holder. */
async function liveProcess(): Promise<ChildProcess> {
  const c = spawn(process.execPath, ['-e', 'setTimeout(()=>{},10000)'], { stdio: 'ignore' });
  children.push(c);
  await new Promise((r) => c.once('spawn', r));
  return c;
}

/** Runs a node script (argv from 1 on: `args`) until it is killed; resolves once it printed `ready`. */
async function nodeUntilReady(args: string[], ready: string): Promise<ChildProcess> {
  const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(c);
  await new Promise<void>((r, j) => {
    c.stdout?.on('data', (d: Buffer) => d.toString().includes(ready) && r());
    c.once('exit', () => j(new Error(`the child ended before it said "${ready}"`)));
  });
  return c;
}

/**
 * A real process holding the lock on `folder` (through the built module, as
 * another staplekeeper would), until it is killed.
 */
function lockHolder(folder: string): Promise<ChildProcess> {
  const mod = pathToFileURL(join(import.meta.dirname, '../../dist/batch/lock.js')).href;
  const script = `const { acquireLock } = await import(${JSON.stringify(mod)});
    await acquireLock(process.argv[1], 5000);
    process.stdout.write('held\\n');
    setInterval(() => {}, 1000);`;
  return nodeUntilReady(['--input-type=module', '-e', script, folder], 'held');
}

/**
 * A process that takes the lock's socket itself and writes its PID into the
 * lock file `writePidAfterMs` later (never when undefined), as a holder
 * caught between its bind and its write looks to a waiter.
 */
async function socketHolder(writePidAfterMs?: number): Promise<ChildProcess> {
  const name = lockSocketName(join(await realpath(dir), LOCK_NAME)).slice(1); // no NUL in argv
  const script = `require('node:net').createServer().listen('\\0' + process.argv[1], () => {
    process.stdout.write('bound\\n');
    const after = Number(process.argv[3]);
    if (after >= 0) setTimeout(() => require('node:fs').writeFileSync(process.argv[2], process.pid + '\\n'), after);
  });`;
  return nodeUntilReady(['-e', script, name, lockPath(), String(writePidAfterMs ?? -1)], 'bound');
}

function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid as number;
}

/** Tracks whether a promise has settled yet. */
function track<T>(p: Promise<T>): { p: Promise<T>; settled: () => boolean } {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  return { p, settled: () => done };
}

describe('acquireLock', () => {
  it('creates the lock file with our PID and removes it on release', async () => {
    const lock = await acquireLock(dir, 1000);
    expect(lock.path).toBe(lockPath());
    expect(lock.waited).toBe(false);
    expect(await readFile(lockPath(), 'utf8')).toBe(`${process.pid}\n`);
    await lock.release();
    expect(await readdir(dir)).toEqual([]);
  });

  it('creates a missing staple folder', async () => {
    const sub = join(dir, 'a', 'b');
    const lock = await acquireLock(sub, 1000);
    expect((await stat(join(sub, LOCK_NAME))).isFile()).toBe(true);
    await lock.release();
  });

  it('a second acquire waits, is told who holds it, and gets the lock after release', async () => {
    const first = await acquireLock(dir, 1000);
    const waits: number[] = [];
    const second = track(acquireLock(dir, 5000, (pid) => waits.push(pid)));
    await sleep(300);
    expect(second.settled()).toBe(false); // still waiting: the lock is held in this very process
    expect(waits).toEqual([process.pid]);
    await first.release();
    const lock = await second.p;
    expect(lock.waited).toBe(true);
    expect(await readFile(lockPath(), 'utf8')).toBe(`${process.pid}\n`);
    await lock.release();
    expect(await readdir(dir)).toEqual([]);
  });

  it('lets only one of many concurrent acquirers in at a time', async () => {
    let inside = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 5 }, async () => {
        const lock = await acquireLock(dir, 10_000);
        inside++;
        peak = Math.max(peak, inside);
        await sleep(20);
        inside--;
        await lock.release();
      }),
    );
    expect(peak).toBe(1);
    expect(await readdir(dir)).toEqual([]);
  });

  it('times out with LOCK_TIMEOUT naming the PID of a live holder, and leaves its lock alone', async () => {
    const holder = await lockHolder(dir);
    const waits: number[] = [];
    const t0 = Date.now();
    const e = await acquireLock(dir, 400, (pid) => waits.push(pid)).catch((x: unknown) => x);
    const elapsed = Date.now() - t0;
    expect(e).toBeInstanceOf(StapleError);
    expect((e as StapleError).code).toBe('LOCK_TIMEOUT');
    expect((e as StapleError).message).toContain(`PID ${holder.pid}`);
    expect((e as StapleError).message).toContain(lockPath());
    expect((e as StapleError).details).toEqual({ holderPid: holder.pid });
    expect(waits).toEqual([holder.pid]); // told once, not on every poll
    expect(elapsed).toBeGreaterThanOrEqual(390);
    expect(elapsed).toBeLessThan(2000);
    expect(await readFile(lockPath(), 'utf8')).toBe(`${holder.pid}\n`);
  });

  it('a timeout of 0 fails at once when the lock is held', async () => {
    await lockHolder(dir);
    const t0 = Date.now();
    await expect(acquireLock(dir, 0)).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    expect(Date.now() - t0).toBeLessThan(500);
  });

  it('names a holder that writes its PID a moment after taking the socket (two runs started at once)', async () => {
    // a waiter that read the file at once found it empty and said "PID 0"
    const c = await socketHolder(300);
    const waits: number[] = [];
    const e = await acquireLock(dir, 0, (pid) => waits.push(pid)).catch((x: unknown) => x);
    expect((e as StapleError).code).toBe('LOCK_TIMEOUT');
    expect(waits).toEqual([c.pid]);
    expect((e as StapleError).message).toContain(`another staplekeeper (PID ${c.pid}) holds ${lockPath()}`);
  });

  it('names no PID when the holder never writes one (not "PID 0")', async () => {
    await socketHolder();
    const waits: number[] = [];
    const e = await acquireLock(dir, 0, (pid) => waits.push(pid)).catch((x: unknown) => x);
    expect(waits).toEqual([0]);
    expect((e as StapleError).message).toMatch(/^another staplekeeper holds /);
    expect((e as StapleError).details).toEqual({ holderPid: null });
    expect(describeHolder(0)).toBe('another staplekeeper');
    expect(describeHolder(42)).toBe('another staplekeeper (PID 42)');
  });

  it('gets the lock once the holding process dies (SIGKILL: the kernel releases it)', async () => {
    const holder = await lockHolder(dir);
    const waiting = track(acquireLock(dir, 5000));
    await sleep(250);
    expect(waiting.settled()).toBe(false);
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    const lock = await waiting.p;
    expect(lock.waited).toBe(true);
    expect(await readFile(lockPath(), 'utf8')).toBe(`${process.pid}\n`);
    await lock.release();
  });

  it('takes over the lock of a dead PID at once', async () => {
    const dead = deadPid();
    await writeFile(lockPath(), `${dead}\n`);
    const waits: number[] = [];
    const t0 = Date.now();
    const lock = await acquireLock(dir, 0, (pid) => waits.push(pid));
    expect(Date.now() - t0).toBeLessThan(500);
    expect(lock.waited).toBe(false);
    expect(waits).toEqual([]);
    expect(await readFile(lockPath(), 'utf8')).toBe(`${process.pid}\n`);
    await lock.release();
    expect(await readdir(dir)).toEqual([]); // no renamed-aside leftovers
  });

  it('takes over an empty or garbage lock file (a crash between create and write)', async () => {
    for (const content of ['', 'not a pid\n']) {
      await writeFile(lockPath(), content);
      const lock = await acquireLock(dir, 1000);
      expect(await readFile(lockPath(), 'utf8')).toBe(`${process.pid}\n`);
      await lock.release();
    }
    expect(await readdir(dir)).toEqual([]);
  });

  it('takes over a lock that names our own PID but is not held in this process (PID reuse after a restart)', async () => {
    await writeFile(lockPath(), `${process.pid}\n`);
    const lock = await acquireLock(dir, 0);
    expect(lock.waited).toBe(false);
    await lock.release();
    expect(await readdir(dir)).toEqual([]);
  });

  it('release removes the file only while we hold it', async () => {
    const other = await liveProcess();
    const lock = await acquireLock(dir, 1000);
    // someone else's lock replaced ours (e.g. an operator removed it and another run started)
    await writeFile(lockPath(), `${other.pid}\n`);
    await lock.release();
    expect(await readFile(lockPath(), 'utf8')).toBe(`${other.pid}\n`);
  });

  it('a second release() of an old lock does not remove the lock of the next holder', async () => {
    const a = await acquireLock(dir, 1000);
    await a.release();
    const b = await acquireLock(dir, 1000);
    await a.release(); // stale handle
    expect(await readFile(lockPath(), 'utf8')).toBe(`${process.pid}\n`);
    // and b still excludes others
    await expect(acquireLock(dir, 100)).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    await b.release();
    expect(await readdir(dir)).toEqual([]);
  });

  it('fails with FILE_WRITE when the lock cannot be created', async () => {
    await writeFile(join(dir, 'file'), 'x');
    const e = await acquireLock(join(dir, 'file'), 100).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(StapleError);
    expect((e as StapleError).code).toBe('FILE_WRITE');
    expect((e as StapleError).message).toContain('lock file');
  });

  it('a lock path that is not a file is reported (FILE_WRITE), not taken over', async () => {
    await mkdir(lockPath());
    await writeFile(join(lockPath(), 'x'), 'x');
    const t0 = Date.now();
    const e = await acquireLock(dir, 300).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(StapleError);
    expect((e as StapleError).code).toBe('FILE_WRITE');
    expect((e as StapleError).message).toContain('not a regular file');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await readFile(join(lockPath(), 'x'), 'utf8')).toBe('x');
    expect((await readdir(dir)).sort()).toEqual([LOCK_NAME]);
  });

  it('a lock file naming a live process that holds no lock (a reused PID) does not block', async () => {
    const unrelated = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(unrelated);
    await new Promise((r) => unrelated.once('spawn', r));
    await writeFile(lockPath(), `${unrelated.pid}\n`);
    const waits: number[] = [];
    const t0 = Date.now();
    const lock = await acquireLock(dir, 0, (pid) => waits.push(pid));
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(waits).toEqual([]);
    expect(lock.waited).toBe(false);
    expect(await readFile(lockPath(), 'utf8')).toBe(`${process.pid}\n`);
    await lock.release();
  });

  // As root, chmod does not stop us; the immutable attribute does (skipped where unsupported).
  it.skipIf(!canMakeUnwritable())(
    'a stale lock file in a folder that cannot be changed does not block either',
    async () => {
      const dead = deadPid();
      await writeFile(lockPath(), `${dead}\n`);
      expect(makeUnwritable(dir)).toBe(true);
      const lock = await acquireLock(dir, 300);
      expect(lock.waited).toBe(false);
      expect(await readFile(lockPath(), 'utf8')).toBe(`${process.pid}\n`);
      await lock.release();
    },
  );
});
