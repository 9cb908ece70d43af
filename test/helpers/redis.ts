/**
 * A real `redis-server` for the fleet tests, on a free loopback port, with no
 * persistence (`--save '' --appendonly no`), started and killed by the test.
 * Readiness is taken from a PING answered with `redis-cli`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { freePort } from './servers.js';
import { assertInstalled, skipWithout } from './tools.js';

export const REDIS_FOUND = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
const INSTALL = 'apt-get install redis-server';

/** True when the fleet suites should be skipped here (see tools.ts). */
export function skipWithoutRedis(): boolean {
  return skipWithout('redis-server', REDIS_FOUND, INSTALL);
}

/** A running Redis that can be stopped, killed and started again on the same port. */
export interface TestRedis {
  port: number;
  url: string;
  /** Runs redis-cli against it; resolves with its standard output. */
  cli(...args: string[]): Promise<string>;
  /** SIGKILL (the data goes: there is no persistence). */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty). */
  start(): Promise<void>;
  /** Kills it for good. */
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function cliRaw(port: number, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    p.on('close', (code) => resolve({ code, out }));
    p.on('error', () => resolve({ code: -1, out }));
  });
}

/** Starts redis-server on a free 127.0.0.1 port and waits until it answers PING. */
export async function startRedis(): Promise<TestRedis> {
  assertInstalled('redis-server', REDIS_FOUND, INSTALL);
  const port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const launch = async (): Promise<void> => {
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'],
      { stdio: 'ignore' },
    );
    const c = child;
    exited = new Promise((r) => c.once('exit', () => r()));
    const end = Date.now() + 10_000;
    for (;;) {
      const r = await cliRaw(port, ['PING']);
      if (r.out.trim() === 'PONG') return;
      if (Date.now() > end || c.exitCode !== null) throw new Error(`redis-server on port ${port} did not answer PING`);
      await sleep(50);
    }
  };
  await launch();
  const kill = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    async cli(...args) {
      return (await cliRaw(port, args)).out;
    },
    kill,
    start: launch,
    stop: kill,
  };
}
