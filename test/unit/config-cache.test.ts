import { chmod, mkdir, readdir, readFile, rm, unlink, utimes, writeFile, stat } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { hash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { configCacheDir, configCacheStats, isPlainJson, jsonPieces } from '../../src/config/config-cache.js';
import { loadConfig, type LoadedConfig } from '../../src/config/index.js';
import { isStapleError } from '../../src/core/errors.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

afterAll(cleanUp);

async function put(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await writeFile(path.join(root, rel), text);
  }
}

/** {@link outcome} with more load options. */
async function outcomeWith(file: string, cwd: string, opts: { ocspbot?: boolean }): Promise<unknown> {
  try {
    return { ok: await loadConfig(file, { cwd, ...opts }) };
  } catch (e) {
    if (!isStapleError(e)) throw e;
    return { code: e.code, message: e.message, details: e.details };
  }
}

/** The outcome of a load, comparable: the result, or the error's code, message and details. */
async function outcome(file: string, cwd: string, cacheDir?: string): Promise<unknown> {
  try {
    const c: LoadedConfig = await loadConfig(file, cacheDir === undefined ? { cwd } : { cwd, cacheDir });
    return { ok: c };
  } catch (e) {
    if (!isStapleError(e)) throw e;
    return { code: e.code, message: e.message, details: e.details };
  }
}

const MAIN = `ocsp_folder: staples
concurrency: 4
includes: [conf.d]
domains:
  a.example:
    cert: certs/a.pem
    chain: certs/chain.pem
    ocsp: a.der
  b.example:
    cert: certs/b.pem
    ocsp: "{cert_stem}.der"
hooks:
  on_change: [echo, changed]
`;

async function project(): Promise<{ root: string; cache: string }> {
  const root = await tempDir('sk-cc-');
  await put(root, {
    'sk.yaml': MAIN,
    'certs/a.pem': 'a',
    'certs/b.pem': 'b',
    'certs/c.pem': 'c',
    'certs/chain.pem': 'chain',
    'conf.d/c.yaml': 'domains:\n  c.example:\n    cert: certs/c.pem\n    ocsp: c.der\n',
  });
  return { root, cache: await tempDir('sk-cc-dir-') };
}

/** Loads with the cache (filling it), then checks that it is used and equals a load without it. */
async function fill(root: string, cache: string): Promise<void> {
  const plain = await outcome('sk.yaml', root);
  expect(await outcome('sk.yaml', root, cache)).toEqual(plain);
  const before = configCacheStats().results;
  expect(await outcome('sk.yaml', root, cache)).toEqual(plain);
  expect(configCacheStats().results).toBe(before + 1);
}

describe('configuration cache: a result is reused only while it holds', () => {
  it('a certificate removed after the cache was filled gives the ordinary error, with its position', async () => {
    const { root, cache } = await project();
    await fill(root, cache);
    await unlink(path.join(root, 'certs/b.pem'));
    const plain = await outcome('sk.yaml', root);
    expect(plain).toMatchObject({ code: 'CONFIG_INVALID' });
    expect((plain as { message: string }).message).toMatch(
      /^sk\.yaml:10:11 domains\.b\.example\.cert: certificate file not found/,
    );
    expect(await outcome('sk.yaml', root, cache)).toEqual(plain);
  });

  it('a certificate replaced by a folder, and an include file with a new error, are reported as without the cache', async () => {
    const { root, cache } = await project();
    await fill(root, cache);
    await unlink(path.join(root, 'certs/a.pem'));
    await mkdir(path.join(root, 'certs/a.pem'));
    expect(await outcome('sk.yaml', root, cache)).toEqual(await outcome('sk.yaml', root));
    await rm(path.join(root, 'certs/a.pem'), { recursive: true });
    await writeFile(path.join(root, 'certs/a.pem'), 'a');
    await writeFile(
      path.join(root, 'conf.d/c.yaml'),
      'domains:\n  c.example:\n    cert: certs/c.pem\n    ocsp: [c.der]\n',
    );
    const plain = await outcome('sk.yaml', root);
    expect(plain).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(await outcome('sk.yaml', root, cache)).toEqual(plain);
  });

  it('an edit that keeps the size and the modification time is seen (the text is hashed, not stat-ed)', async () => {
    const { root, cache } = await project();
    await fill(root, cache);
    const file = path.join(root, 'sk.yaml');
    const st = await stat(file);
    await writeFile(file, MAIN.replace('concurrency: 4', 'concurrency: 7'));
    await utimes(file, st.atime, st.mtime);
    const c = (await outcome('sk.yaml', root, cache)) as { ok: LoadedConfig };
    expect(c.ok.settings.concurrency).toBe(7);
    expect(c).toEqual(await outcome('sk.yaml', root));
  });

  it('include folders are listed again: a new file is read, a removed one dropped', async () => {
    const { root, cache } = await project();
    await fill(root, cache);
    await put(root, {
      'certs/d.pem': 'd',
      'conf.d/d.yml': 'domains:\n  d.example:\n    cert: certs/d.pem\n    ocsp: d.der\n',
    });
    let c = (await outcome('sk.yaml', root, cache)) as { ok: LoadedConfig };
    expect(c.ok.targets.map((t) => t.id)).toEqual(['a.example', 'b.example', 'c.example', 'd.example']);
    expect(c).toEqual(await outcome('sk.yaml', root));
    await unlink(path.join(root, 'conf.d/c.yaml'));
    c = (await outcome('sk.yaml', root, cache)) as { ok: LoadedConfig };
    expect(c.ok.targets.map((t) => t.id)).toEqual(['a.example', 'b.example', 'd.example']);
    expect(c).toEqual(await outcome('sk.yaml', root));
  });

  it('another working directory resolves paths and names files anew', async () => {
    const { root, cache } = await project();
    await fill(root, cache);
    const sub = path.join(root, 'sub');
    await mkdir(sub);
    await put(sub, { 'certs/a.pem': 'a', 'certs/b.pem': 'b', 'certs/c.pem': 'c', 'certs/chain.pem': 'x' });
    await mkdir(path.join(sub, 'conf.d'));
    const fromSub = await outcome(path.join(root, 'sk.yaml'), sub, cache);
    expect(fromSub).toEqual(await outcome(path.join(root, 'sk.yaml'), sub));
    expect((fromSub as { ok: LoadedConfig }).ok.targets[0]?.certPath).toBe(path.join(sub, 'certs/a.pem'));
  });

  it('a scan is observed again at every load; its files themselves come from the cache', async () => {
    const root = await tempDir('sk-cc-scan-');
    const cache = await tempDir('sk-cc-dir-');
    await put(root, {
      'sk.yaml': 'ocsp_folder: out\nscan_keys:\n  - folder: keys\n',
      'keys/one.pem': '1',
      'keys/one-chain.pem': 'c',
      'keys/one-rootchain.pem': 'r',
    });
    expect(await outcome('sk.yaml', root, cache)).toEqual(await outcome('sk.yaml', root));
    await put(root, { 'keys/two.pem': '2', 'keys/two-chain.pem': 'c', 'keys/two-rootchain.pem': 'r' });
    const files = configCacheStats().files;
    const c = (await outcome('sk.yaml', root, cache)) as { ok: LoadedConfig };
    expect(configCacheStats().files).toBe(files + 1);
    expect(c.ok.targets.map((t) => t.id)).toEqual(['one', 'two']);
    expect(c).toEqual(await outcome('sk.yaml', root));
  });
});

describe('configuration cache: a scan result is kept whole only while a scan would find the same', () => {
  const { symlink, rename } = {
    symlink: async (...a: [string, string]) => (await import('node:fs/promises')).symlink(...a),
    rename: async (...a: [string, string]) => (await import('node:fs/promises')).rename(...a),
  };

  /** Loads with the cache (filled before) and without; both must agree. True when the whole result came from the cache. */
  async function same(root: string, cache: string, opts: { ocspbot?: boolean } = {}): Promise<boolean> {
    const load = async (cacheDir?: string): Promise<unknown> => {
      try {
        return {
          ok: await loadConfig('sk.yaml', { cwd: root, ...opts, ...(cacheDir === undefined ? {} : { cacheDir }) }),
        };
      } catch (e) {
        if (!isStapleError(e)) throw e;
        return { code: e.code, message: e.message, details: e.details };
      }
    };
    const hits = configCacheStats().results;
    const cached = await load(cache);
    const hit = configCacheStats().results > hits;
    expect(cached).toEqual(await load());
    await new Promise((r) => setImmediate(r)); // the cache is written at the next turn
    return hit;
  }

  async function scanProject(
    yaml = 'ocsp_folder: out\nscan_keys:\n  - folder: keys\n',
  ): Promise<{ root: string; cache: string }> {
    const root = await tempDir('sk-cc-scanw-');
    const cache = await tempDir('sk-cc-dir-');
    const files: Record<string, string> = { 'sk.yaml': yaml };
    for (const d of ['a', 'b', 'c', 'sub/d', 'sub/deeper/e']) {
      files[`keys/${d}.pem`] = `cert ${d}`;
      files[`keys/${d}-chain.pem`] = 'chain';
      files[`keys/${d}-rootchain.pem`] = 'root';
    }
    await put(root, files);
    expect(await same(root, cache)).toBe(false); // fills the cache
    return { root, cache };
  }

  it('an unchanged folder gives the result from the cache; contents are not part of a scan, so edits keep it', async () => {
    const { root, cache } = await scanProject();
    expect(await same(root, cache)).toBe(true);
    await writeFile(path.join(root, 'keys/a.pem'), 'other');
    expect(await same(root, cache)).toBe(true);
  });

  it('every change to what a scan observes is a new scan, with the result of a load without cache', async () => {
    const { root, cache } = await scanProject();
    const k = (rel: string): string => path.join(root, 'keys', rel);
    const steps: Array<[string, () => Promise<void>]> = [
      ['a triple added', () => put(root, { 'keys/f.pem': 'f', 'keys/f-chain.pem': 'c', 'keys/f-rootchain.pem': 'r' })],
      ['a chain removed', () => unlink(k('b-chain.pem'))],
      [
        'a certificate replaced by a folder of its name',
        async () => (await unlink(k('c.pem')), await mkdir(k('c.pem'))),
      ],
      [
        'a chain replaced by a link to a file',
        async () => (await unlink(k('a-chain.pem')), await symlink('f-chain.pem', k('a-chain.pem'))),
      ],
      ['a link left dangling', () => unlink(k('f-chain.pem'))],
      ['a subfolder triple removed', () => unlink(k('sub/deeper/e-rootchain.pem'))],
      ['a link to a folder (a loop)', () => symlink('..', k('sub/up'))],
      [
        'a link to another folder',
        async () => (
          await put(root, { 'other/g.pem': 'g', 'other/g-chain.pem': 'c', 'other/g-rootchain.pem': 'r' }),
          await symlink('../other', k('other'))
        ),
      ],
      [
        'the scan folder replaced by a link to a copy',
        async () => (
          await rename(path.join(root, 'keys'), path.join(root, 'keys-real')),
          await symlink('keys-real', path.join(root, 'keys'))
        ),
      ],
      [
        'a triple in the linked folder',
        () => put(root, { 'other/h.pem': 'h', 'other/h-chain.pem': 'c', 'other/h-rootchain.pem': 'r' }),
      ],
      ['the scan folder gone', async () => unlink(path.join(root, 'keys'))],
    ];
    for (const [what, change] of steps) {
      await change();
      // a link to a regular file is observed as what it reaches: a regular file, the same result
      expect(await same(root, cache), what).toBe(what === 'a chain replaced by a link to a file');
      // and unchanged since, the scan's result serves again (unless the load fails)
      if (what !== 'the scan folder gone') expect(await same(root, cache), `${what}, again`).toBe(true);
    }
  });

  it('a scan that is not recursive observes only its folder; domains before the scan are checked as ever', async () => {
    const { root, cache } = await scanProject(
      'ocsp_folder: out\ndomains:\n  x:\n    cert: certs/x.pem\n    ocsp: x.der\nscan_keys:\n  - folder: keys\n    recursive: false\n',
    );
    expect(await same(root, cache)).toBe(false); // certs/x.pem was missing: an error, nothing kept
    await put(root, { 'certs/x.pem': 'x' });
    expect(await same(root, cache)).toBe(false);
    expect(await same(root, cache)).toBe(true);
    await put(root, { 'keys/sub/z.pem': 'z', 'keys/sub/z-chain.pem': 'c', 'keys/sub/z-rootchain.pem': 'r' });
    expect(await same(root, cache)).toBe(true); // not a folder this scan visits
    await unlink(path.join(root, 'certs/x.pem'));
    expect(await same(root, cache)).toBe(false);
  });

  it('ocspbot: a folder where a staple goes is found from a kept result too', async () => {
    const { root, cache } = await scanProject();
    expect(await same(root, cache, { ocspbot: true })).toBe(true);
    await mkdir(path.join(root, 'out/sub'), { recursive: true });
    await mkdir(path.join(root, 'out/a.ocsp-resp'));
    expect(await same(root, cache, { ocspbot: true })).toBe(true);
  });
});

describe('configuration cache: a damaged or foreign cache is ignored', () => {
  async function cacheFile(dir: string): Promise<string> {
    const names = (await readdir(dir)).filter((n) => n.startsWith('config-'));
    expect(names).toHaveLength(1);
    return path.join(dir, names[0] as string);
  }

  /** Rewrites the result line with `edit` and a valid checksum, as someone with write access could. */
  async function tamper(file: string, edit: (text: string) => string): Promise<void> {
    const data = await readFile(file, 'utf8');
    const nl = data.indexOf('\n');
    const header = JSON.parse(data.slice(0, nl)) as Record<string, unknown>;
    const body = edit(data.slice(nl + 1));
    header.sha256 = hash('sha256', body, 'base64url');
    await writeFile(file, `${JSON.stringify(header)}\n${body}`);
  }

  it('every corruption gives the result of a load without cache', async () => {
    const { root, cache } = await project();
    await fill(root, cache);
    const file = await cacheFile(cache);
    const good = await readFile(file);
    const plain = await outcome('sk.yaml', root);
    const variants: Buffer[] = [
      Buffer.alloc(0),
      good.subarray(0, good.length >> 1),
      Buffer.from(good.toString('utf8').replace('"concurrency":4', '"concurrency":9')), // checksum no longer matches
      Buffer.from(good.toString('utf8').replace('"version":2', '"version":99')),
      Buffer.from('not json\n{}\nnull'),
    ];
    for (const v of variants) {
      await writeFile(file, v, { mode: 0o600 });
      expect(await outcome('sk.yaml', root, cache)).toEqual(plain);
    }
  });

  it('a cache in a folder others can write is not read', async () => {
    const { root, cache } = await project();
    await fill(root, cache);
    const file = await cacheFile(cache);
    await tamper(file, (t) =>
      t.replace(
        /"on_change":\{[^}]*\}|"onChange":\{[^}]*\}/,
        '"onChange":{"kind":"argv","command":["rm","-rf","/"],"timeoutMs":1}',
      ),
    );
    await chmod(cache, 0o777);
    const plain = (await outcome('sk.yaml', root)) as { ok: LoadedConfig };
    expect(await outcome('sk.yaml', root, cache)).toEqual(plain);
    expect(plain.ok.settings.hooks.onChange?.command).toEqual(['echo', 'changed']);
  });

  it('a damaged result line is ignored (shape checked), the files still serve', async () => {
    const { root, cache } = await project();
    await fill(root, cache);
    await tamper(await cacheFile(cache), (t) => `${t.slice(0, t.indexOf('\n'))}\n{"cwd":1}`);
    const files = configCacheStats().files;
    expect(await outcome('sk.yaml', root, cache)).toEqual(await outcome('sk.yaml', root));
    expect(configCacheStats().files).toBeGreaterThan(files);
  });
});

describe('configuration cache: where it lives', () => {
  it('STAPLEKEEPER_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache; off or relative turns it off', () => {
    expect(configCacheDir({ STAPLEKEEPER_CACHE_DIR: '/var/cache/sk', HOME: '/root' })).toBe('/var/cache/sk');
    expect(configCacheDir({ STAPLEKEEPER_CACHE_DIR: 'off', HOME: '/root' })).toBeUndefined();
    expect(configCacheDir({ STAPLEKEEPER_CACHE_DIR: 'rel/dir', HOME: '/root' })).toBeUndefined();
    expect(configCacheDir({ XDG_CACHE_HOME: '/xdg', HOME: '/root' })).toBe('/xdg/staplekeeper');
    expect(configCacheDir({ HOME: '/home/op' })).toBe('/home/op/.cache/staplekeeper');
    expect(configCacheDir({})).toBeUndefined();
  });

  it('creates its folder private (0700) and its file 0600', async () => {
    const { root } = await project();
    const cache = path.join(await tempDir('sk-cc-parent-'), 'nested', 'cache');
    await outcome('sk.yaml', root, cache);
    await new Promise((r) => setImmediate(r)); // the write follows the load at the next turn
    expect((await stat(cache)).mode & 0o777).toBe(0o700);
    const names = await readdir(cache);
    expect(names).toHaveLength(1);
    expect((await stat(path.join(cache, names[0] as string))).mode & 0o777).toBe(0o600);
  });

  it('writes JSON in pieces whose concatenation is JSON.stringify of the value', () => {
    const big = (n: number): Record<string, unknown> =>
      Object.fromEntries(
        range(n).map((i) => [`k"${i}\u2028é`, i % 3 === 0 ? undefined : { v: i, s: `x${i}`, a: [i] }]),
      );
    const values: unknown[] = [
      null,
      'text',
      3.5,
      [],
      {},
      range(256),
      range(257),
      big(256),
      big(257),
      { a: big(1000), b: [big(300), range(2000), { c: big(5) }], d: undefined },
      range(600).map((i) => (i % 2 ? big(3) : range(300))),
    ];
    for (const v of values) expect([...jsonPieces(v)].join('')).toBe(JSON.stringify(v));
  });

  it('a configuration of thousands of domains goes through the cache whole', async () => {
    const root = await tempDir('sk-cc-big-');
    const domains = range(3000).map((i) => `  d${i}:\n    cert: certs/c.pem\n    ocsp: d${i}.der\n`);
    await put(root, {
      'sk.yaml': `ocsp_folder: staples\ndomains:\n${domains.join('')}`,
      'certs/c.pem': 'c',
      'staples/.keep': '',
    });
    const cache = await tempDir('sk-cc-big-cache-');
    const without = await outcome('sk.yaml', root);
    expect(await outcome('sk.yaml', root, cache)).toEqual(without);
    await new Promise((r) => setImmediate(r)); // the write follows the load at the next turn
    const before = configCacheStats().results;
    expect(await outcome('sk.yaml', root, cache)).toEqual(without);
    expect(configCacheStats().results).toBe(before + 1);
  });

  it('keeps only plain JSON values', () => {
    expect(isPlainJson({ a: [1, 'x', true, null, { b: undefined }] })).toBe(true);
    for (const bad of [NaN, Infinity, -0, new Date(0), [undefined], new Map(), () => 1, 1n]) {
      expect(isPlainJson({ v: bad })).toBe(false);
    }
  });
});

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

describe('staple kinds from a folder listing (ocspbot)', () => {
  it('a folder of many staples gives the kinds stat gives: links followed, folders and other files named', async () => {
    const root = await tempDir('sk-staple-kinds-');
    // 26 domains, certificates in certs/, staples in out/: 10 there, 10 missing, 6 odd ones
    const names = ['folder', 'link-dir', 'fifo', 'dangling', 'link-file', 'file', ...range(20).map((i) => `d${i}`)];
    const tree = Object.fromEntries(names.map((n) => [`certs/${n}.pem`, n]));
    for (const i of range(10)) tree[`out/d${i}.der`] = 'staple';
    tree['out/file.der'] = tree['elsewhere/other.der'] = 'staple';
    tree['sk.yaml'] =
      `ocsp_folder: out\ndomains:\n${names.map((n) => `  ${n}: { cert: certs/${n}.pem, ocsp: ${n}.der }\n`).join('')}`;
    await put(root, tree);
    await mkdir(path.join(root, 'out/folder.der'));
    await mkdir(path.join(root, 'elsewhere/dir'));
    const { symlink } = await import('node:fs/promises');
    await symlink('../elsewhere/dir', path.join(root, 'out/link-dir.der'));
    await symlink('nowhere.der', path.join(root, 'out/dangling.der'));
    await symlink('../elsewhere/other.der', path.join(root, 'out/link-file.der'));
    expect(spawnSync('mkfifo', [path.join(root, 'out/fifo.der')]).status).toBe(0);
    const r = (await outcomeWith('sk.yaml', root, { ocspbot: true })) as { code: string; message: string };
    expect(r.code).toBe('CONFIG_INVALID');
    const lines = r.message.split('\n');
    expect(lines, r.message).toHaveLength(3);
    expect(lines[0]).toMatch(/domain folder: the staple file .*folder\.der exists, but is a folder;/);
    expect(lines[1]).toMatch(/domain link-dir: the staple file .*link-dir\.der exists, but is a folder;/);
    expect(lines[2]).toMatch(/domain fifo: the staple file .*fifo\.der exists, but is not a regular file;/);
  });
});

describe('certificate kinds from a folder listing', () => {
  it('a folder of many certificates gives the kinds stat gives: links followed, folders and absences named', async () => {
    const root = await tempDir('sk-kinds-');
    const { symlink } = await import('node:fs/promises');
    const files: Record<string, string> = {};
    const domains: string[] = [];
    for (let i = 0; i < 20; i++) {
      files[`certs/c${i}.pem`] = `cert ${i}`;
      domains.push(`  d${i}:\n    cert: certs/c${i}.pem\n    ocsp: d${i}.der\n`);
    }
    for (const name of ['link-file', 'link-dir', 'dangling', 'folder', 'absent']) {
      domains.push(`  ${name}:\n    cert: certs/${name}.pem\n    ocsp: ${name}.der\n`);
    }
    await put(root, { ...files, 'sk.yaml': `ocsp_folder: out\ndomains:\n${domains.join('')}` });
    await symlink('c1.pem', path.join(root, 'certs/link-file.pem'));
    await mkdir(path.join(root, 'elsewhere'));
    await symlink('../elsewhere', path.join(root, 'certs/link-dir.pem'));
    await symlink('nowhere.pem', path.join(root, 'certs/dangling.pem'));
    await mkdir(path.join(root, 'certs/folder.pem'));
    const r = (await outcome('sk.yaml', root)) as { code: string; message: string };
    expect(r.code).toBe('CONFIG_INVALID');
    const lines = r.message.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/domains\.link-dir\.cert: certificate path is not a file: .*link-dir\.pem/);
    expect(lines[1]).toMatch(/domains\.dangling\.cert: certificate file not found: .*dangling\.pem/);
    expect(lines[2]).toMatch(/domains\.folder\.cert: certificate path is not a file: .*folder\.pem/);
    expect(lines[3]).toMatch(/domains\.absent\.cert: certificate file not found: .*absent\.pem/);
  });
});
