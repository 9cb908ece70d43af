/**
 * Sanity on times (docs/SECURITY.md), through the real executable: times a responder
 * controls (producedAt, thisUpdate, the length of the validity window) can
 * never push the next refresh out of the response's own window, nor months
 * away, and absurd times are refused.
 */
import { mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  killAllChildren,
  outcomesById,
  removeTempDirs,
  runCli,
  showResult,
  snapshot,
  writeConfig,
  startScenarioBench,
} from '../helpers/cli-harness.js';
import type { CliResult } from '../helpers/cli-harness.js';
import { OCSP_CONTENT_TYPE, startEvilResponder, type ScenarioContext } from '../helpers/evil-responder.js';

const DAY = 86_400_000;
let dir: string;
let ctx: ScenarioContext;
let certPath: string;
let chainPath: string;

beforeAll(async () => {
  ({ dir, ctx, certPath, chainPath } = await startScenarioBench('sk-rel-times-', false));
});

afterAll(async () => {
  await killAllChildren();
  await removeTempDirs();
});

/** `run --json` over one domain whose responder answers `answer` (and an optional staple on disk first). */
async function runWith(
  name: string,
  answer: Buffer,
  planted?: Buffer,
  args: string[] = [],
): Promise<{ r: CliResult; staple: string; hits: number }> {
  const folder = join(dir, name);
  await mkdir(folder, { recursive: true });
  const staple = join(folder, 'leaf.der');
  if (planted) {
    await writeFile(staple, planted);
    const old = new Date(Date.now() - 3_600_000);
    await utimes(staple, old, old);
  }
  const responder = await startEvilResponder(() => ({
    kind: 'respond',
    status: 200,
    headers: { 'content-type': OCSP_CONTENT_TYPE },
    body: answer,
  }));
  try {
    const cfg = await writeConfig(join(folder, 'staplekeeper.yaml'), {
      ocsp_folder: folder,
      http: { timeout: '5s' },
      domains: { leaf: { cert: certPath, chain: chainPath, ocsp: 'leaf.der', ocsp_responder_uri: responder.url } },
    });
    const r = await runCli(['run', '-c', cfg, '--json', ...args], { timeoutMs: 30_000 });
    return { r, staple, hits: responder.requests.length };
  } finally {
    await responder.close();
  }
}

describe('producedAt sanity (docs/SECURITY.md "Sanity on times")', () => {
  it('a response with producedAt in 2099 is refused (OCSP_NOT_YET_VALID), nothing written', async () => {
    const answer = ctx.good({ producedAt: new Date('2099-01-01T00:00:00Z') });
    const { r, staple } = await runWith('produced-2099', answer);
    expect(r.code, showResult(r)).toBe(255);
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.error?.code, showResult(r)).toBe('OCSP_NOT_YET_VALID');
    expect(o?.error?.message).toContain('producedAt');
    await expect(readFile(staple)).rejects.toThrow();
  });

  it('a staple on disk with producedAt in 2099 is not "fresh until 2063": it is replaced at once', async () => {
    const planted = ctx.good({ producedAt: new Date('2099-01-01T00:00:00Z') });
    const good = ctx.good();
    const { r, staple, hits } = await runWith('produced-2099-disk', good, planted);
    expect(r.code, showResult(r)).toBe(1); // ocspbot: the number of staples renewed
    expect(hits).toBeGreaterThan(0);
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.result, showResult(r)).toBe('updated');
    expect(o?.decision?.reason).toBe('invalid');
    expect((await readFile(staple)).equals(good)).toBe(true);
    expect(r.stdout).not.toContain('2063');
  });

  it('a producedAt long before thisUpdate cannot put the refresh point before thisUpdate or after the window', async () => {
    // ocsprenewer formula: producedAt + (nextUpdate - producedAt) * 0.5 with producedAt in 1990 would be ~2008
    const thisUpdate = new Date(ctx.now.getTime() - 3_600_000);
    const answer = ctx.good({ producedAt: new Date('1990-01-01T00:00:00Z') });
    const { r } = await runWith('produced-1990', answer);
    expect(r.code, showResult(r)).toBe(1); // ocspbot: the number of staples renewed
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.result, showResult(r)).toBe('updated');
    const next = Date.parse(String(o?.nextRefresh));
    // not due at once (producedAt taken as no earlier than thisUpdate), and inside the window
    expect(next, showResult(r)).toBeGreaterThan(Date.now() + DAY);
    expect(next).toBeGreaterThanOrEqual(thisUpdate.getTime() - 1000);
    expect(next).toBeLessThanOrEqual(Date.now() + 7 * DAY);
  });
});

describe('sanity on lifetimes (docs/SECURITY.md "Sanity on times")', () => {
  it('a response valid for 10 years is refreshed within 4 days of its thisUpdate, not years away', async () => {
    const now = Date.now();
    const answer = ctx.good({ single: { nextUpdate: new Date(now + 3650 * DAY) } });
    const { r, staple } = await runWith('ten-years', answer);
    expect(r.code, showResult(r)).toBe(1); // ocspbot: the number of staples renewed
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.result, showResult(r)).toBe('updated');
    const next = Date.parse(String(o?.nextRefresh));
    expect(next, showResult(r)).toBeLessThanOrEqual(now + 4 * DAY);
    expect(next).toBeGreaterThan(now - 2 * 3_600_000);
    // and a later run judges the staple on disk the same way (keep, due within 4 days)
    const again = await runWith('ten-years', answer, await readFile(staple), ['--dry-run']);
    const d = outcomesById(again.r.stdout).get('leaf');
    expect(d?.decision?.action, showResult(again.r)).toBe('keep');
    expect(Date.parse(String(d?.nextRefresh))).toBeLessThanOrEqual(now + 4 * DAY);
  });

  it('a response with thisUpdate in 1950 is refused (OCSP_STALE) and the staple on disk is kept byte-for-byte', async () => {
    const planted = ctx.good();
    const answer = ctx.good({
      producedAt: new Date('1950-01-01T00:00:00Z'),
      single: { thisUpdate: new Date('1950-01-01T00:00:00Z') },
    });
    const { r, staple } = await runWith('this-1950', answer, planted, ['--force']);
    expect(r.code, showResult(r)).toBe(255);
    const o = outcomesById(r.stdout).get('leaf');
    expect(o?.error?.code, showResult(r)).toBe('OCSP_STALE');
    expect(o?.error?.message).toContain('366 days');
    expect((await snapshot(staple)).bytes.equals(planted)).toBe(true);
  });
});
