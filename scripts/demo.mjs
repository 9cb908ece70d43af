#!/usr/bin/env node
// The self-contained demo of the README's quick start: a throwaway CA with a
// delegated OCSP responder, a few certificates whose AIA points at a real
// `openssl ocsp` responder on a loopback port, and `staplekeeper run`
// renewing their staples into ./demo-out. Then a second run (nothing to do),
// an `inspect` of one staple, and the responder is stopped.
import { spawnSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPki } from './lib/pki.mjs';
import { freePort, startResponder } from './lib/responder.mjs';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const out = join(root, 'demo-out');
const bin = join(root, 'bin', 'staplekeeper');

function step(title) {
  process.stdout.write(`\n=== ${title}\n`);
}

function staplekeeper(args) {
  process.stdout.write(`$ staplekeeper ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: out, stdio: 'inherit' });
  const meaning =
    r.status === 0
      ? 'nothing renewed'
      : r.status <= 250
        ? 'the number of renewed staples, as ocspbot reports it'
        : 'an error';
  process.stdout.write(`(exit code ${r.status}: ${args[0] === 'run' ? meaning : r.status === 0 ? 'ok' : 'failure'})\n`);
  return r.status;
}

await rm(out, { recursive: true, force: true });
await mkdir(join(out, 'pki'), { recursive: true });
await mkdir(join(out, 'staples'), { recursive: true });

step('1. A throwaway CA, a delegated OCSP responder and three certificates');
const port = await freePort();
const pki = await createPki({
  dir: join(out, 'pki'),
  keyType: 'ec',
  ocspUrl: `http://127.0.0.1:${port}`,
  responder: 'delegated',
  leaves: [{ name: 'www.example' }, { name: 'mail.example' }, { name: 'api.example' }],
});
for (const leaf of Object.values(pki.leaves)) process.stdout.write(`  ${leaf.subject}  serial ${leaf.serialHex}\n`);

const responder = await startResponder({ pki, port });
process.stdout.write(`  openssl ocsp responder listening; staplekeeper talks to ${responder.url}\n`);

try {
  const config = [
    '# written by scripts/demo.mjs: an ocspbot-style configuration',
    'ocsp_folder: staples',
    'refresh_at: 0.5',
    'make_backups: true',
    'domains:',
    ...Object.values(pki.leaves).flatMap((leaf) => [
      `  ${leaf.name}:`,
      `    cert: pki/${leaf.name}.crt`,
      `    chain: pki/${leaf.name}-chain.pem`,
      `    rootchain: pki/${leaf.name}-rootchain.pem`,
      `    ocsp: ${leaf.name}.der`,
    ]),
    '',
  ].join('\n');
  await writeFile(join(out, 'staplekeeper.yaml'), config);

  step('2. First run: every staple is missing, so all are fetched, verified and written');
  staplekeeper(['run', '-c', 'staplekeeper.yaml']);

  step('3. Second run: the staples are fresh, nothing is fetched (exit code 0)');
  staplekeeper(['run', '-c', 'staplekeeper.yaml']);

  step('4. --dry-run: each decision, its reason and when the next refresh is due');
  staplekeeper(['run', '-c', 'staplekeeper.yaml', '--dry-run']);

  step('5. What a staple holds, and whether it is valid for its certificate now');
  staplekeeper([
    'inspect',
    'staples/www.example.der',
    '--cert',
    'pki/www.example.crt',
    '--chain',
    'pki/www.example-chain.pem',
  ]);
} finally {
  await responder.stop();
  step('Done: the responder is stopped; everything is in ./demo-out');
}
