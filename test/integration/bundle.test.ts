/**
 * The one file (`npm run bundle` → dist/staplekeeper.mjs): built here by the
 * same function into a temporary folder with no node_modules, run as
 * `node staplekeeper.mjs …` and through links named `ocspbot` and
 * `ocsprenewer`, against the key cases of the CLI suite
 * (test/helpers/shipped-cli.ts).
 */
import { spawnSync } from 'node:child_process';
import { rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { expect, it } from 'vitest';
import { bundle } from '../../scripts/bundle.mjs';
import { VERSION } from '../../src/version.js';
import { linkDropIns, shippedCliCases } from '../helpers/shipped-cli.js';
import { tempDir } from '../helpers/temp.js';

shippedCliCases('the one file: node staplekeeper.mjs', async () => {
  const dir = await tempDir('sk-bundle-');
  const { path } = await bundle({ format: 'esm', outfile: join(dir, 'staplekeeper.mjs') });
  await linkDropIns(path);
  return {
    dir,
    env: {},
    command: (name) => ({
      file: process.execPath,
      args: [join(dir, name === 'staplekeeper' ? 'staplekeeper.mjs' : name)],
    }),
  };
});

it('the one file: a link named ocsprenewer.mjs is the drop-in, another name is staplekeeper', async () => {
  const dir = await tempDir('sk-bundle-names-');
  try {
    const { path } = await bundle({ format: 'esm', outfile: join(dir, 'staplekeeper.mjs') });
    await symlink(path, join(dir, 'ocsprenewer.mjs'));
    await symlink(path, join(dir, 'sk'));
    // run through its #!/usr/bin/env node line
    const env = { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` };
    const run = (file: string): string => spawnSync(file, ['-version'], { encoding: 'utf8', env }).stdout;
    expect(run(join(dir, 'ocsprenewer.mjs'))).toContain(`ocsprenewer (staplekeeper ${VERSION})`);
    // staplekeeper's own command line knows -V/--version, not ocsprenewer's -version
    const sk = spawnSync(join(dir, 'sk'), ['--version'], { encoding: 'utf8', env });
    expect(sk.stdout.trim()).toBe(VERSION);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
