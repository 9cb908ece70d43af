/**
 * The key cases of the CLI suite, run against a shipped form of the command
 * line: the one file (dist/staplekeeper.mjs, test/integration/bundle.test.ts)
 * and the one binary (dist/staplekeeper-linux-x64, test/integration/sea.test.ts).
 *
 * Each form lies in a temporary folder with no node_modules above it, beside
 * two links named `ocspbot` and `ocsprenewer`, and is run as a real child
 * process against a real `openssl ocsp` responder: --version under the three
 * names, `fetch`, `run` (twice), `inspect`, a configuration error, a cold
 * `check` whose signature checks run on the check thread (NODE_DEBUG shows
 * its answers), the `ocspbot` and `ocsprenewer` drop-ins through their links,
 * and the daemon with its status service (the modules loaded only there:
 * the folder watcher, prom-client).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, parse } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPki, type Pki } from './mint.js';
import { freePort, startResponder, type Responder } from './servers.js';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import { VERSION } from '../../src/version.js';

/** A shipped command line in `dir`: how to start it under each name. */
export interface Shipped {
  /** The folder holding it and its links (removed at the end). */
  dir: string;
  /** Program and leading arguments for each invocation name. */
  command(name: 'staplekeeper' | 'ocspbot' | 'ocsprenewer'): { file: string; args: string[] };
  /** Environment additions (e.g. a PATH without node). */
  env: Record<string, string>;
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Per case: each starts several child processes, slow on a loaded machine. */
const CASE_MS = 90_000;

const live = new Set<ChildProcess>();

function start(
  s: Shipped,
  name: 'staplekeeper' | 'ocspbot' | 'ocsprenewer',
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): ChildProcess {
  const { file, args: lead } = s.command(name);
  const child = spawn(file, [...lead, ...args], {
    cwd,
    // a clean environment: no proxies, no NODE_OPTIONS, no node_modules to find
    env: { PATH: '/usr/bin:/bin', HOME: cwd, NO_COLOR: '1', STAPLEKEEPER_CACHE_DIR: 'off', ...s.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Runs one invocation to its end (SIGKILL after 30 s). */
export function runShipped(
  s: Shipped,
  name: 'staplekeeper' | 'ocspbot' | 'ocsprenewer',
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<Run> {
  const child = start(s, name, args, cwd, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Kills whatever a case left running. */
export async function killShipped(): Promise<void> {
  await Promise.all(
    [...live].map((c) => {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      return gone;
    }),
  );
}

/** Puts links named ocspbot and ocsprenewer beside `target` (in its folder). */
export async function linkDropIns(target: string): Promise<void> {
  const { dir, base } = parse(target);
  for (const name of ['ocspbot', 'ocsprenewer']) await symlink(base, join(dir, name));
}

/** True when no folder from `dir` up holds a node_modules (the bundle must not find one). */
export function noNodeModulesAbove(dir: string): boolean {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, 'node_modules'))) return false;
    if (dirname(d) === d) return true;
  }
}

async function staple(file: string, certFile: string, caFile: string): Promise<string> {
  const [cert] = loadCertificates(await readFile(certFile), certFile);
  const [ca] = loadCertificates(await readFile(caFile), caFile);
  return verifyResponse(await readFile(file), { cert: cert!, issuer: ca!, now: new Date() }).status;
}

/** Registers the key cases for the shipped form that `setup` builds (in beforeAll, with `buildMs` to do it). */
export function shippedCliCases(title: string, setup: () => Promise<Shipped>, buildMs = 60_000): void {
  describe(title, () => {
    let s: Shipped;
    let pki: Pki;
    let responder: Responder;
    let work: string;

    beforeAll(async () => {
      s = await setup();
      work = join(s.dir, 'work');
      await mkdir(work);
      const port = await freePort();
      pki = await createPki({
        dir: join(s.dir, 'pki'),
        ocspUrl: `http://127.0.0.1:${port}`,
        leaves: [{ name: 'www' }, { name: 'mail' }, { name: 'bot' }, { name: 'renewer' }],
      });
      // a week of validity, so that ocspbot's 3-day minimum validity leaves room
      responder = await startResponder({ pki, port, nmin: 7 * 24 * 60 });
    }, buildMs);

    afterAll(async () => {
      await killShipped();
      await responder?.stop();
      if (s) await rm(s.dir, { recursive: true, force: true });
    });

    it(
      '--version under each of its three names',
      async () => {
        expect(noNodeModulesAbove(s.dir)).toBe(true);
        const sk = await runShipped(s, 'staplekeeper', ['--version'], work);
        expect(sk.stderr).toBe('');
        expect(sk.stdout.trim()).toBe(VERSION);
        const bot = await runShipped(s, 'ocspbot', ['-version'], work);
        expect(bot.stdout).toContain(`ocspbot (staplekeeper) ${VERSION}`);
        const renewer = await runShipped(s, 'ocsprenewer', ['-version'], work);
        expect(renewer.code).toBe(0);
        expect(renewer.stdout).toContain(`ocsprenewer (staplekeeper ${VERSION})`);
      },
      CASE_MS,
    );

    it(
      'fetch, then inspect, against a real openssl responder',
      async () => {
        const leaf = pki.leaves.www!;
        const out = join(work, 'fetch', 'www.der');
        await mkdir(dirname(out));
        const f = await runShipped(s, 'staplekeeper', ['fetch', '--cert', leaf.bundle, '--out', out], work);
        expect(f.stderr).toBe('');
        expect(f.code).toBe(0);
        expect(await staple(out, leaf.cert, pki.ca.cert)).toBe('good');
        const i = await runShipped(s, 'staplekeeper', ['inspect', out, '--cert', leaf.bundle], work);
        expect(i.code).toBe(0);
        expect(i.stdout).toMatch(/^\s*Status:\s+good$/m);
        expect(i.stdout).toMatch(/^Valid for: .*: yes, /m);
      },
      CASE_MS,
    );

    it(
      'run renews, a second run has nothing to do, and a cold check uses the check thread',
      async () => {
        const dir = join(work, 'run');
        await mkdir(join(dir, 'staples'), { recursive: true });
        const domain = (id: string): string[] => [
          `  ${id}:`,
          `    cert: ${pki.leaves[id]!.cert}`,
          `    chain: ${pki.leaves[id]!.chain}`,
          `    ocsp: ${id}.der`,
        ];
        await writeFile(
          join(dir, 'staplekeeper.yaml'),
          ['ocsp_folder: staples', 'domains:', ...domain('www'), ...domain('mail'), ''].join('\n'),
        );
        const first = await runShipped(s, 'staplekeeper', ['run', '-c', 'staplekeeper.yaml'], dir);
        expect(first.stderr).toBe('');
        expect(first.code).toBe(2); // ocspbot's convention: the number renewed
        expect(await staple(join(dir, 'staples', 'www.der'), pki.leaves.www!.cert, pki.ca.cert)).toBe('good');
        expect(await staple(join(dir, 'staples', 'mail.der'), pki.leaves.mail!.cert, pki.ca.cert)).toBe('good');
        const second = await runShipped(s, 'staplekeeper', ['run', '-c', 'staplekeeper.yaml'], dir);
        expect(second.code).toBe(0);

        // cold: no staple-folder cache (and no configuration cache: STAPLEKEEPER_CACHE_DIR=off)
        await rm(join(dir, 'staples', '.staplekeeper-cache.json'), { force: true });
        const check = await runShipped(s, 'staplekeeper', ['check', '-c', 'staplekeeper.yaml'], dir, {
          NODE_DEBUG: 'staplekeeper',
        });
        expect(check.stdout).toMatch(/^STAPLEKEEPER OK - 2 staples/);
        expect(check.code).toBe(0);
        expect(check.stderr).toMatch(/check thread answered \d+ checks/);
        expect(check.stderr).not.toMatch(/check thread (failed|could not start)/);
      },
      CASE_MS,
    );

    it(
      'a configuration error is one line naming the file and key, exit 253',
      async () => {
        const dir = join(work, 'bad');
        await mkdir(dir);
        await writeFile(
          join(dir, 'staplekeeper.yaml'),
          'domains:\n  x:\n    cert: /nonexistent/x.pem\n    ocps: x.der\n',
        );
        const r = await runShipped(s, 'staplekeeper', ['run', '-c', 'staplekeeper.yaml'], dir);
        expect(r.code).toBe(253);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stderr).toMatch(/staplekeeper\.yaml:\d+:\d+ .*ocps/);
      },
      CASE_MS,
    );

    it(
      'through a link named ocspbot: the ocspbot drop-in',
      async () => {
        const dir = join(work, 'ocspbot');
        await mkdir(join(dir, 'out'), { recursive: true });
        const l = pki.leaves.bot!;
        await writeFile(
          join(dir, 'ocspbot.yaml'),
          [
            'ocsp_folder: out',
            'domains:',
            '  bot:',
            `    cert: ${l.cert}`,
            `    chain: ${l.chain}`,
            '    ocsp: bot.der',
            '',
          ].join('\n'),
        );
        const first = await runShipped(s, 'ocspbot', [], dir);
        expect(first.stdout).toContain('Success: 0 unchanged OCSP responses, 1 updated OCSP responses and 0 failures.');
        expect(first.code).toBe(1);
        expect(await staple(join(dir, 'out', 'bot.der'), l.cert, pki.ca.cert)).toBe('good');
        const bad = await runShipped(s, 'ocspbot', ['a.yaml', 'b.yaml'], dir);
        expect(bad.code).toBe(252);
      },
      CASE_MS,
    );

    it(
      'through a link named ocsprenewer: the ocsprenewer drop-in',
      async () => {
        const dir = join(work, 'ocsprenewer');
        await mkdir(join(dir, 'certs'), { recursive: true });
        await mkdir(join(dir, 'out'));
        await copyFile(pki.leaves.renewer!.bundle, join(dir, 'certs', 'renewer.crt'));
        const r = await runShipped(
          s,
          'ocsprenewer',
          ['-out-dir', 'out', '-cert-extensions', '.crt', '-extension', '.ocsp.der', '-dirs', 'certs'],
          dir,
        );
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(/^\[renewer\] renewed .*out\/renewer\.ocsp\.der: good/m);
        expect(await staple(join(dir, 'out', 'renewer.ocsp.der'), pki.leaves.renewer!.cert, pki.ca.cert)).toBe('good');
      },
      CASE_MS,
    );

    it(
      'the daemon: serves /metrics and /healthz, survives SIGHUP and SIGUSR1, stops on SIGTERM with exit 0',
      async () => {
        const dir = join(work, 'run'); // the configuration of the run case, staples in place
        const port = await freePort();
        const child = start(
          s,
          'staplekeeper',
          ['daemon', '-c', 'staplekeeper.yaml', '--listen', `127.0.0.1:${port}`],
          dir,
        );
        let stderr = '';
        child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
        const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
        let metrics = '';
        let healthz = 0;
        const deadline = Date.now() + 20_000;
        while (Date.now() < deadline) {
          try {
            const m = await fetch(`http://127.0.0.1:${port}/metrics`);
            if (m.status === 200) {
              metrics = await m.text();
              healthz = (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
              if (healthz === 200) break;
            }
          } catch {
            // not listening yet
          }
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(stderr).not.toMatch(/error/i);
        expect(healthz).toBe(200);
        expect(metrics).toMatch(/^staplekeeper_\w+/m);
        // the daemon's signals: SIGHUP reloads, SIGUSR1 checks now (and never opens Node's inspector)
        child.kill('SIGHUP');
        child.kill('SIGUSR1');
        await new Promise((r) => setTimeout(r, 1000));
        expect(child.exitCode).toBeNull();
        expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
        expect(stderr).not.toMatch(/Debugger listening|inspector/i);
        child.kill('SIGTERM');
        expect(await exited).toBe(0);
      },
      CASE_MS,
    );
  });
}
