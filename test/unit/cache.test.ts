/**
 * The staple-folder cache (pipeline/verdict-cache.ts) through processTarget, with a
 * fixed clock: a run that uses the cache decides exactly like a run without
 * it, whatever state the cache file is in, and every time-dependent rule is
 * still applied at `now`.
 *
 * "A new process" is simulated with a new VerdictCache after an explicit
 * flush() of the previous one, so nothing depends on the idle timer.
 */
import { mkdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CACHE_FILE_NAME,
  MIN_TARGETS_FOR_NEW_CACHE,
  VerdictCache,
  type VerdictRecord,
} from '../../src/pipeline/verdict-cache.js';
import { IssuerResolver } from '../../src/pipeline/issuer.js';
import type { EngineContext, Target, TargetOutcome } from '../../src/pipeline/context.js';
import { PassMemo } from '../../src/pipeline/pass-memo.js';
import { processTarget } from '../../src/pipeline/process.js';
import { SignatureVerifier } from '../../src/pipeline/signature-verifier.js';
import { createFileStore } from '../../src/io/store.js';
import {
  buildTestPki,
  certIdFor,
  goodResponseFor,
  mintCert,
  mintOcspResponse,
  OID,
  type MintedCert,
  type TestPki,
} from '../helpers/mint.js';
import { tempDir } from '../helpers/temp.js';
import { createFakeTransport } from '../../src/testing/index.js';

const H = 3_600_000;
const D = 24 * H;
const T0 = new Date('2026-11-20T12:00:00Z');
const at = (ms: number): Date => new Date(T0.getTime() + ms);
const COUNT = 10;

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/**
 * How the caches under test keep their records: as objects (the daemon's) or as their signed
 * lines (`oneShot`, the CLI's `run`). Every test of the suite runs in both modes.
 */
let oneShot = false;
const newCache = (): VerdictCache => new VerdictCache({ oneShot });

/** The verdict cache of the current "process". */
let verdicts = newCache();
beforeEach(() => {
  verdicts = newCache();
});

/** A transport for runs that must not fetch; renewals use {@link answeringTransport}. */
const noNetwork = createFakeTransport(() => {
  throw new Error('this test does not expect a request');
});

interface Fixture {
  pki: TestPki;
  dir: string;
  staples: string;
  targets: Target[];
  chainPath: string;
}

/** COUNT leaves, each `<id>.pem` (leaf only) with a shared chain file and a good staple at T0. */
async function fixture(
  pki: TestPki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: T0, leafCount: COUNT }),
): Promise<Fixture> {
  const dir = await tempDir('sk-cache-');
  dirs.push(dir);
  const staples = join(dir, 'staples');
  await mkdir(staples);
  const chainPath = join(dir, 'chain.pem');
  await writeFile(chainPath, pki.root.pem);
  const targets: Target[] = [];
  for (const [i, leaf] of pki.leaves.entries()) {
    const id = `leaf${i}`;
    await writeFile(join(dir, `${id}.pem`), leaf.pem);
    await writeFile(join(staples, `${id}.der`), goodResponseFor(pki, leaf, T0));
    targets.push({ id, certPath: join(dir, `${id}.pem`), chainPath, staplePath: join(staples, `${id}.der`) });
  }
  return { pki, dir, staples, targets, chainPath };
}

/** A context with the current verdict cache (`withCache` false: none, as a library caller's default). */
function context(now: Date, extra: Partial<EngineContext> = {}, withCache = true): EngineContext {
  return {
    store: createFileStore(),
    transport: noNetwork,
    resolver: new IssuerResolver(),
    now: () => now,
    policy: {},
    ...(withCache ? { verdicts } : {}),
    ...extra,
  };
}

async function runAll(
  targets: Target[],
  ctx: EngineContext,
  options: { force?: boolean; dryRun?: boolean } = {},
): Promise<TargetOutcome[]> {
  const out: TargetOutcome[] = [];
  for (const t of targets) out.push(await processTarget(t, ctx, options));
  return out;
}

/** The decisions of a run without any cache: the reference every cached run must equal. */
async function coldRun(f: Fixture, now: Date): Promise<TargetOutcome[]> {
  return runAll(f.targets, context(now, {}, false));
}

/** A run in a "new process" that may use the cache file; returns the outcomes and the cache counters. */
async function cachedRun(f: Fixture, now: Date): Promise<{ outcomes: TargetOutcome[]; hits: number; misses: number }> {
  verdicts = newCache();
  const outcomes = await runAll(f.targets, context(now));
  verdicts.flush();
  const { hits, misses } = verdicts.stats();
  return { outcomes, hits, misses };
}

const cacheFile = (f: Fixture): string => join(f.staples, CACHE_FILE_NAME);

describe.each([
  ['as objects (daemon)', false],
  ['as signed lines (one-shot run)', true],
])('staple-folder cache, records kept %s', (_mode, mode) => {
  beforeAll(() => {
    oneShot = mode;
  });
  afterAll(() => {
    oneShot = false;
  });

  it('gives the same outcomes as a run without cache, and a second run takes every staple from it', async () => {
    const f = await fixture();
    const reference = await coldRun(f, T0);
    expect(reference.every((o) => o.result === 'unchanged' && o.decision?.reason === 'fresh')).toBe(true);

    const first = await cachedRun(f, T0);
    expect(first.outcomes).toEqual(reference);
    expect(first).toMatchObject({ hits: 0, misses: COUNT });
    expect((await stat(cacheFile(f))).isFile()).toBe(true);

    const second = await cachedRun(f, T0);
    expect(second.outcomes).toEqual(reference);
    expect(second).toMatchObject({ hits: COUNT, misses: 0 });

    // later, still fresh: the same, from the cache
    const later = await cachedRun(f, at(2 * D));
    expect(later.outcomes).toEqual(await coldRun(f, at(2 * D)));
    expect(later.hits).toBe(COUNT);
  });

  it.each([
    ['deleted', async (p: string) => rm(p)],
    ['not JSON', async (p: string) => writeFile(p, '{"format": "staplekeeper-cache", garbage')],
    [
      'truncated',
      async (p: string) => writeFile(p, (await readFile(p)).subarray(0, Math.floor((await readFile(p)).length / 2))),
    ],
    ['empty', async (p: string) => writeFile(p, '')],
    [
      'of another format version',
      async (p: string) => {
        const data = (await readFile(p, 'utf8')).replace(/"version":\d+/, '"version":999');
        await writeFile(p, data);
      },
    ],
    [
      'written by other verification rules',
      async (p: string) => {
        const data = (await readFile(p, 'utf8')).replace(/"rules":"[^"]+"/, '"rules":"other-rules"');
        await writeFile(p, data);
      },
    ],
    [
      'edited by hand (checksum)',
      async (p: string) => {
        const data = await readFile(p, 'utf8');
        // push every nextUpdate a year ahead: a decision would change if this were believed
        const [header, ...lines] = data.split('\n');
        const moved = lines.map((l) =>
          l
            .split('\t')
            .map((f, i) => (i === 8 ? String(Number(f) + 365 * D) : f))
            .join('\t'),
        );
        await writeFile(p, [header, ...moved].join('\n'));
      },
    ],
    [
      'a directory',
      async (p: string) => {
        await rm(p);
        await mkdir(p);
      },
    ],
  ])('decides exactly as without cache when the cache file is %s', async (_name, damage) => {
    const f = await fixture();
    await cachedRun(f, T0);
    await damage(cacheFile(f));
    // a staple past its refresh point, to make a wrong fact visible in the decision
    const when = at(4 * D);
    const reference = await coldRun(f, when);
    const run = await cachedRun(f, when);
    expect(run.outcomes).toEqual(reference);
    expect(run.hits).toBe(0);
  });

  it('ignores records that belong to other contents (another PKI, swapped names)', async () => {
    const f = await fixture();
    const other = await fixture(buildTestPki({ keyType: 'ec-p256', delegated: false, now: T0, leafCount: COUNT }));
    await cachedRun(other, T0);
    const otherRecords = verdicts.parseFile(await readFile(cacheFile(other)));
    expect(otherRecords?.size).toBe(COUNT);
    // a well-formed cache for f's folder, with the other folder's records under f's names, and swapped among f's own
    await cachedRun(f, T0);
    const own = verdicts.parseFile(await readFile(cacheFile(f)));
    const forged: Record<string, unknown> = {};
    const ownList = [...(own?.values() ?? [])];
    [...(otherRecords?.values() ?? [])].forEach(
      (r, i) => (forged[`leaf${i}.der`] = i % 2 === 0 ? r : ownList[(i + 1) % COUNT]),
    );
    await writeFile(cacheFile(f), verdicts.serializeFile(forged as never));
    const reference = await coldRun(f, T0);
    const run = await cachedRun(f, T0);
    expect(run.outcomes).toEqual(reference);
    expect(run.hits).toBe(0);
  });

  it('ignores records of the wrong shape', async () => {
    const f = await fixture();
    await cachedRun(f, T0);
    const own = verdicts.parseFile(await readFile(cacheFile(f)));
    const broken: Record<string, unknown> = {};
    [...(own ?? [])].forEach(
      ([name, r], i) => (broken[name] = { ...r, ...(i % 2 === 0 ? { nextUpdate: 'soon' } : { status: 'fine' }) }),
    );
    await writeFile(cacheFile(f), verdicts.serializeFile(broken as never));
    const run = await cachedRun(f, T0);
    expect(run.outcomes).toEqual(await coldRun(f, T0));
    expect(run.hits).toBe(0);
  });

  it('verifies a staple replaced with different content from scratch', async () => {
    const f = await fixture();
    await cachedRun(f, T0);
    const leaf = f.pki.leaves[0] as MintedCert;
    const replacements: Array<[string, Buffer]> = [
      [
        'revoked',
        goodResponseFor(f.pki, leaf, T0, {
          single: { status: 'revoked', revocationTime: at(-2 * D), revocationReason: 1 },
        }),
      ],
      ['garbage', Buffer.from('not an OCSP response')],
      ['for another certificate', goodResponseFor(f.pki, f.pki.leaves[1] as MintedCert, T0)],
      ['badly signed', goodResponseFor(f.pki, leaf, T0, { corruptSignature: true })],
      ['good, newer', goodResponseFor(f.pki, leaf, at(3 * D))],
    ];
    for (const [what, der] of replacements) {
      await writeFile(f.targets[0]!.staplePath, der);
      const reference = await coldRun(f, at(3 * D));
      const run = await cachedRun(f, at(3 * D));
      expect(run.outcomes, what).toEqual(reference);
      expect(run.misses, what).toBeGreaterThanOrEqual(1);
    }
    const o = (await cachedRun(f, at(3 * D))).outcomes[0];
    expect(o?.decision?.reason).toBe('fresh'); // the newer good one, now cached
  });

  it('notices a certificate replaced in place with the same size and mtime', async () => {
    const f = await fixture();
    await cachedRun(f, T0);
    const target = f.targets[0]!;
    const before = await stat(target.certPath);
    const old = f.pki.leaves[0] as MintedCert;
    // an ECDSA signature's DER length varies by a byte or two: mint until the replacement has the old size
    const mint = (): MintedCert =>
      mintCert({
        subjectCN: 'leaf0.test',
        dnsNames: ['leaf0.test'],
        issuer: f.pki.root,
        key: old.key,
        notBefore: at(-D),
        notAfter: at(90 * D),
        eku: [OID.kpServerAuth],
        ocspUrls: ['http://127.0.0.1:9/ocsp'],
      });
    let replacement = mint();
    for (let i = 0; i < 50 && replacement.pem.length !== old.pem.length; i++) replacement = mint();
    expect(replacement.pem.length).toBe(old.pem.length);
    await writeFile(target.certPath, replacement.pem);
    await utimes(target.certPath, before.atime, before.mtime);
    const reference = await coldRun(f, T0);
    expect(reference[0]?.decision?.reason).toBe('invalid'); // the staple is for the old serial
    const run = await cachedRun(f, T0);
    expect(run.outcomes).toEqual(reference);
    expect(run.misses).toBe(1);
  });

  it('notices a changed chain file', async () => {
    const f = await fixture();
    await cachedRun(f, T0);
    await writeFile(
      f.chainPath,
      buildTestPki({ keyType: 'ec-p256', delegated: true, now: T0, freshKeys: true, leafCount: 1 }).root.pem,
    );
    const reference = await coldRun(f, T0);
    expect(reference[0]?.error?.code).toBe('NO_ISSUER');
    const run = await cachedRun(f, T0);
    expect(run.outcomes).toEqual(reference);
    expect(run.hits).toBe(0);
  });

  it.each([
    ['past the refresh point', at(4 * D)],
    ['past nextUpdate', at(8 * D)],
    ['before thisUpdate (beyond the clock skew)', at(-2 * H)],
    ['after the certificate expired', at(100 * D)],
  ])('applies the time-dependent rules at now with cached facts: %s', async (_name, when) => {
    const f = await fixture();
    await cachedRun(f, T0);
    const reference = await coldRun(f, when);
    const run = await cachedRun(f, when);
    expect(run.outcomes).toEqual(reference);
    const o = run.outcomes[0];
    expect(o?.decision?.action).not.toBe('keep');
  });

  it('re-checks a delegated signer that has expired since the verdict was cached', async () => {
    const pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: T0, leafCount: COUNT });
    const shortSigner = mintCert({
      subjectCN: 'short-lived responder',
      issuer: pki.root,
      key: pki.responder.key,
      notBefore: at(-D),
      notAfter: at(2 * D),
      eku: [OID.kpOcspSigning],
      keyUsage: ['digitalSignature'],
    });
    const f = await fixture(pki);
    for (const [i, leaf] of pki.leaves.entries()) {
      const der = mintOcspResponse({
        signer: shortSigner,
        producedAt: at(-H),
        singles: [
          { certId: certIdFor(leaf.der, pki.root.der), status: 'good', thisUpdate: at(-H), nextUpdate: at(7 * D) },
        ],
      });
      await writeFile(f.targets[i]!.staplePath, der);
    }
    const warm = await cachedRun(f, T0);
    expect(warm.outcomes).toEqual(await coldRun(f, T0));
    // usableUntil is capped at the signer's notAfter: due at half of that window
    expect(warm.outcomes[0]?.decision?.action).toBe('keep');
    for (const when of [at(D + 12 * H), at(3 * D)]) {
      const reference = await coldRun(f, when);
      const run = await cachedRun(f, when);
      expect(run.outcomes).toEqual(reference);
    }
    const expired = await coldRun(f, at(3 * D));
    expect(expired[0]?.decision?.reason).toBe('invalid');
    expect(expired[0]?.notices.join()).toContain('expired');
  });

  it('records a renewed staple, so the next run takes it from the cache', async () => {
    const f = await fixture();
    let current = 0;
    const answering = createFakeTransport(() => ({
      contentType: 'application/ocsp-response',
      body: goodResponseFor(f.pki, f.pki.leaves[current] as MintedCert, at(5 * D)),
    }));
    verdicts = newCache();
    const ctx = context(at(5 * D), { transport: answering });
    for (const [i, t] of f.targets.entries()) {
      current = i;
      const o = await processTarget(t, ctx, {});
      expect(o.result).toBe('updated');
    }
    verdicts.flush();
    const run = await cachedRun(f, at(5 * D));
    expect(run.outcomes).toEqual(await coldRun(f, at(5 * D)));
    expect(run.hits).toBe(COUNT);
    expect(run.outcomes.every((o) => o.decision?.reason === 'fresh')).toBe(true);
  });

  it('writes nothing for a dry run, and nothing for a folder with few staples', async () => {
    const f = await fixture();
    verdicts = newCache();
    await runAll(f.targets, context(T0), { dryRun: true });
    verdicts.flush();
    await expect(stat(cacheFile(f))).rejects.toMatchObject({ code: 'ENOENT' });

    verdicts = newCache();
    await runAll(f.targets.slice(0, MIN_TARGETS_FOR_NEW_CACHE - 1), context(T0));
    verdicts.flush();
    await expect(stat(cacheFile(f))).rejects.toMatchObject({ code: 'ENOENT' });

    // once the file exists, a run over one certificate keeps it up to date
    await cachedRun(f, T0);
    await writeFile(f.targets[0]!.staplePath, goodResponseFor(f.pki, f.pki.leaves[0] as MintedCert, at(D)));
    verdicts = newCache();
    await runAll(f.targets.slice(0, 1), context(at(D)));
    verdicts.flush();
    const run = await cachedRun(f, at(D));
    expect(run.hits).toBe(COUNT);
  });

  it('is used only when the context has one: a library caller gets no cache file and no exit handler', async () => {
    const f = await fixture();
    const exitHandlers = process.listenerCount('exit');
    const idle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));
    const without = await runAll(f.targets, context(T0, {}, false));
    await idle();
    expect(without.every((o) => o.result === 'unchanged')).toBe(true);
    await expect(stat(cacheFile(f))).rejects.toMatchObject({ code: 'ENOENT' });
    // with one, the file is written when it is flushed, never by a handler at exit
    expect(await runAll(f.targets, context(T0))).toEqual(without);
    await idle();
    expect(process.listenerCount('exit')).toBe(exitHandlers);
    await expect(stat(cacheFile(f))).rejects.toMatchObject({ code: 'ENOENT' });
    verdicts.flush();
    expect((await stat(cacheFile(f))).isFile()).toBe(true);
  });

  it('gives the same outcomes with a signature verifier (thread and memo) and a pass memo as without', async () => {
    const f = await fixture();
    const when = at(4 * D); // past the refresh point: a wrong fact would show in the decision
    const reference = await coldRun(f, when);
    const signatures = new SignatureVerifier({ thread: true });
    try {
      const pass = new PassMemo();
      const run = await runAll(f.targets, context(when, { signatures, pass }, false));
      expect(run).toEqual(reference);
      // the same objects again: the memos now answer from what they remember
      expect(await runAll(f.targets, context(when, { signatures, pass }, false))).toEqual(reference);
    } finally {
      await signatures.close();
    }
  });

  it('does not cache an issuer found outside the target files (CA directory)', async () => {
    const f = await fixture();
    const caDir = join(f.dir, 'ca');
    await mkdir(caDir);
    await writeFile(join(caDir, 'root.pem'), f.pki.root.pem);
    const targets = f.targets.map(({ chainPath: _c, ...t }) => t);
    const ctx = (now: Date, cache: boolean): EngineContext =>
      context(now, { resolver: new IssuerResolver({ caDirs: [caDir] }) }, cache);
    const reference = await runAll(targets, ctx(T0, false));
    expect(reference.every((o) => o.decision?.reason === 'fresh')).toBe(true);
    verdicts = newCache();
    expect(await runAll(targets, ctx(T0, true))).toEqual(reference);
    verdicts.flush();
    verdicts = newCache();
    expect(await runAll(targets, ctx(T0, true))).toEqual(reference);
    expect(verdicts.stats().hits).toBe(0);
  });

  it('writes a folder of thousands of records in pieces, and reads every one back unchanged', async () => {
    const f = await fixture();
    await cachedRun(f, T0);
    const sample = new VerdictCache()
      .parseFile(await readFile(cacheFile(f)))
      ?.values()
      .next().value;
    if (sample === undefined) throw new Error('no record was written');
    // 2,500 records made in this "process" and the 10 of the file, not used by it (kept as read)
    verdicts = newCache();
    const { folder } = verdicts.forStaple(join(f.staples, 'x.der'));
    const made = new Map<string, typeof sample>();
    for (let i = 0; i < 2500; i++) {
      const name = `made-${i}.der`;
      const r = { ...sample, stapleHash: `${sample.stapleHash.slice(0, -6)}${String(i).padStart(6, '0')}` };
      folder.touch(name, true);
      folder.set(name, r);
      made.set(name, folder.get(name) as VerdictRecord);
    }
    verdicts.flush();
    const back = new VerdictCache().parseFile(await readFile(cacheFile(f)));
    expect(back?.size).toBe(2510);
    for (const [name, r] of made) expect(back?.get(name)).toEqual(r);
    // and the run decides from it exactly as without it
    const run = await cachedRun(f, at(4 * D));
    expect(run.outcomes).toEqual(await coldRun(f, at(4 * D)));
    expect(run.hits).toBe(COUNT);
  });
  it('records a record used again on a later day with that day, signed again', async () => {
    const f = await fixture();
    await cachedRun(f, T0);
    const records = new VerdictCache().parseFile(await readFile(cacheFile(f)));
    if (records === undefined || records.size !== COUNT) throw new Error('the cache was not written');
    const day = (records.values().next().value as VerdictRecord).seenDay;
    // as if last used three days ago
    for (const r of records.values()) r.seenDay = day - 3;
    await writeFile(cacheFile(f), new VerdictCache().serializeFile(Object.fromEntries(records)));
    const run = await cachedRun(f, T0);
    expect(run.hits).toBe(COUNT);
    expect(run.outcomes).toEqual(await coldRun(f, T0));
    const back = new VerdictCache().parseFile(await readFile(cacheFile(f)));
    expect(back?.size).toBe(COUNT);
    for (const [name, r] of records) expect(back?.get(name)).toEqual({ ...r, seenDay: day });
  });
});
