#!/usr/bin/env node
// The command line's own bundle: `npm run build` runs this after tsc, writing
// dist/bundle/ (cli.js and a few chunk-*.js files), which bin/staplekeeper,
// bin/ocspbot and bin/ocsprenewer load when it is there (the module tree
// dist/cli/main.js when it is not). It is made from dist/ itself, so it is the
// same code as the module tree, in ~20 files instead of ~60 for a warm `run`:
// Node's ES module loader pays per module (resolving, reading and linking each
// URL), which was ~20 % of a warm check of 1,000 (docs/PERFORMANCE.md, "Small
// sites").
//
//   node scripts/bundle-cli.mjs            # after `tsc -p tsconfig.build.json`
//
// Unlike the one file (scripts/bundle.mjs, everything inside), this bundle is
// for the npm package, beside its node_modules:
// - Dependencies stay outside and load as before, lazily (yaml and zod only for
//   a configuration not in its cache, undici only for a request, …); only
//   commander, which every command needs, is inside.
// - cli.js is the entry (dist/cli/main.js with commander: what --version and
//   --help need); each command stays behind its import() there, so a command
//   loads its own code only. Below that, a dynamic import() of one of our
//   modules is made static, so that a command's code comes in a few chunks,
//   except where the module (or what it imports) imports a dependency: those
//   stay behind their import(), and so does the daemon (SEPARATE). The build
//   fails if cli.js or a command would load a dependency at start.
// - A module made static is evaluated when its chunk loads rather than at its
//   import(): our modules' top-level code only declares (the one module that
//   acts when loaded, src/cli/early-signals-install.ts, is not part of this
//   bundle), so this changes nothing but timing.
// - `import.meta.url` in a module is rewritten to the URL of its own file in
//   dist/, so that what depends on it works as in the module tree: the caches'
//   code fingerprints (src/io/fingerprint.ts) read the same module files, so
//   both forms share their caches, and createRequire() finds node_modules.
// - Not minified: a --verbose stack trace names readable functions and lines.
// - The check thread (src/pipeline/signature-thread.ts) starts from source
//   text, so it needs no file of its own here either.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The entry the bins load (relative to the repository). */
export const CLI_BUNDLE = join('dist', 'bundle', 'cli.js');

/**
 * Modules kept behind their import() though they import no dependency: the
 * daemon and its status service, large and needed by no one-shot command (the
 * ocsprenewer drop-in imports the daemon for its -loop mode only).
 */
const SEPARATE = new Set(['daemon/daemon.js', 'status/server.js']);

/**
 * Builds dist/bundle/ from dist/ (run tsc first). `dist` and `outdir` default
 * to the repository's. Returns the output files (relative to the repository,
 * with their sizes) and the modules left behind an import() (`lazy`).
 */
export async function bundleCli({ dist = join(root, 'dist'), outdir = join(dist, 'bundle') } = {}) {
  const entry = join(dist, 'cli', 'main.js');
  if (!existsSync(entry)) throw new Error(`${relative(root, entry)} is missing: run tsc -p tsconfig.build.json first`);
  const commander = createRequire(join(root, 'package.json')).resolve('commander');
  const inside = (p) => p === commander || p.startsWith(dirname(commander) + '/');
  const common = {
    entryPoints: { cli: entry },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20.19',
    chunkNames: 'chunk-[hash]',
    packages: 'external',
    logLevel: 'warning',
    metafile: true,
    absWorkingDir: root,
  };
  const withCommander = {
    name: 'commander-inside',
    setup(b) {
      b.onResolve({ filter: /^commander$/ }, () => ({ path: commander }));
    },
  };

  // 1. the module graph: which of our modules import a dependency, themselves or through static imports
  const probe = await build({ ...common, outdir, write: false, plugins: [withCommander] });
  const inputs = probe.metafile.inputs;
  const heavy = new Map();
  const importsDependency = (p, path = new Set()) => {
    if (heavy.has(p)) return heavy.get(p);
    if (path.has(p) || !inputs[p]) return false;
    path.add(p);
    let h = false;
    for (const i of inputs[p].imports) {
      if (i.kind !== 'import-statement') continue;
      if (i.external ? !i.path.startsWith('node:') : importsDependency(i.path, path)) h = true;
    }
    path.delete(p);
    heavy.set(p, h);
    return h;
  };
  for (const p of Object.keys(inputs)) importsDependency(p);
  const isLight = (file) =>
    heavy.get(relative(root, file)) === false && !SEPARATE.has(relative(dist, file).split(sep).join('/'));

  // 2. the bundle
  let n = 0;
  rmSync(outdir, { recursive: true, force: true });
  const result = await build({
    ...common,
    outdir,
    // commander's require('node:…') calls
    banner: {
      js: [
        '// staplekeeper: the command line bundle, made from dist/ by scripts/bundle-cli.mjs (npm run build)',
        "import { createRequire as __skCreateRequire } from 'node:module'; const require = __skCreateRequire(import.meta.url);",
      ].join('\n'),
    },
    plugins: [
      withCommander,
      {
        name: 'staplekeeper-cli',
        setup(b) {
          b.onLoad({ filter: /\.js$/ }, (args) => {
            if (inside(args.path)) return undefined;
            let code = readFileSync(args.path, 'utf8');
            const here = JSON.stringify(relative(outdir, args.path));
            code = code.replaceAll('import.meta.url', `new URL(${here}, import.meta.url).href`);
            // the entry's import() of each command stays: a command loads its own code only
            if (args.path === entry) return { contents: code, loader: 'js' };
            const statics = [];
            code = code.replace(/\bimport\('(\.{1,2}\/[^']+\.js)'\)/g, (call, spec) => {
              if (!isLight(resolve(dirname(args.path), spec))) return call;
              const id = `__skStatic${n++}`;
              statics.push(`import * as ${id} from ${JSON.stringify(spec)};`);
              return `Promise.resolve(${id})`;
            });
            return { contents: statics.join('\n') + (statics.length ? '\n' : '') + code, loader: 'js' };
          });
        },
      },
    ],
  });
  // cli.js and each command (with what they load statically) must import no dependency: it would load at
  // every start of that command
  const out = result.metafile.outputs;
  const eager = (file, seen = new Set()) => {
    if (seen.has(file)) return [];
    seen.add(file);
    return out[file].imports
      .filter((i) => i.kind === 'import-statement')
      .flatMap((i) => (i.external ? (i.path.startsWith('node:') ? [] : [i.path]) : eager(i.path, seen)));
  };
  const cli = Object.keys(out).find((f) => out[f].entryPoint === relative(root, entry));
  const commands = out[cli].imports.filter((i) => i.kind === 'dynamic-import' && !i.external).map((i) => i.path);
  for (const f of [cli, ...commands]) {
    const deps = [...new Set(eager(f))];
    if (deps.length) throw new Error(`the CLI bundle: ${f} would load ${deps.join(', ')} at every start`);
  }
  const outputs = Object.entries(out).map(([f, o]) => ({ file: f, bytes: o.bytes }));
  const lazy = [...heavy].filter(([p, h]) => h && !p.startsWith('node_modules')).map(([p]) => p);
  return { outputs, lazy };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const r = await bundleCli();
  const kib = r.outputs.reduce((s, o) => s + o.bytes, 0) / 1024;
  process.stdout.write(`${CLI_BUNDLE}: ${r.outputs.length} files, ${kib.toFixed(0)} KiB\n`);
}
