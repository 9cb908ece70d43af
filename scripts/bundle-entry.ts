/**
 * The entry point of the one-file build (dist/staplekeeper.mjs) and of the
 * one-binary build (dist/staplekeeper-linux-x64), both made by
 * scripts/bundle.mjs. It does what the three bin/ shims do, choosing the
 * command line by the name it was invoked as, so that a link named
 * `ocspbot` or `ocsprenewer` is that drop-in:
 *
 * - as a file run by Node (`node staplekeeper.mjs`, or a link to it), the
 *   script's name: process.argv[1];
 * - as a single executable application, the name the program was started
 *   by: process.argv0 (process.execPath and argv[0] are the binary itself,
 *   whatever link it was started through).
 *
 * The name is compared without its folder and without an extension
 * (`ocspbot.mjs` is `ocspbot`). No top-level await: the same source is also
 * bundled as CommonJS, which the binary needs on Node 20.
 */
// first: the signal handlers are installed before any other module's code runs (src/cli/early-signals.ts)
import '../src/cli/early-signals-install.js';
import { basename } from 'node:path';
import { isSea } from 'node:sea';

type Prog = 'staplekeeper' | 'ocspbot' | 'ocsprenewer';

/** The command line for an invocation name (a path, a bare name, with or without extension). */
export function progFor(invokedAs: string | undefined): Prog {
  const name = basename(invokedAs ?? '').replace(/\.(?:mjs|cjs|js)$/, '');
  return name === 'ocspbot' || name === 'ocsprenewer' ? name : 'staplekeeper';
}

const sea = isSea();
// in a single executable application, argv[1] is the binary again and the arguments start at argv[2]
const prog = progFor(sea ? process.argv0 : process.argv[1]);
// imported here, not above: like the bin/ shims, nothing of the CLI runs before this module's own code
import('../src/cli/main.js')
  .then(({ runMain }) => runMain(prog, process.argv.slice(2)))
  .catch((e: unknown) => {
    process.stderr.write(`${(e instanceof Error && e.stack) || String(e)}\n`);
    process.exit(1);
  });
