/**
 * A tampered `.staplekeeper-cache.json` (docs/SECURITY.md), through the real
 * executable: whoever can write the staple folder could edit a cached
 * verdict (another certificate's staple, "good until 2063") with a valid
 * checksum, and `run` kept the wrong staple. Records now carry an
 * HMAC-SHA256 under a per-host secret; an edited record is ignored and the
 * staple is verified from its bytes, so the decision is the one a run
 * without cache makes.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentHash } from '../../src/io/fingerprint.js';
import {
  endCliBench,
  outcomesById,
  runCli,
  showResult,
  startCliBench,
  tempDir,
  writeCert,
  writeConfig,
  writeDomains,
} from '../helpers/cli-harness.js';
import type { CliResult, GoodResponder } from '../helpers/cli-harness.js';
import type { TestPki } from '../helpers/mint.js';

const COUNT = 8; // a folder gets a cache file from 8 staples on
let dir: string;
let pki: TestPki;
let responder: GoodResponder;
let cfg: string;

beforeAll(async () => {
  ({ dir, pki, responder } = await startCliBench('sk-rel-mac-', COUNT));
  const { domains } = await writeDomains(dir, pki);
  cfg = await writeConfig(join(dir, 'sk.yaml'), {
    ocsp_folder: dir,
    responders: Object.fromEntries(Object.keys(domains).map((d) => [d, responder.url])),
    domains,
  });
});

afterAll(endCliBench);

const run = (): Promise<CliResult> => runCli(['run', '-c', cfg, '--json'], { timeoutMs: 60_000 });

describe('a tampered verdict cache (docs/SECURITY.md "Cached verdicts are signed")', () => {
  it('an edited record (another staple, good until 2063, checksum recomputed) is ignored', async () => {
    const first = await run();
    expect(first.code, showResult(first)).toBe(COUNT);
    const cachePath = join(dir, '.staplekeeper-cache.json');
    expect((await stat(cachePath)).isFile(), showResult(first)).toBe(true);
    // the cache holds the verdicts now
    const second = await run();
    expect(second.code, showResult(second)).toBe(0);

    // the attacker: leaf1's staple in leaf0's place, and leaf0's record says its bytes are good until 2063
    const foreign = await readFile(join(dir, 'leaf1.der'));
    await writeFile(join(dir, 'leaf0.der'), foreign);
    const data = await readFile(cachePath, 'utf8');
    const nl = data.indexOf('\n');
    const header = JSON.parse(data.slice(0, nl)) as Record<string, unknown>;
    const y2063 = String(Date.UTC(2063, 0, 1));
    let edited = 0;
    const body = data
      .slice(nl + 1)
      .split('\n')
      .map((line) => {
        if (!line.startsWith('"leaf0.der"\t')) return line;
        edited++;
        const f = line.split('\t');
        f[2] = contentHash(foreign); // the staple file's SHA-256
        f[6] = 'good';
        f[8] = y2063; // nextUpdate
        f[10] = y2063; // usableUntil
        return f.join('\t');
      })
      .join('\n');
    expect(edited).toBe(1);
    header.sha256 = contentHash(Buffer.from(body, 'utf8'));
    await writeFile(cachePath, `${JSON.stringify(header)}\n${body}`);

    // the decision a run without cache makes: leaf0's staple is for another certificate, so it is replaced
    const third = await run();
    const o = outcomesById(third.stdout).get('leaf0');
    expect(o?.result, showResult(third)).toBe('updated');
    expect(third.code, showResult(third)).toBe(1);
    expect(Buffer.compare(await readFile(join(dir, 'leaf0.der')), foreign)).not.toBe(0);
  });

  it('without a usable secret (a key file others can read) the verdict cache is not used at all', async () => {
    const keys = await tempDir('sk-rel-mac-keys-');
    await writeFile(join(keys, 'verdict-cache.key'), Buffer.alloc(32, 7), { mode: 0o644 });
    const folder = join(dir, 'nosecret');
    await mkdir(folder);
    const domains: Record<string, unknown> = {};
    for (const [i, leaf] of pki.leaves.entries()) {
      const { cert, chain } = await writeCert(folder, `leaf${i}`, leaf, pki.root);
      domains[`leaf${i}`] = { cert, chain, ocsp: `leaf${i}.der` };
    }
    const c = await writeConfig(join(folder, 'sk.yaml'), {
      ocsp_folder: folder,
      responders: Object.fromEntries(Object.keys(domains).map((d) => [d, responder.url])),
      domains,
    });
    const env = { STAPLEKEEPER_CACHE_DIR: keys };
    const a = await runCli(['run', '-c', c, '--json'], { timeoutMs: 60_000, env });
    expect(a.code, showResult(a)).toBe(COUNT);
    const b = await runCli(['run', '-c', c, '--json'], { timeoutMs: 60_000, env });
    expect(b.code, showResult(b)).toBe(0); // correct, only slower
    expect(existsSync(join(folder, '.staplekeeper-cache.json'))).toBe(false);
  });

  it('the secret is 32 bytes, mode 0600, in the configuration cache folder', async () => {
    const folder = process.env.STAPLEKEEPER_CACHE_DIR;
    expect(folder).toBeTruthy();
    const st = await stat(join(folder as string, 'verdict-cache.key'));
    expect(st.size).toBe(32);
    expect(st.mode & 0o777).toBe(0o600);
  });
});
