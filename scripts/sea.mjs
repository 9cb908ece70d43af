#!/usr/bin/env node
// The one-binary build: `npm run sea` writes dist/staplekeeper-<platform>-<arch>
// (dist/staplekeeper-linux-x64 here), a Node single executable application:
// the Node binary running this script, with the CommonJS bundle of the command
// line (scripts/bundle.mjs) injected, so that it runs where no Node is installed.
//
//   node scripts/sea.mjs [--out FILE]
//
// The steps of Node 20's single executable applications:
//   1. bundle the command line as one CommonJS file (Node 20 runs only a
//      CommonJS script as the application; `require` there gives built-ins only);
//   2. `node --experimental-sea-config sea-config.json` turns it into a
//      preparation blob (with V8's code cache, which makes start-up faster);
//   3. copy process.execPath and inject the blob with postject, flipping the
//      NODE_SEA_FUSE_… fuse;
//   4. run the result once (`--version`) to prove it works.
// Intermediate files go to dist/sea/.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundle } from './bundle.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The fuse Node's single-executable support looks for (the same in every Node release that has it). */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/** The default output: dist/staplekeeper-<platform>-<arch>. */
export function defaultSeaPath() {
  return join(root, 'dist', `staplekeeper-${process.platform}-${process.arch}`);
}

/** Builds the binary at `out` (working files in `work`); returns its path and size. Throws on any failure. */
export async function buildSea({ out = defaultSeaPath(), work = join(root, 'dist', 'sea') } = {}) {
  if (process.platform !== 'linux')
    throw new Error(`npm run sea: only Linux binaries are built here (this is ${process.platform})`);
  mkdirSync(work, { recursive: true });
  mkdirSync(dirname(out), { recursive: true });
  const main = join(work, 'staplekeeper.cjs');
  const blob = join(work, 'sea-prep.blob');
  const config = join(work, 'sea-config.json');
  await bundle({ format: 'cjs', outfile: main });
  writeFileSync(
    config,
    `${JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }, null, 2)}\n`,
  );
  const prep = spawnSync(process.execPath, ['--experimental-sea-config', config], { encoding: 'utf8' });
  if (prep.status !== 0) {
    throw new Error(
      `node --experimental-sea-config failed (${prep.status ?? prep.signal}): ${prep.stderr || prep.stdout}`,
    );
  }

  rmSync(out, { force: true });
  copyFileSync(process.execPath, out);
  chmodSync(out, 0o755);
  // postject's API, in a child process: LIEF prints warnings about the ELF notes that are harmless,
  // shown only if the injection fails
  const injected = spawnSync(
    process.execPath,
    [
      '-e',
      `const [out, blob, fuse] = process.argv.slice(1);
       require('postject').inject(out, 'NODE_SEA_BLOB', require('node:fs').readFileSync(blob), { sentinelFuse: fuse })
         .catch((e) => { console.error(e); process.exit(1); });`,
      out,
      blob,
      SEA_FUSE,
    ],
    { cwd: root, encoding: 'utf8' },
  );
  if (injected.status !== 0) {
    throw new Error(`postject failed (${injected.status ?? injected.signal}): ${injected.stderr}${injected.stdout}`);
  }

  const check = spawnSync(out, ['--version'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
  const expected = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  if (check.status !== 0 || check.stdout.trim() !== expected) {
    throw new Error(
      `the binary does not run: ${out} --version gave ${check.status ?? check.signal}: ${check.stdout}${check.stderr}`,
    );
  }
  return { path: out, bytes: statSync(out).size };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const o = process.argv.indexOf('--out');
  const r = await buildSea(o >= 0 ? { out: resolve(process.argv[o + 1]) } : {});
  process.stdout.write(`${relative(process.cwd(), r.path)}: ${(r.bytes / 1e6).toFixed(1)} MB\n`);
}
