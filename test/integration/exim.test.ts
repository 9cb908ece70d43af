/**
 * Exim serves what staplekeeper writes (docs/servers.md, Exim): the Debian
 * exim4-daemon-light package (`.ci/run` installs it) started as a foreground
 * daemon on a loopback port with a minimal configuration of its own
 * (`exim4 -C <file> -bdf -oX <port>`: spool, logs and pid file in a temporary
 * folder), `tls_certificate`, `tls_privatekey` and `tls_ocsp_file` pointing
 * at the certificate and at the staple `staplekeeper run` wrote, a real
 * `openssl ocsp` responder, and `openssl s_client -starttls smtp -status` as
 * the client.
 *
 * What it shows, and what docs/servers.md says: Exim serves the staple;
 * after `run` replaces it, Exim serves the new one without any signal (it
 * watches the file's folder and reloads its TLS credentials when the next
 * connection wakes it, a few seconds after the change; the connections
 * before that still get the previous, still valid, staple); and an
 * `on_change` hook sending SIGHUP makes the very next connection get it.
 *
 * Exim gives up root when it runs with `-C` (it then runs as its own user,
 * Debian-exim), so the test must run as root to start it, and the files must
 * be readable by that user.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pki } from '../helpers/mint.js';
import { findProgram, freePort, startOpensslPki, startServer, thisUpdateOf, waitForPort } from '../helpers/servers.js';
import type { ServerProcess } from '../helpers/servers.js';
import { assertBuilt, cleanUp, isRoot, runCli } from '../helpers/cli-harness.js';
import { sClient, type StatusView } from '../helpers/s-client.js';
import { assertInstalled, skipWithout } from '../helpers/tools.js';

const EXIM = findProgram('exim4') || findProgram('exim');
const INSTALL = 'apt-get install exim4-daemon-light';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Exim with -C needs root; outside CI a non-root run skips, saying so (in CI it fails in beforeAll). */
function skipNotRoot(): boolean {
  if (isRoot() || process.env.CI) return false;
  console.warn('not root: skipping the Exim end-to-end test (exim4 -C with a private configuration needs root)');
  return true;
}

describe.skipIf(skipWithout('Exim', Boolean(EXIM), INSTALL) || skipNotRoot())('Exim with tls_ocsp_file', () => {
  let dir: string;
  let pki: Pki;
  let exim: ServerProcess | undefined;
  let port: number;
  let staple: string;
  let config: string;

  const mainlog = (): Promise<string> => readFile(join(dir, 'log', 'mainlog'), 'utf8').catch(() => '');

  async function startExim(): Promise<void> {
    exim = startServer(EXIM, ['-C', join(dir, 'exim.conf'), '-bdf', '-oX', String(port)], mainlog);
    await waitForPort(port, exim);
  }

  /** s_client until it shows `expected` as This Update (or the deadline passes); every view seen. */
  async function until(expected: Date, deadlineMs: number): Promise<StatusView[]> {
    const seen: StatusView[] = [];
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const v = await sClient(port, 'mail.test', { starttls: 'smtp' });
      seen.push(v);
      if (v.thisUpdate?.getTime() === expected.getTime() || Date.now() > deadline) return seen;
      await sleep(250);
    }
  }

  /** Waits until the next whole second, so that the responder's next thisUpdate differs. */
  async function nextSecond(after: Date): Promise<void> {
    while (Date.now() < after.getTime() + 1100) await sleep(100);
  }

  beforeAll(async () => {
    assertInstalled('Exim', Boolean(EXIM), INSTALL);
    if (!isRoot()) throw new Error('the Exim test starts exim4 -C, which needs root (CI runs as root)');
    assertBuilt();
    ({ root: dir, pki } = await startOpensslPki('sk-exim-', { leaves: [{ name: 'mail' }] }, { nmin: 7 * 24 * 60 }));
    // Exim runs as its own user (Debian-exim): it must reach the certificate, key and staple
    await chmod(dir, 0o755);
    await chmod(join(dir, 'pki'), 0o755);
    await chmod(pki.leaves.mail!.key, 0o644); // a throwaway test key; on a server: group Debian-exim, 0640
    port = await freePort();
    staple = join(dir, 'staples', 'mail.der');
    for (const d of ['staples', 'spool', 'log']) await mkdir(join(dir, d));
    await chmod(join(dir, 'spool'), 0o777);
    await chmod(join(dir, 'log'), 0o777);
    const leaf = pki.leaves.mail!;
    config = join(dir, 'staplekeeper.yaml');
    await writeFile(
      config,
      [
        `ocsp_folder: ${join(dir, 'staples')}`,
        'domains:',
        '  mail:',
        `    cert: ${leaf.cert}`,
        `    chain: ${leaf.chain}`,
        '    ocsp: mail.der',
        '',
      ].join('\n'),
    );
    await writeFile(
      join(dir, 'exim.conf'),
      [
        'primary_hostname = mail.test',
        'local_interfaces = 127.0.0.1',
        `spool_directory = ${join(dir, 'spool')}`,
        `log_file_path = ${join(dir, 'log')}/%slog`,
        `pid_file_path = ${join(dir, 'exim.pid')}`,
        'tls_advertise_hosts = *',
        `tls_certificate = ${leaf.bundle}`,
        `tls_privatekey = ${leaf.key}`,
        `tls_ocsp_file = ${staple}`,
        'acl_smtp_rcpt = acl_check_rcpt',
        'begin acl',
        'acl_check_rcpt:',
        '  deny',
        '',
      ].join('\n'),
    );
  });

  afterAll(cleanUp);

  it('serves the staple run wrote, the renewed one without a signal, and at once after a SIGHUP hook', async () => {
    // 1. the first staple, then Exim
    const first = await runCli(['run', '-c', config], { cwd: dir });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(1);
    const t1 = thisUpdateOf(await readFile(staple));
    await startExim();
    const pid = exim!.child.pid;
    const v1 = await sClient(port, 'mail.test', { starttls: 'smtp' });
    expect(v1.out).toContain('250'); // it spoke SMTP before STARTTLS
    expect(v1.responseStatus).toBe('successful');
    expect(v1.certStatus).toBe('good');
    expect(v1.thisUpdate?.getTime()).toBe(t1.getTime());

    // 2. a renewal and nothing else: Exim notices the replaced file by itself
    await nextSecond(t1);
    const second = await runCli(['run', '-c', config, '--force'], { cwd: dir });
    expect(second.code).toBe(1);
    const t2 = thisUpdateOf(await readFile(staple));
    expect(t2.getTime()).toBeGreaterThan(t1.getTime());
    const seen = await until(t2, 20_000);
    const last = seen[seen.length - 1]!;
    expect(last.certStatus).toBe('good');
    expect(last.thisUpdate?.getTime()).toBe(t2.getTime());
    // every connection on the way got a good staple, the previous or the new one
    for (const v of seen) {
      expect(v.certStatus).toBe('good');
      expect([t1.getTime(), t2.getTime()]).toContain(v.thisUpdate?.getTime());
    }
    expect(exim!.child.pid).toBe(pid);
    expect(exim!.child.exitCode).toBeNull();

    // 3. with an on_change hook sending SIGHUP (what `systemctl reload exim4` does), the next connection has it
    await writeFile(config, `${await readFile(config, 'utf8')}hooks:\n  on_change: [kill, -HUP, '${pid}']\n`);
    await nextSecond(t2);
    const third = await runCli(['run', '-c', config, '--force'], { cwd: dir });
    expect(third.stderr).toBe('');
    expect(third.code).toBe(1);
    const t3 = thisUpdateOf(await readFile(staple));
    expect(t3.getTime()).toBeGreaterThan(t2.getTime());
    await sleep(200); // Exim re-executes itself on SIGHUP
    await waitForPort(port, exim!);
    const v3 = await sClient(port, 'mail.test', { starttls: 'smtp' });
    expect(v3.certStatus).toBe('good');
    expect(v3.thisUpdate?.getTime()).toBe(t3.getTime());
    expect(await mainlog()).toMatch(/SIGHUP/);
  }, 90_000);
});
