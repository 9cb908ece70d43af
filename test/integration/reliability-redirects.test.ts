/**
 * Redirects across hosts (docs/SECURITY.md), through the real executable: a
 * responder that redirects to another host (an SSRF-shaped probe of internal
 * addresses) is not followed unless `http.follow_redirects_across_hosts` says
 * so; when it is followed, the host that answered is named.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  endCliBench,
  outcomesById,
  runCli,
  showResult,
  startCliBench,
  writeCert,
  writeConfig,
} from '../helpers/cli-harness.js';
import type { CliResult, GoodResponder } from '../helpers/cli-harness.js';
import { startEvilResponder, type EvilResponder } from '../helpers/evil-responder.js';
import type { TestPki } from '../helpers/mint.js';

let dir: string;
let pki: TestPki;
let target: GoodResponder;
let redirector: EvilResponder;

beforeAll(async () => {
  ({ dir, pki, responder: target } = await startCliBench('sk-rel-redir-', 1));
  const other = new URL(target.url);
  redirector = await startEvilResponder((req) => ({
    kind: 'redirect',
    location: `http://${other.host}/ocsp${req.method === 'GET' ? req.path.slice(req.path.indexOf('/', 1)) : ''}`,
    status: req.method === 'POST' ? 307 : 302,
  }));
});

afterAll(async () => {
  await redirector?.close();
  await endCliBench();
});

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

describe('redirects to another host (docs/SECURITY.md)', () => {
  it('are not followed by default: HTTP_REDIRECT naming both hosts, the other host never contacted', async () => {
    const before = target.count();
    const r = await runWith('default', {});
    expect(r.code, showResult(r)).toBe(255);
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.error?.code, showResult(r)).toBe('HTTP_REDIRECT');
    expect(o?.error?.message).toContain(`redirected to another host (${new URL(target.url).host})`);
    expect(o?.error?.message).toContain('follow_redirects_across_hosts');
    expect(target.count()).toBe(before);
  });

  it('are followed with http.follow_redirects_across_hosts: true, and the answering host is named', async () => {
    const r = await runWith('allowed', { follow_redirects_across_hosts: true });
    expect(r.code, showResult(r)).toBe(1);
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.result, showResult(r)).toBe('updated');
    expect(JSON.stringify(o?.notices)).toContain(`answered by ${new URL(target.url).host} after a redirect`);
  });
});
