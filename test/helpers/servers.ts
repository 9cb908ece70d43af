/**
 * Real servers for the end-to-end tests: an openssl-made PKI answered by a
 * real `openssl ocsp` responder, the web and mail servers that serve
 * staples (nginx, HAProxy, Exim), and the staplekeeper daemon waited for by
 * its "listening on" line. Everything started here is stopped by temp.ts
 * `cleanUp()`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createPki, type CreatePkiOptions, type Pki } from '../../scripts/lib/pki.mjs';
import { freePort, startResponder, type Responder, type StartResponderOptions } from '../../scripts/lib/responder.mjs';
import { decodeResponse } from '../../src/core/response.js';
import { BIN } from './cli-harness.js';
import { onCleanup, tempDir } from './temp.js';

export { freePort, startResponder, type Responder } from '../../scripts/lib/responder.mjs';

// ---------------------------------------------------------------- an openssl PKI and its responder

/** What {@link startOpensslPki} made. */
export interface OpensslPki {
  /** The temporary folder; the PKI is in `<root>/pki`. */
  root: string;
  pki: Pki;
  /** `openssl ocsp` on the port the leaves' AIA names. */
  responder: Responder;
}

/**
 * A temporary folder (`prefix`) with an openssl-made PKI (scripts/lib/pki.mjs)
 * in `pki/`, whose leaves name a free loopback port, and a real `openssl ocsp`
 * answering there. `responder` options go to scripts/lib/responder.mjs (e.g.
 * `nmin: 7 * 24 * 60` for a week of validity). Stopped and removed by `cleanUp()`.
 */
export async function startOpensslPki(
  prefix: string,
  pkiOptions: Omit<CreatePkiOptions, 'dir' | 'ocspUrl'> = {},
  responderOptions: Omit<StartResponderOptions, 'pki' | 'port'> = {},
): Promise<OpensslPki> {
  const root = await tempDir(prefix);
  const port = await freePort();
  const pki = await createPki({ ...pkiOptions, dir: join(root, 'pki'), ocspUrl: `http://127.0.0.1:${port}` });
  const responder = await startResponder({ ...responderOptions, pki, port });
  onCleanup(() => responder.stop());
  return { root, pki, responder };
}

/**
 * The YAML lines of one ocspbot-style `domains` entry (two-space indented
 * under `domains:`) for the leaf `leaf` of an openssl PKI; `extra` lines
 * (e.g. `ocsp_responder_uri: …`) are added to it.
 */
export function domainLines(pki: Pki, id: string, leaf: string, ocsp: string, extra: string[] = []): string[] {
  const l = pki.leaves[leaf]!;
  return [
    `  ${id}:`,
    `    cert: ${l.cert}`,
    `    chain: ${l.chain}`,
    `    rootchain: ${l.rootchain}`,
    `    ocsp: ${ocsp}`,
    ...extra.map((e) => `    ${e}`),
  ];
}

// ---------------------------------------------------------------- server programs

/** The path of a program from PATH or /usr/sbin ('' when it is not installed). */
export function findProgram(name: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${name} || ls /usr/sbin/${name}`], { encoding: 'utf8' });
  return found.stdout.trim().split('\n')[0] ?? '';
}

/** A server process with the tail of its output (or of a log file) for error messages. */
export interface ServerProcess {
  child: ChildProcess;
  log: () => Promise<string>;
}

/**
 * Starts `file args` (stopped by `cleanUp()`). Its `log()` is the last 64 KiB
 * of its stdout and stderr, then what `logFile` reads (the server's own log).
 */
export function startServer(file: string, args: string[], logFile?: () => Promise<string>): ServerProcess {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-65536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const server = { child, log: async () => (logFile ? `${out}\n${await logFile()}` : out) };
  onCleanup(() => stopServer(server));
  return server;
}

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
export function isListening(port: number): Promise<boolean> {
  return new Promise<boolean>((r) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      r(true);
    });
    s.once('error', () => r(false));
  });
}

/** Waits until `server` listens on `port`; throws with its log when it exits or 10 s pass. */
export async function waitForPort(port: number, server: ServerProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null)
      throw new Error(`the server exited with ${server.child.exitCode}:\n${await server.log()}`);
    if (await isListening(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs / 1000} s:\n${await server.log()}`);
}

/** SIGTERM, then SIGKILL after 3 s; resolves when the server is gone. */
export async function stopServer(server: ServerProcess | undefined): Promise<void> {
  const child = server?.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(timer);
}

/** The thisUpdate of the first single response of an OCSP response. */
export function thisUpdateOf(der: Buffer): Date {
  const single = decodeResponse(der).basic?.singles[0];
  if (!single) throw new Error('no single response');
  return single.thisUpdate;
}

// ---------------------------------------------------------------- the daemon's status service

/** A daemon started by {@link startStatusDaemon}. */
export interface StatusDaemon {
  child: ChildProcess;
  /** Its status service, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
}

/**
 * Starts `bin/staplekeeper daemon -c staplekeeper.yaml --listen 0` in `cwd`
 * and waits for its "listening on <url>" line (SIGKILLed by `cleanUp()`).
 */
export async function startStatusDaemon(cwd: string, timeoutMs = 40_000): Promise<StatusDaemon> {
  const child = spawn(process.execPath, [BIN, 'daemon', '-c', 'staplekeeper.yaml', '--listen', '0'], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onCleanup(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const end = Date.now() + timeoutMs;
  for (;;) {
    const m = /listening on (http:\/\/\S+)/.exec(out);
    if (m) return { child, url: m[1]!, output: () => out };
    if (Date.now() > end || child.exitCode !== null) throw new Error(`the daemon did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
