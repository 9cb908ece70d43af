/**
 * Reliability (docs/SECURITY.md), through the real `bin/staplekeeper`: a staple only
 * gets better; a write that happened is reported as one; only regular files
 * holding staples are replaced; input reads are bounded; a mistyped folder is
 * not created; an input file is never written over. Each test here fails on
 * the code before the change (docs/SECURITY.md lists them).
 *
 * Nothing here touches a real device: the special files are a FIFO, a unix
 * socket and (as root) a device node made in a temporary folder.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import {
  BIN,
  cleanEnv,
  isRoot,
  killAllChildren,
  outcomesById,
  removeTempDirs,
  runCli,
  showResult,
  snapshot,
  spawnCli,
  tempDir,
  writeConfig,
  startScenarioBench,
} from '../helpers/cli-harness.js';
import {
  WORSE_SCENARIOS,
  hugeMaxAge,
  startEvilResponder,
  type Behaviour,
  type EvilResponder,
  type ScenarioContext,
} from '../helpers/evil-responder.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

let dir: string;
let ctx: ScenarioContext;
let certPath: string;
let chainPath: string;
/** The staple on disk: thisUpdate an hour ago, valid 7 more days. */
let goodStaple: Buffer;
const responders: EvilResponder[] = [];

beforeAll(async () => {
  ({ dir, ctx, certPath, chainPath } = await startScenarioBench('sk-reliability-', true));
  goodStaple = ctx.good();
});

afterAll(async () => {
  await killAllChildren();
  for (const r of responders) await r.close();
  await removeTempDirs();
});

async function responder(behaviour: (c: ScenarioContext) => Behaviour): Promise<EvilResponder> {
  const r = await startEvilResponder(() => behaviour(ctx));
  responders.push(r);
  return r;
}

/** A better answer than {@link goodStaple}: newer and valid a day longer. */
const better = (c: ScenarioContext): Behaviour => ({
  kind: 'respond',
  status: 200,
  headers: { 'content-type': 'application/ocsp-response' },
  body: c.good({ producedAt: c.now, single: { thisUpdate: c.now, nextUpdate: new Date(c.now.getTime() + 8 * DAY) } }),
});

/** A folder with the staple planted (old mtime), a hook log, and a configuration for one domain. */
async function setup(
  name: string,
  url: string,
  extra: Record<string, unknown> = {},
  staple: Buffer | null = goodStaple,
): Promise<{ folder: string; staple: string; cfg: string; hookLog: string }> {
  const folder = join(dir, name);
  await mkdir(folder, { recursive: true });
  const path = join(folder, 'leaf.der');
  if (staple) {
    await writeFile(path, staple);
    const old = new Date(Date.now() - HOUR);
    await utimes(path, old, old);
  }
  const hookLog = join(folder, 'on_change.log');
  const cfg = await writeConfig(join(folder, 'staplekeeper.yaml'), {
    ocsp_folder: folder,
    http: { timeout: '3s' },
    hooks: { on_change: `cat > ${hookLog}` },
    domains: { leaf: { cert: certPath, chain: chainPath, ocsp: 'leaf.der', ocsp_responder_uri: url } },
    ...extra,
  });
  return { folder, staple: path, cfg, hookLog };
}

function expectGood(bytes: Buffer): void {
  const [cert] = loadCertificates(Buffer.from(ctx.leaf.pem));
  const [issuer] = loadCertificates(Buffer.from(ctx.issuer.pem));
  expect(verifyResponse(bytes, { cert: cert!, issuer: issuer!, now: new Date() }).status).toBe('good');
}

describe('a staple only gets better', () => {
  it.each(WORSE_SCENARIOS.map((s) => [s.name, s] as const))(
    'run, due by minimum_validity: a %s answer is kept byte-for-byte, reported, not renewed (exit 0, no on_change)',
    async (name, scenario) => {
      const r0 = await responder((c) => scenario.build(c));
      const { staple, cfg, hookLog } = await setup(`run-${name}`, r0.url, { minimum_validity: '8d' });
      const before = await snapshot(staple);
      const r = await runCli(['run', '-c', cfg]);
      expect(r.code, showResult(r)).toBe(0);
      expect(r.stderr, showResult(r)).toMatch(/\[leaf\] kept: the responder's answer \(valid until \S+/);
      expect(r.stdout).toContain('Success: 1 unchanged OCSP responses, 0 updated OCSP responses and 0 failures.');
      const after = await snapshot(staple);
      expect(after.bytes.equals(before.bytes)).toBe(true);
      expect(after.mtimeMs).toBe(before.mtimeMs);
      expect(after.ino).toBe(before.ino);
      expect(existsSync(hookLog)).toBe(false);
      expect(r0.requests.length).toBeGreaterThan(0);
    },
  );

  it('the issue reproduction: a 2-minute answer over 7 days left, in --json and with --force', async () => {
    const worse = WORSE_SCENARIOS.find((s) => s.name === 'shorter-nextUpdate')!;
    const r0 = await responder((c) => worse.build(c));
    const { staple, cfg } = await setup('force', r0.url);
    const r = await runCli(['run', '-c', cfg, '--force', '--json']);
    expect(r.code, showResult(r)).toBe(0);
    const o = outcomesById(r.stdout).get('leaf') as unknown as { result: string; kept?: { reason: string } };
    expect(o.result).toBe('unchanged');
    expect(o.kept?.reason).toBe('shorter');
    expect((await readFile(staple)).equals(goodStaple)).toBe(true);
  });

  it('a multi-answer response never replaces a single-answer staple', async () => {
    const multi = WORSE_SCENARIOS.find((s) => s.name === 'multi-answer')!;
    const r0 = await responder((c) => multi.build(c));
    const { staple, cfg } = await setup('multi', r0.url);
    const r = await runCli(['run', '-c', cfg, '--force']);
    expect(r.code, showResult(r)).toBe(0);
    expect(r.stderr).toMatch(/kept: .* holds 2 answers, which HAProxy refuses/);
    expect((await readFile(staple)).equals(goodStaple)).toBe(true);
  });

  it('fetch --out over a better staple leaves it untouched and exits 1; a better answer is written', async () => {
    const worse = WORSE_SCENARIOS.find((s) => s.name === 'shorter-nextUpdate')!;
    const bad = await responder((c) => worse.build(c));
    const { staple } = await setup('fetch', bad.url);
    const args = ['fetch', '--cert', certPath, '--chain', chainPath, '--out', staple, '--timeout', '3s'];
    const r = await runCli([...args, '--url', bad.url]);
    expect(r.code, showResult(r)).toBe(1);
    expect(r.stderr).toMatch(/^staplekeeper: kept: the responder's answer .* is shorter than the staple on disk/);
    expect(r.stderr).toContain('was left untouched');
    expect((await readFile(staple)).equals(goodStaple)).toBe(true);
    const good = await responder(better);
    const ok = await runCli([...args, '--url', good.url]);
    expect(ok.code, showResult(ok)).toBe(0);
    expectGood(await readFile(staple));
    expect((await readFile(staple)).equals(goodStaple)).toBe(false);
  });

  it('the daemon keeps the staple, logs "kept", and retries with its backoff instead of renewing', async () => {
    const worse = WORSE_SCENARIOS.find((s) => s.name === 'shorter-nextUpdate')!;
    const r0 = await responder((c) => worse.build(c));
    const { staple, cfg } = await setup('daemon', r0.url, { minimum_validity: '8d' });
    const before = await snapshot(staple);
    const child = spawnCli(['daemon', '-c', cfg]);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const end = Date.now() + 20_000;
    while (!/kept: the responder's answer/.test(out) && Date.now() < end && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    expect(out).toMatch(/kept: the responder's answer \(valid until \S+\) is shorter than the staple on disk/);
    expect(out).toMatch(/retry at \S+ \(attempt 1, (backoff|expiring)\)/);
    expect(out).not.toMatch(/updated OCSP response/);
    const after = await snapshot(staple);
    expect(after.bytes.equals(before.bytes)).toBe(true);
    expect(after.ino).toBe(before.ino);
  });

  it('the daemon with -v says a kept answer once (a warning), not also as a debug note', async () => {
    const worse = WORSE_SCENARIOS.find((s) => s.name === 'shorter-nextUpdate')!;
    const r0 = await responder((c) => worse.build(c));
    const { cfg } = await setup('daemon-verbose', r0.url, { minimum_validity: '8d' });
    const child = spawnCli(['daemon', '-v', '-c', cfg]);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const end = Date.now() + 20_000;
    while (!/retry at \S+ \(attempt 1/.test(out) && Date.now() < end && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    const said = out.split('\n').filter((l) => l.includes("kept: the responder's answer"));
    expect(said, out).toHaveLength(1);
    expect(said[0]).toMatch(/^\[leaf\] warning: kept: .*; retry at \S+ \(attempt 1, (backoff|expiring)\)$/);
  });
});

describe('a write that happened is reported as a write', () => {
  it('a backup that fails after the staple was written: a warning, counted as renewed, on_change runs', async () => {
    const good = await responder(better);
    const { folder, staple, cfg, hookLog } = await setup('backup', good.url, { make_backups: true });
    // every backup name of the next two minutes is taken by a folder: the backup's rename fails (EISDIR)
    const p = (n: number): string => String(n).padStart(2, '0');
    const t0 = Date.now();
    for (let s = -2; s < 120; s++) {
      const d = new Date(t0 + s * 1000);
      const stamp = `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
      await mkdir(join(folder, `leaf.der-${stamp}`), { recursive: true });
    }
    const r = await runCli(['run', '-c', cfg, '--force']);
    expect(r.code, showResult(r)).toBe(1);
    expect(r.stderr).toMatch(
      /\[leaf\] updated OCSP response: .*warning: .*the staple was written, but its backup failed/,
    );
    expect(r.stdout).toContain('0 unchanged OCSP responses, 1 updated OCSP responses and 0 failures');
    expectGood(await readFile(staple));
    expect((await readFile(staple)).equals(goodStaple)).toBe(false);
    expect(JSON.parse(await readFile(hookLog, 'utf8')).items[0].id).toBe('leaf');
  });

  it('a Cache-Control max-age of 10^20 s: written, reported as written, a valid next refresh, on_change runs', async () => {
    const r0 = await responder(hugeMaxAge);
    const { staple, cfg, hookLog } = await setup('max-age', r0.url);
    const r = await runCli(['run', '-c', cfg, '--force', '--json']);
    expect(r.code, showResult(r)).toBe(1);
    const o = outcomesById(r.stdout).get('leaf') as unknown as { result: string; nextRefresh: string; error?: unknown };
    expect(o.result).toBe('updated');
    expect(o.error).toBeUndefined();
    expect(Number.isNaN(Date.parse(o.nextRefresh))).toBe(false);
    expect(Date.parse(o.nextRefresh)).toBeLessThanOrEqual(Date.now() + 8 * DAY);
    expectGood(await readFile(staple));
    expect(existsSync(hookLog)).toBe(true);
  });
});

describe('only regular files are replaced', () => {
  it('a staple path that is a FIFO, a symlink to one, or a unix socket is refused and stays what it is', async () => {
    const good = await responder(better);
    const { folder, cfg } = await setup('special', good.url, {}, null);
    const fifo = join(folder, 'leaf.der');
    execFileSync('mkfifo', [fifo]);
    const r = await runCli(['run', '-c', cfg, '--force', '--json'], { timeoutMs: 20_000 });
    expect(r.timedOut).toBe(false);
    expect(r.code, showResult(r)).toBe(255);
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.error?.code).toBe('FILE_WRITE');
    expect(o?.error?.message).toContain(`${fifo}: is a FIFO (named pipe), not a regular file`);
    expect((await lstat(fifo)).isFIFO()).toBe(true);

    // a link to a FIFO elsewhere: the target is looked at, not replaced
    const other = await tempDir('sk-fifo-target-');
    const target = join(other, 'pipe');
    execFileSync('mkfifo', [target]);
    const linked = await setup('special-link', good.url, {}, null);
    await symlink(target, linked.staple);
    const r2 = await runCli(['run', '-c', linked.cfg, '--force', '--json'], { timeoutMs: 20_000 });
    expect(r2.code, showResult(r2)).toBe(255);
    expect(outcomesById(r2.stdout).get('leaf')?.error?.message).toContain('FIFO');
    expect((await lstat(target)).isFIFO()).toBe(true);
    expect((await lstat(linked.staple)).isSymbolicLink()).toBe(true);

    const sock = await setup('special-socket', good.url, {}, null);
    const server = createServer();
    await new Promise<void>((res) => server.listen(sock.staple, () => res()));
    try {
      const r3 = await runCli(['run', '-c', sock.cfg, '--force', '--json'], { timeoutMs: 20_000 });
      expect(r3.code, showResult(r3)).toBe(255);
      expect(outcomesById(r3.stdout).get('leaf')?.error?.message).toContain('is a socket');
      expect((await lstat(sock.staple)).isSocket()).toBe(true);
    } finally {
      await new Promise<void>((res) => server.close(() => res()));
    }
  });

  it.skipIf(!isRoot())(
    'a symlink to a character device (a node made in a temp folder, as root) is refused',
    async () => {
      const good = await responder(better);
      const devDir = await tempDir('sk-dev-');
      const node = join(devDir, 'null-copy');
      execFileSync('mknod', ['-m', '0666', node, 'c', '1', '3']);
      const s = await setup('chardev', good.url, {}, null);
      await symlink(node, s.staple);
      const r = await runCli(['run', '-c', s.cfg, '--force', '--json']);
      expect(r.code, showResult(r)).toBe(255);
      expect(outcomesById(r.stdout).get('leaf')?.error?.message).toContain('is a character device');
      expect((await lstat(node)).isCharacterDevice()).toBe(true);
    },
  );

  it('a non-OCSP file is replaced only with overwrite_non_ocsp, and fetch --overwrite', async () => {
    const good = await responder(better);
    const s = await setup('notes', good.url, {}, Buffer.from('notes, not a staple\n'));
    const r = await runCli(['run', '-c', s.cfg, '--json']);
    expect(r.code, showResult(r)).toBe(255);
    expect(outcomesById(r.stdout).get('leaf')?.error?.code).toBe('STAPLE_PATH_REFUSED');
    expect(await readFile(s.staple, 'utf8')).toBe('notes, not a staple\n');
    const args = ['fetch', '--cert', certPath, '--chain', chainPath, '--url', good.url, '--out', s.staple];
    const f = await runCli(args);
    expect(f.code, showResult(f)).toBe(1);
    expect(f.stderr).toContain('error STAPLE_PATH_REFUSED');
    expect(await readFile(s.staple, 'utf8')).toBe('notes, not a staple\n');
    const f2 = await runCli([...args, '--overwrite']);
    expect(f2.code, showResult(f2)).toBe(0);
    expectGood(await readFile(s.staple));
  });
});

describe('bounded reads', () => {
  it('fetch --cert FIFO errors at once (no writer needed)', async () => {
    const fifo = join(await tempDir('sk-fifo-cert-'), 'cert.pem');
    execFileSync('mkfifo', [fifo]);
    const r = await runCli(['fetch', '--cert', fifo, '--out', join(dir, 'never.der')], { timeoutMs: 15_000 });
    expect(r.timedOut, showResult(r)).toBe(false);
    expect(r.code, showResult(r)).toBe(1);
    expect(r.stderr).toContain(`${fifo}: cannot read certificate: it is a FIFO (named pipe), not a regular file`);
  });

  it('inspect /dev/zero errors at once, with bounded memory (a 1 GB address-space limit)', () => {
    // the old code read /dev/zero until memory ran out; under `ulimit -v` it dies instead of taking the machine
    const r = spawnSync('sh', ['-c', `ulimit -v 3000000; exec "${process.execPath}" "${BIN}" inspect /dev/zero`], {
      env: cleanEnv(),
      timeout: 20_000,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain('/dev/zero: cannot read staple: it is a character device, not a regular file');
  });

  it('a 2 GB sparse file is refused by its size, without reading it (inspect, fetch --cert, run -c)', async () => {
    const sparse = join(await tempDir('sk-sparse-'), 'big.der');
    await writeFile(sparse, '');
    await truncate(sparse, 2 * 1024 ** 3);
    const started = Date.now();
    const i = await runCli(['inspect', sparse], { timeoutMs: 15_000 });
    expect(i.code, showResult(i)).toBe(1);
    expect(i.stderr).toContain(`${sparse}: cannot read staple: it is larger than 4194304 bytes (2147483648 bytes)`);
    const f = await runCli(['fetch', '--cert', sparse, '--out', join(dir, 'never.der')], { timeoutMs: 15_000 });
    expect(f.code, showResult(f)).toBe(1);
    expect(f.stderr).toContain('it is larger than 4194304 bytes');
    const c = await runCli(['run', '-c', sparse], { timeoutMs: 15_000 });
    expect(c.code, showResult(c)).toBe(254);
    expect(c.stderr).toContain('cannot read the configuration file: it is larger than');
    expect(Date.now() - started).toBeLessThan(40_000);
  });

  it('run -c FIFO errors at once (exit 254)', async () => {
    const fifo = join(await tempDir('sk-fifo-cfg-'), 'staplekeeper.yaml');
    execFileSync('mkfifo', [fifo]);
    const r = await runCli(['run', '-c', fifo], { timeoutMs: 15_000 });
    expect(r.timedOut, showResult(r)).toBe(false);
    expect(r.code, showResult(r)).toBe(254);
    expect(r.stderr).toContain('cannot read the configuration file: it is a FIFO (named pipe), not a regular file');
  });
});

describe("don't create what the operator mistyped", () => {
  it('a missing ocsp_folder stops run (253) naming it, and nothing is created', async () => {
    const good = await responder(better);
    const s = await setup('mistyped', good.url);
    const typo = join(s.folder, 'stapels');
    const cfg = await writeConfig(join(s.folder, 'typo.yaml'), {
      ocsp_folder: typo,
      domains: { leaf: { cert: certPath, chain: chainPath, ocsp: 'leaf.der', ocsp_responder_uri: good.url } },
    });
    const r = await runCli(['run', '-c', cfg]);
    expect(r.code, showResult(r)).toBe(253);
    expect(r.stderr).toContain(
      `ocsp_folder: the staple folder ${typo} does not exist (create it, or correct the path)`,
    );
    expect(existsSync(typo)).toBe(false);
    expect(good.requests.length).toBe(0);
  });

  it('fetch --out into a missing folder is an error naming it; a scan subfolder below ocsp_folder is created', async () => {
    const good = await responder(better);
    const missing = join(dir, 'no-such-folder');
    const r = await runCli([
      'fetch',
      '--cert',
      certPath,
      '--chain',
      chainPath,
      '--url',
      good.url,
      '--out',
      join(missing, 'leaf.der'),
    ]);
    expect(r.code, showResult(r)).toBe(1);
    expect(r.stderr).toContain(`the folder ${missing} does not exist`);
    expect(existsSync(missing)).toBe(false);

    const root = join(dir, 'scan');
    await mkdir(join(root, 'certs', 'sub'), { recursive: true });
    await mkdir(join(root, 'ocsp'));
    await writeFile(join(root, 'certs', 'sub', 'x.pem'), ctx.leaf.pem);
    await writeFile(join(root, 'certs', 'sub', 'x-chain.pem'), ctx.issuer.pem);
    await writeFile(join(root, 'certs', 'sub', 'x-rootchain.pem'), ctx.issuer.pem);
    const cfg = await writeConfig(join(root, 'c.yaml'), {
      ocsp_folder: join(root, 'ocsp'),
      scan_keys: [{ folder: join(root, 'certs') }],
      responders: { 'sub/x': good.url },
    });
    const s = await runCli(['run', '-c', cfg]);
    expect(s.code, showResult(s)).toBe(1);
    expect((await stat(join(root, 'ocsp', 'sub'))).isDirectory()).toBe(true);
  });
});

describe('never write over an input', () => {
  it('a staple path that is an issuer file in ca_dirs is refused; the issuer survives', async () => {
    const good = await responder(better);
    const folder = await tempDir('sk-cadir-');
    const caDir = join(folder, 'ca');
    await mkdir(caDir);
    const issuerFile = join(caDir, 'issuer.pem');
    await writeFile(issuerFile, ctx.issuer.pem);
    await writeFile(join(folder, 'leaf.pem'), ctx.leaf.pem);
    const cfg = await writeConfig(join(folder, 'c.yaml'), {
      ocsp_folder: folder,
      ca_dirs: [caDir],
      domains: { leaf: { cert: join(folder, 'leaf.pem'), ocsp: issuerFile, ocsp_responder_uri: good.url } },
    });
    const r = await runCli(['run', '-c', cfg, '--json']);
    expect(r.code, showResult(r)).toBe(255);
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.error?.code).toBe('STAPLE_PATH_REFUSED');
    expect(o?.error?.message).toContain('holds a certificate; a staple never replaces an input file');
    expect(await readFile(issuerFile, 'utf8')).toBe(ctx.issuer.pem);
  });

  it('fetch --out naming the --issuer file is refused', async () => {
    const good = await responder(better);
    const folder = await tempDir('sk-out-issuer-');
    const issuer = join(folder, 'issuer.pem');
    await writeFile(issuer, ctx.issuer.pem);
    await writeFile(join(folder, 'leaf.pem'), ctx.leaf.pem);
    const r = await runCli([
      'fetch',
      '--cert',
      join(folder, 'leaf.pem'),
      '--issuer',
      issuer,
      '--url',
      good.url,
      '--out',
      issuer,
      '--overwrite',
    ]);
    expect(r.code, showResult(r)).toBe(1);
    expect(r.stderr).toContain('error STAPLE_PATH_REFUSED');
    expect(await readFile(issuer, 'utf8')).toBe(ctx.issuer.pem);
  });

  it('a staple path that is the chain file through a symlinked folder is a configuration error (253)', async () => {
    const folder = await tempDir('sk-linked-');
    await mkdir(join(folder, 'real'));
    await writeFile(join(folder, 'real', 'chain.pem'), ctx.issuer.pem);
    await writeFile(join(folder, 'real', 'leaf.pem'), ctx.leaf.pem);
    await symlink(join(folder, 'real'), join(folder, 'linked'));
    const cfg = await writeConfig(join(folder, 'c.yaml'), {
      ocsp_folder: join(folder, 'linked'),
      domains: {
        leaf: { cert: join(folder, 'real', 'leaf.pem'), chain: join(folder, 'real', 'chain.pem'), ocsp: 'chain.pem' },
      },
    });
    const r = await runCli(['run', '-c', cfg]);
    expect(r.code, showResult(r)).toBe(253);
    expect(r.stderr).toContain('is a certificate file of domain leaf');
    expect(await readFile(join(folder, 'real', 'chain.pem'), 'utf8')).toBe(ctx.issuer.pem);
  });
});
