/**
 * cli/line-buffer.ts: standard output in blocks changes neither what is
 * written nor its order, also relative to standard error when both end in
 * one file.
 */
import { describe, expect, it } from 'vitest';
import type { CliIo } from '../../src/cli/io.js';
import { bufferStdout } from '../../src/cli/line-buffer.js';

/** Both streams into one sink (as `2>&1`), each write tagged with its stream; and the number of writes. */
function sink(isTTY = false): { io: CliIo; merged: string[]; writes: () => number } {
  const merged: string[] = [];
  let writes = 0;
  const stream = (tag: string) => ({
    write(s: string): boolean {
      writes++;
      for (const line of s.split('\n').slice(0, -1)) merged.push(`${tag}${line}`);
      return true;
    },
  });
  return { io: { stdout: stream('1:'), stderr: stream('2:'), env: {}, cwd: '/', isTTY }, merged, writes: () => writes };
}

const immediate = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('bufferStdout', () => {
  it('writes every line in the order produced, with standard error in between, in far fewer writes', async () => {
    const direct = sink();
    const buffered = sink();
    const io = bufferStdout(buffered.io);
    const exits = process.listenerCount('exit');
    for (const target of [direct.io, io]) {
      for (let i = 0; i < 5000; i++) {
        target.stdout.write(`[d${i}] unchanged: fresh until somewhen; valid until later\n`);
        if (i % 1000 === 999) target.stderr.write(`[d${i}] failed: an error\n`);
      }
      target.stdout.write('Success: …\n');
    }
    io.flush();
    expect(buffered.merged).toEqual(direct.merged);
    expect(buffered.merged.length).toBe(5006);
    expect(buffered.writes()).toBeLessThan(30);
    expect(process.listenerCount('exit')).toBe(exits - 1);
    // after the flush, writes go straight through
    io.stdout.write('late\n');
    expect(buffered.merged.at(-1)).toBe('1:late');
  });

  it('writes what it holds at the next turn of the event loop', async () => {
    const s = sink();
    const io = bufferStdout(s.io);
    io.stdout.write('one\n');
    io.stdout.write('two\n');
    expect(s.merged).toEqual([]);
    await immediate();
    expect(s.merged).toEqual(['1:one', '1:two']);
    expect(s.writes()).toBe(1);
    io.flush();
  });

  it('leaves a terminal line by line', () => {
    const s = sink(true);
    const io = bufferStdout(s.io);
    io.stdout.write('one\n');
    expect(s.merged).toEqual(['1:one']);
    io.flush();
  });
});
