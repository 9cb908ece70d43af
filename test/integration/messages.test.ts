/**
 * One message style: every error code walked through `run` and `fetch` where
 * a real setup reaches it (hostile in-process responders from
 * evil-responder.ts, real files in a temp tree, the real CLI entry point), and
 * a table over the message builder for every code and command. Every line is
 * held to the rules of src/core/message.ts: the code, the certificate (id and
 * file), URLs as scheme://host/ only, no base64 runs, no flag the command
 * does not have, nothing said twice, nothing contradictory, the advice for
 * that command, and a readable length.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../../src/cli/main.js';
import { ERROR_CODES, type ErrorCode } from '../../src/core/errors.js';
import { adviceFor, COMMAND_FLAGS, failureLine, type CommandName } from '../../src/core/message.js';
import {
  makeScenarioContext,
  SCENARIOS,
  startScenarioResponder,
  type EvilResponder,
} from '../helpers/evil-responder.js';
import { buildTestPki, mintCert, type TestPki } from '../helpers/mint.js';
import { memoryIo as sharedMemoryIo, type MemoryIo } from '../helpers/memory-io.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

const MAX_LINE = 400;

/** Checks one error line against the rules; returns the list of broken rules (empty: fine). */
function broken(
  line: string,
  command: CommandName,
  code: ErrorCode,
  facts: { id?: string; file?: string; dir?: string },
): string[] {
  const out: string[] = [];
  const text = facts.dir ? line.split(facts.dir).join('<dir>') : line;
  if (!text.includes(`error ${code}: `)) out.push(`no "error ${code}: "`);
  if (text.length > MAX_LINE) out.push(`longer than ${MAX_LINE} (${text.length})`);
  // base64 (a GET URL's path, a DER blob); hex serial numbers and key hashes are facts, not noise
  for (const m of text.replace(/<dir>[^\s)]*/g, '<path>').matchAll(/[A-Za-z0-9+/=%]{32,}/g)) {
    if (!/^[0-9A-Fa-f]+$/.test(m[0])) out.push(`a base64-like run: ${m[0]}`);
  }
  for (const m of text.matchAll(/\bhttps?:\/\/[^\s"'<>()]+/g)) {
    const u = m[0].replace(/[.,:;]+$/, '');
    if (!/^https?:\/\/[^/\s]+\/$/.test(u)) out.push(`a URL beyond scheme://host/: ${u}`);
  }
  const urls = [...text.matchAll(/\bhttps?:\/\/[^\s/]+\//g)].map((m) => m[0]);
  for (const u of new Set(urls)) if (urls.filter((x) => x === u).length > 1) out.push(`${u} more than once`);
  // a flag in quotes is the user's own input echoed back (unknown option '--bogus')
  for (const m of text.replace(/'--[a-z-]+'/g, '').matchAll(/(?<![\w-])--[a-z][a-z-]*/g)) {
    if (!COMMAND_FLAGS[command].includes(m[0])) out.push(`names ${m[0]}, which ${command} does not have`);
  }
  const clauses = text.split('; ').map((c) => c.trim().toLowerCase());
  if (new Set(clauses).size !== clauses.length) out.push('a clause said twice');
  if (/staple (on disk )?was kept|current staple was kept/.test(text) && /no valid staple/.test(text))
    out.push('kept and no valid staple');
  if (facts.id !== undefined && !text.includes(`[${facts.id}]`)) out.push(`no [${facts.id}]`);
  if (facts.file !== undefined && !line.includes(facts.file)) out.push(`no ${facts.file}`);
  const advice = adviceFor(code, command);
  if (advice && !text.includes(advice)) out.push(`no advice "${advice}"`);
  return out;
}

/** The CLI's streams in memory, with an empty environment. */
const memoryIo = (cwd: string): MemoryIo => sharedMemoryIo(cwd, {});

const errorLines = (s: string): string[] => s.split('\n').filter((l) => / error [A-Z_]+: /.test(l));

let dir: string;
let pki: TestPki;
const reached = new Map<ErrorCode, Set<'run' | 'fetch'>>();
const problems: string[] = [];

function note(command: 'run' | 'fetch', code: ErrorCode, lines: string[], facts: { id?: string; file?: string }): void {
  const line = lines.find((l) => l.includes(`error ${code}: `));
  if (!line) {
    problems.push(`${command} ${code}: no line with this code in:\n  ${lines.join('\n  ') || '(nothing)'}`);
    return;
  }
  if (process.env.SHOW_MESSAGES) console.log(`${command.padEnd(5)} ${line.split(dir).join('<dir>')}`);
  const why = broken(line, command, code, { ...facts, dir });
  if (why.length) problems.push(`${command} ${code}: ${why.join(', ')}\n  ${line}`);
  if (!reached.has(code)) reached.set(code, new Set());
  reached.get(code)!.add(command);
}

/** `staplekeeper fetch` on `cert` against `url`; returns the error lines. */
async function viaFetch(args: string[]): Promise<string[]> {
  const io = memoryIo(dir);
  const rc = await cli(['fetch', ...args], io);
  expect(rc).not.toBe(0);
  return errorLines(io.err());
}

/** `staplekeeper run` on a configuration of one domain `id`: the error lines. */
async function viaRun(id: string, domain: Record<string, string>, extra: string[] = []): Promise<string[]> {
  return errorLines(await viaRunText(id, domain, extra));
}

/** `staplekeeper run` on a configuration of one domain `id`: everything it printed. */
async function viaRunText(id: string, domain: Record<string, string>, extra: string[] = []): Promise<string> {
  const sub = join(dir, `run-${id}`);
  await mkdir(join(sub, 'ocsp'), { recursive: true });
  const lines = ['ocsp_folder: ocsp', 'http:', '  timeout: 2s', ...extra, 'domains:', `  ${id}:`];
  for (const [k, v] of Object.entries(domain)) lines.push(`    ${k}: ${JSON.stringify(v)}`);
  await writeFile(join(sub, 'staplekeeper.yaml'), `${lines.join('\n')}\n`);
  const io = memoryIo(sub);
  await cli(['run', '-c', 'staplekeeper.yaml'], io);
  return io.err() + io.out();
}

async function deadPort(): Promise<number> {
  const srv = createServer();
  const port = await new Promise<number>((r) =>
    srv.listen(0, '127.0.0.1', () => r((srv.address() as { port: number }).port)),
  );
  await new Promise((r) => srv.close(r));
  return port;
}

beforeAll(async () => {
  dir = await tempDir('sk-msg-');
  pki = buildTestPki({ keyType: 'ec-p256', delegated: true, now: new Date() });
  await writeFile(join(dir, 'leaf.pem'), pki.leaves[0]!.pem);
  await writeFile(join(dir, 'bundle.pem'), pki.leaves[0]!.pem + pki.root.pem);
  await writeFile(join(dir, 'root.pem'), pki.root.pem);
  await writeFile(join(dir, 'other.pem'), pki.otherRoot.pem);
  await writeFile(join(dir, 'garbage.pem'), 'this is not a certificate\n');
  await writeFile(join(dir, 'a-file'), 'x');
  const now = Date.now();
  const rootRef = { der: pki.root.der, key: pki.root.key };
  const noUrl = mintCert({
    subjectCN: 'nourl.test',
    issuer: rootRef,
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + 30 * 86_400_000),
  });
  await writeFile(join(dir, 'nourl.pem'), noUrl.pem + pki.root.pem);
  const expired = mintCert({
    subjectCN: 'expired.test',
    issuer: rootRef,
    notBefore: new Date(now - 30 * 86_400_000),
    notAfter: new Date(now - 86_400_000),
    ocspUrls: ['http://127.0.0.1:9/'],
  });
  await writeFile(join(dir, 'expired.pem'), expired.pem + pki.root.pem);
});

afterAll(cleanUp);

describe('every error code through run and fetch follows the message rules', () => {
  // one hostile scenario per code it reaches
  const byCode = new Map<ErrorCode, (typeof SCENARIOS)[number]>();
  for (const s of SCENARIOS) if (s.expectedCode !== 'OK' && !byCode.has(s.expectedCode)) byCode.set(s.expectedCode, s);

  for (const [code, scenario] of byCode) {
    it(`${code} (${scenario.name})`, async () => {
      const ctx = makeScenarioContext(pki);
      let responder: EvilResponder | undefined;
      try {
        responder = await startScenarioResponder(scenario, ctx);
        const url = responder.url;
        const out = join(dir, `${scenario.name}.der`);
        const f = await viaFetch([
          '--cert',
          'leaf.pem',
          '--issuer',
          'root.pem',
          '--url',
          url,
          '--out',
          out,
          '--timeout',
          '2s',
        ]);
        note('fetch', code, f, { file: 'leaf.pem' });
        const r = await viaRun(scenario.name, {
          cert: join(dir, 'bundle.pem'),
          ocsp: 'x.der',
          ocsp_responder_uri: url,
        });
        note('run', code, r, { id: scenario.name, file: join(dir, 'bundle.pem') });
      } finally {
        await responder?.close();
      }
    }, 30_000);
  }

  it('the codes no responder causes', async () => {
    const port = await deadPort();
    note(
      'fetch',
      'HTTP_NETWORK',
      await viaFetch(['--cert', 'bundle.pem', '--url', `http://127.0.0.1:${port}/ocsp`, '--out', 'n.der']),
      { file: 'bundle.pem' },
    );
    note(
      'run',
      'HTTP_NETWORK',
      await viaRun('net', {
        cert: join(dir, 'bundle.pem'),
        ocsp: 'n.der',
        ocsp_responder_uri: `http://127.0.0.1:${port}/x`,
      }),
      { id: 'net', file: join(dir, 'bundle.pem') },
    );

    note('fetch', 'NO_OCSP_URL', await viaFetch(['--cert', 'nourl.pem', '--out', 'u.der']), { file: 'nourl.pem' });
    // run triages a certificate without an OCSP URL (no error: nothing to staple, CRL or nothing)
    const skipped = (await viaRunText('nourl', { cert: join(dir, 'nourl.pem'), ocsp: 'u.der' })).split('\n');
    expect(skipped.find((l) => l.startsWith('[nourl] '))).toMatch(/^\[nourl\] skipped: no OCSP responder/);

    note('fetch', 'NO_ISSUER', await viaFetch(['--cert', 'leaf.pem', '--out', 'i.der']), { file: 'leaf.pem' });
    note('run', 'NO_ISSUER', await viaRun('noissuer', { cert: join(dir, 'leaf.pem'), ocsp: 'i.der' }), {
      id: 'noissuer',
      file: join(dir, 'leaf.pem'),
    });

    note(
      'fetch',
      'ISSUER_MISMATCH',
      await viaFetch(['--cert', 'leaf.pem', '--issuer', 'other.pem', '--out', 'm.der']),
      { file: 'leaf.pem' },
    );
    note('fetch', 'CERT_EXPIRED', await viaFetch(['--cert', 'expired.pem', '--out', 'e.der']), { file: 'expired.pem' });
    note(
      'fetch',
      'HTTP_BAD_URL',
      await viaFetch(['--cert', 'bundle.pem', '--url', 'ftp://127.0.0.1/x', '--out', 'b.der']),
      { file: 'bundle.pem' },
    );
    note('fetch', 'FILE_UNREADABLE', await viaFetch(['--cert', 'missing.pem', '--out', 'f.der']), {
      file: 'missing.pem',
    });
    note('fetch', 'NOT_A_CERTIFICATE', await viaFetch(['--cert', 'garbage.pem', '--out', 'g.der']), {
      file: 'garbage.pem',
    });
    note('fetch', 'BAD_ARGUMENTS', await viaFetch(['--cert', 'bundle.pem', '--out', 'g.der', '--timeout', 'soon']), {});

    // configuration errors of run
    const cfg = join(dir, 'cfg');
    await mkdir(cfg, { recursive: true });
    await writeFile(join(cfg, 'bad.yaml'), 'domains: [\n');
    await writeFile(join(cfg, 'invalid.yaml'), 'ocsp_folder: .\nparallel_thread: 3\ndomains: {}\n');
    const yaml = memoryIo(cfg);
    await cli(['run', '-c', 'bad.yaml'], yaml);
    note('run', 'CONFIG_YAML', errorLines(yaml.err()), {});
    const inv = memoryIo(cfg);
    await cli(['run', '-c', 'invalid.yaml'], inv);
    note('run', 'CONFIG_INVALID', errorLines(inv.err()), {});
    const args = memoryIo(cfg);
    await cli(['run', '--bogus'], args);
    note('run', 'BAD_ARGUMENTS', errorLines(args.err()), {});
  }, 60_000);

  it('reaches these codes, and every line keeps the rules', () => {
    expect(problems).toEqual([]);
    // the codes walked through both commands, and those only one of them reaches
    const both = [...reached].filter(([, s]) => s.size === 2).map(([c]) => c);
    expect(both.length).toBeGreaterThanOrEqual(20);
    expect(reached.get('NO_OCSP_URL')).toEqual(new Set(['fetch']));
    for (const c of ['NO_ISSUER', 'HTTP_NETWORK', 'HTTP_TIMEOUT', 'OCSP_REVOKED'] as const) {
      expect(reached.get(c)).toEqual(new Set(['fetch', 'run']));
    }
    console.log(
      `message rules: ${reached.size} of ${Object.keys(ERROR_CODES).length} codes reached through the CLI (${both.length} through both run and fetch); the rest through the builder table`,
    );
  });
});

describe('the message builder, for every code and command', () => {
  const commands: CommandName[] = ['run', 'fetch', 'daemon', 'check'];
  const longUrl =
    'http://ocsp.example.test/MFEwTzBNMEswSTAJBgUrDgMCGgUABBRYIR3J%2FXzV1qp9uNUQLfrC8cMhLwQU7AtnH45tVPkeqKA86s3vahLjDu8CEF68MewALi7SKZwG0xcvyA4%3D';
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    it(code, () => {
      for (const command of commands) {
        const file = '/etc/ssl/site10.pem';
        // a message as the engine builds them: a URL with its base64 path, twice, then the default text
        const message = `${longUrl}: ${longUrl}: ${ERROR_CODES[code]}`;
        const line = failureLine({
          code,
          message,
          command,
          id: 'site10',
          file,
          after: ['retry at 2026-12-03T14:00:00.000Z'],
        });
        const text = `[site10] ${line.slice('[site10] '.length)}`;
        expect(broken(text, command, code, { id: 'site10', file })).toEqual([]);
        expect(text).toContain('http://ocsp.example.test/');
        expect(text.split('http://ocsp.example.test/').length - 1).toBe(1);
      }
    });
  }

  it('NO_OCSP_URL names the key that turns OCSP off, and fetch names --url only', () => {
    const run = failureLine({ code: 'NO_OCSP_URL', message: 'no responder', command: 'run', id: 'a' });
    expect(run).toContain('ocsp_responder_uri: disabled');
    expect(run).not.toContain('--url');
    const fetch = failureLine({ code: 'NO_OCSP_URL', message: 'no responder', command: 'fetch', file: 'a.pem' });
    expect(fetch).toContain('--url');
    expect(fetch).not.toContain('ocsp_responder_uri');
    const issuer = failureLine({ code: 'NO_ISSUER', message: 'no issuer', command: 'run', id: 'a' });
    expect(issuer).toMatch(/\bchain\b.*\bca_dirs\b/);
    expect(issuer).not.toMatch(/--issuer|--url|--chain/);
  });
});
