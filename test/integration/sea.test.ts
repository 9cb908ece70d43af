/**
 * The one binary (`npm run sea` → dist/staplekeeper-linux-x64, a Node single
 * executable application): built here by the same function into a temporary
 * folder, renamed `staplekeeper`, with links named `ocspbot` and
 * `ocsprenewer`, and run by name through a PATH that holds only that folder —
 * no node, no node_modules — against the key cases of the CLI suite
 * (test/helpers/shipped-cli.ts). A binary that cannot be built fails here: it
 * is never skipped.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';
import { buildSea } from '../../scripts/sea.mjs';
import { linkDropIns, shippedCliCases } from '../helpers/shipped-cli.js';
import { tempDir } from '../helpers/temp.js';

shippedCliCases(
  'the one binary: a single executable application, no node on PATH',
  async () => {
    const dir = await tempDir('sk-sea-');
    const { path } = await buildSea({ out: join(dir, 'staplekeeper'), work: join(dir, 'build') });
    await linkDropIns(path);
    const env = { PATH: dir };
    // the PATH the binary runs with has no node on it
    expect(spawnSync('/bin/sh', ['-c', 'command -v node'], { env }).status).not.toBe(0);
    return { dir, env, command: (name) => ({ file: name, args: [] }) };
  },
  240_000,
);
