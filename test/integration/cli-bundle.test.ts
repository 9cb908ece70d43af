/**
 * The command line's bundle (dist/bundle/, made by `npm run build` with
 * scripts/bundle-cli.mjs): the bins load it when it is there, and the module
 * tree (dist/cli/main.js) when it is not. Real child processes of the bins,
 * with a module hook (NODE_OPTIONS=--import) that writes down every module
 * the ES module loader loads.
 *
 * - From the bundle, a warm `run` loads a handful of files and no dependency
 *   (commander is inside, yaml/zod/undici/@peculiar stay behind their lazy
 *   imports), and a cold `check` still verifies on the check thread.
 * - Without it (a copy of the bins beside a dist/ with no bundle/), the same
 *   commands give the same answers, and the two forms share their caches:
 *   their code fingerprints are computed from the same module files.
 * - `--verbose` still prints a stack trace, naming the bundle's files.
 * - A bundle older than the module tree (tsc run alone after a build) is
 *   passed over: the bins never run code older than dist/.
 */
import { cpSync, mkdirSync, readdirSync, readFileSync, symlinkSync, utimesSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertBuilt,
  killAllChildren,
  removeTempDirs,
  ROOT,
  runCli,
  showResult,
  snapshot,
  startGoodResponder,
  tempDir,
  writeConfig,
  writeDomains,
  type GoodResponder,
} from '../helpers/cli-harness.js';
import { buildTestPki } from '../helpers/mint.js';

let dir: string;
let responder: GoodResponder;
let register: string;
/** A copy of the bins beside a dist/ without bundle/ (links to the built dist/ modules). */
let treeBin: string;
let cfg: string;
let staples: string[];

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('sk-cli-bundle-');
  const hooks = join(dir, 'hooks.mjs');
  await writeFile(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  if (!url.startsWith('node:')) appendFileSync(process.env.SK_TEST_LOADED, url + '\\n');
  return next(url, context);
}
`,
  );
  register = join(dir, 'register.mjs');
  await writeFile(
    register,
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
  );

  const pkg = join(dir, 'tree');
  mkdirSync(join(pkg, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'bin'), join(pkg, 'bin'), { recursive: true });
  for (const entry of readdirSync(join(ROOT, 'dist'))) {
    if (entry !== 'bundle') symlinkSync(join(ROOT, 'dist', entry), join(pkg, 'dist', entry));
  }
  treeBin = join(pkg, 'bin', 'staplekeeper');

  const pki = buildTestPki({ keyType: 'ec-p256', delegated: false, now: new Date(), leafCount: 8 }); // 8: the staple-folder cache is made from 8 targets on;
  responder = await startGoodResponder(pki, pki.leaves);
  const folder = join(dir, 'site');
  mkdirSync(folder);
  const d = await writeDomains(folder, pki, { responderUrl: responder.url });
  staples = d.staples;
  cfg = await writeConfig(join(folder, 'staplekeeper.yaml'), { ocsp_folder: folder, domains: d.domains });
}, 60_000);

afterAll(async () => {
  await killAllChildren();
  await responder?.close();
  await removeTempDirs();
});

let n = 0;
/** Runs a bin with the module hook; returns the result and the URLs loaded (node: built-ins aside). */
async function traced(args: string[], bin?: string, env: Record<string, string> = {}) {
  const list = join(dir, `loaded-${n++}.txt`);
  await writeFile(list, '');
  const r = await runCli(args, {
    ...(bin ? { bin } : {}),
    cwd: dir,
    timeoutMs: 60_000,
    env: {
      NODE_OPTIONS: `--import=${pathToFileURL(register).href}`,
      SK_TEST_LOADED: list,
      STAPLEKEEPER_CACHE_DIR: join(dir, 'cache'),
      ...env,
    },
  });
  const loaded = readFileSync(list, 'utf8').split('\n').filter(Boolean);
  return { r, loaded };
}

const bundleUrl = pathToFileURL(join(ROOT, 'dist', 'bundle')).href + '/';
const distUrl = pathToFileURL(join(ROOT, 'dist')).href + '/';

describe('the bins and the command line bundle', () => {
  it('a warm run from the bundle loads a few of its files and no dependency; the module tree gives the same answer from the same caches', async () => {
    const first = await traced(['run', '-c', cfg]);
    expect(first.r.code, showResult(first.r)).toBe(8); // every staple renewed
    expect(first.loaded).toContain(`${bundleUrl}cli.js`);
    const warm = await traced(['run', '-c', cfg]);
    expect(warm.r.code, showResult(warm.r)).toBe(0);
    const cache = join(dir, 'site', '.staplekeeper-cache.json');
    const before = await snapshot(cache);
    const ours = warm.loaded.filter((u) => u.startsWith(distUrl));
    expect(ours.length).toBeGreaterThan(0);
    // only the bundle's files
    expect(ours.filter((u) => !u.startsWith(bundleUrl))).toEqual([]);
    // no dependency: commander is inside, the others stay lazy (the configuration came from its cache)
    expect(warm.loaded.filter((u) => u.includes('/node_modules/'))).toEqual([]);

    const tree = await traced(['run', '-c', cfg], treeBin);
    expect(tree.r.code, showResult(tree.r)).toBe(0);
    expect(tree.r.stdout).toBe(warm.r.stdout);
    expect(tree.r.stderr).toBe(warm.r.stderr);
    expect(tree.loaded).toContain(`${distUrl}cli/main.js`);
    expect(tree.loaded.filter((u) => u.startsWith(bundleUrl))).toEqual([]);
    // and fewer of them than the module tree has modules (~20 against ~60)
    expect(ours.length).toBeLessThanOrEqual(tree.loaded.filter((u) => u.startsWith(distUrl)).length / 2);
    // the module tree took the staple-folder cache the bundle wrote (the same code fingerprints): untouched
    expect(await snapshot(cache)).toEqual(before);
    expect((await snapshot(cache)).mtimeMs).toBe(before.mtimeMs);
    for (const s of staples) expect((await snapshot(s)).bytes.length).toBeGreaterThan(100);
  }, 120_000);

  it('a cold check from the bundle verifies on the check thread, as the module tree does', async () => {
    for (const bin of [undefined, treeBin]) {
      const cache = join(dir, 'site', '.staplekeeper-cache.json');
      await writeFile(cache, ''); // not a cache: every staple is verified again
      const { r, loaded } = await traced(['check', '-c', cfg], bin, {
        NODE_DEBUG: 'staplekeeper',
        STAPLEKEEPER_CACHE_DIR: 'off',
      });
      expect(r.stdout, showResult(r)).toMatch(/^STAPLEKEEPER OK - 8 staples/);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/check thread answered \d+ checks/);
      expect(r.stderr).not.toMatch(/check thread (failed|could not start)/);
      expect(loaded.some((u) => u.startsWith(bundleUrl))).toBe(bin === undefined);
    }
  }, 120_000);

  it('--version, the drop-ins and a --verbose stack trace, from the bundle and from the module tree', async () => {
    const treeDir = join(treeBin, '..');
    for (const [bins, form] of [
      [join(ROOT, 'bin'), bundleUrl],
      [treeDir, `${distUrl}cli/main.js`],
    ] as const) {
      const v = await traced(['--version'], join(bins, 'staplekeeper'));
      expect(v.r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
      expect(v.loaded.some((u) => u.startsWith(form))).toBe(true);
      const bot = await traced(['-version'], join(bins, 'ocspbot'));
      expect(bot.r.stdout).toContain('ocspbot (staplekeeper)');
      const renewer = await traced(['-version'], join(bins, 'ocsprenewer'));
      expect(renewer.r.stdout).toContain('ocsprenewer (staplekeeper');
      expect(renewer.loaded.some((u) => u.startsWith(form))).toBe(true);

      const missing = join(dir, 'missing.der');
      const quiet = await traced(['inspect', missing], join(bins, 'staplekeeper'));
      expect(quiet.r.code).toBe(1);
      expect(quiet.r.stderr.trim().split('\n')).toHaveLength(1);
      expect(quiet.r.stderr).toContain('missing.der');
      const verbose = await traced(['inspect', missing, '--verbose'], join(bins, 'staplekeeper'));
      expect(verbose.r.code).toBe(1);
      expect(verbose.r.stderr).toContain('missing.der');
      // a stack trace whose frames name our code: the bundle's files, or the modules
      const frames = verbose.r.stderr.split('\n').filter((l) => /^\s+at /.test(l));
      expect(frames.length).toBeGreaterThan(0);
      const where = form === bundleUrl ? /dist\/bundle\/(cli|chunk-\w+)\.js:\d+/ : /dist\/cli\/inspect\.js:\d+/;
      expect(verbose.r.stderr).toMatch(where);
    }
  }, 120_000);

  it('a bundle older than the module tree (tsc run alone after a build) is passed over for the module tree', async () => {
    const pkg = join(dir, 'stale');
    cpSync(join(ROOT, 'bin'), join(pkg, 'bin'), { recursive: true });
    cpSync(join(ROOT, 'dist'), join(pkg, 'dist'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
    const bin = join(pkg, 'bin', 'staplekeeper');
    const main = join(pkg, 'dist', 'cli', 'main.js');
    const bundle = join(pkg, 'dist', 'bundle', 'cli.js');
    const form = async (): Promise<string[]> => {
      const { r, loaded } = await traced(['--version'], bin);
      expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
      return loaded.filter((u) => u === pathToFileURL(main).href || u === pathToFileURL(bundle).href);
    };
    const t = Date.now() / 1000;
    utimesSync(main, t, t);
    utimesSync(bundle, t - 60, t - 60);
    expect(await form()).toEqual([pathToFileURL(main).href]);
    utimesSync(bundle, t, t); // as npm pack leaves them: the same time on every file
    expect(await form()).toEqual([pathToFileURL(bundle).href]);
    utimesSync(bundle, t + 60, t + 60); // as `npm run build` leaves them
    expect(await form()).toEqual([pathToFileURL(bundle).href]);
  }, 120_000);
});
