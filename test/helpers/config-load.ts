/**
 * loadConfig, checked against its cache: every load a configuration test
 * makes runs three times — without the configuration cache, with an empty
 * one (which it fills) and with the filled one — and the three outcomes,
 * results or errors (code, message and details), must be identical. So
 * every configuration test is also a test that the cache never changes a
 * result (config/config-cache.ts).
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, expect } from 'vitest';
import { configCacheStats } from '../../src/config/config-cache.js';
import { loadConfig, type LoadConfigOptions, type LoadedConfig } from '../../src/config/index.js';
import { isStapleError, type StapleError } from '../../src/core/errors.js';
import { tempDir } from './temp.js';

const cacheDirs: string[] = [];
afterAll(async () => {
  await Promise.all(cacheDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/**
 * A fresh temp folder holding `files` (path → content), removed after the
 * test file. The loader only checks that certificate files exist, so dummy
 * contents do.
 */
export async function tree(files: Record<string, string>): Promise<string> {
  const root = await tempDir('sk-config-');
  cacheDirs.push(root);
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(root, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }
  return root;
}

/** The three files of an ocspbot triple, `<dir>/<domain>.pem` etc. */
export function triple(dir: string, domain: string): Record<string, string> {
  const p = dir === '' ? domain : `${dir}/${domain}`;
  return { [`${p}.pem`]: 'cert', [`${p}-chain.pem`]: 'chain', [`${p}-rootchain.pem`]: 'root' };
}

/** Loads `staplekeeper.yaml` (the text given) from a temp folder with the given extra files. */
export async function loadText(
  yaml: string,
  files: Record<string, string> = {},
): Promise<{ config: LoadedConfig; root: string }> {
  const root = await tree({ ...files, 'staplekeeper.yaml': yaml });
  return { config: await loadChecked('staplekeeper.yaml', { cwd: root }), root };
}

/** Loads and expects a StapleError; returns it for further checks. */
export async function loadError(
  yaml: string,
  files: Record<string, string> = {},
): Promise<{ error: StapleError; root: string }> {
  const root = await tree({ ...files, 'staplekeeper.yaml': yaml });
  try {
    await loadChecked('staplekeeper.yaml', { cwd: root });
  } catch (e) {
    if (isStapleError(e)) return { error: e, root };
    throw e;
  }
  throw new Error('expected loadConfig to fail');
}

type Outcome = { ok: true; config: LoadedConfig } | { ok: false; error: unknown };

async function settle(file: string, opts: LoadConfigOptions): Promise<Outcome> {
  try {
    return { ok: true, config: await loadConfig(file, opts) };
  } catch (error) {
    return { ok: false, error };
  }
}

function describeOutcome(o: Outcome): unknown {
  if (o.ok) return o;
  const e = o.error;
  return isStapleError(e) ? { code: e.code, message: e.message, details: e.details } : { thrown: String(e) };
}

/** {@link loadConfig} (without a cache), after checking that the cache gives the same outcome cold and warm. */
export async function loadChecked(file: string, opts: { cwd: string }): Promise<LoadedConfig> {
  const cacheDir = await tempDir('sk-config-cache-');
  cacheDirs.push(cacheDir);
  const plain = await settle(file, opts);
  const cold = await settle(file, { ...opts, cacheDir });
  const before = configCacheStats();
  const warm = await settle(file, { ...opts, cacheDir });
  const after = configCacheStats();
  // the cache was used: the whole result (a scan's too, observed again: config/scan.ts scanWitness)
  if (warm.ok) expect(after.results).toBe(before.results + 1);
  const again = await settle(file, { ...opts, cacheDir });
  const expected = describeOutcome(plain);
  expect(describeOutcome(cold)).toEqual(expected);
  expect(describeOutcome(warm)).toEqual(expected);
  expect(describeOutcome(again)).toEqual(expected);
  if (!plain.ok) throw plain.error;
  return plain.config;
}
