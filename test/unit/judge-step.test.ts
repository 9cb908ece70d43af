/**
 * The pipeline's judge step (pipeline/judge.ts `judgeTarget`), which
 * processTarget, `check` and the embedded stapler all go through, and the
 * in-memory target (`Target.certificate`) the embedded stapler hands to
 * processTarget: no certificate file is read, the staple lives in whatever
 * store the caller gives, and the monotonic rule's message names the staple
 * as the caller asks (`stapleName`).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCertificate } from '../../src/core/certs.js';
import { DEFAULT_POLICY } from '../../src/core/policy.js';
import type { EngineContext, Target } from '../../src/pipeline/context.js';
import { IssuerResolver } from '../../src/pipeline/issuer.js';
import { judgeTarget } from '../../src/pipeline/judge.js';
import { processTarget } from '../../src/pipeline/process.js';
import type { StapleStore } from '../../src/io/store.js';
import { createFakeTransport, createMemoryStore } from '../../src/testing/index.js';
import { buildTestPki, goodResponseFor, type TestPki } from '../helpers/mint.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

const MIN = 60_000;
let pki: TestPki;
let dir: string;

beforeAll(async () => {
  pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: new Date('2026-11-20T12:00:00Z') });
  dir = await tempDir('sk-judge-');
});

afterAll(cleanUp);

/** A store that remembers which paths were read. */
function recording(inner: StapleStore): StapleStore & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    read: (p) => {
      reads.push(p);
      return inner.read(p);
    },
    write: (p, d, o) => inner.write(p, d, o),
  };
}

describe('judgeTarget: load, triage, read and judge, never a responder', () => {
  it('judges the staple of a certificate on disk at ctx.now(), with its triage', async () => {
    const leaf = pki.leaves[0]!;
    const certPath = join(dir, 'a.pem');
    await writeFile(certPath, leaf.pem + pki.root.pem);
    const staplePath = join(dir, 'a.ocsp');
    const store = createMemoryStore([[staplePath, goodResponseFor(pki, leaf)]]);
    const j = await judgeTarget(
      { id: 'a', certPath, staplePath },
      { store, resolver: new IssuerResolver(), now: () => pki.now },
    );
    expect(j.state).toMatchObject({ kind: 'valid', facts: { status: 'good' } });
    expect(j.verified?.status).toBe('good');
    expect(j.triage.mechanism).toBe('ocsp');
    expect(j.load.loaded.cert.serialHex).toBe(parseCertificate(leaf.der).serialHex);
    expect(j.now).toEqual(pki.now);
    // an hour past nextUpdate the same bytes are judged expired (the judge step is at `now`, never cached)
    const late = await judgeTarget(
      { id: 'a', certPath, staplePath },
      { store, resolver: new IssuerResolver(), now: () => new Date(pki.now.getTime() + 8 * 86_400_000) },
    );
    expect(late.state).toMatchObject({ kind: 'invalid', error: { code: 'OCSP_STALE' } });
  });

  it('reads no staple when the certificate cannot be loaded, and throws what loading threw', async () => {
    const store = recording(createMemoryStore());
    await expect(
      judgeTarget(
        { id: 'x', certPath: join(dir, 'missing.pem'), staplePath: join(dir, 'x.ocsp') },
        { store, resolver: new IssuerResolver(), now: () => pki.now },
      ),
    ).rejects.toMatchObject({ code: 'FILE_UNREADABLE' });
    expect(store.reads).toEqual([]);
  });
});

describe('a target whose certificate is in memory (the embedded stapler)', () => {
  function memoryTarget(): Target {
    const leaf = parseCertificate(pki.leaves[1]!.der);
    return {
      id: 'mem',
      certPath: '/nonexistent/never-read.pem',
      staplePath: 'mem.ocsp',
      certificate: { leaf, bundle: [parseCertificate(pki.root.der)] },
    };
  }

  it('is judged, renewed into the given store and kept by the monotonic rule, with no certificate file', async () => {
    let t = pki.now.getTime();
    let answer = goodResponseFor(pki, pki.leaves[1]!, new Date(t));
    const transport = createFakeTransport(() => ({ body: answer, contentType: 'application/ocsp-response' }));
    const store = createMemoryStore();
    const ctx: EngineContext = {
      store,
      transport,
      resolver: new IssuerResolver(),
      now: () => new Date(t),
      policy: DEFAULT_POLICY,
      stapleName: 'the staple in use',
    };
    const target = memoryTarget();
    const judged = await judgeTarget(target, ctx);
    expect(judged.state.kind).toBe('missing');
    expect(judged.load.issuerFromFiles).toBe(false);

    const first = await processTarget(target, ctx);
    expect(first).toMatchObject({ result: 'updated', staple: { status: 'good' } });
    expect(store.readSync('mem.ocsp')).toEqual(answer);

    // a shorter answer is not taken; the message names the staple as the context asks
    t += MIN;
    answer = goodResponseFor(pki, pki.leaves[1]!, new Date(t), {
      producedAt: new Date(t),
      single: { thisUpdate: new Date(t), nextUpdate: new Date(t + 2 * MIN) },
    });
    const kept = await processTarget(target, ctx, { force: true });
    expect(kept.result).toBe('unchanged');
    expect(kept.kept?.message).toMatch(/is shorter than the staple in use \(valid until/);
    expect(store.writes).toBe(1);
  });
});
