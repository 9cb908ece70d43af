/**
 * The conventions every staplekeeper command keeps, through the real CLI
 * entry point: bad arguments exit 252 everywhere (outside `run`'s 1–250
 * "that many renewed", so cron never reloads on a typo) and 3 in `check`
 * (the plugin convention); `--version`/`-V` and `ocspbot -v` print the
 * version; every command's `--help` lists its exit codes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../../src/cli/main.js';
import { ocspbotCli } from '../../src/cli/ocspbot.js';
import { VERSION } from '../../src/version.js';
import { memoryIo as sharedMemoryIo, type MemoryIo } from '../helpers/memory-io.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

/** The CLI's streams in memory, with an empty environment. */
const memoryIo = (cwd: string): MemoryIo => sharedMemoryIo(cwd, {});

let dir: string;
beforeAll(async () => {
  dir = await tempDir('sk-conv-');
});
afterAll(cleanUp);

describe('bad arguments', () => {
  const cases: Array<[string, string[], number]> = [
    ['a top-level typo', ['renew'], 252],
    ['a top-level -v (there is no verbose at the top)', ['-v'], 252],
    ['an unknown top-level option', ['--bogus'], 252],
    ['run with an unknown option', ['run', '--bogus'], 252],
    ['fetch without --cert', ['fetch', '--out', 'x.der'], 252],
    ['fetch with a bad --timeout', ['fetch', '--cert', 'a.pem', '--out', 'x.der', '--timeout', 'soon'], 252],
    ['inspect without a file', ['inspect'], 252],
    ['daemon with an unknown option', ['daemon', '--bogus'], 252],
    ['check with an unknown option', ['check', '--bogus'], 3],
  ];
  for (const [what, argv, code] of cases) {
    it(`${what}: exit ${code}`, async () => {
      const io = memoryIo(dir);
      expect(await cli(argv, io)).toBe(code);
      const text = io.err() + io.out();
      if (code === 3) expect(io.out()).toMatch(/^STAPLEKEEPER UNKNOWN - invalid arguments: /);
      else expect(io.err()).toMatch(/error BAD_ARGUMENTS: /);
      expect(text).not.toMatch(/\n\s+at /); // no stack trace
    });
  }
});

describe('versions', () => {
  for (const flag of ['--version', '-V']) {
    it(`staplekeeper ${flag} prints the version and exits 0`, async () => {
      const io = memoryIo(dir);
      expect(await cli([flag], io)).toBe(0);
      expect(io.out()).toBe(`${VERSION}\n`);
    });
  }
  for (const flag of ['-v', '-version', '--version']) {
    it(`ocspbot ${flag} prints the version and exits 0`, async () => {
      const io = memoryIo(dir);
      expect(await ocspbotCli([flag], io)).toBe(0);
      expect(io.out()).toContain(VERSION);
      expect(io.err()).toBe('');
    });
  }
});

describe('--help lists the exit codes', () => {
  const want: Array<[string[], RegExp]> = [
    [['--help'], /Exit codes: .*252/s],
    [['fetch', '--help'], /Exit codes: 0 the staple was written, 1 .*252 bad arguments/s],
    [['inspect', '--help'], /Exit codes: 0 .*1 .*252 bad arguments/s],
    [
      ['run', '--help'],
      /Exit codes \(ocspbot's\): 0 nothing renewed, N the number .*255 .*254 .*253 .*252 bad arguments/s,
    ],
    [['check', '--help'], /Exit codes \(monitoring plugin\): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN/],
    [['daemon', '--help'], /Exit codes: 0 stopped by SIGTERM or SIGINT, 1 could not start .*252 bad arguments/s],
  ];
  for (const [argv, re] of want) {
    it(`staplekeeper ${argv.join(' ')}`, async () => {
      const io = memoryIo(dir);
      expect(await cli(argv, io)).toBe(0);
      expect(io.out()).toMatch(re);
    });
  }
  it('ocspbot --help', async () => {
    const io = memoryIo(dir);
    expect(await ocspbotCli(['--help'], io)).toBe(0);
    expect(io.out()).toMatch(/Exit codes: 0 nothing renewed.*252 invalid command-line arguments/s);
  });
});
