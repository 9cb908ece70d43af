/**
 * Names from Object.prototype (docs/SECURITY.md), through the real
 * executable: a domain called `__proto__` and a scanned certificate named
 * `constructor.pem` keep their staples like any other name (they used to be
 * dropped silently: a plain object as the name map).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endCliBench, outcomesById, runCli, startCliBench, writeConfig } from '../helpers/cli-harness.js';
import type { GoodResponder } from '../helpers/cli-harness.js';
import type { TestPki } from '../helpers/mint.js';

let dir: string;
let pki: TestPki;
let responder: GoodResponder;

beforeAll(async () => {
  ({ dir, pki, responder } = await startCliBench('sk-rel-names-', 3));
});

afterAll(endCliBench);

describe('names from Object.prototype (docs/SECURITY.md "Names are keys, never properties")', () => {
  it('a domain called __proto__ and scanned constructor.pem / toString.pem are renewed, with responders: overrides', async () => {
    const scan = join(dir, 'scan');
    await mkdir(scan);
    for (const [i, name] of ['constructor', 'toString'].entries()) {
      await writeFile(join(scan, `${name}.pem`), pki.leaves[i]!.pem);
      await writeFile(join(scan, `${name}-chain.pem`), pki.root.pem);
      await writeFile(join(scan, `${name}-rootchain.pem`), pki.root.pem);
    }
    await writeFile(join(dir, 'p.pem'), pki.leaves[2]!.pem);
    await writeFile(join(dir, 'chain.pem'), pki.root.pem);
    const cfg = await writeConfig(join(dir, 'sk.yaml'), {
      ocsp_folder: dir,
      scan_keys: [{ folder: scan }],
      // the leaves' AIA names a port nobody listens on: every staple needs its override
      responders: { constructor: responder.url, toString: responder.url, ['__proto__']: responder.url },
      domains: { ['__proto__']: { cert: join(dir, 'p.pem'), chain: join(dir, 'chain.pem'), ocsp: 'proto.der' } },
    });
    const r = await runCli(['run', '-c', cfg, '--json'], { timeoutMs: 30_000 });
    const by = outcomesById(r.stdout);
    expect([...by.keys()].sort(), r.stdout + r.stderr).toEqual(['__proto__', 'constructor', 'toString']);
    for (const id of by.keys()) expect(by.get(id)?.result, `${id}\n${r.stdout}\n${r.stderr}`).toBe('updated');
    expect(r.code).toBe(3);
    expect(existsSync(join(dir, 'proto.der'))).toBe(true);
    expect(existsSync(join(dir, 'constructor.ocsp-resp'))).toBe(true);
  });
});
