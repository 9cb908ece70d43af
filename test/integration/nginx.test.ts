/**
 * nginx serves what staplekeeper writes (docs/servers.md): a real nginx
 * (Debian package; `.ci/run` installs it) on a loopback port with
 * `ssl_stapling on; ssl_stapling_file <staple>;`, a real `openssl ocsp`
 * responder (scripts/lib), `bin/staplekeeper` as a child process, and
 * `openssl s_client -status` as the client.
 *
 * nginx reads the staple file only at (re)load, so the `on_change` hook
 * `nginx -s reload` (the documented hook of docs/servers.md) is what makes a
 * renewed staple reach clients; the test checks that the client then sees
 * the new thisUpdate.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, cleanUp, runCli, writeConfig } from '../helpers/cli-harness.js';
import type { Pki } from '../helpers/mint.js';
import { findProgram, freePort, startOpensslPki, startServer, thisUpdateOf, waitForPort } from '../helpers/servers.js';
import type { ServerProcess } from '../helpers/servers.js';
import { sClient } from '../helpers/s-client.js';
import { assertInstalled, skipWithout } from '../helpers/tools.js';

const NGINX = findProgram('nginx');

// ---------------------------------------------------------------- the test

describe.skipIf(skipWithout('nginx', Boolean(NGINX), 'apt-get install nginx'))('nginx with ssl_stapling_file', () => {
  let dir: string;
  let pki: Pki;
  let nginx: ServerProcess;
  let port: number;
  let proxyPort: number;
  let conf: string;
  let errorLog: string;
  let staple: string;

  beforeAll(async () => {
    assertInstalled('nginx', Boolean(NGINX), 'apt-get install nginx');
    assertBuilt();
    ({ root: dir, pki } = await startOpensslPki('sk-nginx-', { leaves: [{ name: 'site' }] }));
    port = await freePort();
    proxyPort = await freePort();
    conf = join(dir, 'nginx.conf');
    errorLog = join(dir, 'error.log');
    staple = join(dir, 'staples', 'site.der');
    await mkdir(join(dir, 'staples'));
    // nginx workers run as nobody when the tests run as root: they must be able to read the staples
    await chmod(dir, 0o755);
    await mkdir(join(dir, 'tmp'));
    const leaf = pki.leaves.site!;
    const tmp = join(dir, 'tmp');
    await writeFile(
      conf,
      [
        `pid ${join(dir, 'nginx.pid')};`,
        `error_log ${errorLog} info;`,
        'worker_processes 1;',
        'events { worker_connections 64; }',
        'http {',
        '  access_log off;',
        `  client_body_temp_path ${tmp}/body;`,
        `  proxy_temp_path ${tmp}/proxy;`,
        `  fastcgi_temp_path ${tmp}/fastcgi;`,
        `  uwsgi_temp_path ${tmp}/uwsgi;`,
        `  scgi_temp_path ${tmp}/scgi;`,
        '  server {',
        `    listen 127.0.0.1:${port} ssl;`,
        '    server_name site.test;',
        `    ssl_certificate ${leaf.bundle};`,
        `    ssl_certificate_key ${leaf.key};`,
        '    ssl_stapling on;',
        `    ssl_stapling_file ${staple};`,
        '    return 200 "ok\\n";',
        '  }',
        '  # the local "responder" for Apache mod_ssl (docs/servers.md): each staple at its own URL',
        '  server {',
        `    listen 127.0.0.1:${proxyPort};`,
        `    root ${join(dir, 'staples')};`,
        '    default_type application/ocsp-response;',
        '    error_page 405 =200 $uri;',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
  });

  afterAll(cleanUp);

  it('serves the staple staplekeeper wrote, and the renewed one after the on_change reload hook', async () => {
    const leaf = pki.leaves.site!;
    // 1. The first staple must exist before nginx starts: a staple file that is missing or does
    //    not parse stops nginx. `staplekeeper fetch` bootstraps it (docs/servers.md).
    const first = await runCli(['fetch', '--cert', leaf.bundle, '--out', staple], { cwd: dir });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);

    nginx = startServer(NGINX, ['-p', dir, '-c', conf, '-e', errorLog, '-g', 'daemon off;'], () =>
      readFile(errorLog, 'utf8').catch(() => ''),
    );
    await waitForPort(port, nginx);

    const before = await sClient(port, 'site.test');
    expect(before.responseStatus, before.out).toBe('successful');
    expect(before.certStatus).toBe('good');
    expect(before.serial).toBe(leaf.serialHex);
    expect(before.thisUpdate).toEqual(thisUpdateOf(await readFile(staple)));

    // 2. A forced renewal with the documented reload hook. openssl ocsp stamps thisUpdate with the
    //    current second, so wait for the next one to get a visibly different staple.
    await new Promise((r) => setTimeout(r, 1100));
    const config = await writeConfig(join(dir, 'staplekeeper.yaml'), {
      ocsp_folder: join(dir, 'staples'),
      domains: { site: { cert: leaf.bundle, ocsp: 'site.der' } },
      hooks: { on_change: [NGINX, '-p', dir, '-c', conf, '-e', errorLog, '-s', 'reload'] },
    });
    const run = await runCli(['run', '-c', config, '--force'], { cwd: dir });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(1); // ocspbot convention: one staple renewed
    expect(run.stdout).toContain('[site] updated OCSP response: good');
    const renewed = thisUpdateOf(await readFile(staple));
    expect(renewed.getTime()).toBeGreaterThan(before.thisUpdate!.getTime());

    // nginx swaps workers asynchronously after the reload signal: poll briefly for the new staple.
    let after = await sClient(port, 'site.test');
    for (let i = 0; i < 50 && after.thisUpdate?.getTime() !== renewed.getTime(); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await sClient(port, 'site.test');
    }
    expect(after.responseStatus, after.out).toBe('successful');
    expect(after.certStatus).toBe('good');
    expect(after.thisUpdate).toEqual(renewed);
    expect(nginx.child.exitCode).toBeNull(); // reloaded, not restarted

    // The Apache recipe: mod_ssl POSTs its OCSP request to SSLStaplingForceURL and gets the staple.
    const viaProxy = await fetch(`http://127.0.0.1:${proxyPort}/site.der`, {
      method: 'POST',
      headers: { 'content-type': 'application/ocsp-request' },
      body: Buffer.from('30030a0100', 'hex'),
    });
    expect(viaProxy.status).toBe(200);
    expect(viaProxy.headers.get('content-type')).toBe('application/ocsp-response');
    expect(Buffer.from(await viaProxy.arrayBuffer())).toEqual(await readFile(staple));
    expect(await readFile(errorLog, 'utf8')).toMatch(/signal 1 \(SIGHUP\) received.*reconfiguring/);
  });
});
