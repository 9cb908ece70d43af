/**
 * The HAProxy push state file is written like a staple: through a temporary
 * file named with the store's marker, so that one left by an interrupted
 * process is removed by the stale-temp clean-up (cleanStaleTemps).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tempDir, cleanUp } from '../helpers/temp.js';

const opened: string[] = [];
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...fs,
    open: (path: Parameters<typeof fs.open>[0], ...rest: unknown[]) => {
      opened.push(String(path));
      return (fs.open as (...a: unknown[]) => ReturnType<typeof fs.open>)(path, ...rest);
    },
  };
});

const { HAPROXY_STATE_NAME, pushToHaproxy } = await import('../../src/outputs/haproxy.js');
const { TEMP_MARKER } = await import('../../src/io/store.js');

describe('HAProxy push state file', () => {
  let dir: string;
  let server: Server;
  let socket: string;

  beforeAll(async () => {
    dir = await tempDir('sk-haproxy-state-');
    socket = join(dir, 'admin.sock');
    // a runtime API socket that accepts every staple, as HAProxy answers
    server = createServer((c) => {
      c.on('data', () => undefined);
      c.on('end', () => c.end('OCSP Response updated!\n'));
    });
    await new Promise<void>((r) => server.listen(socket, r));
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await cleanUp();
  });

  it('names its temporary file with the store marker', async () => {
    const staple = join(dir, 'a.der');
    await writeFile(staple, Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x00]));
    const report = await pushToHaproxy([{ socket, certificates: [] }], [{ id: 'a', staplePath: staple }], {
      stateDir: dir,
    });
    expect(report.failed).toEqual([]);
    expect(report.pushed).toHaveLength(1);
    const state = JSON.parse(await readFile(join(dir, HAPROXY_STATE_NAME), 'utf8')) as { pushed: object };
    expect(Object.keys(state.pushed)).toEqual([socket]);
    const temps = opened.filter((p) => p.includes(HAPROXY_STATE_NAME));
    const temp = temps.find((p) => p !== join(dir, HAPROXY_STATE_NAME));
    expect(temp).toBeDefined();
    expect(basename(temp!).startsWith('.')).toBe(true);
    expect(basename(temp!)).toContain(`${TEMP_MARKER}${process.pid}-`);
  });
});
