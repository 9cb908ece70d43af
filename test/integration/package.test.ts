/**
 * What `npm pack` ships (README "What the package holds"), and that the
 * packed package loads: `require('staplekeeper')` (Node ≥ 20.19 loads the ES
 * module synchronously: the package has no top-level await) and `import`,
 * the three bin shims, and nothing that would run at install time (a
 * `prepare` script made npm warn about scripts it would not run).
 *
 * The tarball is unpacked into node_modules/staplekeeper of a temporary
 * project whose other packages are links to this repository's, so no
 * registry is asked.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ROOT } from '../helpers/cli-harness.js';
import { VERSION } from '../../src/version.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

/** The top level of the package, as the README lists it. */
const SHIPPED = ['CHANGELOG.md', 'LICENSE', 'README.md', 'bin', 'contrib', 'dist', 'docs', 'examples', 'package.json'];

describe('the npm package', () => {
  let dir: string;
  let files: string[];
  let project: string;

  beforeAll(async () => {
    assertBuilt();
    dir = await tempDir('sk-pack-');
    // --ignore-scripts: prepack would build again; `npm test` has just built dist/
    const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = info!.files.map((f) => f.path).sort();
    project = join(dir, 'project');
    const pkg = join(project, 'node_modules', 'staplekeeper');
    await mkdir(pkg, { recursive: true });
    execFileSync('tar', ['-xzf', join(dir, info!.filename), '-C', pkg, '--strip-components=1']);
    await writeFile(join(project, 'package.json'), '{ "name": "project", "private": true }\n');
    // the dependencies: links to this repository's installed packages
    for (const name of await readdir(join(ROOT, 'node_modules'))) {
      if (name.startsWith('.') || name === 'staplekeeper') continue;
      await symlink(join(ROOT, 'node_modules', name), join(project, 'node_modules', name));
    }
  }, 60_000);

  afterAll(cleanUp);

  it('holds what the README lists: LICENSE, examples/, dist/ without source maps, no bundle or binary', async () => {
    expect([...new Set(files.map((f) => f.split('/')[0]))].sort()).toEqual(SHIPPED);
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const listed = /<!-- npm-pack -->([\s\S]*?)<!-- \/npm-pack -->/.exec(readme)?.[1] ?? '';
    for (const top of SHIPPED) expect(listed).toContain(top);
    for (const f of [
      'LICENSE',
      'examples/https-server.mjs',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
      'dist/bundle/cli.js', // the command line's bundle, which the bins load (scripts/bundle-cli.mjs)
      'bin/staplekeeper',
      'bin/ocspbot',
      'bin/ocsprenewer',
      'contrib/systemd/staplekeeper.service',
      'docs/servers.md',
    ]) {
      expect(files).toContain(f);
    }
    // every file of the bundle (its chunks)
    for (const f of await readdir(join(ROOT, 'dist', 'bundle'))) expect(files).toContain(`dist/bundle/${f}`);
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(files.filter((f) => /staplekeeper\.(mjs|cjs)$|staplekeeper-linux|sea/.test(f))).toEqual([]);
    const license = await readFile(join(ROOT, 'LICENSE'), 'utf8');
    expect(license).toMatch(/^MIT License\n\nCopyright \(c\) 2026 the staplekeeper authors\n/);
  });

  it('runs nothing at install time and names its repository', async () => {
    const manifest = JSON.parse(
      await readFile(join(project, 'node_modules', 'staplekeeper', 'package.json'), 'utf8'),
    ) as {
      scripts: Record<string, string>;
      license: string;
      repository: { url: string };
      homepage: string;
      bugs: { url: string };
    };
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) expect(manifest.scripts[s]).toBeUndefined();
    expect(manifest.license).toBe('MIT');
    expect(manifest.repository.url).toMatch(/^git\+https:\/\//);
    expect(manifest.homepage).toMatch(/^https:\/\//);
    expect(manifest.bugs.url).toMatch(/^https:\/\//);
  });

  it('loads with require() and with import, and its bin shims run', () => {
    const node = (args: string[]): { status: number | null; stdout: string; stderr: string } => {
      const r = spawnSync(process.execPath, args, { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH } });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const cjs = node([
      '-e',
      "const s = require('staplekeeper'); console.log(typeof s.verifyResponse, typeof s.runOnce)",
    ]);
    expect(cjs.stderr).toBe('');
    expect(cjs.stdout.trim()).toBe('function function');
    const esm = node([
      '--input-type=module',
      '-e',
      "import { attachStapling, ERROR_CODES } from 'staplekeeper'; console.log(typeof attachStapling, typeof ERROR_CODES)",
    ]);
    expect(esm.stderr).toBe('');
    expect(esm.stdout.trim()).toBe('function object');
    const pkgJson = node(['-e', "console.log(require('staplekeeper/package.json').version)"]);
    expect(pkgJson.stdout.trim()).toBe(VERSION);
    const bin = join(project, 'node_modules', 'staplekeeper', 'bin');
    // the bins load the bundle unless it is older than dist/cli/main.js (npm pack gives every file one time)
    const installed = (f: string): number => statSync(join(project, 'node_modules', 'staplekeeper', f)).mtimeMs;
    expect(installed('dist/bundle/cli.js')).toBeGreaterThanOrEqual(installed('dist/cli/main.js'));
    expect(node([join(bin, 'staplekeeper'), '--version']).stdout.trim()).toBe(VERSION);
    expect(node([join(bin, 'ocspbot'), '-version']).stdout).toContain(`ocspbot (staplekeeper) ${VERSION}`);
    expect(node([join(bin, 'ocsprenewer'), '-version']).status).toBe(0);
  });
});
