/**
 * The ocsprenewer drop-in's discovery cache (discovery/ocsprenewer-cache.ts) and
 * its folder listing: a discovery that uses them finds exactly what one
 * without them finds — the same targets, problems (word for word) and skipped
 * files — with no cache file, an empty one, a filled one, and one that is
 * corrupt, truncated, of other code, or describes files since replaced.
 *
 * "A new process" is simulated with resetDiscoveryCaches().
 */
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DISCOVERY_CACHE_FILE,
  MIN_FILES_FOR_NEW_CACHE,
  discoveryCacheFor,
  resetDiscoveryCaches,
} from '../../src/discovery/ocsprenewer-cache.js';
import {
  discoverRenewerTargets,
  type RenewerDiscovery,
  type RenewerSettings,
} from '../../src/discovery/ocsprenewer.js';
import { buildTestPki, mintCert, type MintedCert, type TestPki } from '../helpers/mint.js';
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
