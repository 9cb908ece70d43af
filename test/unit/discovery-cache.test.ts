/**
 * The ocsprenewer drop-in's discovery cache (discovery/ocsprenewer-cache.ts) and
 * its folder listing: a discovery that uses them finds exactly what one
 * without them finds — the same targets, problems (word for word) and skipped
 * files — with no cache file, an empty one, a filled one, and one that is
 * corrupt, truncated, of other code, or describes files since replaced.
 *
 * "A new process" is simulated with resetDiscoveryCaches().
 *
 * And the hashes discovery hands to the run that follows it (the drop-in's
 * `RunOptions.certHashes`, so that the engine does not read and hash every
 * certificate file a second time) never change a decision: a run given them
 * decides exactly as a run that reads the files itself, cold and warm; it
 * decides as of discovery's reading (a file replaced in between is read when
 * its bytes are needed, and what is recorded is keyed by what was read); and
 * hashes taken before a wait for another process's lock are not used.
 */
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DISCOVERY_CACHE_FILE,
  MIN_FILES_FOR_NEW_CACHE,
  discoveryCacheFor,
  resetDiscoveryCaches,
} from '../../src/discovery/ocsprenewer-cache.js';
import {
  discoverRenewerTargets,
  stapleNameFor,
  type RenewerDiscovery,
  type RenewerSettings,
} from '../../src/discovery/ocsprenewer.js';
import { renewerConfig } from '../../src/discovery/ocsprenewer.js';
import { runOnce, type RunOptions, type RunReport } from '../../src/batch/run.js';
import { acquireLock } from '../../src/batch/lock.js';
import { VerdictCache } from '../../src/pipeline/verdict-cache.js';
import { createFakeTransport } from '../../src/testing/index.js';
import { buildTestPki, goodResponseFor, mintCert, type MintedCert, type TestPki } from '../helpers/mint.js';
import { tempDir } from '../helpers/temp.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
beforeEach(() => resetDiscoveryCaches());

let pki: TestPki;
let root: MintedCert;
const leaf = (cn: string, withUrl = true): MintedCert =>
  mintCert({
    subjectCN: cn,
    issuer: root,
    notBefore: new Date(pki.now.getTime() - 86_400_000),
    notAfter: new Date(pki.now.getTime() + 90 * 86_400_000),
    ...(withUrl ? { ocspUrls: ['http://127.0.0.1:9/ocsp'] } : {}),
  });

beforeAll(() => {
  pki = buildTestPki({ keyType: 'ec-p256', delegated: true });
  root = pki.root;
});

/** A folder with every case discovery distinguishes. */
async function fixture(): Promise<{ dir: string; crt: string; out: string; good: MintedCert[] }> {
  const dir = await tempDir('sk-discovery-');
  dirs.push(dir);
  const crt = join(dir, 'crt');
  const out = join(dir, 'out');
  await mkdir(crt);
  await mkdir(out);
  const good: MintedCert[] = [];
  for (let i = 0; i < 10; i++) {
    const c = leaf(`good${i}.example`);
    good.push(c);
    await writeFile(join(crt, `good${i}.crt`), c.pem + root.pem); // a bundle: leaf, then issuer
  }
  await writeFile(join(crt, 'separate.crt'), good[0]!.pem.replace(/^/, '')); // the same leaf as good0, other stem
  await writeFile(join(crt, 'separate.issuer.crt'), root.pem);
  await writeFile(join(crt, 'nourl.crt'), leaf('nourl.example', false).pem);
  await writeFile(join(crt, 'garbage.crt'), 'not a certificate\n');
  await writeFile(join(crt, 'empty.crt'), '');
  const same = leaf('same.example');
  await writeFile(join(crt, 'same.crt'), same.pem);
  await writeFile(join(crt, 'same.pem'), same.pem + root.pem); // one certificate, one staple name: renewed once
  await writeFile(join(crt, 'clash.crt'), leaf('clash-a.example').pem);
  await writeFile(join(crt, 'clash.pem'), leaf('clash-b.example').pem); // two certificates, one staple name
  await writeFile(join(crt, 'flagged.crt'), leaf('flagged.example').pem);
  await writeFile(join(crt, 'flagged.crt.noocsp'), '');
  await mkdir(join(crt, 'folder.crt'));
  await symlink(join(crt, 'good1.crt'), join(crt, 'link.crt'));
  await symlink(join(crt, 'missing.crt'), join(crt, 'dangling.crt'));
  await symlink(join(crt, 'folder.crt'), join(crt, 'linkdir.crt'));
  return { dir, crt, out, good };
}

function settings(
  f: { crt: string; out: string },
  cache?: RenewerSettings['discoveryCache'],
  more: Partial<RenewerSettings> = {},
): RenewerSettings {
  return {
    paths: [f.crt, f.crt], // the folder twice: every certificate reached twice
    dirs: true,
    outDir: f.out,
    extension: '.ocsp',
    certExtensions: ['.crt', '.pem'],
    timerT1: 0.5,
    allowNonOcspInDir: false,
    ...(cache ? { discoveryCache: cache } : {}),
    ...more,
  };
}

async function discover(s: RenewerSettings): Promise<RenewerDiscovery> {
  resetDiscoveryCaches(); // each discovery is a new process
  return discoverRenewerTargets(s);
}

describe('the ocsprenewer discovery cache never changes what discovery finds', () => {
  it('no cache, an empty cache, a filled cache, read-only: identical results; the fixture covers every case', async () => {
    const f = await fixture();
    const plain = await discover(settings(f));
    // the fixture is what it claims to be
    expect(plain.targets.map((t) => t.id).sort()).toEqual(
      [...Array.from({ length: 10 }, (_, i) => `good${i}`), 'clash', 'link', 'same', 'separate'].sort(),
    );
    expect(plain.targets.find((t) => t.id === 'separate')?.chainPath).toBe(join(f.crt, 'separate.issuer.crt'));
    // (each problem twice: the folder is given twice, and ocsprenewer reports a bad file each time)
    expect(plain.problems.map((p) => p.code).sort()).toEqual(
      ['BAD_ARGUMENTS', 'NOT_A_CERTIFICATE', 'NOT_A_CERTIFICATE', 'NO_OCSP_URL'].flatMap((c) => [c, c]).sort(),
    );
    expect(plain.skipped.some((s) => s.reason.includes('noocsp'))).toBe(true);
    expect(plain.skipped.some((s) => s.reason.includes('the same certificate as'))).toBe(true);

    const empty = await discover(settings(f, 'write'));
    expect(empty).toEqual(plain);
    const cache = discoveryCacheFor(f.out);
    // written, and only for files that parsed and name a responder
    const text = await readFile(join(f.out, DISCOVERY_CACHE_FILE), 'utf8');
    const lines = text.trim().split('\n').slice(1);
    // ten good bundles, separate (good0's leaf alone), same.crt, same.pem, clash.crt, clash.pem; link.crt is good1's bytes
    expect(lines.length).toBe(15);
    expect(cache.size).toBe(0 + lines.length);

    const filled = await discover(settings(f, 'write'));
    expect(filled).toEqual(plain);
    const readOnly = await discover(settings(f, 'read'));
    expect(readOnly).toEqual(plain);
    // -allow-nonocsp-in-dir: the same with and without
    const allow = await discover(settings(f, undefined, { allowNonOcspInDir: true }));
    expect(await discover(settings(f, 'write', { allowNonOcspInDir: true }))).toEqual(allow);
  });

  it('names every file as path.join does, from folders given unnormalised and odd file names', async () => {
    const dir = await tempDir('sk-discovery-names-');
    dirs.push(dir);
    const crt = join(dir, 'crt');
    await mkdir(crt);
    await mkdir(join(dir, 'out'));
    const names = ['a b', '.hidden', 'x.', 'back\\slash', '..dots', 'é'];
    for (const n of names) await writeFile(join(crt, `${n}.crt`), leaf(`${names.indexOf(n)}.example`).pem);
    await writeFile(join(crt, 'a b.issuer.crt'), root.pem);
    await writeFile(join(crt, '..dots.issuer.crt'), root.pem);
    for (const [arg, outDir] of [
      [`${crt}/./`, `${dir}/out/../out/.`],
      [`${crt}//`, `${dir}//out/`],
    ] as const) {
      const s = settings({ crt: arg, out: outDir }, 'write', { paths: [arg] });
      const found = await discover(s);
      expect(found.problems).toEqual([]);
      expect(found.targets.map((t) => t.certPath).sort()).toEqual(names.map((n) => join(arg, `${n}.crt`)).sort());
      for (const t of found.targets) {
        expect(t.staplePath).toBe(stapleNameFor(t.certPath, s));
        expect(t.staplePath).toBe(join(outDir, `${basename(t.certPath).slice(0, -4)}.ocsp`));
        const issuer = ['a b.crt', '..dots.crt'].includes(basename(t.certPath))
          ? join(dirname(t.certPath), `${basename(t.certPath).slice(0, -4)}.issuer.crt`)
          : undefined;
        expect(t.chainPath).toBe(issuer);
      }
      expect([...found.certHashes.keys()].sort()).toEqual(found.targets.map((t) => t.certPath).sort());
    }
  });

  it('a file replaced in place (same name, same size) is parsed again: its new problem appears', async () => {
    const f = await fixture();
    await discover(settings(f, 'write'));
    // good3.crt now holds a certificate without a responder, padded to the same size
    const before = await readFile(join(f.crt, 'good3.crt'));
    let replacement = Buffer.from(leaf('good3.example', false).pem + root.pem);
    replacement = Buffer.concat([replacement, Buffer.alloc(Math.max(0, before.length - replacement.length), 0x0a)]);
    await writeFile(join(f.crt, 'good3.crt'), replacement);
    const plain = await discover(settings(f));
    expect(plain.problems.some((p) => p.path === join(f.crt, 'good3.crt') && p.code === 'NO_OCSP_URL')).toBe(true);
    expect(await discover(settings(f, 'write'))).toEqual(plain);
    // and a clash that appears by replacing one side is found with the cache too
    await writeFile(join(f.crt, 'same.crt'), leaf('other.example').pem);
    const plain2 = await discover(settings(f));
    expect(plain2.problems.some((p) => p.path === join(f.crt, 'same.pem') || p.path === join(f.crt, 'same.crt'))).toBe(
      true,
    );
    expect(await discover(settings(f, 'write'))).toEqual(plain2);
  });

  it('a corrupt, truncated, edited or foreign cache file is ignored as a whole', async () => {
    const f = await fixture();
    const plain = await discover(settings(f));
    await discover(settings(f, 'write'));
    const file = join(f.out, DISCOVERY_CACHE_FILE);
    const good = await readFile(file);
    const nl = good.indexOf(0x0a);
    const header = JSON.parse(good.subarray(0, nl).toString()) as Record<string, unknown>;
    const body = good.subarray(nl + 1);
    const variants: Buffer[] = [
      good.subarray(0, good.length - 20), // truncated
      Buffer.concat([good.subarray(0, nl + 1), Buffer.from(body.toString().replace(/^./, 'Z'))]), // edited body
      Buffer.from(`${JSON.stringify({ ...header, rules: 'other code' })}\n${body}`), // other code
      Buffer.from(`${JSON.stringify({ ...header, version: 99 })}\n${body}`),
      Buffer.from('{not json\n'),
      Buffer.alloc(0),
    ];
    for (const v of variants) {
      await writeFile(file, v);
      expect(await discover(settings(f, 'read'))).toEqual(plain);
      expect(await discover(settings(f, 'write'))).toEqual(plain);
    }
    // a well-formed file with malformed lines: those lines alone are ignored
    const mangled = Buffer.from(`${body}garbage line\nx\ty\tz\n`);
    const { createHash } = await import('node:crypto');
    await writeFile(
      file,
      `${JSON.stringify({ ...header, sha256: createHash('sha256').update(mangled).digest('base64url') })}\n${mangled}`,
    );
    expect(await discover(settings(f, 'write'))).toEqual(plain);
  });

  it('is written only when asked, and not for fewer than the minimum of files', async () => {
    const f = await fixture();
    await discover(settings(f, 'read'));
    await expect(readFile(join(f.out, DISCOVERY_CACHE_FILE))).rejects.toThrow();
    await discover({ ...settings(f, 'write'), dirs: false, paths: [join(f.crt, 'good0.crt')] });
    expect(MIN_FILES_FOR_NEW_CACHE).toBeGreaterThan(1);
    await expect(readFile(join(f.out, DISCOVERY_CACHE_FILE))).rejects.toThrow();
    await discover(settings(f, 'write'));
    expect((await readFile(join(f.out, DISCOVERY_CACHE_FILE))).length).toBeGreaterThan(0);
  });
});

describe("discovery's hashes, handed to the run that follows, never change a decision", () => {
  const noNetwork = createFakeTransport(() => {
    throw new Error('this test does not expect a request');
  });
  const COUNT = 10;

  /** COUNT bundles (leaf, then issuer) with a good staple each, and one with a separate `.issuer.crt`. */
  async function renewerFixture(): Promise<{ f: { crt: string; out: string }; pki: TestPki; s: RenewerSettings }> {
    const p = buildTestPki({ keyType: 'ec-p256', delegated: true, leafCount: COUNT });
    const dir = await tempDir('sk-discovery-run-');
    dirs.push(dir);
    const f = { crt: join(dir, 'crt'), out: join(dir, 'out') };
    await mkdir(f.crt);
    await mkdir(f.out);
    for (const [i, l] of p.leaves.entries()) {
      if (i === 0) {
        await writeFile(join(f.crt, 'c0.crt'), l.pem);
        await writeFile(join(f.crt, 'c0.issuer.crt'), p.root.pem);
      } else await writeFile(join(f.crt, `c${i}.crt`), l.pem + p.root.pem);
      await writeFile(join(f.out, `c${i}.ocsp`), goodResponseFor(p, l));
    }
    return { f, pki: p, s: { ...settings(f, 'write'), paths: [f.crt] } };
  }

  /** Discovery, then a run with a fresh verdict cache ("a new process"), given discovery's hashes or not. */
  async function discoverAndRun(
    s: RenewerSettings,
    opts: { hashes: boolean; between?: () => Promise<void> } & RunOptions,
  ): Promise<{ report: RunReport; hits: number; misses: number }> {
    const found = await discover(s);
    expect(found.certHashes.size).toBe(COUNT);
    const { hashes, between, ...options } = opts;
    await between?.();
    const verdicts = new VerdictCache();
    const report = await runOnce(renewerConfig(s, found.targets), {
      transport: noNetwork,
      verdicts,
      ...(hashes ? { certHashes: found.certHashes } : {}),
      ...options,
    });
    return { report, ...verdicts.stats() };
  }

  const decisions = (r: RunReport): unknown =>
    r.outcomes.map((o) => [o.id, o.result, o.decision?.action, o.decision?.reason, o.staple, o.error]);

  it('cold and warm, with and without the hashes: the same decisions; a warm run takes every staple from the cache', async () => {
    const { s } = await renewerFixture();
    const plain = await runOnce(renewerConfig(s, (await discover(s)).targets), { transport: noNetwork });
    expect(plain.unchanged).toBe(COUNT);
    const cold = await discoverAndRun(s, { hashes: true });
    expect(cold).toMatchObject({ hits: 0, misses: COUNT });
    const warm = await discoverAndRun(s, { hashes: true });
    expect(warm).toMatchObject({ hits: COUNT, misses: 0 });
    const warmReading = await discoverAndRun(s, { hashes: false });
    expect(warmReading).toMatchObject({ hits: COUNT, misses: 0 });
    for (const r of [cold, warm, warmReading]) expect(decisions(r.report)).toEqual(decisions(plain));
    // a dry run (-not-really) too
    const dry = await discoverAndRun(s, { hashes: true, dryRun: true });
    expect(decisions(dry.report)).toEqual(
      decisions(await runOnce(renewerConfig(s, (await discover(s)).targets), { transport: noNetwork, dryRun: true })),
    );
  });

  it("decides as of discovery's reading; a file replaced in between is read when its bytes are needed, and what is recorded is keyed by what was read", async () => {
    const { s, pki: p } = await renewerFixture();
    await discoverAndRun(s, { hashes: true }); // fills the verdict cache
    const c3 = join(s.paths[0] as string, 'c3.crt');
    const before = await runOnce(renewerConfig(s, (await discover(s)).targets), { transport: noNetwork });

    // replaced by garbage after discovery read it: the lookup uses discovery's hash (the file is not read again),
    // so the run decides as a run that read it when discovery did
    const found = await discover(s);
    await writeFile(c3, 'not a certificate\n');
    const withHashes = new VerdictCache();
    const config = renewerConfig(s, found.targets);
    const garbage = await runOnce(config, { transport: noNetwork, verdicts: withHashes, certHashes: found.certHashes });
    expect(withHashes.stats()).toEqual({ hits: COUNT, misses: 0 });
    expect(decisions(garbage)).toEqual(decisions(before));
    // (a run that reads the file itself fails it: the shortcut was taken)
    const reading = await runOnce(config, { transport: noNetwork, verdicts: new VerdictCache() });
    expect(reading.outcomes.find((o) => o.id === 'c3')).toMatchObject({
      result: 'failed',
      error: { code: 'NOT_A_CERTIFICATE' },
    });

    // replaced by another certificate after discovery, and renewed (-force): the renewal reads the file now,
    // fetches for the new certificate and records the new staple under the new contents' key
    const other = mintCert({
      subjectCN: 'replaced.example',
      issuer: p.root,
      notBefore: new Date(p.now.getTime() - 86_400_000),
      notAfter: new Date(p.now.getTime() + 90 * 86_400_000),
      ocspUrls: ['http://127.0.0.1:9/ocsp'],
    });
    await writeFile(c3, (p.leaves[3] as MintedCert).pem + p.root.pem); // back to the original
    const answering = createFakeTransport(() => ({
      contentType: 'application/ocsp-response',
      body: goodResponseFor(p, other),
    }));
    const renewed = await discoverAndRun(s, {
      hashes: true,
      between: () => writeFile(c3, other.pem + p.root.pem),
      transport: answering,
      force: true,
      only: ['c3'],
    });
    expect(answering.requests.length).toBe(1);
    expect(renewed.report.outcomes.map((o) => [o.id, o.result])).toEqual([['c3', 'updated']]);
    // every later run, with and without the hashes, with the cache or without, decides alike
    const after = await runOnce(renewerConfig(s, (await discover(s)).targets), { transport: noNetwork });
    expect(after.unchanged).toBe(COUNT);
    for (const hashes of [true, false]) {
      const r = await discoverAndRun(s, { hashes });
      expect(r.hits).toBe(COUNT);
      expect(decisions(r.report)).toEqual(decisions(after));
    }
    // the original certificate back: its staple is the new certificate's, so it is invalid with the cache too
    await writeFile(c3, (p.leaves[3] as MintedCert).pem + p.root.pem);
    const back = await runOnce(renewerConfig(s, (await discover(s)).targets), { transport: noNetwork });
    expect(back.outcomes.find((o) => o.id === 'c3')?.result).toBe('failed');
    const backCached = await discoverAndRun(s, { hashes: true });
    expect(backCached.misses).toBe(1);
    expect(decisions(backCached.report)).toEqual(decisions(back));
  });

  it('hashes taken before a wait for the lock are not used: the files are read again', async () => {
    const { s } = await renewerFixture();
    await discoverAndRun(s, { hashes: true }); // fills the verdict cache
    const c3 = join(s.paths[0] as string, 'c3.crt');
    const lock = await acquireLock(s.outDir, 1_000);
    const found = await discover(s);
    const verdicts = new VerdictCache();
    const notices: string[] = [];
    const running = runOnce(renewerConfig(s, found.targets), {
      transport: noNetwork,
      verdicts,
      certHashes: found.certHashes,
      onNotice: (m) => notices.push(m),
    });
    // the run is waiting for the lock (polled: no assumption about how fast it gets there)
    for (let i = 0; i < 400 && !notices.some((m) => m.startsWith('waiting for')); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await writeFile(c3, 'not a certificate\n');
    await lock.release();
    const report = await running;
    expect(notices.some((m) => m.startsWith('waiting for'))).toBe(true);
    expect(verdicts.stats()).toEqual({ hits: COUNT - 1, misses: 1 });
    expect(report.outcomes.find((o) => o.id === 'c3')).toMatchObject({ result: 'failed' });
  });
});
