/**
 * The pass memo's shared reads (pipeline/pass-memo.ts `readShared`) in
 * ocspbot's layout, where every certificate has its own `<d>-chain.pem` and
 * `<d>-rootchain.pem`, usually copies of one file: a file whose bytes equal
 * a content read earlier in the pass gets that content's object (no copy, no
 * hash of its own). This never changes a decision: every path is still read,
 * and what comes back has exactly the bytes read and their hash. Checked here
 * against runs without any memo or cache, with copies, hard links and
 * different contents side by side, a file changed between two passes, and
 * files changed within one pass (between two certificates that use them).
 */
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineContext, Target, TargetOutcome } from '../../src/pipeline/context.js';
import { IssuerResolver } from '../../src/pipeline/issuer.js';
import { PassMemo } from '../../src/pipeline/pass-memo.js';
import { processTarget } from '../../src/pipeline/process.js';
import { VerdictCache } from '../../src/pipeline/verdict-cache.js';
import { contentHash } from '../../src/io/fingerprint.js';
import { readRegularFileSync, readRegularFileViewSync } from '../../src/io/files.js';
import { createFileStore } from '../../src/io/store.js';
import { createFakeTransport } from '../../src/testing/index.js';
import { buildTestPki, goodResponseFor, type TestPki } from '../helpers/mint.js';
import { D } from '../helpers/staple-times.js';
import { cleanUp, tempDir } from '../helpers/temp.js';

const T0 = new Date('2026-11-20T12:00:00Z');
const at = (ms: number): Date => new Date(T0.getTime() + ms);
const COUNT = 12;

afterAll(cleanUp);

let pki: TestPki;
/** A root of another PKI: a chain file holding it has no issuer for the leaves. */
let foreignRoot: string;
beforeAll(() => {
  pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: T0, leafCount: COUNT });
  foreignRoot = buildTestPki({ keyType: 'ec-p256', delegated: true, now: T0, freshKeys: true, leafCount: 1 }).root.pem;
});

const noNetwork = createFakeTransport(() => {
  throw new Error('this test does not expect a request');
});

interface Layout {
  dir: string;
  targets: Target[];
  chain: (i: number) => string;
  rootchain: (i: number) => string;
}

/**
 * ocspbot's layout: `d<i>.pem`, `d<i>-chain.pem`, `d<i>-rootchain.pem`, and a
 * staple per certificate. Chains are copies of the root, except: d1's are
 * hard links to d0's, d2's chain has a trailing blank line (other bytes, same
 * certificate), d3's chain and root chain are another PKI's root (no
 * issuer), d4's root chain is the root twice.
 */
async function layout(): Promise<Layout> {
  const dir = await tempDir('sk-passmemo-');
  const staples = join(dir, 'staples');
  await mkdir(staples);
  const chain = (i: number): string => join(dir, `d${i}-chain.pem`);
  const rootchain = (i: number): string => join(dir, `d${i}-rootchain.pem`);
  const targets: Target[] = [];
  for (const [i, leaf] of pki.leaves.entries()) {
    await writeFile(join(dir, `d${i}.pem`), leaf.pem);
    if (i === 1) {
      await link(chain(0), chain(1));
      await link(rootchain(0), rootchain(1));
    } else {
      await writeFile(chain(i), i === 2 ? `${pki.root.pem}\n` : i === 3 ? foreignRoot : pki.root.pem);
      await writeFile(rootchain(i), i === 4 ? pki.root.pem + pki.root.pem : i === 3 ? foreignRoot : pki.root.pem);
    }
    await writeFile(join(staples, `d${i}.ocsp-resp`), goodResponseFor(pki, leaf, T0));
    targets.push({
      id: `d${i}`,
      certPath: join(dir, `d${i}.pem`),
      chainPath: chain(i),
      rootchainPath: rootchain(i),
      staplePath: join(staples, `d${i}.ocsp-resp`),
    });
  }
  return { dir, targets, chain, rootchain };
}

function context(now: Date, extra: Partial<EngineContext> = {}): EngineContext {
  return {
    store: createFileStore(),
    transport: noNetwork,
    resolver: new IssuerResolver(),
    now: () => now,
    policy: {},
    ...extra,
  };
}

/**
 * One pass over `targets`, in order; `between(i)` runs before target i. With
 * a memo, the pass is held open over the whole loop (as `run` holds it while
 * targets are in flight), so its tables are not dropped between targets.
 */
async function pass(
  targets: Target[],
  ctx: EngineContext,
  between: (i: number) => Promise<void> = async () => {},
): Promise<TargetOutcome[]> {
  const out: TargetOutcome[] = [];
  ctx.pass?.begin();
  try {
    for (const [i, t] of targets.entries()) {
      await between(i);
      out.push(await processTarget(t, ctx));
    }
  } finally {
    ctx.pass?.end();
  }
  return out;
}

/** A run with a pass memo and the staple-folder cache (as `run` makes them), in a "new process". */
async function memoRun(
  l: Layout,
  now: Date,
  between?: (i: number) => Promise<void>,
): Promise<{ outcomes: TargetOutcome[]; hits: number }> {
  const verdicts = new VerdictCache();
  const outcomes = await pass(l.targets, context(now, { pass: new PassMemo(), verdicts }), between);
  verdicts.flush();
  return { outcomes, hits: verdicts.stats().hits };
}

/** The reference: no memo, no cache; every file read by the target that names it. */
const reference = (l: Layout, now: Date, between?: (i: number) => Promise<void>): Promise<TargetOutcome[]> =>
  pass(l.targets, context(now), between);

describe('PassMemo.readShared', () => {
  it('returns exactly the bytes of each path and their hash, whatever was read before or after', async () => {
    const l = await layout();
    const memo = new PassMemo();
    const seen = new Map<string, { bytes: Buffer; hash: string }>();
    for (const i of [0, 1, 2, 3, 4, 5, 0, 6]) {
      for (const p of [l.chain(i), l.rootchain(i)]) {
        const f = memo.readShared(p);
        const bytes = await readFile(p);
        expect(f?.bytes.equals(bytes), p).toBe(true);
        expect(f?.hash, p).toBe(contentHash(bytes));
        seen.set(p, f!);
      }
    }
    // other reads through the same buffer since (the fast reads share one) changed none of them
    readRegularFileViewSync(join(l.dir, 'd7.pem'));
    for (const [p, f] of seen) {
      expect(f.bytes.equals(await readFile(p)), p).toBe(true);
      expect(f.hash, p).toBe(contentHash(await readFile(p)));
    }
    // copies and links of one content share one object; other bytes never do
    expect(memo.readShared(l.chain(5))).toBe(memo.readShared(l.chain(0)));
    expect(memo.readShared(l.rootchain(6))).toBe(memo.readShared(l.chain(7)));
    expect(memo.readShared(l.chain(2))).not.toBe(memo.readShared(l.chain(0)));
    expect(memo.readShared(l.rootchain(4))).not.toBe(memo.readShared(l.rootchain(0)));
  });

  it('a file changed after a copy of its old content was read is read as it is now (same size, one byte)', async () => {
    const l = await layout();
    const memo = new PassMemo();
    const before = memo.readShared(l.chain(5))!;
    const text = pki.root.pem;
    const at = text.indexOf('\n') + 5;
    const edited = text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1);
    expect(edited.length).toBe(text.length);
    await writeFile(l.chain(6), edited);
    const after = memo.readShared(l.chain(6))!;
    expect(after).not.toBe(before);
    expect(after.bytes.toString()).toBe(edited);
    expect(after.hash).toBe(contentHash(Buffer.from(edited)));
    expect(before.bytes.toString()).toBe(text);
    expect(memo.readShared(l.chain(7))).toBe(before);
  });

  it('more distinct contents than it remembers: each still read and hashed right', async () => {
    const dir = await tempDir('sk-passmemo-many-');
    const memo = new PassMemo();
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 40; i++) {
        const p = join(dir, `f${i}-${round}.pem`);
        await writeFile(p, `${pki.root.pem}${'\n'.repeat(i)}`);
        const f = memo.readShared(p)!;
        expect(f.bytes.equals(readRegularFileSync(p)!)).toBe(true);
        expect(f.hash).toBe(contentHash(readRegularFileSync(p)!));
      }
    }
  });
});

describe('shared reads in the ocspbot layout never change a decision', () => {
  it('cold and warm, copies, links and other contents side by side: the decisions of a run without memo or cache', async () => {
    const l = await layout();
    for (const when of [T0, at(4 * D), at(8 * D)]) {
      const ref = await reference(l, when);
      expect(ref[3]?.error?.code).toBe('NO_ISSUER');
      // (past the refresh point a renewal is due, and this transport fails it: the same in every run)
      if (when === T0) expect(ref[0]?.error).toBeUndefined();
      expect((await memoRun(l, when)).outcomes).toEqual(ref);
      const warm = await memoRun(l, when);
      expect(warm.outcomes).toEqual(ref);
    }
    expect((await memoRun(l, T0)).hits).toBe(COUNT - 1); // all but d3's (no issuer: nothing recorded)
  });

  it('a chain file changed between two passes: the next pass decides from its new bytes', async () => {
    const l = await layout();
    await memoRun(l, T0);
    await memoRun(l, T0);
    // d5's chain and root chain become another PKI's root, d3's the right one, d6's chain the right one
    // plus a blank line
    await writeFile(l.chain(5), foreignRoot);
    await writeFile(l.rootchain(5), foreignRoot);
    await writeFile(l.chain(3), pki.root.pem);
    await writeFile(l.rootchain(3), pki.root.pem);
    await writeFile(l.chain(6), `${pki.root.pem}\n`);
    const ref = await reference(l, T0);
    expect(ref[5]?.error?.code).toBe('NO_ISSUER');
    expect(ref[3]?.error).toBeUndefined();
    const run = await memoRun(l, T0);
    expect(run.outcomes).toEqual(ref);
    expect(run.hits).toBe(COUNT - 3); // d3, d5, d6 judged again (d3 and d6 recorded anew)
    expect((await memoRun(l, T0)).outcomes).toEqual(ref);
  });

  it('files changed within a pass, after other copies of their old content were read: the same decisions as a run without memo', async () => {
    const l = await layout();
    await memoRun(l, T0);
    // before d6 (d0 and d5 have read the root already): d6's chain and root chain become another PKI's
    // root, d7's root chain gets a blank line, d8's chain the root's bytes again (written anew); before
    // d9: d0's files (read already in this pass) become another PKI's root, written in place, and d9's
    // files hard links to them
    const changes = async (i: number): Promise<void> => {
      if (i === 6) {
        await writeFile(l.chain(6), foreignRoot);
        await writeFile(l.rootchain(6), foreignRoot);
        await writeFile(l.rootchain(7), `${pki.root.pem}\n`);
        await writeFile(l.chain(8), pki.root.pem);
      }
      if (i === 9) {
        for (const f of [l.chain, l.rootchain]) {
          await writeFile(f(0), foreignRoot);
          await rm(f(9));
          await link(f(0), f(9));
        }
      }
    };
    const restore = async (): Promise<void> => {
      for (const f of [l.chain, l.rootchain]) {
        for (const i of [0, 6, 8]) await writeFile(f(i), pki.root.pem);
        await rm(f(9));
        await writeFile(f(9), pki.root.pem);
      }
      await writeFile(l.rootchain(7), pki.root.pem);
    };
    const ref = await reference(l, T0, changes);
    expect(ref[6]?.error?.code).toBe('NO_ISSUER');
    expect(ref[9]?.error?.code).toBe('NO_ISSUER');
    expect(ref[1]?.error).toBeUndefined(); // d1 (linked to d0's chain) was judged before d0's changed
    await restore();
    const run = await memoRun(l, T0, changes);
    expect(run.outcomes).toEqual(ref);
    // the next pass, with the files as they are now, decides as a run without memo or cache
    const now = await reference(l, T0);
    expect(now[0]?.error?.code).toBe('NO_ISSUER');
    expect((await memoRun(l, T0)).outcomes).toEqual(now);
  });
});
