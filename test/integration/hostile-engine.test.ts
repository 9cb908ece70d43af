/**
 * Every misbehaviour of the test responder, through the engine with a real
 * HTTP transport: each is rejected with its code, and the good staple already
 * on disk stays byte-identical with its mtime unchanged. The "worse but
 * valid" answers (docs/SECURITY.md) verify, and still never replace a better staple.
 */
import { readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IssuerResolver } from '../../src/pipeline/issuer.js';
import type { EngineContext } from '../../src/pipeline/context.js';
import { processTarget } from '../../src/pipeline/process.js';
import { createHttpTransport } from '../../src/io/http.js';
import { createFileStore } from '../../src/io/store.js';
import {
  SCENARIOS,
  WORSE_SCENARIOS,
  ctxStandardStaple,
  hugeMaxAge,
  makeScenarioContext,
  startEvilResponder,
  startScenarioResponder,
  type Behaviour,
  type ScenarioContext,
} from '../helpers/evil-responder.js';
import { buildTestPki } from '../helpers/mint.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

let dir: string;
let ctx: ScenarioContext;
let goodStaple: Buffer;
/** A valid staple older than anything the scenarios answer (so that an acceptable answer is also better). */
let olderStaple: Buffer;

beforeAll(async () => {
  dir = await tempDir('sk-hostile-');
  ctx = makeScenarioContext(buildTestPki({ keyType: 'ec-p256', delegated: true, now: new Date() }));
  await writeFile(join(dir, 'leaf.pem'), ctx.leaf.pem + ctx.issuer.pem);
  goodStaple = ctxStandardStaple(ctx);
  const twoHoursAgo = new Date(ctx.now.getTime() - 2 * 3600_000);
  olderStaple = ctx.good({
    producedAt: twoHoursAgo,
    single: { thisUpdate: twoHoursAgo, nextUpdate: new Date(ctx.now.getTime() + 6 * 86_400_000) },
  });
});

afterAll(cleanUp);

function engine(now: Date, timeoutMs: number): { ctx: EngineContext; close: () => Promise<void> } {
  const transport = createHttpTransport({ timeoutMs, userAgent: 'staplekeeper-test' });
  return {
    ctx: {
      store: createFileStore(),
      transport,
      resolver: new IssuerResolver(),
      now: () => now,
      policy: {},
    },
    close: () => transport.close(),
  };
}

describe('hostile responder scenarios through the engine', () => {
  it('has at least 35 scenarios', () => {
    expect(SCENARIOS.length).toBeGreaterThanOrEqual(35);
  });

  it.each(SCENARIOS.map((s) => [s.name, s] as const))('%s', async (name, scenario) => {
    const staple = join(dir, `${name}.der`);
    await writeFile(staple, olderStaple);
    const old = new Date(Date.now() - 3600_000);
    await utimes(staple, old, old);
    const before = await stat(staple);
    const responder = await startScenarioResponder(scenario, ctx);
    const { ctx: ectx, close } = engine(ctx.now, scenario.needsTimeout ? 1500 : 5000);
    const started = Date.now();
    try {
      const out = await processTarget(
        { id: name, certPath: join(dir, 'leaf.pem'), staplePath: staple, responderUrls: [responder.url] },
        ectx,
        { force: true },
      );
      if (scenario.expectedCode === 'OK') {
        expect(out.error).toBeUndefined();
        expect(out.result).toBe('updated');
        return;
      }
      expect(out.result).toBe('failed');
      expect(out.error?.code).toBe(scenario.expectedCode);
      expect(await readFile(staple)).toEqual(olderStaple);
      const after = await stat(staple);
      expect(after.mtimeMs).toBe(before.mtimeMs);
      expect(after.ino).toBe(before.ino);
      expect(Date.now() - started).toBeLessThan(12_000);
    } finally {
      await close();
      await responder.close();
    }
  });
});

describe('worse but valid answers never replace a better staple (docs/SECURITY.md)', () => {
  async function play(name: string, behaviour: (c: ScenarioContext) => Behaviour, onDisk: Buffer) {
    const staple = join(dir, `worse-${name}.der`);
    await writeFile(staple, onDisk);
    const old = new Date(Date.now() - 3600_000);
    await utimes(staple, old, old);
    const before = await stat(staple);
    const responder = await startEvilResponder(() => behaviour(ctx));
    const { ctx: ectx, close } = engine(ctx.now, 5000);
    try {
      const out = await processTarget(
        { id: name, certPath: join(dir, 'leaf.pem'), staplePath: staple, responderUrls: [responder.url] },
        ectx,
        { force: true },
      );
      return { out, staple, before, requests: responder.requests.length };
    } finally {
      await close();
      await responder.close();
    }
  }

  it.each(WORSE_SCENARIOS.map((s) => [s.name, s] as const))(
    '%s: kept byte-for-byte, reported, not counted as renewed',
    async (name, scenario) => {
      const { out, staple, before, requests } = await play(name, (c) => scenario.build(c), goodStaple);
      expect(requests).toBeGreaterThan(0); // --force fetched anyway
      expect(out.error).toBeUndefined();
      expect(out.result).toBe('unchanged');
      expect(out.kept?.reason).toBe(scenario.reason);
      expect(out.kept?.message).toMatch(/^kept: the responder's answer \(valid until \S+/);
      expect(out.kept?.message).toMatch(/than the staple on disk \(valid until \S+|the staple on disk \(valid until/);
      expect(await readFile(staple)).toEqual(goodStaple);
      const after = await stat(staple);
      expect(after.mtimeMs).toBe(before.mtimeMs);
      expect(after.ino).toBe(before.ino);
    },
  );

  it('the same worse answers replace a staple that is older still, or none', async () => {
    for (const scenario of WORSE_SCENARIOS.filter((s) => s.reason !== 'multi-answer' && s.name !== 'same-answer')) {
      const weeksOld = ctx.good({
        producedAt: new Date(ctx.now.getTime() - 6 * 86_400_000),
        single: {
          thisUpdate: new Date(ctx.now.getTime() - 6 * 86_400_000),
          nextUpdate: new Date(ctx.now.getTime() + 60_000),
        },
      });
      const { out } = await play(`${scenario.name}-over-older`, (c) => scenario.build(c), weeksOld);
      expect(out.result, scenario.name).toBe('updated');
    }
    const { out } = await play('multi-over-nothing', (c) => WORSE_SCENARIOS.at(-1)!.build(c), Buffer.alloc(0));
    expect(out.result).toBe('updated'); // an empty file is no staple: a multi-answer response is better than none
  });

  it('a huge Cache-Control max-age: the staple is written and reported as written, with a valid next refresh', async () => {
    const { out, staple } = await play('huge-max-age', hugeMaxAge, goodStaple);
    expect(out.error).toBeUndefined();
    expect(out.result).toBe('updated');
    expect(Number.isNaN(Date.parse(out.nextRefresh ?? 'x'))).toBe(false);
    // clamped into the response's own window: never after its nextUpdate
    expect(Date.parse(out.nextRefresh!)).toBeLessThanOrEqual(Date.parse(out.staple!.nextUpdate));
    expect(await readFile(staple)).not.toEqual(goodStaple);
  });
});
