/**
 * Fingerprints of our own code, for caches whose entries stand for what a
 * module computed: a fix to any of those modules, or a new release, changes
 * the fingerprint and every entry made by the old code is then ignored.
 */
import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../version.js';

/**
 * Set by the one-file and one-binary builds (scripts/bundle.mjs) to the
 * SHA-256 of every source file they were built from: a bundle has no module
 * files to read, so its fingerprint stands for all of its code at once.
 */
declare const __STAPLEKEEPER_BUILD__: string | undefined;

/** SHA-256 of `data`, base64url (43 characters). */
export function contentHash(data: Buffer | string): string {
  return hash('sha256', data, 'base64url');
}

/**
 * SHA-256 over `tag`, the package version and the bytes of each module (paths
 * without extension, relative to `base`, an `import.meta.url`). The `.js`
 * file is read, else the `.ts` one (the tests run the TypeScript sources); a
 * module that cannot be read counts as `?`, which still differs from any
 * readable content. In a bundle, the build's source hash stands for every
 * module (any change to any source gives another fingerprint).
 */
export function moduleFingerprint(tag: string, base: string, modules: readonly string[]): string {
  const parts = [`${tag}/${VERSION}`];
  const build = typeof __STAPLEKEEPER_BUILD__ === 'string' ? __STAPLEKEEPER_BUILD__ : undefined;
  if (build !== undefined) return contentHash([...parts, `build:${build}`, ...modules].join('\n'));
  for (const m of modules) {
    let code: Buffer | undefined;
    for (const ext of ['.js', '.ts']) {
      try {
        code = readFileSync(fileURLToPath(new URL(`${m}${ext}`, base)));
        break;
      } catch {
        // try the other extension
      }
    }
    parts.push(code === undefined ? `${m}:?` : `${m}:${contentHash(code)}`);
  }
  return contentHash(parts.join('\n'));
}
