/**
 * The documentation keeps its promises: the README's sample configuration
 * loads as printed (its absolute paths moved into a temp tree where the files
 * it names exist), and the docs cite only what their readers have (RFC
 * sections and the project's own pages, never internal documents or issue
 * numbers).
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { buildTestPki } from '../helpers/mint.js';
import { tempDir } from '../helpers/temp.js';

const ROOT = resolve(import.meta.dirname, '../..');
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** The fenced blocks of a Markdown text with the given info string. */
function blocks(md: string, lang: string): string[] {
  const out: string[] = [];
  const re = new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```', 'gm');
  for (const m of md.matchAll(re)) out.push(m[1]!);
  return out;
}

describe('README.md', () => {
  it('its sample configuration loads as printed', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const sample = blocks(readme, 'yaml').find((b) => b.includes('# --- ocspbot keys'));
    expect(sample, 'the sample configuration block').toBeDefined();
    const tree = await tempDir('sk-readme-');
    dirs.push(tree);
    // the sample's absolute paths, moved under the temp tree
    const text = sample!.replace(/(?<=[\s[])\/(etc|var)\//g, `${tree}/$1/`);
    const pki = buildTestPki({ keyType: 'ec-p256', delegated: false });
    const files: Record<string, string> = {
      'etc/tls/example.com.pem': pki.leaves[0]!.pem,
      'etc/tls/example.com-chain.pem': pki.root.pem,
      'etc/tls/example.com-rootchain.pem': pki.root.pem,
      'etc/tls/example.org.pem': pki.leaves[1]!.pem + pki.root.pem,
    };
    for (const [p, body] of Object.entries(files)) {
      await mkdir(dirname(join(tree, p)), { recursive: true });
      await writeFile(join(tree, p), body);
    }
    for (const d of [
      'etc/tls/scan',
      'etc/staplekeeper.d',
      'etc/ssl/certs',
      'var/lib/staplekeeper',
      'var/log/staplekeeper',
    ])
      await mkdir(join(tree, d), { recursive: true });
    const file = join(tree, 'staplekeeper.yaml');
    await writeFile(file, text);
    const config = await loadConfig(file, { cwd: tree });
    expect(config.targets.map((t) => t.id)).toContain('example.com');
    expect(config.settings.concurrency).toBeGreaterThan(0);
  });
});

describe('the docs cite what their readers have', () => {
  it('no internal document and no issue number in README.md and docs/*.md', async () => {
    const pages = [
      'README.md',
      ...(await readdir(join(ROOT, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
    ];
    const found: string[] = [];
    for (const p of pages) {
      const lines = (await readFile(join(ROOT, p), 'utf8')).split('\n');
      lines.forEach((l, i) => {
        if (/OCSP-REFERENCE|FIELD-2026|STYLE\.md|\bissue \d+|(?<!\w)#\d{1,4}\b/i.test(l) && !/^#+ /.test(l))
          found.push(`${p}:${i + 1}: ${l.trim()}`);
      });
    }
    expect(found).toEqual([]);
  });
});
