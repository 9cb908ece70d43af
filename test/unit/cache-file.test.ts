/**
 * io/cache-file.ts `writeCacheFile`: the piece-by-piece write gives exactly
 * the bytes of `encodeCacheFile`, and nothing short of a complete, flushed
 * file ever replaces the old one — not an error in the middle, not a wrong
 * line count, not a process killed while writing (a real child process).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCacheFile, encodeCacheFile, writeCacheFile, type CacheFileFormat } from '../../src/io/cache-file.js';
import { cleanStaleTemps, TEMP_MARKER } from '../../src/io/store.js';
import { tempDir } from '../helpers/temp.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const FORMAT: CacheFileFormat = { name: 'test-cache', version: 1, rules: 'rules-of-this-test' };

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
async function dir(): Promise<string> {
  const d = await tempDir('sk-cache-file-');
  dirs.push(d);
  return d;
}

const lines = (n: number, tag = 'x'): string[] =>
  Array.from({ length: n }, (_, i) => `"${tag}${i}"\t${'é'.repeat(i % 7)}\t${i}`);

function* inPieces(all: string[], size: number): Generator<string[]> {
  for (let i = 0; i < all.length; i += size) yield all.slice(i, i + size);
}

const temps = async (d: string): Promise<string[]> => (await readdir(d)).filter((n) => n.includes(TEMP_MARKER));

describe('writeCacheFile', () => {
  it.each([0, 1, 5, 1023, 1024, 1025, 5000])('writes %i lines in pieces as the bytes of encodeCacheFile', async (n) => {
    const d = await dir();
    const all = lines(n);
    for (const size of [1, 7, 1024]) {
      const p = join(d, `c-${size}.json`);
      expect(writeCacheFile(p, FORMAT, { count: n, pieces: inPieces(all, size) })).toBe(true);
      expect((await readFile(p)).equals(encodeCacheFile(FORMAT, all))).toBe(true);
    }
    // the plain list form too
    const p = join(d, 'c-list.json');
    expect(writeCacheFile(p, FORMAT, all)).toBe(true);
    const data = await readFile(p);
    expect(data.equals(encodeCacheFile(FORMAT, all))).toBe(true);
    expect(decodeCacheFile(FORMAT, data)).toBe(n === 0 ? '' : `${all.join('\n')}\n`);
    expect(await temps(d)).toEqual([]);
  });

  it('keeps the old file, and leaves no temporary file, when a piece cannot be made', async () => {
    const d = await dir();
    const p = join(d, 'c.json');
    expect(writeCacheFile(p, FORMAT, lines(10, 'old'))).toBe(true);
    const old = await readFile(p);
    function* failing(): Generator<string[]> {
      yield lines(3, 'new');
      throw new Error('a record could not be signed');
    }
    expect(writeCacheFile(p, FORMAT, { count: 6, pieces: failing() })).toBe(false);
    expect((await readFile(p)).equals(old)).toBe(true);
    expect(await temps(d)).toEqual([]);
  });

  it('keeps the old file when the pieces do not hold the lines announced', async () => {
    const d = await dir();
    const p = join(d, 'c.json');
    expect(writeCacheFile(p, FORMAT, lines(10, 'old'))).toBe(true);
    const old = await readFile(p);
    for (const count of [4, 6]) {
      expect(writeCacheFile(p, FORMAT, { count, pieces: inPieces(lines(5, 'new'), 2) })).toBe(false);
      expect((await readFile(p)).equals(old)).toBe(true);
    }
    expect(await temps(d)).toEqual([]);
  });

  it('keeps the old file when it cannot write in the folder', async () => {
    const d = await dir();
    expect(writeCacheFile(join(d, 'missing', 'c.json'), FORMAT, lines(3))).toBe(false);
  });

  it('leaves the old file intact when the process is killed in the middle of the write', async () => {
    const dist = join(ROOT, 'dist', 'io', 'cache-file.js');
    if (!existsSync(dist)) throw new Error('dist/ is missing: run `npm run build` first');
    const d = await dir();
    const p = join(d, 'c.json');
    expect(writeCacheFile(p, FORMAT, lines(2000, 'old'))).toBe(true);
    const old = await readFile(p);
    // a child process writes 5,000 new lines and is killed (SIGKILL) after two pieces are on disk
    const script = `
      const { writeCacheFile } = await import(${JSON.stringify(dist)});
      function* pieces() {
        for (let k = 0; k < 5; k++) {
          if (k === 2) process.kill(process.pid, 'SIGKILL');
          yield Array.from({ length: 1000 }, (_, i) => 'new' + (k * 1000 + i));
        }
      }
      writeCacheFile(${JSON.stringify(p)}, ${JSON.stringify(FORMAT)}, { count: 5000, pieces: pieces() });
      process.exit(0);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.signal).toBe('SIGKILL');
    expect((await readFile(p)).equals(old)).toBe(true);
    expect(decodeCacheFile(FORMAT, await readFile(p))).toBe(`${lines(2000, 'old').join('\n')}\n`);
    // what the killed process left: one temporary file, which the next run's clean-up removes
    const left = await temps(d);
    expect(left).toHaveLength(1);
    expect(decodeCacheFile(FORMAT, await readFile(join(d, left[0] as string)))).toBeUndefined();
    await cleanStaleTemps(d);
    expect(await temps(d)).toEqual([]);
    expect((await readFile(p)).equals(old)).toBe(true);
  });

  it('a file damaged after it was written is read as no file at all', async () => {
    const d = await dir();
    const p = join(d, 'c.json');
    expect(writeCacheFile(p, FORMAT, { count: 3000, pieces: inPieces(lines(3000), 1024) })).toBe(true);
    const data = await readFile(p);
    await writeFile(p, data.subarray(0, data.length - 100));
    expect(decodeCacheFile(FORMAT, await readFile(p))).toBeUndefined();
  });
});
