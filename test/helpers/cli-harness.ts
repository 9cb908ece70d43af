/**
 * Driving the real `bin/staplekeeper` as a child process, for the tests that
 * must see what an operator sees: exit codes, stderr lines, files on disk,
 * processes that are killed or overlap.
 *
 * Every child is spawned through {@link spawnCli}/{@link runCli}, which keep
 * it in a registry; {@link killAllChildren} (call it in `afterAll`) SIGKILLs
 * whatever is still running, and every {@link runCli} has its own hard
 * timeout. Temporary folders come from temp.ts (re-exported here).
 *
 * The binary imports `dist/`: run `npm run build` first (`npm test` does).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AsnConvert } from '@peculiar/asn1-schema';
import { OCSPRequest } from '@peculiar/asn1-ocsp';
import { stringify } from 'yaml';
import { OCSP_CONTENT_TYPE, decodeGetPath, makeScenarioContext, type ScenarioContext } from './evil-responder.js';
import { buildTestPki, certIdFor, goodResponseFor, mintOcspResponse, type MintedCert, type TestPki } from './mint.js';
import { cleanUp as cleanUpAll, onCleanup, tempDir } from './temp.js';

export { cleanUp, onCleanup, removeTempDirs, tempDir } from './temp.js';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The executable under test. */
export const BIN = join(ROOT, 'bin', 'staplekeeper');

/**
 * Throws a clear message when `dist/` or the command line's bundle is missing
 * (the bin shim imports the bundle, dist/bundle/cli.js, made by `npm run build`;
 * without it, the module tree: the CLI tests must run what users run).
 */
export function assertBuilt(): void {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js')) || !existsSync(join(ROOT, 'dist', 'bundle', 'cli.js'))) {
    throw new Error(
      'dist/ or dist/bundle/ is missing: run `npm run build` before the CLI tests (bin/staplekeeper imports them)',
    );
  }
}

// ---------------------------------------------------------------- children

const live = new Set<ChildProcess>();

/** A user to run a child as (root bypasses file permissions, so permission tests drop to `nobody`). */
export interface RunAs {
  uid: number;
  gid: number;
}

/** How to spawn the CLI. */
export interface SpawnOptions {
  cwd?: string;
  /** Added to a clean environment (no proxy variables, NO_COLOR=1). */
  env?: Record<string, string>;
  /** Run the child as this user via `setpriv` (see {@link canRunAs}). */
  as?: RunAs;
  /** Another executable than bin/staplekeeper (e.g. a copy of a bin without the bundle beside it). */
  bin?: string;
}

/** The finished child. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
  /** True when the harness had to kill the child at its hard timeout. */
  timedOut: boolean;
  pid: number;
}

/** An environment without proxies (which would swallow 127.0.0.1 traffic) and without colour. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of ['PATH', 'HOME', 'LANG', 'TZ', 'SYSTEMROOT', 'STAPLEKEEPER_CACHE_DIR'])
    if (process.env[k] !== undefined) env[k] = process.env[k];
  env.NO_COLOR = '1';
  return { ...env, ...extra };
}

/** Spawns `node bin/staplekeeper …args`; the child is registered for {@link killAllChildren}. */
export function spawnCli(args: string[], opts: SpawnOptions = {}): ChildProcess {
  const argv = [opts.bin ?? BIN, ...args];
  const [file, fileArgs] = opts.as
    ? [
        'setpriv',
        [`--reuid=${opts.as.uid}`, `--regid=${opts.as.gid}`, '--clear-groups', '--', process.execPath, ...argv],
      ]
    : [process.execPath, argv];
  const child = spawn(file, fileArgs, {
    cwd: opts.cwd ?? ROOT,
    env: cleanEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Runs the CLI to completion, killing it (SIGKILL) after `timeoutMs`. */
export function runCli(args: string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<CliResult> {
  const started = Date.now();
  const child = spawnCli(args, opts);
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 30_000);
  return new Promise((resolvePromise, reject) => {
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut, pid: child.pid ?? -1 });
    });
  });
}

/** How a {@link CliProcess} ended, and when. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/**
 * `node bin/staplekeeper …args` whose output lines are kept (stdout and
 * stderr apart, and together with their arrival times) and can be waited
 * for: the daemon tests' view of a long-running process. Registered for
 * {@link killAllChildren}. `env` replaces the environment entirely.
 */
export class CliProcess {
  readonly proc: ChildProcess;
  readonly out: string[] = [];
  readonly err: string[] = [];
  readonly lines: string[] = [];
  /** Arrival time of each line of {@link lines}. */
  readonly times: number[] = [];
  readonly exited: Promise<ProcessExit>;

  constructor(args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }) {
    this.proc = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this.proc);
    this.exited = new Promise((r) =>
      this.proc.once('exit', (code, signal) => {
        live.delete(this.proc);
        r({ code, signal, at: Date.now() });
      }),
    );
    const collect = (list: string[]): ((d: Buffer) => void) => {
      let carry = '';
      return (d) => {
        const parts = (carry + d.toString('utf8')).split('\n');
        carry = parts.pop() ?? '';
        for (const l of parts) {
          list.push(l);
          this.lines.push(l);
          this.times.push(Date.now());
        }
      };
    };
    this.proc.stdout?.on('data', collect(this.out));
    this.proc.stderr?.on('data', collect(this.err));
  }

  get pid(): number {
    return this.proc.pid as number;
  }

  /** Waits for a line matching `re` at or after line index `from`; returns the line. */
  async waitFor(re: RegExp, timeoutMs = 10_000, from = 0): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find((l) => re.test(l));
      if (hit !== undefined) return hit;
      if (Date.now() > end || this.proc.exitCode !== null) {
        throw new Error(`no line matching ${re} within ${timeoutMs} ms; output:\n${this.lines.join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Arrival times of the lines matching `re` at or after `from`. */
  timesOf(re: RegExp, from = 0): number[] {
    const out: number[] = [];
    this.lines.forEach((l, i) => {
      if (i >= from && re.test(l)) out.push(this.times[i]!);
    });
    return out;
  }

  /** Arrival time of the first line matching `re` at or after `from`. */
  timeOf(re: RegExp, from = 0): number {
    const [t] = this.timesOf(re, from);
    if (t === undefined) throw new Error(`no line matching ${re}`);
    return t;
  }

  /** The index the next line will have: pass it as `from` to look only at what comes after now. */
  mark(): number {
    return this.lines.length;
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Resolves when `child` has exited (immediately if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

/** SIGKILLs every child still running. Call in `afterAll`. */
export async function killAllChildren(): Promise<void> {
  const waits: Promise<void>[] = [];
  for (const c of live) {
    c.kill('SIGKILL');
    waits.push(exited(c));
  }
  await Promise.all(waits);
}

/** A finished child for an assertion message: PID, exit (or signal), time, and both streams. */
export function showResult(r: CliResult): string {
  const end = r.signal ? `signal ${r.signal}` : `exit ${r.code}`;
  return `pid ${r.pid} ${end} after ${r.ms} ms${r.timedOut ? ' (killed at its timeout)' : ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

/** Lines of `--json` output, parsed (other lines are ignored). */
export function jsonLines(stdout: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of stdout.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    try {
      out.push(JSON.parse(t) as Record<string, unknown>);
    } catch {
      // not JSON
    }
  }
  return out;
}

/** What `run --json` prints for one certificate (the fields the tests read). */
export interface JsonOutcome {
  type: 'certificate';
  id: string;
  result: 'updated' | 'unchanged' | 'failed' | 'skipped';
  error?: { code: string; message: string };
  revoked?: { time?: string; reason?: string };
  decision?: { action: string; reason: string };
  notices?: string[];
  [key: string]: unknown;
}

/** The `type: certificate` objects of `run --json`, by id. */
export function outcomesById(stdout: string): Map<string, JsonOutcome> {
  const m = new Map<string, JsonOutcome>();
  for (const o of jsonLines(stdout)) if (o.type === 'certificate') m.set(String(o.id), o as unknown as JsonOutcome);
  return m;
}

// ---------------------------------------------------------------- files

/** Writes a YAML configuration file and returns its path. */
export async function writeConfig(path: string, config: Record<string, unknown>): Promise<string> {
  await writeFile(path, stringify(config));
  return path;
}

/** How {@link writeDomains} names and fills each domain. */
export interface DomainsOptions {
  /** Id of the i-th leaf: `${prefix}${i}` (default `leaf`). */
  prefix?: string;
  /** `ocsp_responder_uri` of every domain. */
  responderUrl?: string;
  /** Writes a good staple for every leaf first (valid now), as a previous run would have. */
  withStaples?: boolean;
}

/**
 * Writes every leaf of `pki` into `folder` ({@link writeCert}) and returns the
 * `domains` block naming them (`<id>.der` staples in the staple folder) and
 * the staple paths, in leaf order.
 */
export async function writeDomains(
  folder: string,
  pki: TestPki,
  options: DomainsOptions = {},
): Promise<{ domains: Record<string, Record<string, string>>; staples: string[] }> {
  const domains: Record<string, Record<string, string>> = {};
  const staples: string[] = [];
  for (const [i, leaf] of pki.leaves.entries()) {
    const id = `${options.prefix ?? 'leaf'}${i}`;
    const files = await writeCert(folder, id, leaf, pki.root);
    domains[id] = { ...files, ocsp: `${id}.der` };
    if (options.responderUrl !== undefined) domains[id].ocsp_responder_uri = options.responderUrl;
    staples.push(join(folder, `${id}.der`));
    if (options.withStaples) await writeFile(join(folder, `${id}.der`), goodResponseFor(pki, leaf, new Date()));
  }
  return { domains, staples };
}

/** A subfolder of `dir`, made now. */
export async function subfolder(dir: string, name: string): Promise<string> {
  const folder = join(dir, name);
  await mkdir(folder, { recursive: true });
  return folder;
}

/** Writes `<name>.pem` (the leaf alone) and `<name>-chain.pem` (its issuer); returns both paths. */
export async function writeCert(
  dir: string,
  name: string,
  leaf: MintedCert,
  issuer: MintedCert,
): Promise<{ cert: string; chain: string }> {
  const cert = join(dir, `${name}.pem`);
  const chain = join(dir, `${name}-chain.pem`);
  await writeFile(cert, leaf.pem);
  await writeFile(chain, issuer.pem);
  return { cert, chain };
}

/** What a file is now: bytes, mtime and inode (a rename changes the inode). */
export interface FileSnapshot {
  bytes: Buffer;
  mtimeMs: number;
  ino: number;
}

/** Takes a {@link FileSnapshot}. */
export async function snapshot(path: string): Promise<FileSnapshot> {
  const st = await stat(path);
  return { bytes: await readFile(path), mtimeMs: st.mtimeMs, ino: st.ino };
}

/** True when the path exists (without following a final symlink). */
export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- privileges

/** True when the tests run as root (which reads and writes any file regardless of its mode). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The `nobody` user (65534 on Debian and most distributions). */
export const NOBODY: RunAs = { uid: 65534, gid: 65534 };

/** True when a child can be started as `as` through `setpriv` (root with the setpriv tool). */
export function canRunAs(as: RunAs): boolean {
  if (!isRoot()) return false;
  const r = spawnSync('setpriv', [`--reuid=${as.uid}`, `--regid=${as.gid}`, '--clear-groups', '--', 'true'], {
    stdio: 'ignore',
  });
  return r.status === 0;
}

/** Runs a command synchronously; true on exit 0. For mount/umount/chattr set-ups. */
export function trySync(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.status === 0;
}

// ---------------------------------------------------------------- concurrency

/** Runs `fn` over `items` with at most `n` at a time; results in input order. */
export async function pool<T, R>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(n, items.length) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i] as T, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

/** A counting semaphore: `await acquire()` returns the release function. */
export function semaphore(n: number): () => Promise<() => void> {
  let free = n;
  const waiting: Array<() => void> = [];
  return async () => {
    if (free > 0) free--;
    else await new Promise<void>((r) => waiting.push(r));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const w = waiting.shift();
      if (w) w();
      else free++;
    };
  };
}

// ---------------------------------------------------------------- a responder that tells the truth

/** A responder answering every request with a freshly minted good (or revoked) response. */
export interface GoodResponder {
  url: string;
  /** Every response body served, by leaf serial (hex). */
  served: Map<string, Buffer[]>;
  /** Number of requests answered. */
  count(): number;
  /** `Date.now()` of every request received, in order. */
  times: number[];
  /** Marks a leaf (by serial hex) as revoked from now on. */
  revoke(serialHex: string, reason?: number): void;
  /** Teaches the responder another leaf (e.g. one whose AIA names this responder). */
  add(leaf: MintedCert): void;
  close(): Promise<void>;
}

/** The serial (hex, upper case) asked for in an OCSP request, or undefined. */
export function requestedSerial(der: Buffer): string | undefined {
  try {
    const req = AsnConvert.parse(der, OCSPRequest);
    const first = req.tbsRequest.requestList[0];
    if (!first) return undefined;
    return Buffer.from(first.reqCert.serialNumber).toString('hex').toUpperCase();
  } catch {
    return undefined;
  }
}

/**
 * Starts a fast, honest responder on 127.0.0.1 for the leaves of `pki`. Each
 * answer is minted at request time (thisUpdate one minute ago, nextUpdate in
 * a week, and at least a second after the previous answer's for that
 * certificate), so two answers differ, each is better than the one before,
 * and every one is valid at the real time.
 * `delayMs` holds each answer back, to make runs overlap; `jitterMs` adds a
 * random delay up to that much, to spread a run's writes out in time.
 */
export async function startGoodResponder(
  pki: TestPki,
  leaves: MintedCert[],
  options: { delayMs?: number; jitterMs?: number } = {},
): Promise<GoodResponder> {
  const byserial = new Map(leaves.map((l) => [l.serial.toString('hex').toUpperCase(), l]));
  const served = new Map<string, Buffer[]>();
  const revoked = new Map<string, number | undefined>();
  const lastNextUpdate = new Map<string, number>();
  let count = 0;
  const times: number[] = [];
  const server = createServer((req, res) => {
    times.push(Date.now());
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const der = req.method === 'POST' ? Buffer.concat(chunks) : decodeGetPath(req.url ?? '/');
      const serial = der ? requestedSerial(der) : undefined;
      const leaf = serial ? byserial.get(serial) : undefined;
      const answer = (): void => {
        if (!leaf || !serial) {
          res.writeHead(400, { 'content-type': 'text/plain' });
          res.end('unknown certificate');
          return;
        }
        const now = new Date();
        const thisUpdate = new Date(now.getTime() - 60_000);
        // Each answer for a certificate is valid a little longer than the one before (times are whole
        // seconds): a staple only gets better (docs/SECURITY.md), so two forced runs within one second must
        // still get a better answer to write, as from a responder that signs fresh responses.
        const nextUpdateMs = Math.max(now.getTime() + 7 * 86_400_000, (lastNextUpdate.get(serial) ?? 0) + 1000);
        lastNextUpdate.set(serial, nextUpdateMs);
        const isRevoked = revoked.has(serial);
        const reason = revoked.get(serial);
        const body = mintOcspResponse({
          signer: pki.signer,
          producedAt: thisUpdate,
          singles: [
            {
              certId: certIdFor(leaf.der, pki.root.der),
              status: isRevoked ? 'revoked' : 'good',
              ...(isRevoked ? { revocationTime: new Date(now.getTime() - 86_400_000) } : {}),
              ...(isRevoked && reason !== undefined ? { revocationReason: reason } : {}),
              thisUpdate,
              nextUpdate: new Date(nextUpdateMs),
            },
          ],
        });
        const list = served.get(serial) ?? [];
        list.push(body);
        served.set(serial, list);
        count++;
        res.writeHead(200, { 'content-type': OCSP_CONTENT_TYPE, 'content-length': String(body.length) });
        res.end(body);
      };
      const wait = (options.delayMs ?? 0) + Math.random() * (options.jitterMs ?? 0);
      if (wait > 0) setTimeout(answer, wait);
      else answer();
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/ocsp`,
    served,
    count: () => count,
    times,
    revoke: (s, reason) => revoked.set(s.toUpperCase(), reason),
    add: (leaf) => byserial.set(leaf.serial.toString('hex').toUpperCase(), leaf),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

// ---------------------------------------------------------------- the usual set-up of a CLI test file

/** What {@link startCliBench} made. */
export interface CliBench {
  /** A temporary folder for the file's tests. */
  dir: string;
  /** An in-process PKI: a root that signs the leaves and (by default) their responses itself. */
  pki: TestPki;
  /** A good responder for every leaf of `pki`. */
  responder: GoodResponder;
}

/**
 * The set-up most CLI test files share: the CLI is built, a temporary folder
 * (`prefix`), a P-256 PKI of `leafCount` leaves and a {@link startGoodResponder}
 * for them; the responder is closed and the folder removed by `cleanUp()`.
 *
 * ```ts
 * beforeAll(async () => ({ dir, pki, responder } = await startCliBench('sk-x-', 3)));
 * afterAll(endCliBench);
 * ```
 */
export async function startCliBench(
  prefix: string,
  leafCount: number,
  options: { delegated?: boolean; delayMs?: number; jitterMs?: number } = {},
): Promise<CliBench> {
  assertBuilt();
  const dir = await tempDir(prefix);
  const pki = buildTestPki({ keyType: 'ec-p256', delegated: options.delegated ?? false, now: new Date(), leafCount });
  const responder = await startGoodResponder(pki, pki.leaves, options);
  onCleanup(() => responder.close());
  return { dir, pki, responder };
}

/** Ends a file's CLI tests: kills the children still running, then `cleanUp()` (responders, folders). */
export async function endCliBench(): Promise<void> {
  await killAllChildren();
  await cleanUpAll();
}

/** What {@link startScenarioBench} made. */
export interface ScenarioBench {
  dir: string;
  /** A scenario context (evil-responder.ts) at the real time: the children judge with the real clock. */
  ctx: ScenarioContext;
  /** The context's leaf and issuer, written as `leaf.pem` and `leaf-chain.pem` in `dir`. */
  certPath: string;
  chainPath: string;
}

/**
 * The set-up of the hostile-responder CLI test files: the CLI is built, a
 * temporary folder (`prefix`, removed by `cleanUp()`), a P-256 PKI whose
 * responses are `delegated`-signed or not, and its first leaf on disk.
 */
export async function startScenarioBench(prefix: string, delegated: boolean): Promise<ScenarioBench> {
  assertBuilt();
  const dir = await tempDir(prefix);
  const ctx = makeScenarioContext(buildTestPki({ keyType: 'ec-p256', delegated, now: new Date() }));
  const { cert: certPath, chain: chainPath } = await writeCert(dir, 'leaf', ctx.leaf, ctx.issuer);
  return { dir, ctx, certPath, chainPath };
}
