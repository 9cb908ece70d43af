/**
 * Signals during start-up (docs/SECURITY.md). SIGHUP/SIGUSR2 must not kill a
 * daemon that is still loading, SIGUSR1 must never open Node's inspector,
 * and a command that is not a daemon still ends on SIGTERM.
 *
 * To hit the start-up window deterministically, each child runs with a
 * module hook (NODE_OPTIONS=--import) that holds the loading of
 * the program for a while and touches a marker file when it is asked
 * for (the bundle the bins load, dist/bundle/cli.js, or dist/cli/main.js
 * without it): the moment the executable starts loading the program. The old
 * executables imported it statically (before their first statement), so a
 * signal at that moment met Node's default action.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertBuilt,
  BIN,
  cleanEnv,
  removeTempDirs,
  ROOT,
  startGoodResponder,
  tempDir,
  writeCert,
  writeConfig,
} from '../helpers/cli-harness.js';
import type { GoodResponder } from '../helpers/cli-harness.js';
import { buildTestPki } from '../helpers/mint.js';

let dir: string;
let responder: GoodResponder;
let register: string;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('sk-early-sig-');
  const hooks = join(dir, 'hooks.mjs');
  await writeFile(
    hooks,
    `import { writeFileSync } from 'node:fs';
let cfg;
export function initialize(data) { cfg = data; }
export async function load(url, context, next) {
  // the program: the bins load the command line's bundle (scripts/bundle-cli.mjs), else the module tree
  if (url.endsWith('/dist/bundle/cli.js') || url.endsWith('/dist/cli/main.js')) {
    writeFileSync(cfg.marker, url);
    await new Promise((r) => setTimeout(r, cfg.delayMs));
  }
  return next(url, context);
}
`,
  );
  register = join(dir, 'register.mjs');
  await writeFile(
    register,
    `import { register } from 'node:module';
register(${JSON.stringify(pathToFileURL(hooks).href)}, { data: { marker: process.env.SK_TEST_MARKER, delayMs: 1500 } });
`,
  );
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await responder?.close();
  await removeTempDirs();
});

interface Child {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[], marker: string, bin = BIN): Child {
  const proc = spawn(process.execPath, [bin, ...args], {
    cwd: ROOT,
    env: cleanEnv({ NODE_OPTIONS: `--import=${pathToFileURL(register).href}`, SK_TEST_MARKER: marker }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let text = '';
  proc.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.once('exit', (code, signal) => r({ code, signal })),
  );
  return { proc, out: () => text, exited };
}

async function waitUntil(what: string, cond: () => boolean, timeoutMs: number, c?: Child): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; output:\n${c?.out() ?? ''}`);
    if (c && (c.proc.exitCode !== null || c.proc.signalCode !== null)) {
      throw new Error(
        `the process ended (${c.proc.exitCode ?? c.proc.signalCode}) while waiting for ${what}:\n${c.out()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('signals during start-up (docs/SECURITY.md)', () => {
  it('a daemon signalled with SIGHUP, SIGUSR2 and SIGUSR1 while it loads survives, opens no inspector, and renews', async () => {
    const pki = buildTestPki({ keyType: 'ec-p256', delegated: false, now: new Date() });
    responder = await startGoodResponder(pki, [pki.leaves[0]!]);
    const folder = join(dir, 'daemon');
    await mkdir(folder);
    const { cert, chain } = await writeCert(folder, 'leaf', pki.leaves[0]!, pki.root);
    const cfg = await writeConfig(join(folder, 'staplekeeper.yaml'), {
      ocsp_folder: folder,
      domains: { leaf: { cert, chain, ocsp: 'leaf.der', ocsp_responder_uri: responder.url } },
    });
    const marker = join(dir, 'daemon.marker');
    const c = start(['daemon', '-c', cfg], marker);
    await waitUntil('the program to start loading', () => existsSync(marker), 20_000, c);
    // `npm run build` made the bundle: the signals are held while it loads
    expect(readFileSync(marker, 'utf8')).toMatch(/\/dist\/bundle\/cli\.js$/);
    c.proc.kill('SIGHUP');
    c.proc.kill('SIGUSR2');
    c.proc.kill('SIGUSR1');
    await waitUntil('the daemon to start', () => /daemon started/.test(c.out()), 30_000, c);
    await waitUntil('the staple', () => existsSync(join(folder, 'leaf.der')), 30_000, c);
    expect(c.out()).not.toMatch(/Debugger listening/);
    c.proc.kill('SIGTERM');
    const e = await c.exited;
    expect(e, c.out()).toEqual({ code: 0, signal: null });
  }, 90_000);

  it('a SIGTERM while the daemon loads is kept: it stops cleanly as soon as it has started', async () => {
    const folder = join(dir, 'daemon-term');
    await mkdir(folder);
    const cfg = await writeConfig(join(folder, 'staplekeeper.yaml'), { ocsp_folder: folder, domains: {} });
    const marker = join(dir, 'daemon-term.marker');
    const c = start(['daemon', '-c', cfg], marker);
    await waitUntil('the program to start loading', () => existsSync(marker), 20_000, c);
    c.proc.kill('SIGTERM');
    const e = await c.exited;
    expect(e, c.out()).toEqual({ code: 0, signal: null });
    expect(c.out()).toMatch(/SIGTERM: stopping/);
  }, 60_000);

  it('`run` and the ocspbot drop-in ignore an early SIGUSR1 (no inspector) and still end on SIGTERM', async () => {
    for (const [name, bin] of [
      ['staplekeeper', BIN],
      ['ocspbot', join(ROOT, 'bin', 'ocspbot')],
    ] as const) {
      const marker = join(dir, `${name}-run.marker`);
      const c = start(['--help'], marker, bin);
      await waitUntil('the program to start loading', () => existsSync(marker), 20_000, c);
      c.proc.kill('SIGUSR1');
      const e = await c.exited;
      expect(e.signal, c.out()).toBeNull();
      expect(c.out()).not.toMatch(/Debugger listening/);

      const marker2 = join(dir, `${name}-term.marker`);
      const t = start(['--help'], marker2, bin);
      await waitUntil('the program to start loading', () => existsSync(marker2), 20_000, t);
      t.proc.kill('SIGTERM');
      expect((await t.exited).signal, t.out()).toBe('SIGTERM');
    }
  }, 90_000);
});
