/**
 * `staplekeeper daemon` as a real process against a real `openssl ocsp`
 * responder: start-up, watching (new, replaced, removed certificates), every
 * signal, the lock shared with `run`, the status endpoints, and exit codes.
 * Needs `npm run build` first (it runs bin/staplekeeper → dist/).
 */
import { mkdir, readFile, rename, stat, unlink, writeFile, copyFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addLeaf, createPki, type Pki } from '../helpers/mint.js';
import { freePort, startResponder, type Responder } from '../helpers/servers.js';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import { tempDir, cleanUp } from '../helpers/temp.js';
import { CliProcess } from '../helpers/cli-harness.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Verifies that the staple at `staple` is a good response for the certificate in `certFile`. */
async function stapleIsFor(staple: string, certFile: string, caFile: string): Promise<boolean> {
  const [cert] = loadCertificates(await readFile(certFile), certFile);
  const [ca] = loadCertificates(await readFile(caFile), caFile);
  try {
    const v = verifyResponse(await readFile(staple), { cert: cert!, issuer: ca!, now: new Date() });
    return v.status === 'good';
  } catch {
    return false;
  }
}

describe('staplekeeper daemon (real process, real responder)', () => {
  let dir: string;
  let pki: Pki;
  let responder: Responder;
  let hang: Server;
  let hangPort: number;
  const sockets = new Set<Socket>();
  const procs: CliProcess[] = [];
  let daemon: CliProcess;
  let statusUrl: string;
  let certs: string;
  let ocsp: string;

  const start = (args: string[]): CliProcess => {
    const p = new CliProcess(args, { cwd: dir, env: { ...process.env, JOURNAL_STREAM: '' } });
    procs.push(p);
    return p;
  };

  /** Puts a leaf into the scan folder as ocspbot's triple; the certificate last and by rename, as ACME clients do. */
  const dropTriple = async (name: string, leafName: string): Promise<void> => {
    const leaf = pki.leaves[leafName]!;
    await copyFile(leaf.chain, path.join(certs, `${name}-chain.pem`));
    await copyFile(leaf.rootchain, path.join(certs, `${name}-rootchain.pem`));
    const tmp = path.join(certs, `.${name}.pem.tmp`);
    await copyFile(leaf.cert, tmp);
    await rename(tmp, path.join(certs, `${name}.pem`));
  };

  const config = (extra = ''): string =>
    [
      `ocsp_folder: ${ocsp}`,
      'lock_timeout: 30s',
      'http:',
      '  timeout: 5s',
      'hooks:',
      `  on_change: "cat >> ${path.join(dir, 'changes.jsonl')}"`,
      'scan_keys:',
      `  - folder: ${certs}`,
      'domains:',
      '  slow:',
      `    cert: ${pki.leaves.slow!.cert}`,
      `    chain: ${pki.leaves.slow!.chain}`,
      '    ocsp: slow.der',
      `    ocsp_responder_uri: http://127.0.0.1:${hangPort}/`,
      extra,
    ].join('\n');

  beforeAll(async () => {
    dir = await tempDir('sk-daemon-');
    certs = path.join(dir, 'certs');
    ocsp = path.join(dir, 'ocsp');
    await mkdir(certs);
    await mkdir(ocsp);
    const port = await freePort();
    pki = await createPki({
      dir: path.join(dir, 'pki'),
      ocspUrl: `http://127.0.0.1:${port}`,
      leaves: [{ name: 'a' }, { name: 'b' }, { name: 'slow' }, { name: 'd' }],
    });
    responder = await startResponder({ pki, port });
    // a responder that accepts connections and never answers: holds a batch (and the lock) for http.timeout
    hang = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    });
    hangPort = await new Promise<number>((r) =>
      hang.listen(0, '127.0.0.1', () => r((hang.address() as { port: number }).port)),
    );
    await dropTriple('a', 'a');
    await dropTriple('b', 'b');
    await writeFile(path.join(dir, 'staplekeeper.yaml'), config());
  }, 60_000);

  afterAll(async () => {
    for (const p of procs) await p.kill();
    for (const s of sockets) s.destroy();
    await new Promise((r) => hang?.close(r));
    await responder?.stop();
    await cleanUp();
  });

  it('checks every certificate at start, keeps going past a failing one, and serves its status', async () => {
    daemon = start(['daemon', '-c', 'staplekeeper.yaml', '--listen', '127.0.0.1:0', '-v']);
    const listening = await daemon.waitFor(/status service listening on (http:\/\/\S+)/);
    statusUrl = /(http:\/\/127\.0\.0\.1:\d+)/.exec(listening)![1]!;
    await daemon.waitFor(/daemon started: 3 certificate\(s\)/);
    await daemon.waitFor(/^\[a\] updated OCSP response: good/);
    await daemon.waitFor(/^\[b\] updated OCSP response: good/);
    expect(await stapleIsFor(path.join(ocsp, 'a.ocsp-resp'), pki.leaves.a!.cert, pki.ca.cert)).toBe(true);
    expect(await stapleIsFor(path.join(ocsp, 'b.ocsp-resp'), pki.leaves.b!.cert, pki.ca.cert)).toBe(true);
    // the certificate whose responder hangs fails after http.timeout, on stderr, with its code and a retry time
    const slowErr = await daemon.waitFor(/^\[slow\] error HTTP_TIMEOUT: .*retry at \S+ \(failure 1, backoff\)/, 10_000);
    expect(daemon.err).toContain(slowErr);
    expect(daemon.out.some((l) => /^\d{4}-\d\d-\d\d/.test(l))).toBe(false); // no timestamps: journald adds them
    // hooks run after each batch, as after a run
    await daemon.waitFor(/^on_change hook ran for \d certificate\(s\)/);
    expect(await readFile(path.join(dir, 'changes.jsonl'), 'utf8')).toMatch(/"event":"on_change".*"id":"(a|b)"/);

    const health = await fetch(`${statusUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('ok\n');
    const status = (await (await fetch(`${statusUrl}/status`)).json()) as {
      certificates: Array<Record<string, unknown>>;
    };
    const byId = Object.fromEntries(status.certificates.map((c) => [c.id, c]));
    expect(byId.a).toMatchObject({
      state: 'good',
      status: 'good',
      certPath: path.join(certs, 'a.pem'),
      staplePath: path.join(ocsp, 'a.ocsp-resp'),
      lastResult: 'updated',
      lastCode: null,
      consecutiveFailures: 0,
      responderUrl: responder.url,
    });
    expect(typeof byId.a!.nextAttempt).toBe('string');
    expect(Date.parse(byId.a!.nextAttempt as string)).toBeGreaterThan(Date.now() + 3600_000);
    expect(byId.slow).toMatchObject({
      state: 'never-fetched',
      lastResult: 'failed',
      lastCode: 'HTTP_TIMEOUT',
      consecutiveFailures: 1,
    });
    expect(status.certificates[0]!.id).toBe('slow'); // most urgent first
    const metrics = await (await fetch(`${statusUrl}/metrics`)).text();
    expect(metrics).toMatch(/^staplekeeper_staple_expiry_timestamp_seconds\{id="a"\} \d+/m);
    expect(metrics).toMatch(/^staplekeeper_fetch_total\{result="success"\} [2-9]/m);
    expect(metrics).toMatch(/^staplekeeper_fetch_total\{result="HTTP_TIMEOUT"\} 1/m);
    expect(metrics).toMatch(/^staplekeeper_certificates\{state="good"\} 2/m);
    expect(metrics).toMatch(/^staplekeeper_fetch_duration_seconds_count \d+/m);
    expect((await fetch(`${statusUrl}/nope`)).status).toBe(404);
    expect((await fetch(`${statusUrl}/status`, { method: 'POST' })).status).toBe(405);
  });

  it('staples a new certificate dropped into a watched folder at once', async () => {
    const from = daemon.mark();
    await dropTriple('c', 'd');
    await daemon.waitFor(/^\[c\] new certificate .*c\.pem; fetching its staple now/, 10_000, from);
    await daemon.waitFor(/^\[c\] updated OCSP response: good/, 10_000, from);
    expect(await stapleIsFor(path.join(ocsp, 'c.ocsp-resp'), pki.leaves.d!.cert, pki.ca.cert)).toBe(true);
  });

  it('staples a replaced certificate (renamed over the old one) for the new certificate', async () => {
    const renewed = await addLeaf(pki, { name: 'a2' });
    const staple = path.join(ocsp, 'a.ocsp-resp');
    expect(await stapleIsFor(staple, renewed.cert, pki.ca.cert)).toBe(false);
    const from = daemon.mark();
    const tmp = path.join(certs, '.a.pem.new');
    await copyFile(renewed.cert, tmp);
    await rename(tmp, path.join(certs, 'a.pem'));
    await daemon.waitFor(/^\[a\] certificate changed: .*a\.pem; checking its staple now/, 10_000, from);
    await daemon.waitFor(/^\[a\] updated OCSP response: good/, 10_000, from);
    expect(await stapleIsFor(staple, renewed.cert, pki.ca.cert)).toBe(true);
    expect(await stapleIsFor(staple, pki.leaves.a!.cert, pki.ca.cert)).toBe(false);
  });

  it('stops scheduling a removed certificate', async () => {
    const from = daemon.mark();
    await unlink(path.join(certs, 'c.pem'));
    await daemon.waitFor(/^\[c\] certificate .*c\.pem is gone; no longer scheduled/, 10_000, from);
    const status = (await (await fetch(`${statusUrl}/status`)).json()) as { certificates: Array<{ id: string }> };
    expect(status.certificates.map((c) => c.id).sort()).toEqual(['a', 'b', 'slow']);
  });

  it('SIGUSR1 checks every certificate per the schedule without renewing fresh staples', async () => {
    const staple = path.join(ocsp, 'b.ocsp-resp');
    const before = await readFile(staple);
    const from = daemon.mark();
    daemon.signal('SIGUSR1');
    await daemon.waitFor(/^SIGUSR1: checking every certificate now/, 5_000, from);
    await daemon.waitFor(/^\[b\] unchanged: fresh until/, 5_000, from);
    await daemon.waitFor(/^\[a\] unchanged: fresh until/, 5_000, from);
    expect((await readFile(staple)).equals(before)).toBe(true);
    // the failing certificate's host is in backoff: it is not hammered on SIGUSR1
    await daemon.waitFor(
      /^\[slow\] due \(missing\), but responder 127\.0\.0\.1:\d+ is in backoff; next attempt at/,
      5_000,
      from,
    );
  });

  it('SIGUSR2 renews every staple now', async () => {
    const staple = path.join(ocsp, 'b.ocsp-resp');
    const before = await readFile(staple);
    await sleep(1100); // the responder stamps answers to the second; only a newer answer replaces a staple
    const from = daemon.mark();
    daemon.signal('SIGUSR2');
    await daemon.waitFor(/^SIGUSR2: renewing every staple now/, 5_000, from);
    await daemon.waitFor(/^\[b\] renewed \(forced\) OCSP response: good/, 5_000, from);
    await daemon.waitFor(/^\[a\] renewed \(forced\) OCSP response: good/, 5_000, from);
    expect((await readFile(staple)).equals(before)).toBe(false);
    expect(await stapleIsFor(staple, pki.leaves.b!.cert, pki.ca.cert)).toBe(true);
    // host backoff is cleared too: the hanging responder is tried again (and times out)
    await daemon.waitFor(/^\[slow\] error HTTP_TIMEOUT/, 10_000, from);
  });

  it('a `run` started while the daemon works waits for its batch, or gives up after lock_timeout', async () => {
    // SIGUSR2 makes the daemon hold the lock for http.timeout (5 s) on the hanging responder
    const onlyA = (timeout: string): string =>
      [
        `ocsp_folder: ${ocsp}`,
        `lock_timeout: ${timeout}`,
        'domains:',
        '  a:',
        `    cert: ${path.join(certs, 'a.pem')}`,
        `    chain: ${path.join(certs, 'a-chain.pem')}`,
        '    ocsp: a.ocsp-resp',
      ].join('\n');
    await writeFile(path.join(dir, 'only-a.yaml'), onlyA('30s'));
    await writeFile(path.join(dir, 'impatient.yaml'), onlyA('1s'));
    const from = daemon.mark();
    daemon.signal('SIGUSR2');
    await daemon.waitFor(/^\[a\] renewed \(forced\)/, 5_000, from);
    const impatient = start(['run', '-c', 'impatient.yaml', '--force']);
    const patient = start(['run', '-c', 'only-a.yaml', '--force']);
    const [gaveUp, waited] = await Promise.all([impatient.exited, patient.exited]);
    expect(gaveUp.code).toBe(255);
    expect(impatient.err.join('\n')).toMatch(
      new RegExp(`error LOCK_TIMEOUT: another staplekeeper \\(PID ${daemon.pid}\\) holds .*gave up after 1 s`),
    );
    expect(patient.err.join('\n')).toMatch(new RegExp(`waiting for another staplekeeper \\(PID ${daemon.pid}\\)`));
    // ocspbot's exit code: the number of staples renewed
    expect(waited.code).toBe(1);
    expect(patient.out.join('\n')).toMatch(/\[a\] updated OCSP response: good/);
    // the patient run wrote only after the daemon's batch had ended (its hanging fetch timed out)
    const batchEnd = daemon.timeOf(/^\[slow\] error HTTP_TIMEOUT/, from);
    expect(patient.timeOf(/\[a\] updated OCSP response/)).toBeGreaterThanOrEqual(batchEnd);
  }, 30_000);

  it('SIGHUP with a bad configuration keeps the running one; with a good one it reloads', async () => {
    const cfg = path.join(dir, 'staplekeeper.yaml');
    let from = daemon.mark();
    await writeFile(cfg, `${config()}\nno_such_key: 1\n`);
    daemon.signal('SIGHUP');
    const bad = await daemon.waitFor(
      /error CONFIG_INVALID: reload failed, keeping the running configuration: .*no_such_key/,
      5_000,
      from,
    );
    expect(daemon.err).toContain(bad);
    expect((await fetch(`${statusUrl}/healthz`)).status).toBe(200);

    from = daemon.mark();
    const d = pki.leaves.d!;
    await writeFile(
      cfg,
      config(['  d:', `    cert: ${d.cert}`, `    chain: ${d.chain}`, '    ocsp: d.der'].join('\n')),
    );
    daemon.signal('SIGHUP');
    await daemon.waitFor(/^SIGHUP: reloading the configuration/, 5_000, from);
    await daemon.waitFor(/^\[d\] new certificate .*; fetching its staple now/, 5_000, from);
    await daemon.waitFor(/^configuration reloaded from .*staplekeeper\.yaml: 4 certificate\(s\)/, 5_000, from);
    await daemon.waitFor(/^\[d\] updated OCSP response: good/, 5_000, from);
    expect(await stapleIsFor(path.join(ocsp, 'd.der'), d.cert, pki.ca.cert)).toBe(true);
  });

  it('SIGTERM during work in progress finishes, closes everything and exits 0 within 10 s', async () => {
    await sleep(1100); // a newer second, so that the forced answers replace the staples
    const from = daemon.mark();
    daemon.signal('SIGUSR2'); // puts the hanging responder in flight again
    await daemon.waitFor(/^\[a\] renewed \(forced\)/, 5_000, from);
    const sent = Date.now();
    daemon.signal('SIGTERM');
    const exit = await daemon.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.at - sent).toBeLessThan(10_000);
    await daemon.waitFor(/^SIGTERM: stopping/, 1, from);
    await daemon.waitFor(/^stopped$/, 1, from);
    expect(await exists(path.join(ocsp, '.staplekeeper.lock'))).toBe(false);
    await expect(fetch(`${statusUrl}/healthz`)).rejects.toThrow();
  }, 15_000);

  it('refuses to start when a staple folder is not writable, with a clear JSON log line and exit 1', async () => {
    const blocker = path.join(dir, 'a-file');
    await writeFile(blocker, 'not a folder');
    await writeFile(
      path.join(dir, 'broken.yaml'),
      [`ocsp_folder: ${path.join(blocker, 'ocsp')}`, 'scan_keys:', `  - folder: ${certs}`].join('\n'),
    );
    const p = start(['daemon', '-c', 'broken.yaml', '--log-format', 'json']);
    const exit = await p.exited;
    expect(exit.code).toBe(1);
    const line = JSON.parse(p.err.find((l) => l.includes('FILE_WRITE')) ?? '{}') as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'error', code: 'FILE_WRITE' });
    expect(line.msg).toMatch(/^cannot start: staple folder \S*a-file\/ocsp (cannot be used|does not exist)/);
    expect(typeof line.time).toBe('string');
  });

  it('rejects a bad --listen with exit 252', async () => {
    const p = start(['daemon', '-c', 'staplekeeper.yaml', '--listen', 'nonsense']);
    expect((await p.exited).code).toBe(252);
    expect(p.err.join('\n')).toMatch(/error BAD_ARGUMENTS: --listen: .*expected HOST:PORT/);
  });
});
