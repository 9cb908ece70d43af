/**
 * Where `run` prints, through the real CLI entry point: `--json` is data on
 * standard output even when output_log is set; `--dry-run` with output_log
 * also shows on the terminal and counts "would be renewed" apart; a missing
 * log folder is one clear line naming the key; an empty configuration says
 * so instead of succeeding silently; "not found" for a relative path names
 * the working directory it was resolved against.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../../src/cli/main.js';
import { buildTestPki } from '../helpers/mint.js';
import { memoryIo as sharedMemoryIo, type MemoryIo } from '../helpers/memory-io.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

/** The CLI's streams in memory, with an empty environment. */
const memoryIo = (cwd: string): MemoryIo => sharedMemoryIo(cwd, {});

let dir: string;
let dead: number;
beforeAll(async () => {
  dir = await tempDir('sk-runout-');
  const pki = buildTestPki({ keyType: 'ec-p256', delegated: false, now: new Date() });
  await writeFile(join(dir, 'a.pem'), pki.leaves[0]!.pem + pki.root.pem);
  await writeFile(join(dir, 'b.pem'), pki.leaves[1]!.pem + pki.root.pem);
  await mkdir(join(dir, 'ocsp'));
  await mkdir(join(dir, 'logs'));
  const srv = createServer();
  dead = await new Promise<number>((r) =>
    srv.listen(0, '127.0.0.1', () => r((srv.address() as { port: number }).port)),
  );
  await new Promise((r) => srv.close(r));
});
afterAll(cleanUp);

async function config(name: string, lines: string[]): Promise<string> {
  await writeFile(join(dir, name), `${lines.join('\n')}\n`);
  return name;
}

const domains = (): string[] => [
  'domains:',
  '  a:',
  '    cert: a.pem',
  '    ocsp: a.der',
  `    ocsp_responder_uri: http://127.0.0.1:${dead}/`,
  '  b:',
  '    cert: b.pem',
  '    ocsp: b.der',
  `    ocsp_responder_uri: http://127.0.0.1:${dead}/`,
];

describe('staplekeeper run output', () => {
  it('--json prints JSON to standard output even when output_log is set', async () => {
    const file = await config('json.yaml', ['ocsp_folder: ocsp', 'output_log: logs/json.log', ...domains()]);
    const io = memoryIo(dir);
    expect(await cli(['run', '-c', file, '--json'], io)).toBe(255);
    const lines = io
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; id?: string });
    expect(lines.map((l) => l.type)).toEqual(['certificate', 'certificate', 'summary']);
    expect(await readFile(join(dir, 'logs/json.log'), 'utf8').catch(() => '')).not.toContain('"type"');
  });

  it('--dry-run with output_log also shows on the terminal and counts "would be renewed" apart', async () => {
    const file = await config('dry.yaml', ['ocsp_folder: ocsp', 'output_log: logs/dry.log', ...domains()]);
    const io = memoryIo(dir);
    expect(await cli(['run', '-c', file, '--dry-run'], io)).toBe(0);
    expect(io.out()).toMatch(/^\[a\] would renew \(missing\)/m);
    expect(io.out()).toMatch(/^\[b\] would renew \(missing\)/m);
    const summary = 'Dry run (nothing fetched or written): 2 would be renewed, 0 would stay unchanged and 0 failures.';
    expect(io.out()).toContain(summary);
    expect(await readFile(join(dir, 'logs/dry.log'), 'utf8')).toContain(summary); // and in the log, as configured
    const json = memoryIo(dir);
    await cli(['run', '-c', file, '--dry-run', '--json'], json);
    expect(JSON.parse(json.out().trim().split('\n').at(-1)!)).toMatchObject({ type: 'summary', wouldRenew: 2 });
  });

  it('a missing output_log folder is one clear line naming the key and the folder', async () => {
    const file = await config('nolog.yaml', ['ocsp_folder: ocsp', 'output_log: missing/run.log', ...domains()]);
    const io = memoryIo(dir);
    expect(await cli(['run', '-c', file], io)).toBe(254);
    expect(io.err()).toMatch(
      /^staplekeeper: error FILE_WRITE: output_log: the folder \S*missing of the log file \S*run\.log does not exist; create it \(mkdir -p \S*missing\) or change output_log\n$/,
    );
  });

  it('an empty configuration says that there is nothing to do', async () => {
    const file = await config('empty.yaml', ['ocsp_folder: ocsp', 'domains: {}']);
    const io = memoryIo(dir);
    expect(await cli(['run', '-c', file, '-q'], io)).toBe(0);
    expect(io.err()).toMatch(/warning: the configuration names no certificates .*nothing to do/);
  });

  it('"not found" for a relative path says it resolves against the working directory', async () => {
    const file = await config('rel.yaml', [
      'ocsp_folder: ocsp',
      'domains:',
      '  x:',
      '    cert: certs/x.pem',
      '    ocsp: x.der',
      '  y:',
      `    cert: ${join(dir, 'certs/y.pem')}`,
      '    ocsp: y.der',
    ]);
    const io = memoryIo(dir);
    // a missing certificate is a configuration error (253) or, on the fast path, that certificate's failure (255)
    const code = await cli(['run', '-c', file], io);
    expect([253, 255]).toContain(code);
    const line = io
      .err()
      .split('\n')
      .find((l) => l.includes('certs/x.pem'));
    if (code === 253) {
      expect(line).toContain(
        `(a relative path: resolved against the working directory ${dir}; cron and systemd start in /, so give an absolute path)`,
      );
    } else {
      expect(line).toContain('relative paths resolve against the working directory; cron and systemd start in /');
    }
  });
});
