/**
 * `staplekeeper check`: each certificate's judgement at a fixed clock through
 * the engine (checkStaples over a real configuration and real files), the
 * status line with its perfdata, and the CLI through cli() with in-memory
 * streams (plugin exit codes 0–3, --json, usage errors).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../../src/cli/main.js';
import { loadConfig } from '../../src/config/load.js';
import { checkStaples, formatSpan, type CheckReport } from '../../src/status/check.js';
import { buildTestPki, goodResponseFor, mintCert, OID, type TestPki } from '../helpers/mint.js';
import { memoryIo as sharedMemoryIo, type MemoryIo } from '../helpers/memory-io.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

const H = 3_600_000;
const D = 24 * H;
const T0 = new Date('2026-11-20T12:00:00Z');
const at = (ms: number): Date => new Date(T0.getTime() + ms);

afterAll(cleanUp);

/** A folder with one certificate (`<id>.pem`, leaf + issuer) per entry and the staples given; returns the loaded config. */
async function setup(
  pki: TestPki,
  entries: Array<{
    id: string;
    leaf?: (typeof pki.leaves)[number];
    staple?: Buffer;
    disabled?: boolean;
    bundle?: string;
  }>,
  extraYaml = '',
): Promise<{ dir: string; configFile: string }> {
  const dir = await tempDir('sk-check-');
  const lines = ['ocsp_folder: staples', extraYaml, 'domains:'];
  for (const e of entries) {
    const leaf = e.leaf ?? pki.leaves[0]!;
    await writeFile(join(dir, `${e.id}.pem`), e.bundle ?? leaf.pem + pki.root.pem);
    lines.push(`  ${e.id}:`, `    cert: ${e.id}.pem`, `    ocsp: ${e.id}.der`);
    if (e.disabled) lines.push('    ocsp_responder_uri: disabled');
  }
  const { mkdir } = await import('node:fs/promises');
  await mkdir(join(dir, 'staples'), { recursive: true });
  for (const e of entries) if (e.staple) await writeFile(join(dir, 'staples', `${e.id}.der`), e.staple);
  const configFile = join(dir, 'staplekeeper.yaml');
  await writeFile(configFile, `${lines.filter((l) => l !== '').join('\n')}\n`);
  return { dir, configFile };
}

async function check(
  configFile: string,
  dir: string,
  now: Date,
  opts: { warnMs?: number; critMs?: number } = {},
): Promise<CheckReport> {
  const config = await loadConfig(configFile, { cwd: dir });
  return checkStaples(config, { now, ...opts });
}

let pki: TestPki;
beforeAll(() => {
  pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: T0 });
});

describe('formatSpan', () => {
  it('shows the two most significant units without zero parts', () => {
    expect(formatSpan(20 * H)).toBe('20h');
    expect(formatSpan(2 * D + 3 * H + 5 * 60_000)).toBe('2d 3h');
    expect(formatSpan(2 * D + 5 * 60_000)).toBe('2d');
    expect(formatSpan(45 * 60_000 + 10_000)).toBe('45m 10s');
    expect(formatSpan(0)).toBe('0s');
    expect(formatSpan(-5)).toBe('0s');
  });
});

describe('checkStaples at a fixed clock', () => {
  // goodResponseFor: thisUpdate = producedAt = T0 - 1h, nextUpdate = T0 + 7d;
  // default refresh point = producedAt + (nextUpdate - producedAt) / 2 = T0 + 3.5d - 30min.
  let good: Buffer;
  beforeAll(() => {
    good = goodResponseFor(pki, pki.leaves[0]!, T0);
  });

  it('is OK for a fresh staple, with perfdata in the plugin range syntax', async () => {
    const { dir, configFile } = await setup(pki, [{ id: 'a', staple: good }]);
    const r = await check(configFile, dir, T0);
    expect(r.level).toBe('ok');
    expect(r.exitCode).toBe(0);
    expect(r.certs[0]).toMatchObject({
      id: 'a',
      level: 'ok',
      state: 'good',
      status: 'good',
      expiresInSeconds: 7 * 86400,
    });
    expect(r.certs[0]?.refreshAt).toBe(new Date(T0.getTime() + 3.5 * D - 0.5 * H).toISOString());
    expect(r.line).toBe(
      'STAPLEKEEPER OK - 1 staple good, earliest expiry in 7d (a) | expiry_min=604800s;152100:;76050:;0 certs=1 critical=0 warning=0 unknown=0',
    );
    // relative thresholds of a 7d 1h window: a quarter (42h 15m) and an eighth (21h 7m 30s)
    expect(r).toMatchObject({ thresholds: 'relative', warnSeconds: 152100, critSeconds: 76050 });
  });

  it('warns when past the refresh point by more than a grace but still valid (renewal is failing)', async () => {
    const { dir, configFile } = await setup(pki, [{ id: 'a', staple: good }]);
    // 5h 18m past the refresh point: within the grace (an eighth of the window, 21h 7m)
    expect((await check(configFile, dir, at(3.7 * D))).level).toBe('ok');
    const r = await check(configFile, dir, at(4.5 * D));
    expect(r.level).toBe('warning');
    expect(r.exitCode).toBe(1);
    expect(r.certs[0]).toMatchObject({ level: 'warning', state: 'due' });
    expect(r.line).toMatch(
      /^STAPLEKEEPER WARNING - 1 of 1 staple warning: a past its refresh point 1d ago \(renewal failing\?\), expires in 2d 12h \| expiry_min=216000s;152100:;76050:;0 certs=1 critical=0 warning=1 unknown=0$/,
    );
  });

  it('uses the configured ocspbot policy for the refresh point', async () => {
    // minimum_validity 5d: refresh at nextUpdate - 5d = T0 + 2d
    const { dir, configFile } = await setup(pki, [{ id: 'a', staple: good }], 'minimum_validity: 5d');
    expect((await check(configFile, dir, at(1.9 * D))).level).toBe('ok');
    expect((await check(configFile, dir, at(2.1 * D))).level).toBe('ok'); // within the grace
    const r = await check(configFile, dir, at(2 * D + 22 * H));
    expect(r.certs[0]).toMatchObject({ level: 'warning', state: 'due', refreshAt: at(2 * D).toISOString() });
  });

  it('is OK for a fresh 3-day staple, warns in its last quarter and is critical in its last eighth', async () => {
    const three = goodResponseFor(pki, pki.leaves[0]!, T0, { single: { nextUpdate: at(3 * D - H) } });
    const { dir, configFile } = await setup(pki, [{ id: 'a', staple: three }]);
    // window: T0 - 1h to T0 + 3d - 1h = 3 days; warn below 18h, critical below 9h
    const fresh = await check(configFile, dir, T0);
    expect(fresh.level).toBe('ok');
    expect(fresh).toMatchObject({ warnSeconds: 18 * 3600, critSeconds: 9 * 3600 });
    // past the refresh point (halfway) by less than the grace of 9h: still OK
    expect((await check(configFile, dir, at(1.5 * D + 8 * H))).level).toBe('ok');
    expect((await check(configFile, dir, at(1.5 * D + 10 * H))).certs[0]).toMatchObject({ state: 'due' });
    expect((await check(configFile, dir, at(3 * D - 18 * H))).certs[0]).toMatchObject({
      level: 'warning',
      state: 'expiring',
      reason: 'expires in 17h',
    });
    expect((await check(configFile, dir, at(3 * D - 9 * H))).certs[0]).toMatchObject({
      level: 'critical',
      state: 'expiring',
    });
    // the old absolute default (--warn 3d) would have warned at once
    expect((await check(configFile, dir, T0, { warnMs: 3 * D, critMs: D })).level).toBe('warning');
  });

  it('scales to a 10-minute responder: OK while fresh, critical only in its last 75 s', async () => {
    const short = goodResponseFor(pki, pki.leaves[0]!, T0, {
      single: { thisUpdate: T0, nextUpdate: at(10 * 60_000) },
      producedAt: T0,
    });
    const { dir, configFile } = await setup(pki, [{ id: 'a', staple: short }]);
    expect((await check(configFile, dir, at(60_000))).level).toBe('ok');
    expect((await check(configFile, dir, at(8 * 60_000))).level).toBe('warning');
    expect((await check(configFile, dir, at(9 * 60_000))).level).toBe('critical');
  });

  it('warns within --warn and is critical within --crit (absolute thresholds)', async () => {
    const { dir, configFile } = await setup(pki, [{ id: 'a', staple: good }]);
    const abs = { warnMs: 3 * D, critMs: D };
    const w = await check(configFile, dir, at(5 * D), abs);
    expect(w.thresholds).toBe('absolute');
    expect(w.certs[0]).toMatchObject({ level: 'warning', state: 'expiring', reason: 'expires in 2d' });
    const c = await check(configFile, dir, at(6.5 * D), abs);
    expect(c.level).toBe('critical');
    expect(c.exitCode).toBe(2);
    expect(c.line).toBe(
      'STAPLEKEEPER CRITICAL - 1 of 1 staple critical: a expires in 12h | expiry_min=43200s;259200:;86400:;0 certs=1 critical=1 warning=0 unknown=0',
    );
    // custom thresholds
    const custom = await check(configFile, dir, at(5 * D), { warnMs: 6 * D, critMs: 3 * D });
    expect(custom.certs[0]).toMatchObject({ level: 'critical', state: 'expiring' });
    expect(custom.line).toContain(';518400:;259200:;0');
  });

  it('is critical for a missing, damaged, foreign or expired staple', async () => {
    const foreign = goodResponseFor(pki, pki.leaves[1]!, T0);
    const { dir, configFile } = await setup(pki, [
      { id: 'missing' },
      { id: 'damaged', staple: Buffer.from('not an OCSP response') },
      { id: 'foreign', staple: foreign },
      { id: 'ok', staple: good },
    ]);
    const r = await check(configFile, dir, T0);
    const by = new Map(r.certs.map((c) => [c.id, c]));
    expect(by.get('missing')).toMatchObject({
      level: 'critical',
      state: 'missing',
      reason: 'no staple',
      expiresInSeconds: 0,
    });
    expect(by.get('damaged')).toMatchObject({ level: 'critical', state: 'invalid', code: 'OCSP_MALFORMED' });
    expect(by.get('foreign')).toMatchObject({ level: 'critical', state: 'invalid', code: 'OCSP_CERTID_MISMATCH' });
    expect(by.get('ok')?.level).toBe('ok');
    expect(r.counts).toEqual({ certs: 4, ok: 1, warning: 0, critical: 3, unknown: 0, noOcsp: 0 });
    expect(r.expiryMinSeconds).toBe(0);
    expect(r.line).toMatch(
      /^STAPLEKEEPER CRITICAL - 3 of 4 staples critical: missing no staple, damaged invalid staple: OCSP_MALFORMED: .*, foreign invalid staple: OCSP_CERTID_MISMATCH: .* \| expiry_min=0s;;;0 certs=4 critical=3 warning=0 unknown=0$/,
    );

    const expired = await check(configFile, dir, at(8 * D));
    expect(new Map(expired.certs.map((c) => [c.id, c])).get('ok')).toMatchObject({
      level: 'critical',
      state: 'expired',
      code: 'OCSP_STALE',
    });
  });

  it('is critical for revoked and unknown statuses', async () => {
    const revoked = goodResponseFor(pki, pki.leaves[0]!, T0, {
      single: { status: 'revoked', revocationTime: at(-2 * D), revocationReason: 1 },
    });
    const unknown = goodResponseFor(pki, pki.leaves[1]!, T0, { single: { status: 'unknown' } });
    const { dir, configFile } = await setup(pki, [
      { id: 'r', staple: revoked },
      { id: 'u', leaf: pki.leaves[1]!, staple: unknown },
    ]);
    const r = await check(configFile, dir, T0);
    expect(r.certs[0]).toMatchObject({
      level: 'critical',
      state: 'revoked',
      revocationReason: 'keyCompromise',
      revocationTime: at(-2 * D).toISOString(),
      reason: `REVOKED at ${at(-2 * D).toISOString()} (keyCompromise)`,
    });
    expect(r.certs[1]).toMatchObject({ level: 'critical', state: 'unknown-status' });
  });

  it('is critical when the certificate itself expired', async () => {
    const old = mintCert({
      subjectCN: 'old.test',
      issuer: pki.root,
      notBefore: at(-100 * D),
      notAfter: at(-D),
      ocspUrls: ['http://127.0.0.1:9/ocsp'],
    });
    const { dir, configFile } = await setup(pki, [{ id: 'old', leaf: old, staple: good }]);
    const r = await check(configFile, dir, T0);
    expect(r.certs[0]).toMatchObject({ level: 'critical', state: 'cert-expired' });
  });

  it('ignores disabled targets', async () => {
    const { dir, configFile } = await setup(pki, [
      { id: 'off', disabled: true },
      { id: 'a', staple: good },
    ]);
    const r = await check(configFile, dir, T0);
    expect(r.certs.map((c) => c.id)).toEqual(['a']);
    expect(r.level).toBe('ok');
    const none = await setup(pki, [{ id: 'off', disabled: true }]);
    const empty = await check(none.configFile, none.dir, T0);
    expect(empty.level).toBe('ok');
    expect(empty.line).toBe(
      'STAPLEKEEPER OK - no staples to check (every certificate is disabled or none is configured) | certs=0 critical=0 warning=0 unknown=0',
    );
  });

  it('never downloads a caIssuers issuer: a present staple is UNKNOWN, a missing one still CRITICAL', async () => {
    const aiaOnly = mintCert({
      subjectCN: 'aia.test',
      issuer: pki.root,
      notBefore: at(-D),
      notAfter: at(90 * D),
      ocspUrls: ['http://127.0.0.1:9/ocsp'],
      caIssuersUrls: ['http://127.0.0.1:9/ca.der'],
      eku: [OID.kpServerAuth],
    });
    const staple = goodResponseFor(pki, aiaOnly, T0);
    const { dir, configFile } = await setup(pki, [
      { id: 'judged', staple: good },
      { id: 'aia', leaf: aiaOnly, bundle: aiaOnly.pem, staple },
      { id: 'aia-missing', leaf: aiaOnly, bundle: aiaOnly.pem },
    ]);
    const r = await check(configFile, dir, T0);
    const by = new Map(r.certs.map((c) => [c.id, c]));
    expect(by.get('aia')).toMatchObject({ level: 'unknown', state: 'unjudgeable', code: 'NO_ISSUER' });
    expect(by.get('aia')?.reason).toContain('check never downloads caIssuers URLs');
    expect(by.get('aia')?.expiresInSeconds).toBeUndefined();
    expect(by.get('aia-missing')).toMatchObject({ level: 'critical', state: 'missing' });
    expect(r.level).toBe('critical');
    expect(r.line).toContain(
      '1 of 3 staples critical: aia-missing no staple; 1 not checkable: aia cannot judge the staple',
    );

    // without the critical one, the worst state is UNKNOWN (OK < UNKNOWN < WARNING < CRITICAL)
    const only = await setup(pki, [
      { id: 'judged', staple: good },
      { id: 'aia', leaf: aiaOnly, bundle: aiaOnly.pem, staple },
    ]);
    const u = await check(only.configFile, only.dir, T0);
    expect(u.level).toBe('unknown');
    expect(u.exitCode).toBe(3);
    expect(u.line).toMatch(/^STAPLEKEEPER UNKNOWN - 1 of 2 staples not checkable: aia cannot judge/);
    expect(u.line).toContain('expiry_min=604800s');
    // ...and WARNING outranks UNKNOWN
    const w = await check(only.configFile, only.dir, at(5.5 * D));
    expect(w.level).toBe('warning');
  });

  it('lists at most five certificates in the status line', async () => {
    const entries = Array.from({ length: 7 }, (_, i) => ({ id: `m${i}` }));
    const { dir, configFile } = await setup(pki, entries);
    const r = await check(configFile, dir, T0);
    expect(r.line).toContain(
      '7 of 7 staples critical: m0 no staple, m1 no staple, m2 no staple, m3 no staple, m4 no staple, and 2 more |',
    );
  });
});

// ---------------------------------------------------------------- CLI

/** The CLI's streams in memory, with an empty environment. */
const memoryIo = (cwd: string): MemoryIo => sharedMemoryIo(cwd, {});

describe('staplekeeper check (cli)', () => {
  // The CLI uses the real clock: a PKI and staples around the real time.
  let live: TestPki;
  beforeAll(() => {
    live = buildTestPki({ keyType: 'ec-p256', delegated: false, now: new Date() });
  });

  it('exits 0 with one OK line, and -v adds one line per certificate', async () => {
    const { dir } = await setup(live, [{ id: 'site', staple: goodResponseFor(live, live.leaves[0]!) }]);
    const io = memoryIo(dir);
    const rc = await cli(['check'], io);
    expect(io.err()).toBe('');
    expect(rc).toBe(0);
    expect(io.out()).toMatch(
      /^STAPLEKEEPER OK - 1 staple good, earliest expiry in 6d 23h \(site\) \| expiry_min=\d+s;15\d{4}:;7\d{4}:;0 certs=1 critical=0 warning=0 unknown=0\n$/,
    );
    const v = memoryIo(dir);
    expect(await cli(['check', '-v', '-c', 'staplekeeper.yaml'], v)).toBe(0);
    expect(v.out().split('\n')[1]).toMatch(/^\[site\] OK: expires in 6d 23h \(.*staples\/site\.der\)$/);
  });

  it('exits 1 within --warn and 2 within --crit; the thresholds are ocspbot durations', async () => {
    const soon = goodResponseFor(live, live.leaves[0]!, live.now, {
      single: { nextUpdate: new Date(Date.now() + 2 * D) },
    });
    const { dir } = await setup(live, [{ id: 'site', staple: soon }]);
    // fresh for its 2-day window: OK with the default (relative) thresholds, WARNING with --warn 3d
    expect(await cli(['check'], memoryIo(dir))).toBe(0);
    expect(await cli(['check', '--warn', '3d'], memoryIo(dir))).toBe(1);
    const crit = memoryIo(dir);
    expect(await cli(['check', '--crit', '2 days 1 hour', '--warn', '1w'], crit)).toBe(2);
    expect(crit.out()).toMatch(
      /^STAPLEKEEPER CRITICAL - 1 of 1 staple critical: site expires in 1d 23h \| expiry_min=\d+s;604800:;176400:;0 /,
    );
    expect(await cli(['check', '--warn', '1d', '--crit', '12h'], memoryIo(dir))).toBe(0);
  });

  it('prints a JSON document with per-certificate state', async () => {
    const { dir } = await setup(live, [{ id: 'site', staple: goodResponseFor(live, live.leaves[0]!) }, { id: 'gone' }]);
    const io = memoryIo(dir);
    expect(await cli(['check', '--json'], io)).toBe(2);
    const doc = JSON.parse(io.out()) as { summary: string; certificates: Array<Record<string, unknown>> };
    expect(doc).toMatchObject({
      status: 'CRITICAL',
      exitCode: 2,
      thresholds: 'relative',
      counts: { certs: 2, ok: 1, warning: 0, critical: 1, unknown: 0 },
      expiryMinSeconds: 0,
    });
    expect(doc.summary).toMatch(/^STAPLEKEEPER CRITICAL - 1 of 2 staples critical: gone no staple \|/);
    const site = doc.certificates.find((c) => c.id === 'site');
    expect(site).toMatchObject({ level: 'ok', state: 'good', status: 'good', certPath: join(dir, 'site.pem') });
    expect(typeof site?.nextUpdate).toBe('string');
    expect(typeof site?.refreshAt).toBe('string');
  });

  it('exits 3 (UNKNOWN) for an unreadable configuration and for usage errors, always with a status line', async () => {
    const dir = await tempDir('sk-check-');
    const none = memoryIo(dir);
    expect(await cli(['check'], none)).toBe(3);
    expect(none.out()).toMatch(/^STAPLEKEEPER UNKNOWN - configuration: CONFIG_INVALID: no configuration file/);

    await writeFile(join(dir, 'bad.yaml'), 'domains: [\n');
    const bad = memoryIo(dir);
    expect(await cli(['check', '-c', 'bad.yaml'], bad)).toBe(3);
    expect(bad.out()).toMatch(/^STAPLEKEEPER UNKNOWN - configuration: CONFIG_YAML: /);
    expect(bad.out().trim().split('\n')).toHaveLength(1);

    const json = memoryIo(dir);
    expect(await cli(['check', '-c', 'missing.yaml', '--json'], json)).toBe(3);
    expect(JSON.parse(json.out())).toMatchObject({ status: 'UNKNOWN', exitCode: 3 });

    const dur = memoryIo(dir);
    expect(await cli(['check', '--warn', '3 fortnights'], dur)).toBe(3);
    expect(dur.out()).toMatch(
      /^STAPLEKEEPER UNKNOWN - --warn: invalid duration "3 fortnights": unknown unit "fortnights"/,
    );

    const order = memoryIo(dir);
    expect(await cli(['check', '--warn', '1d', '--crit', '2d'], order)).toBe(3);
    expect(order.out()).toContain('--crit (2d) is longer than --warn (1d)');

    const opt = memoryIo(dir);
    expect(await cli(['check', '--bogus'], opt)).toBe(3);
    expect(opt.out()).toMatch(/^STAPLEKEEPER UNKNOWN - invalid arguments: unknown option '--bogus'/);

    const help = memoryIo(dir);
    expect(await cli(['check', '--help'], help)).toBe(0);
    expect(help.out()).toContain('--crit <duration>');
    expect(help.out()).toContain('default: relative');
  });
});
