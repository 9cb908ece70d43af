#!/usr/bin/env node
// The one-file build: `npm run bundle` writes dist/staplekeeper.mjs, the whole
// command line (every dependency inside) in one ES module, run as
// `node staplekeeper.mjs <command>`; no node_modules at run time.
//
//   node scripts/bundle.mjs                 # dist/staplekeeper.mjs (ESM)
//   node scripts/bundle.mjs --cjs OUT.cjs   # the CommonJS variant the single executable needs (scripts/sea.mjs)
//
// Three things differ from the tsc build (dist/), each checked here:
// - src/io/http.ts loads undici lazily through createRequire(import.meta.url)
//   (src/core/asn1.ts loads @peculiar/asn1-cms with import(), which esbuild
//   follows by itself); esbuild follows only a plain
//   `require(...)`, so those calls are rewritten to it (and the build fails if
//   a createRequire it does not know is left).
// - The caches' code fingerprints (src/io/fingerprint.ts) read our module files,
//   which a bundle does not have: __STAPLEKEEPER_BUILD__ is defined to the
//   SHA-256 of every source file, so a changed source still invalidates them.
// - The check thread (src/pipeline/signature-thread.ts) starts from source text
//   (`eval: true`), so it needs no file of its own and works from the bundle
//   and from the binary alike.
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** SHA-256 over the path and bytes of every file under src/, in path order. */
function sourceHash() {
  const files = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else files.push(p);
    }
  };
  walk(join(root, 'src'));
  files.push(join(root, 'scripts', 'bundle-entry.ts'), join(root, 'package-lock.json'));
  const h = createHash('sha256');
  for (const f of files.sort()) {
    h.update(`${relative(root, f)}\0`);
    h.update(readFileSync(f));
    h.update('\0');
  }
  return h.digest('base64url');
}

/** createRequire(import.meta.url)(x) → require(x), so that esbuild bundles x. */
const plainRequire = {
  name: 'plain-require',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, (args) => {
      let code = readFileSync(args.path, 'utf8');
      if (!code.includes('createRequire(')) return undefined;
      code = code
        .replace(/^\s*const require = createRequire\(import\.meta\.url\);\s*$/m, '')
        .replaceAll('createRequire(import.meta.url)(', 'require(')
        .replace(/^import \{ createRequire \} from 'node:module';\s*$/m, '');
      if (code.includes('createRequire(')) {
        throw new Error(`${relative(root, args.path)}: a createRequire() the bundle does not know how to rewrite`);
      }
      return { contents: code, loader: 'ts' };
    });
  },
};

/** Builds the bundle; `format` 'esm' (the one file) or 'cjs' (for the single executable). Returns the path. */
export async function bundle({ format = 'esm', outfile } = {}) {
  const out = resolve(root, outfile ?? join('dist', format === 'esm' ? 'staplekeeper.mjs' : 'staplekeeper.cjs'));
  mkdirSync(dirname(out), { recursive: true });
  const result = await build({
    entryPoints: [join(root, 'scripts', 'bundle-entry.ts')],
    outfile: out,
    bundle: true,
    platform: 'node',
    target: 'node20.19',
    format,
    minifySyntax: true,
    minifyWhitespace: true,
    legalComments: 'eof',
    // the ES module needs `require` for the CommonJS dependencies' node: built-ins
    banner:
      format === 'esm'
        ? {
            js: "#!/usr/bin/env node\nimport { createRequire as __skCreateRequire } from 'node:module'; const require = __skCreateRequire(import.meta.url);",
          }
        : { js: '#!/usr/bin/env node' },
    define: { __STAPLEKEEPER_BUILD__: JSON.stringify(sourceHash()) },
    plugins: [plainRequire],
    // import.meta.url is only passed to src/io/fingerprint.ts, which does not use it in a bundle
    logOverride: format === 'cjs' ? { 'empty-import-meta': 'silent' } : {},
    logLevel: 'warning',
    metafile: true,
  });
  chmodSync(out, 0o755);
  const bytes = statSync(out).size;
  return { path: out, bytes, inputs: Object.keys(result.metafile.inputs) };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const cjs = process.argv.indexOf('--cjs');
  const r = await bundle(cjs >= 0 ? { format: 'cjs', outfile: process.argv[cjs + 1] } : {});
  process.stdout.write(
    `${relative(process.cwd(), r.path)}: ${(r.bytes / 1024).toFixed(0)} KiB from ${r.inputs.length} files\n`,
  );
}
