/**
 * HAProxy serves what staplekeeper writes and pushes (docs/servers.md),
 * with a real HAProxy 2.6 (Debian package; `.ci/run` installs it), a real
 * `openssl ocsp` responder (scripts/lib), `bin/staplekeeper` as a child
 * process and `openssl s_client -status` as the client:
 *
 * 1. `<crt file>.ocsp` beside the certificate (`ocsp: "{cert}.ocsp"`) is
 *    served from start-up;
 * 2. `run` pushes a renewed staple over the stats socket
 *    (`set ssl ocsp-response`) and clients see it without a reload; a push
 *    that fails (HAProxy not running yet) is reported (exit 255) and done by
 *    the next run;
 * 3. the reload variant: HAProxy in master-worker mode, an `on_change` hook
 *    sending the master SIGUSR2 (what `systemctl reload haproxy` does), and
 *    a push through the master CLI (`-S`), which needs the `@1` routing.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAPROXY_STATE_NAME, pushToHaproxy } from '../../src/outputs/haproxy.js';
import { assertBuilt, cleanUp, runCli, spawnCli, writeConfig } from '../helpers/cli-harness.js';
import { addLeaf, type Leaf, type Pki } from '../helpers/mint.js';
import { findProgram, freePort, startOpensslPki, startServer, thisUpdateOf, waitForPort } from '../helpers/servers.js';
import type { ServerProcess } from '../helpers/servers.js';
import { sClient, type StatusView } from '../helpers/s-client.js';
import { assertInstalled, skipWithout } from '../helpers/tools.js';

const HAPROXY = findProgram('haproxy');

// ---------------------------------------------------------------- helpers

/** Polls s_client until it sees `thisUpdate` (HAProxy workers may take a moment after a reload). */
async function sClientUntil(port: number, thisUpdate: Date, tries = 50): Promise<StatusView> {
  let view = await sClient(port);
  for (let i = 0; i < tries && view.thisUpdate?.getTime() !== thisUpdate.getTime(); i++) {
    await new Promise((r) => setTimeout(r, 100));
    view = await sClient(port);
  }
  return view;
}

function startHaproxy(args: string[]): ServerProcess {
  return startServer(HAPROXY, args);
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 1100)); // openssl ocsp stamps whole seconds

/** The HAProxy crt file: certificate, issuer and key in one PEM (HAProxy then loads `<file>.ocsp` beside it). */
async function writeCrt(path: string, leaf: Leaf): Promise<void> {
  await writeFile(path, (await readFile(leaf.bundle, 'utf8')) + (await readFile(leaf.key, 'utf8')));
}

function haproxyConfig(opts: { port: number; crt: string; socket: string }): string {
  return [
    'global',
    `  stats socket ${opts.socket} level admin`,
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 5s',
    '  timeout server 5s',
    'frontend tls',
    `  bind 127.0.0.1:${opts.port} ssl crt ${opts.crt}`,
    '  http-request return status 200 content-type text/plain string ok',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------- the tests

describe.skipIf(skipWithout('haproxy', Boolean(HAPROXY), 'apt-get install haproxy'))(
  'HAProxy 2.6: <crt>.ocsp at start, runtime push, reload hook',
  () => {
    let dir: string;
    let pki: Pki;

    beforeAll(async () => {
      assertInstalled('haproxy', Boolean(HAPROXY), 'apt-get install haproxy');
      assertBuilt();
      ({ root: dir, pki } = await startOpensslPki('sk-haproxy-', { leaves: [{ name: 'site' }] }));
    });

    afterAll(cleanUp);

    it('is HAProxy 2.6 or later', () => {
      const v = spawnSync(HAPROXY, ['-v'], { encoding: 'utf8' }).stdout;
      const m = /version (\d+)\.(\d+)/.exec(v);
      expect(m, v).not.toBeNull();
      expect(Number(m![1]) * 100 + Number(m![2])).toBeGreaterThanOrEqual(206);
    });

    it('serves <crt>.ocsp from start-up and takes renewed staples over the stats socket without a reload', async () => {
      const leaf = pki.leaves.site!;
      const crt = join(dir, 'site.pem');
      const ocspFile = `${crt}.ocsp`;
      const socket = join(dir, 'admin.sock');
      const port = await freePort();
      await writeCrt(crt, leaf);
      await mkdir(join(dir, 'state')); // the staple folder must exist (README.md, "Configuration")
      const config = await writeConfig(join(dir, 'staplekeeper.yaml'), {
        ocsp_folder: join(dir, 'state'),
        domains: { site: { cert: crt, ocsp: '{cert}.ocsp' } },
        haproxy: [{ socket, certificates: ['site'] }],
      });

      // HAProxy is not running yet: the staple is written, the push fails, is reported and kept pending.
      const first = await runCli(['run', '-c', config], { cwd: dir });
      expect(first.stdout).toContain('[site] updated OCSP response: good');
      expect(first.stderr).toMatch(
        /error PUSH_FAILED: \[site\] cannot talk to HAProxy at .*admin\.sock: ENOENT .*; the push is retried at the next run/,
      );
      expect(first.code).toBe(255);
      const written = await readFile(ocspFile);

      // 1. HAProxy loads <crt>.ocsp at start-up.
      const cfg = join(dir, 'haproxy.cfg');
      await writeFile(cfg, haproxyConfig({ port, crt, socket }));
      const haproxy = startHaproxy(['-db', '-f', cfg]);
      await waitForPort(port, haproxy);
      const atStart = await sClient(port);
      expect(atStart.responseStatus, atStart.out).toBe('successful');
      expect(atStart.certStatus).toBe('good');
      expect(atStart.serial).toBe(leaf.serialHex);
      expect(atStart.thisUpdate).toEqual(thisUpdateOf(written));

      // The next run has nothing to renew but does the pending push.
      const retry = await runCli(['run', '-c', config], { cwd: dir });
      expect(retry.stdout).toContain('[site] unchanged');
      expect(retry.stderr).toMatch(/\[site\] pushed the staple to HAProxy at .*admin\.sock/);
      expect(retry.code).toBe(0);
      const state = JSON.parse(await readFile(join(dir, 'state', HAPROXY_STATE_NAME), 'utf8')) as {
        pushed: Record<string, Record<string, string>>;
      };
      expect(Object.keys(state.pushed[socket] ?? {})).toEqual(['site']);
      // ...and one more run pushes nothing: HAProxy already has these bytes.
      const quiet = await runCli(['run', '-c', config], { cwd: dir });
      expect(quiet.stderr).toBe('');
      expect(quiet.code).toBe(0);

      // 2. A renewal reaches clients through the socket, without a reload.
      await tick();
      const renewal = await runCli(['run', '-c', config, '--force'], { cwd: dir });
      expect(renewal.stderr).toMatch(/\[site\] pushed the staple to HAProxy/);
      expect(renewal.code).toBe(1);
      const renewed = thisUpdateOf(await readFile(ocspFile));
      expect(renewed.getTime()).toBeGreaterThan(atStart.thisUpdate!.getTime());
      const after = await sClient(port); // no polling needed: the push is synchronous
      expect(after.responseStatus, after.out).toBe('successful');
      expect(after.certStatus).toBe('good');
      expect(after.thisUpdate).toEqual(renewed);
      expect(haproxy.child.exitCode).toBeNull();
      expect(await haproxy.log()).not.toMatch(/reload/i);
    });

    it('the daemon pushes the pending staple and its forced renewals over the stats socket', async () => {
      const leaf = await addLeaf(pki, { name: 'daemonsite' });
      const crt = join(dir, 'daemonsite.pem');
      const socket = join(dir, 'daemon-admin.sock');
      const port = await freePort();
      await writeCrt(crt, leaf);
      await mkdir(join(dir, 'daemon-state')); // the staple folder must exist (README.md, "Configuration")
      const config = await writeConfig(join(dir, 'daemon.yaml'), {
        ocsp_folder: join(dir, 'daemon-state'),
        domains: { daemonsite: { cert: crt, ocsp: '{cert}.ocsp' } },
        haproxy: [{ socket, certificates: ['daemonsite'] }],
        daemon: { watch: false },
      });
      // a run writes <crt>.ocsp while HAProxy is down: the push stays pending
      expect((await runCli(['run', '-c', config], { cwd: dir })).code).toBe(255);
      const cfg = join(dir, 'daemon-haproxy.cfg');
      await writeFile(cfg, haproxyConfig({ port, crt, socket }));
      const haproxy = startHaproxy(['-db', '-f', cfg]);
      await waitForPort(port, haproxy);
      const atStart = await sClient(port);
      expect(atStart.certStatus, atStart.out).toBe('good');

      await tick();
      const daemon = spawnCli(['daemon', '-c', config], { cwd: dir });
      let log = '';
      daemon.stdout?.on('data', (d: Buffer) => (log += d.toString()));
      daemon.stderr?.on('data', (d: Buffer) => (log += d.toString()));
      const waitLog = async (re: RegExp): Promise<void> => {
        for (let i = 0; i < 100 && !re.test(log); i++) await new Promise((r) => setTimeout(r, 100));
        expect(log).toMatch(re);
      };
      try {
        await waitLog(/daemon started/);
        await waitLog(/\[daemonsite\] pushed the staple to HAProxy/);
        daemon.kill('SIGUSR2');
        let view = await sClient(port);
        for (let i = 0; i < 100 && !(view.thisUpdate && view.thisUpdate > atStart.thisUpdate!); i++) {
          await new Promise((r) => setTimeout(r, 100));
          view = await sClient(port);
        }
        expect(view.certStatus, view.out).toBe('good');
        expect(view.thisUpdate!.getTime()).toBeGreaterThan(atStart.thisUpdate!.getTime());
        expect(view.thisUpdate).toEqual(thisUpdateOf(await readFile(`${crt}.ocsp`)));
        expect(haproxy.child.exitCode).toBeNull();
      } finally {
        daemon.kill('SIGTERM');
        await new Promise((r) => (daemon.exitCode !== null ? r(null) : daemon.once('exit', r)));
      }
    });

    it('reloads a master-worker HAProxy from the on_change hook, and pushes through the master CLI', async () => {
      const leaf = await addLeaf(pki, { name: 'reload' });
      const crt = join(dir, 'reload.pem');
      const socket = join(dir, 'reload-admin.sock');
      const master = join(dir, 'master.sock');
      const pidFile = join(dir, 'haproxy.pid');
      const port = await freePort();
      await writeCrt(crt, leaf);
      // Bootstrap: the staple must exist before HAProxy starts (HAProxy 2.6 can only update staples it loaded).
      const boot = await runCli(['fetch', '--cert', crt, '--out', `${crt}.ocsp`], { cwd: dir });
      expect(boot.code, boot.stderr).toBe(0);

      const cfg = join(dir, 'reload.cfg');
      await writeFile(cfg, haproxyConfig({ port, crt, socket }));
      const haproxy = startHaproxy(['-W', '-db', '-f', cfg, '-S', master, '-p', pidFile]);
      await waitForPort(port, haproxy);
      const before = await sClient(port);
      expect(before.certStatus, before.out).toBe('good');

      // The documented reload hook for a master-worker HAProxy without systemd: SIGUSR2 to the master.
      await tick();
      await mkdir(join(dir, 'reload-state')); // the staple folder must exist (README.md, "Configuration")
      const config = await writeConfig(join(dir, 'reload.yaml'), {
        ocsp_folder: join(dir, 'reload-state'),
        domains: { reload: { cert: crt, ocsp: '{cert}.ocsp' } },
        hooks: { on_change: `kill -USR2 "$(cat '${pidFile}')"` },
      });
      const run = await runCli(['run', '-c', config, '--force'], { cwd: dir });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(1);
      const renewed = thisUpdateOf(await readFile(`${crt}.ocsp`));
      const after = await sClientUntil(port, renewed);
      expect(after.certStatus, after.out).toBe('good');
      expect(after.thisUpdate).toEqual(renewed);
      expect(await haproxy.log()).toMatch(/Reloading HAProxy/);

      // The master CLI has no `set ssl`; the push is routed to the worker with `@1`.
      await tick();
      const fresh = await runCli(['fetch', '--cert', crt, '--out', join(dir, 'pushed.der')], { cwd: dir });
      expect(fresh.code, fresh.stderr).toBe(0);
      const report = await pushToHaproxy(
        [{ socket: master, certificates: [] }],
        [{ id: 'reload', staplePath: join(dir, 'pushed.der') }],
      );
      expect(report.failed).toEqual([]);
      expect(report.pushed).toHaveLength(1);
      const pushed = thisUpdateOf(await readFile(join(dir, 'pushed.der')));
      expect((await sClient(port)).thisUpdate).toEqual(pushed);

      // A refused staple is a failure with HAProxy's own words (a response for another certificate).
      const other = await pushToHaproxy(
        [{ socket, certificates: [] }],
        [{ id: 'site', staplePath: `${join(dir, 'site.pem')}.ocsp` }],
      );
      expect(other.pushed).toEqual([]);
      expect(other.failed[0]?.message).toMatch(/HAProxy at .* refused the staple: .*(does not match|not found)/i);
    });
  },
);
