import { symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { StapleError } from '../../src/core/errors.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('sk-cfgfiles-');
});
afterAll(cleanUp);

describe('certificate paths that exist but cannot be used', () => {
  it('a symlink loop is named as such, not as "not found"', async () => {
    await symlink(join(dir, 'loop-b'), join(dir, 'loop-a'));
    await symlink(join(dir, 'loop-a'), join(dir, 'loop-b'));
    await writeFile(join(dir, 'c.yaml'), `domains:\n  site:\n    cert: ${join(dir, 'loop-a')}\n    ocsp: s.der\n`);
    const e = (await loadConfig(join(dir, 'c.yaml'), { cwd: dir }).catch((x: unknown) => x)) as StapleError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(
      /c\.yaml:3:11 domains\.site\.cert: certificate file cannot be used: .*loop-a: too many levels of symbolic links \(symlink loop\) \(domain site\)/,
    );
  });
});
