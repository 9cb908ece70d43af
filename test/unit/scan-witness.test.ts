/**
 * config/scan.ts: the digest a warm load compares (`scanWitness`, made
 * without keeping the observations) is exactly the one the load that kept
 * the scan's result recorded (`witnessDigest` of scanFolder's observations),
 * so the cached result is used exactly when it was before.
 */
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WitnessDigest, scanFolder, scanWitness, witnessDigest } from '../../src/config/scan.js';
import type { ScanConfig } from '../../src/config/types.js';
import { tempDir } from '../helpers/temp.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('scan witness digests', () => {
  it('WitnessDigest gives witnessDigest of the same observations, short and long, any characters', () => {
    const lists: string[][] = [[], ['f'], ['', ''], ['Ré/é', 'f😀x', 'o\u0000'], []];
    const long: string[] = [];
    for (let i = 0; i < 20_000; i++) long.push(`${'fdo'[i % 3]}d${i}${i % 7 === 0 ? '-é😀' : ''}.pem`);
    lists.push(long);
    for (const list of lists) {
      const d = new WitnessDigest();
      for (const o of list) d.push(o);
      expect(d.digest()).toBe(witnessDigest(list));
    }
  });

  it('scanWitness is the digest of what scanFolder observed, flat and recursive, with links and a loop', async () => {
    const dir = await tempDir('sk-witness-');
    dirs.push(dir);
    const folder = join(dir, 'certs');
    await mkdir(join(folder, 'sub', 'deeper'), { recursive: true });
    for (const d of ['a.example', 'b.example', 'é.example']) {
      for (const f of [`${d}.pem`, `${d}-chain.pem`, `${d}-rootchain.pem`]) await writeFile(join(folder, f), 'x');
      await writeFile(join(folder, 'sub', `${d}.pem`), 'x');
    }
    await symlink(join(folder, 'a.example.pem'), join(folder, 'link.example.pem'));
    await symlink(folder, join(folder, 'sub', 'deeper', 'loop'));
    await symlink(join(folder, 'missing'), join(folder, 'dangling.pem'));
    for (let i = 0; i < 5000; i++) await writeFile(join(folder, `n${i}.txt`), '');
    for (const recursive of [false, true]) {
      const scan: ScanConfig = {
        folder,
        recursive,
        certMask: '{domain}.pem',
        chainMask: '{domain}-chain.pem',
        rootchainMask: '{domain}-rootchain.pem',
        ocspMask: '{domain}.ocsp-resp',
        origin: 'test',
      };
      const witness: string[] = [];
      const targets = await scanFolder(scan, join(dir, 'staples'), { witness });
      expect(targets.length).toBeGreaterThanOrEqual(3);
      expect(witness.join('\0').length).toBeGreaterThan(32 * 1024);
      expect(await scanWitness(scan)).toBe(witnessDigest(witness));
    }
  });
});
