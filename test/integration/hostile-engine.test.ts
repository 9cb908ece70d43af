/**
 * Every misbehaviour of the test responder, through the engine with a real
 * HTTP transport: each is rejected with its code, and the good staple already
 * on disk stays byte-identical with its mtime unchanged.
 */
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IssuerResolver } from '../../src/engine/issuer.js';
import { processTarget, type EngineContext } from '../../src/engine/staple.js';
import { createHttpTransport } from '../../src/io/http.js';
import { createFileStore } from '../../src/io/store.js';
import {
  SCENARIOS,
  makeScenarioContext,
  startScenarioResponder,
  type ScenarioContext,
} from '../helpers/evil-responder.js';
import { buildTestPki } from '../helpers/mint.js';

let dir: string;
let ctx: ScenarioContext;
let goodStaple: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sk-hostile-'));
  ctx = makeScenarioContext(buildTestPki({ keyType: 'ec-p256', delegated: true, now: new Date() }));
  await writeFile(join(dir, 'leaf.pem'), ctx.leaf.pem + ctx.issuer.pem);
  goodStaple = ctx.good();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

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
    await writeFile(staple, goodStaple);
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
      expect(await readFile(staple)).toEqual(goodStaple);
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
