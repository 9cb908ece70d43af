/**
 * The one file (`npm run bundle` → dist/staplekeeper.mjs): built here by the
 * same function into a temporary folder with no node_modules, run as
 * `node staplekeeper.mjs …` and through links named `ocspbot` and
 * `ocsprenewer`, against the key cases of the CLI suite
 * (test/helpers/shipped-cli.ts).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundle } from '../../scripts/bundle.mjs';
import { linkDropIns, shippedCliCases } from '../helpers/shipped-cli.js';

shippedCliCases('the one file: node staplekeeper.mjs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sk-bundle-'));
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
