/**
 * Issue 11 point 13, redirects across hosts, through the real executable: a
 * responder that redirects to another host (an SSRF-shaped probe of internal
 * addresses) is not followed unless `http.follow_redirects_across_hosts` says
 * so; when it is followed, the host that answered is named.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertBuilt,
  killAllChildren,
  outcomesById,
  removeTempDirs,
  runCli,
  startGoodResponder,
  tempDir,
  writeCert,
  writeConfig,
  type CliResult,
  type GoodResponder,
} from '../helpers/cli-harness.js';
import { startEvilResponder, type EvilResponder } from '../helpers/evil-responder.js';
import { buildTestPki, type TestPki } from '../helpers/mint.js';

let dir: string;
let pki: TestPki;
let target: GoodResponder;
let redirector: EvilResponder;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('sk-rel-redir-');
  pki = buildTestPki({ keyType: 'ec-p256', delegated: false, now: new Date(), leafCount: 1 });
  target = await startGoodResponder(pki, pki.leaves);
  const other = new URL(target.url);
  redirector = await startEvilResponder((req) => ({
    kind: 'redirect',
    location: `http://${other.host}/ocsp${req.method === 'GET' ? req.path.slice(req.path.indexOf('/', 1)) : ''}`,
    status: req.method === 'POST' ? 307 : 302,
  }));
});

afterAll(async () => {
  await killAllChildren();
  await target?.close();
  await redirector?.close();
  await removeTempDirs();
});

function show(r: CliResult): string {
  return `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

async function runWith(name: string, http: Record<string, unknown>): Promise<CliResult> {
  const folder = join(dir, name);
  await mkdir(folder);
  const { cert, chain } = await writeCert(folder, 'leaf', pki.leaves[0]!, pki.root);
  const cfg = await writeConfig(join(folder, 'sk.yaml'), {
    ocsp_folder: folder,
    http: { timeout: '5s', ...http },
    domains: { leaf: { cert, chain, ocsp: 'leaf.der', ocsp_responder_uri: redirector.url } },
  });
  return runCli(['run', '-c', cfg, '--json', '-v'], { timeoutMs: 30_000 });
}

describe('issue 11 point 13: redirects to another host', () => {
  it('are not followed by default: HTTP_REDIRECT naming both hosts, the other host never contacted', async () => {
    const before = target.count();
    const r = await runWith('default', {});
    expect(r.code, show(r)).toBe(255);
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.error?.code, show(r)).toBe('HTTP_REDIRECT');
    expect(o?.error?.message).toContain(`redirected to another host (${new URL(target.url).host})`);
    expect(o?.error?.message).toContain('follow_redirects_across_hosts');
    expect(target.count()).toBe(before);
  });

  it('are followed with http.follow_redirects_across_hosts: true, and the answering host is named', async () => {
    const r = await runWith('allowed', { follow_redirects_across_hosts: true });
    expect(r.code, show(r)).toBe(1);
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.result, show(r)).toBe('updated');
    expect(JSON.stringify(o?.notices)).toContain(`answered by ${new URL(target.url).host} after a redirect`);
  });
});
