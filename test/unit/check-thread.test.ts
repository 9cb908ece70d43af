import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { SignatureMemo, verifySignature } from '../../src/core/signature.js';
import { CheckThread } from '../../src/pipeline/signature-thread.js';
import { SignatureVerifier } from '../../src/pipeline/signature-verifier.js';

const ECDSA_SHA256 = Buffer.from('300a06082a8648ce3d040302', 'hex');
const ED25519 = Buffer.from('300506032b6570', 'hex');
const RSA_SHA256 = Buffer.from('300d06092a864886f70d01010b0500', 'hex');
const UNKNOWN = Buffer.from('300606042a030405', 'hex');

const threads: CheckThread[] = [];
afterAll(async () => {
  await Promise.all(threads.map((t) => t.close()));
});

function thread(): CheckThread {
  const t = new CheckThread();
  threads.push(t);
  return t;
}

interface Case {
  alg: Buffer;
  key: KeyObject;
  data: Buffer;
  signature: Buffer;
}

function cases(): Case[] {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ed = generateKeyPairSync('ed25519');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const out: Case[] = [];
  for (let i = 0; i < 40; i++) {
    const data = Buffer.from(`data ${i} ${Math.random()}`);
    out.push({ alg: ECDSA_SHA256, key: ec.publicKey, data, signature: sign('sha256', data, ec.privateKey) });
    out.push({ alg: ED25519, key: ed.publicKey, data, signature: sign(null, data, ed.privateKey) });
    out.push({ alg: RSA_SHA256, key: rsa.publicKey, data, signature: sign('sha256', data, rsa.privateKey) });
  }
  // wrong signatures: another message's, a flipped bit, an empty one, the wrong key type
  const bad: Case[] = out.slice(0, 12).map((c, i) => {
    const signature = Buffer.from(c.signature);
    if (i % 4 === 0) signature[signature.length - 1] = (signature[signature.length - 1] as number) ^ 1;
    return i % 4 === 1
      ? { ...c, data: Buffer.from('other') }
      : i % 4 === 2
        ? { ...c, signature: Buffer.alloc(0) }
        : i % 4 === 3
          ? { ...c, key: rsa.publicKey }
          : { ...c, signature };
  });
  return [...out, ...bad];
}

describe('the check thread', () => {
  it('remembers for every check exactly what the synchronous check answers', async () => {
    const t = thread();
    const all = cases();
    await Promise.all(all.map((c) => t.check(c.alg, c.data, c.signature, c.key)));
    let good = 0;
    for (const c of all) {
      const remembered = t.memo.recall(c.key, c.alg, c.data, c.signature);
      expect(remembered).toBeTypeOf('boolean');
      // verifySignature takes the remembered answer: compare with a fresh check of copies (not remembered)
      const fresh = verifySignature(
        Buffer.from(c.alg),
        Buffer.from(c.data),
        c.key,
        Buffer.concat([c.signature, Buffer.alloc(0)]),
      );
      expect(remembered).toBe(fresh);
      if (remembered) good++;
    }
    // both answers occur (one "wrong key type" case is an RSA signature checked with its own key)
    expect(good).toBeGreaterThanOrEqual(120);
    expect(all.length - good).toBeGreaterThanOrEqual(11);
  });

  it('leaves an algorithm it does not know to the synchronous rule', async () => {
    const t = thread();
    const [c] = cases();
    await t.check(UNKNOWN, c!.data, c!.signature, c!.key);
    expect(t.memo.recall(c!.key, UNKNOWN, c!.data, c!.signature)).toBeUndefined();
    expect(() => verifySignature(UNKNOWN, c!.data, c!.key, c!.signature)).toThrow(/unsupported signature algorithm/);
  });

  it('once stopped, settles what was waiting and leaves new checks to the caller', async () => {
    const t = thread();
    const all = cases().slice(0, 30);
    const pending = all.map((c) => t.check(c.alg, Buffer.from(c.data), c.signature, c.key));
    await t.close();
    await Promise.all(pending); // settled, whatever was answered
    const [c] = cases();
    await t.check(c!.alg, c!.data, c!.signature, c!.key);
    expect(t.memo.recall(c!.key, c!.alg, c!.data, c!.signature)).toBeUndefined();
  });
});

describe('the check thread when idle', () => {
  it('stops after a while without work and starts again for the next check', async () => {
    const { vi } = await import('vitest');
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const t = thread();
      // the same key before and after the restart: the new thread must be sent it again
      const all = cases();
      const [a, b] = [all[0], all[3]];
      await t.check(a!.alg, a!.data, a!.signature, a!.key);
      expect(t.memo.recall(a!.key, a!.alg, a!.data, a!.signature)).toBe(true);
      expect(t.running).toBe(true);
      vi.advanceTimersByTime(6_000); // idle: the thread is stopped (not broken)
      expect(t.running).toBe(false);
      await t.check(b!.alg, b!.data, b!.signature, b!.key);
      expect(t.memo.recall(b!.key, b!.alg, b!.data, b!.signature)).toBe(true);
      expect(t.running).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('the signature verifier', () => {
  it('without a thread checks nothing ahead; its memo remembers what the rules checked', async () => {
    const v = new SignatureVerifier();
    expect(v.threaded).toBe(false);
    const [c] = cases();
    await v.checkAhead(c!.alg, c!.data, c!.signature, c!.key);
    expect(v.memo.recall(c!.key, c!.alg, c!.data, c!.signature)).toBeUndefined();
    expect(verifySignature(c!.alg, c!.data, c!.key, c!.signature, v.memo)).toBe(true);
    expect(v.memo.recall(c!.key, c!.alg, c!.data, c!.signature)).toBe(true);
    await v.close();
  });

  it('with a thread fills its own memo, and no other', async () => {
    const v = new SignatureVerifier({ thread: true });
    const other = new SignatureMemo();
    const [c] = cases();
    await v.checkAhead(c!.alg, c!.data, c!.signature, c!.key);
    expect(v.memo.recall(c!.key, c!.alg, c!.data, c!.signature)).toBe(true);
    expect(other.recall(c!.key, c!.alg, c!.data, c!.signature)).toBeUndefined();
    await v.close();
  });
});
