/**
 * What the one-file build (scripts/bundle.mjs) must get right beyond "it
 * runs" (test/integration/bundle.test.ts runs it): the modules the code loads
 * lazily through createRequire are inside, and the caches' code fingerprint
 * still changes with the code when there are no module files to read.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundle } from '../../scripts/bundle.mjs';
import { moduleFingerprint } from '../../src/io/fingerprint.js';
import { tempDir } from '../helpers/temp.js';

const g = globalThis as { __STAPLEKEEPER_BUILD__?: string };

describe('moduleFingerprint in a bundle', () => {
  afterAll(() => {
    delete g.__STAPLEKEEPER_BUILD__;
  });

  it('stands for the build: another build gives another fingerprint, though no module file can be read', () => {
    const base = 'file:///nonexistent/staplekeeper/cache.js';
    const modules = ['./a', './b'];
    const unreadable = moduleFingerprint('t/1', base, modules);
    g.__STAPLEKEEPER_BUILD__ = 'build-one';
    const one = moduleFingerprint('t/1', base, modules);
    g.__STAPLEKEEPER_BUILD__ = 'build-two';
    const two = moduleFingerprint('t/1', base, modules);
    const otherTag = moduleFingerprint('t/2', base, modules);
    delete g.__STAPLEKEEPER_BUILD__;
    expect(new Set([unreadable, one, two, otherTag]).size).toBe(4);
    expect(moduleFingerprint('t/1', base, modules)).toBe(unreadable);
  });
});

describe('scripts/bundle.mjs', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it.each(['esm', 'cjs'] as const)(
    '%s: every dependency is inside, the lazily required ones too; the build hash is defined',
    async (format) => {
      const dir = await tempDir('sk-bundle-unit-');
      dirs.push(dir);
      const r = await bundle({ format, outfile: join(dir, `sk.${format === 'esm' ? 'mjs' : 'cjs'}`) });
      for (const dep of [
        'undici', // src/io/http.ts: createRequire(import.meta.url)('undici')
        '@peculiar/asn1-cms', // src/pipeline/issuer.ts: a require made by createRequire
        '@peculiar/asn1-ocsp',
        'prom-client',
        'yaml',
        'zod',
        'commander',
        'ioredis', // src/fleet/index.ts imports it lazily
      ]) {
        expect(r.inputs.some((p) => p.includes(`node_modules/${dep}/`))).toBe(true);
      }
      const code = await readFile(r.path, 'utf8');
      expect(code).not.toMatch(/createRequire\(import\.meta\.url\)\(/);
      expect(code).not.toContain('__STAPLEKEEPER_BUILD__');
      expect(code.startsWith('#!/usr/bin/env node\n')).toBe(true);
    },
    60_000,
  );
});
