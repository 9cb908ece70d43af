/**
 * Every misbehaviour of the hostile test responder (test/helpers/evil-responder.ts),
 * through the real executable: `staplekeeper run --force --json` and
 * `staplekeeper fetch`, each in its own child process with a good staple
 * already on disk. For each one: the staple stays byte-identical (same bytes,
 * mtime and inode), the reported code is the scenario's, the exit code says
 * failure (run 255, fetch 1) and the process ends within its timeouts.
 *
 * Then the rules of docs/SECURITY.md ("The network", "Hooks and shells") that need a real process: only http(s)
 * URLs (responder, AIA and caIssuers), bounded redirects, nothing from a
 * certificate or a responder ever reaching a shell, and a revoked
 * certificate never hidden.
 */
import { readFile, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCertificates } from '../../src/core/certs.js';
import { verifyResponse } from '../../src/core/verify.js';
import {
  exists,
  jsonLines,
  killAllChildren,
  outcomesById,
  removeTempDirs,
  runCli,
  semaphore,
  showResult,
  snapshot,
  startGoodResponder,
  tempDir,
  writeCert,
  writeConfig,
  startScenarioBench,
} from '../helpers/cli-harness.js';
import type { CliResult } from '../helpers/cli-harness.js';
import {
  OCSP_CONTENT_TYPE,
  SCENARIOS,
  makeScenarioContext,
  startEvilResponder,
  startScenarioResponder,
  type Behaviour,
  type ScenarioContext,
} from '../helpers/evil-responder.js';
import { mintCert, type MintedCert } from '../helpers/mint.js';

/** The HTTP timeout every child gets: short, so the silent responders cost 2 s each, not 10. */
const HTTP_TIMEOUT_MS = 2000;
/** A child that takes longer than this did not respect its timeouts (GET and a POST fallback, plus start-up under load). */
const MAX_RUN_MS = 2 * HTTP_TIMEOUT_MS + 6000;
/** Four children at a time keeps the file well under a minute and a half on two cores. */
const slots = semaphore(4);

let dir: string;
let ctx: ScenarioContext;
let goodStaple: Buffer;
/** A valid staple older than what the accepted scenarios answer: a staple only gets better (docs/SECURITY.md). */
let olderStaple: Buffer;
let certPath: string;
let chainPath: string;

beforeAll(async () => {
  // The staple on disk must be valid at the real time, as the children judge it with the real clock.
  ({ dir, ctx, certPath, chainPath } = await startScenarioBench('sk-hostile-cli-', true));
  goodStaple = ctx.good();
  const twoHoursAgo = new Date(ctx.now.getTime() - 2 * 3_600_000);
  olderStaple = ctx.good({
    producedAt: twoHoursAgo,
    single: { thisUpdate: twoHoursAgo, nextUpdate: new Date(ctx.now.getTime() + 6 * 86_400_000) },
  });
});

afterAll(async () => {
  await killAllChildren();
  await removeTempDirs();
});

/** Writes the good staple with an old mtime, so that any rewrite would show. */
async function plantStaple(path: string, bytes: Buffer = goodStaple): Promise<void> {
  await writeFile(path, bytes);
  const old = new Date(Date.now() - 3_600_000);
  await utimes(path, old, old);
}

async function withSlot<T>(fn: () => Promise<T>): Promise<T> {
  const release = await slots();
  try {
    return await fn();
  } finally {
    release();
  }
}

/** `run --force --json` over one domain whose responder is `url`; returns the result and the staple path. */
async function runOne(
  name: string,
  url: string,
  extra: Record<string, unknown> = {},
  onDisk: Buffer = goodStaple,
): Promise<{ r: CliResult; staple: string }> {
  const folder = join(dir, `run-${name}`);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(folder, { recursive: true });
  const staple = join(folder, 'leaf.der');
  await plantStaple(staple, onDisk);
  const cfg = await writeConfig(join(folder, 'staplekeeper.yaml'), {
    ocsp_folder: folder,
    http: { timeout: `${HTTP_TIMEOUT_MS / 1000}s` },
    lock_timeout: '10s',
    domains: { leaf: { cert: certPath, chain: chainPath, ocsp: 'leaf.der', ocsp_responder_uri: url } },
    ...extra,
  });
  const r = await runCli(['run', '-c', cfg, '--force', '--json'], { timeoutMs: 30_000 });
  return { r, staple };
}

async function fetchOne(
  name: string,
  url: string,
  onDisk: Buffer = goodStaple,
): Promise<{ r: CliResult; staple: string }> {
  const staple = join(dir, `fetch-${name}.der`);
  await plantStaple(staple, onDisk);
  const r = await runCli(
    [
      'fetch',
      '--cert',
      certPath,
      '--chain',
      chainPath,
      '--url',
      url,
      '--out',
      staple,
      '--timeout',
      `${HTTP_TIMEOUT_MS / 1000}s`,
    ],
    { timeoutMs: 30_000 },
  );
  return { r, staple };
}

function expectValidStaple(bytes: Buffer): void {
  const [cert] = loadCertificates(Buffer.from(ctx.leaf.pem));
  const [issuer] = loadCertificates(Buffer.from(ctx.issuer.pem));
  const v = verifyResponse(bytes, { cert: cert!, issuer: issuer!, now: new Date() });
  expect(v.status).toBe('good');
}

/** Failure context for an assertion message. */
const failing = SCENARIOS.filter((s) => s.expectedCode !== 'OK');
const accepted = SCENARIOS.filter((s) => s.expectedCode === 'OK');

describe('hostile responders through `staplekeeper run`', () => {
  it('covers at least 30 distinct misbehaviours', () => {
    expect(failing.length).toBeGreaterThanOrEqual(30);
    expect(new Set(failing.map((s) => s.name)).size).toBe(failing.length);
  });

  it.concurrent.for(failing)('run: $name', { timeout: 60_000 }, async (scenario, { expect }) => {
    await withSlot(async () => {
      const responder = await startScenarioResponder(scenario, ctx);
      try {
        const { r, staple } = await runOne(scenario.name, responder.url);
        const before = goodStaple;
        expect(r.timedOut, showResult(r)).toBe(false);
        expect(r.code, showResult(r)).toBe(255);
        const outcome = outcomesById(r.stdout).get('leaf');
        expect(outcome, showResult(r)).toBeDefined();
        expect(outcome?.result).toBe('failed');
        expect(outcome?.error?.code, showResult(r)).toBe(scenario.expectedCode);
        const summary = jsonLines(r.stdout).find((o) => o.type === 'summary');
        expect(summary?.failed).toBe(1);
        expect(summary?.exitCode).toBe(255);
        const after = await snapshot(staple);
        expect(after.bytes.equals(before)).toBe(true);
        expect(after.mtimeMs).toBeLessThan(Date.now() - 3_000_000);
        // nothing left behind in the folder: no temporary files, no lock; a
        // revoked answer (not written) is remembered in the revocation marks
        const left = (await readdir(join(staple, '..'))).filter((n) => n !== 'leaf.der' && n !== 'staplekeeper.yaml');
        expect(left).toEqual(scenario.name === 'status-revoked' ? ['.staplekeeper-revoked.json'] : []);
        expect(r.ms, showResult(r)).toBeLessThan(MAX_RUN_MS);
      } finally {
        await responder.close();
      }
    });
  });

  it.concurrent.for(accepted)('run: $name (accepted)', { timeout: 60_000 }, async (scenario, { expect }) => {
    await withSlot(async () => {
      const responder = await startScenarioResponder(scenario, ctx);
      try {
        const { r, staple } = await runOne(scenario.name, responder.url, {}, olderStaple);
        expect(r.code, showResult(r)).toBe(1); // one staple renewed
        expect(outcomesById(r.stdout).get('leaf')?.result).toBe('updated');
        const after = await readFile(staple);
        expect(after.equals(olderStaple)).toBe(false);
        expectValidStaple(after);
      } finally {
        await responder.close();
      }
    });
  });
});

describe('hostile responders through `staplekeeper fetch`', () => {
  it.concurrent.for(failing)('fetch: $name', { timeout: 60_000 }, async (scenario, { expect }) => {
    await withSlot(async () => {
      const responder = await startScenarioResponder(scenario, ctx);
      try {
        const { r, staple } = await fetchOne(scenario.name, responder.url);
        expect(r.timedOut, showResult(r)).toBe(false);
        expect(r.code, showResult(r)).toBe(1);
        expect(r.stderr, showResult(r)).toContain(`staplekeeper: error ${scenario.expectedCode}: `);
        expect(r.stderr).toContain('was left untouched');
        const after = await snapshot(staple);
        expect(after.bytes.equals(goodStaple)).toBe(true);
        expect(after.mtimeMs).toBeLessThan(Date.now() - 3_000_000);
        expect(r.ms, showResult(r)).toBeLessThan(MAX_RUN_MS);
      } finally {
        await responder.close();
      }
    });
  });

  it.concurrent.for(accepted)('fetch: $name (accepted)', { timeout: 60_000 }, async (scenario, { expect }) => {
    await withSlot(async () => {
      const responder = await startScenarioResponder(scenario, ctx);
      try {
        const { r, staple } = await fetchOne(scenario.name, responder.url, olderStaple);
        expect(r.code, showResult(r)).toBe(0);
        const after = await readFile(staple);
        expect(after.equals(olderStaple)).toBe(false);
        expectValidStaple(after);
      } finally {
        await responder.close();
      }
    });
  });
});

// ---------------------------------------------------------------------------
// Security
// ---------------------------------------------------------------------------

/** A responder that plays `behaviours` in turn (the last one for every further request). */
async function sequenceResponder(make: (n: number, selfBase: string) => Behaviour) {
  let n = 0;
  return startEvilResponder((_req, info) => make(n++, info.baseUrl));
}

describe('security: URLs, redirects and bounds', () => {
  it.concurrent.for([
    'ftp://127.0.0.1/ocsp',
    'file:///etc/passwd',
    'ldap://127.0.0.1/cn=ocsp',
    'data:application/ocsp-response;base64,MAMKAQE=',
    'javascript:alert(1)',
  ])('fetch --url %s is refused as HTTP_BAD_URL without any network access', async (url, { expect }) => {
    await withSlot(async () => {
      const staple = join(dir, `badurl-${encodeURIComponent(url).slice(0, 20)}.der`);
      await plantStaple(staple);
      const r = await runCli(['fetch', '--cert', certPath, '--chain', chainPath, '--url', url, '--out', staple]);
      expect(r.code, showResult(r)).toBe(1);
      expect(r.stderr).toContain('error HTTP_BAD_URL');
      expect((await readFile(staple)).equals(goodStaple)).toBe(true);
    });
  });

  it('a responder URL in a configuration must be http(s): exit 253, nothing fetched', async () => {
    await withSlot(async () => {
      const { r } = await runOne('cfg-ftp-url', 'ftp://127.0.0.1/ocsp');
      expect(r.code, showResult(r)).toBe(253);
      expect(r.stderr).toMatch(/ocsp_responder_uri: expected an http:\/\/ or https:\/\/ URL/);
    });
  });

  it('a certificate whose AIA names only non-http responders is refused with HTTP_BAD_URL, per URL', async () => {
    await withSlot(async () => {
      const folder = await tempDir('sk-aia-');
      const leaf = mintCert({
        subjectCN: 'aia-schemes.test',
        issuer: ctx.issuer,
        notBefore: new Date(Date.now() - 86_400_000),
        notAfter: new Date(Date.now() + 30 * 86_400_000),
        ocspUrls: ['ldap://127.0.0.1/ocsp', 'file:///etc/passwd', 'gopher://127.0.0.1:70/'],
      });
      const { cert, chain } = await writeCert(folder, 'aia', leaf, ctx.issuer);
      const cfg = await writeConfig(join(folder, 'c.yaml'), {
        ocsp_folder: folder,
        http: { timeout: '2s' },
        domains: { aia: { cert, chain, ocsp: 'aia.der' } },
      });
      const r = await runCli(['run', '-c', cfg, '--force', '--json']);
      expect(r.code, showResult(r)).toBe(255);
      const o = outcomesById(r.stdout).get('aia');
      expect(o?.error?.code).toBe('HTTP_BAD_URL');
      expect(o?.error?.message).toContain('ldap://127.0.0.1/ocsp');
      expect(o?.error?.message).toContain('2 more responder URL(s) failed');
      expect(await exists(join(folder, 'aia.der'))).toBe(false);
    });
  });

  it('redirects: 3 are followed, a 4th is refused (HTTP_REDIRECT)', async () => {
    await withSlot(async () => {
      for (const [hops, code] of [
        [3, 0],
        [4, 1],
      ] as const) {
        const responder = await sequenceResponder((n, base) =>
          n < hops
            ? { kind: 'redirect', location: `${base}/hop${n + 1}` }
            : { kind: 'respond', status: 200, headers: { 'content-type': OCSP_CONTENT_TYPE }, body: ctx.good() },
        );
        try {
          const staple = join(dir, `redirect-${hops}.der`);
          await plantStaple(staple, olderStaple); // the answer must be better to be written (docs/SECURITY.md)
          const r = await runCli([
            'fetch',
            '--cert',
            certPath,
            '--chain',
            chainPath,
            '--url',
            responder.url,
            '--out',
            staple,
            '--method',
            'post',
            '--timeout',
            '2s',
          ]);
          expect(r.code, showResult(r)).toBe(code);
          if (code === 1) {
            expect(r.stderr).toContain('error HTTP_REDIRECT');
            expect(r.stderr).toContain('more than 3 redirects');
            expect((await readFile(staple)).equals(olderStaple)).toBe(true);
            // POST once, then the GET fallback is not tried for a redirect failure: 4 + 1 requests at most per method
            expect(responder.requests.length).toBeLessThanOrEqual(8);
          } else {
            expectValidStaple(await readFile(staple));
          }
        } finally {
          await responder.close();
        }
      }
    });
  });

  it.concurrent.for(['ftp://127.0.0.1/x', 'file:///etc/passwd', 'data:,x', 'ldap://127.0.0.1/'])(
    'a redirect to %s is refused, even after an allowed http hop',
    async (target, { expect }) => {
      await withSlot(async () => {
        const responder = await sequenceResponder((n, base) =>
          n === 0 ? { kind: 'redirect', location: `${base}/next` } : { kind: 'redirect', location: target },
        );
        try {
          const { r, staple } = await fetchOne(`redir-${encodeURIComponent(target).slice(0, 12)}`, responder.url);
          expect(r.code, showResult(r)).toBe(1);
          expect(r.stderr).toContain('error HTTP_REDIRECT');
          expect((await readFile(staple)).equals(goodStaple)).toBe(true);
        } finally {
          await responder.close();
        }
      });
    },
  );

  it('a redirect Location that is not a URL at all is refused', async () => {
    await withSlot(async () => {
      const responder = await startEvilResponder(() => ({ kind: 'redirect', location: 'http://[not a host' }));
      try {
        const { r } = await fetchOne('redir-invalid', responder.url);
        expect(r.code, showResult(r)).toBe(1);
        expect(r.stderr).toContain('error HTTP_REDIRECT');
      } finally {
        await responder.close();
      }
    });
  });

  it('response bodies are capped at 1 MiB: 1 MiB + 1 byte is refused with or without Content-Length; 1 MiB is read', async () => {
    await withSlot(async () => {
      const good = ctx.good();
      const MiB = 1024 * 1024;
      for (const [size, chunked, code] of [
        [MiB + 1, false, 'HTTP_TOO_LARGE'],
        [MiB + 1, true, 'HTTP_TOO_LARGE'],
        // exactly at the cap the body is read, and then refused for what it is: a response with trailing bytes
        [MiB, true, 'OCSP_MALFORMED'],
      ] as const) {
        const body = Buffer.concat([good, Buffer.alloc(size - good.length)]);
        const responder = await startEvilResponder(() => ({
          kind: 'respond',
          status: 200,
          headers: { 'content-type': OCSP_CONTENT_TYPE },
          body,
          chunked,
        }));
        try {
          const { r, staple } = await fetchOne(`cap-${size}-${chunked}`, responder.url);
          expect(r.code, showResult(r)).toBe(1);
          expect(r.stderr).toContain(`error ${code}`);
          expect((await readFile(staple)).equals(goodStaple)).toBe(true);
        } finally {
          await responder.close();
        }
      }
    });
  });

  it('the timeout bounds the whole exchange, not each read: a trickle of one byte per 300 ms is cut at --timeout', async () => {
    await withSlot(async () => {
      const responder = await startEvilResponder(() => ({ kind: 'slow', bytes: ctx.good(), intervalMs: 300 }));
      try {
        const { r } = await fetchOne('trickle-300', responder.url);
        expect(r.code, showResult(r)).toBe(1);
        expect(r.stderr).toContain('error HTTP_TIMEOUT');
        expect(r.ms).toBeLessThan(HTTP_TIMEOUT_MS + 5000);
      } finally {
        await responder.close();
      }
    });
  });

  describe('caIssuers (AIA issuer download)', () => {
    async function caIssuersRun(name: string, urls: string[]): Promise<{ r: CliResult; folder: string }> {
      const folder = await tempDir('sk-caissuers-');
      const good = await startGoodResponder(ctx.pki, []);
      const leaf = mintCert({
        subjectCN: `${name}.test`,
        issuer: ctx.issuer,
        notBefore: new Date(Date.now() - 86_400_000),
        notAfter: new Date(Date.now() + 30 * 86_400_000),
        ocspUrls: [good.url],
        caIssuersUrls: urls,
      });
      await writeFile(join(folder, 'leaf.pem'), leaf.pem); // no chain: the issuer must come from caIssuers
      const cfg = await writeConfig(join(folder, 'c.yaml'), {
        ocsp_folder: folder,
        http: { timeout: '2s' },
        domains: { leaf: { cert: join(folder, 'leaf.pem'), ocsp: 'leaf.der' } },
      });
      try {
        const r = await runCli(['run', '-c', cfg, '--force', '--json']);
        return { r, folder };
      } finally {
        await good.close();
      }
    }

    it('only http(s) caIssuers URLs are fetched; others are named in the NO_ISSUER error', async () => {
      await withSlot(async () => {
        const { r, folder } = await caIssuersRun('ca-schemes', ['file:///etc/passwd', 'ldap://127.0.0.1/cn=ca']);
        expect(r.code, showResult(r)).toBe(255);
        const o = outcomesById(r.stdout).get('leaf');
        expect(o?.error?.code).toBe('NO_ISSUER');
        expect(o?.error?.message).toContain(
          'file:///etc/passwd: the caIssuers URL "file:///etc/passwd" is not an http: or https: URL',
        );
        expect(o?.error?.message).toContain('ldap://');
        expect(await exists(join(folder, 'leaf.der'))).toBe(false);
      });
    });

    it('an http caIssuers URL is used (DER issuer), and an oversized or silent one is bounded', async () => {
      await withSlot(async () => {
        const ca = await startEvilResponder((req) => {
          if (req.path === '/ca.der')
            return {
              kind: 'respond',
              status: 200,
              headers: { 'content-type': 'application/pkix-cert' },
              body: ctx.issuer.der,
            };
          if (req.path === '/huge.der') return { kind: 'stream-forever', contentType: 'application/pkix-cert' };
          return { kind: 'hang' };
        });
        try {
          const ok = await caIssuersRun('ca-ok', [`${ca.url.replace('/ocsp', '')}/ca.der`]);
          // the OCSP responder of this helper knows no leaves, so the fetch fails after the issuer was found
          const okOutcome = outcomesById(ok.r.stdout).get('leaf');
          expect(okOutcome?.error?.code, showResult(ok.r)).toBe('HTTP_STATUS');

          const huge = await caIssuersRun('ca-huge', [`${ca.url.replace('/ocsp', '')}/huge.der`]);
          const hugeOutcome = outcomesById(huge.r.stdout).get('leaf');
          expect(hugeOutcome?.error?.code, showResult(huge.r)).toBe('NO_ISSUER');
          expect(hugeOutcome?.error?.message).toMatch(/cap/);

          const silent = await caIssuersRun('ca-silent', [`${ca.url.replace('/ocsp', '')}/silent.der`]);
          const silentOutcome = outcomesById(silent.r.stdout).get('leaf');
          expect(silentOutcome?.error?.code, showResult(silent.r)).toBe('NO_ISSUER');
          expect(silentOutcome?.error?.message).toMatch(/within 2000 ms/);
          expect(silent.r.ms).toBeLessThan(HTTP_TIMEOUT_MS + 6000);
        } finally {
          await ca.close();
        }
      });
    });
  });
});

describe('security: hooks never interpolate certificate or responder values into a shell', () => {
  it('hostile CN, AIA URL, domain id and redirect Location reach the hooks only as data', async () => {
    await withSlot(async () => {
      const folder = await tempDir('sk-hooks-');
      const pwned = join(folder, 'PWNED');
      const payloads: [string, string, string, string] = [
        `$(touch ${pwned})`,
        `\`touch ${pwned}\``,
        `"; touch ${pwned}; echo "`,
        `'; touch ${pwned}; echo '`,
      ];
      const evilCn = payloads.join(' ');
      const good = await startGoodResponder(ctx.pki, []);
      // The failing domain's responder redirects to an invalid location carrying a payload,
      // which staplekeeper quotes in its error message (so it reaches on_failure's JSON).
      const evil = await startEvilResponder(() => ({ kind: 'redirect', location: `http://[${payloads[0]}` }));
      try {
        const mk = (ocspUrl: string): MintedCert =>
          mintCert({
            subjectCN: evilCn,
            issuer: ctx.issuer,
            notBefore: new Date(Date.now() - 86_400_000),
            notAfter: new Date(Date.now() + 30 * 86_400_000),
            ocspUrls: [ocspUrl],
          });
        // The AIA URLs themselves carry payloads in their paths (the good responder matches by serial).
        const changed = mk(`${good.url}/${payloads[0]}`);
        const revoked = mk(`${good.url}/${payloads[1]}`);
        const failed = mk(`${evil.url}/${payloads[2]}`);
        good.add(changed);
        good.add(revoked);
        good.revoke(revoked.serial.toString('hex'), 1);
        const ids = {
          changed: `changed ${payloads[0]}`,
          revoked: `revoked ${payloads[1]}`,
          failed: `failed ${payloads[2]}`,
        };
        const domains: Record<string, unknown> = {};
        for (const [name, cert] of [
          ['changed', changed],
          ['revoked', revoked],
          ['failed', failed],
        ] as const) {
          const files = await writeCert(folder, name, cert, ctx.issuer);
          domains[ids[name]] = { cert: files.cert, chain: files.chain, ocsp: `${name}.der` };
        }
        // Each hook is a shell string (the operator asked for a shell) that uses
        // the values only through a quoted variable and stdin.
        const hook = (ev: string): string =>
          `printf '%s\\n' "$STAPLEKEEPER_IDS" > ${join(folder, `${ev}.ids`)}; cat > ${join(folder, `${ev}.json`)}`;
        const cfg = await writeConfig(join(folder, 'c.yaml'), {
          ocsp_folder: folder,
          http: { timeout: '2s' },
          hooks: { on_change: hook('change'), on_revoked: hook('revoked'), on_failure: hook('failure') },
          domains,
        });
        const r = await runCli(['run', '-c', cfg, '--force']);
        expect(r.code, showResult(r)).toBe(255);
        expect(await exists(pwned), `a payload was executed\n${showResult(r)}`).toBe(false);
        // every hook ran and received the hostile strings verbatim, as data
        const change = JSON.parse(await readFile(join(folder, 'change.json'), 'utf8'));
        expect(change.event).toBe('on_change');
        expect(change.items.map((i: { id: string }) => i.id)).toEqual([ids.changed]);
        expect(await readFile(join(folder, 'change.ids'), 'utf8')).toBe(`${ids.changed}\n`);
        const rev = JSON.parse(await readFile(join(folder, 'revoked.json'), 'utf8'));
        expect(rev.items.map((i: { id: string }) => i.id)).toEqual([ids.revoked]);
        expect(rev.items[0].error.message).toContain(evilCn); // the CN, verbatim
        const fail = JSON.parse(await readFile(join(folder, 'failure.json'), 'utf8'));
        const failedItem = fail.items.find((i: { id: string }) => i.id === ids.failed);
        expect(failedItem?.error?.code, JSON.stringify(fail)).toBe('HTTP_REDIRECT');
        expect(failedItem.error.message).toContain(payloads[0]); // the responder's Location, verbatim
        expect(await readFile(join(folder, 'failure.ids'), 'utf8')).toContain(ids.failed);
      } finally {
        await Promise.all([good.close(), evil.close()]);
      }
    });
  });

  it('an argument-array hook runs without a shell: a "$(…)" argument arrives literally', async () => {
    await withSlot(async () => {
      const folder = await tempDir('sk-hookargv-');
      const pwned = join(folder, 'PWNED');
      const responder = await startGoodResponder(ctx.pki, [ctx.leaf]);
      try {
        const out = join(folder, 'argv.json');
        const script = `require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.argv.slice(1)))`;
        const cfg = await writeConfig(join(folder, 'c.yaml'), {
          ocsp_folder: folder,
          hooks: { on_change: [process.execPath, '-e', script, `$(touch ${pwned})`, '; touch PWNED'] },
          domains: { leaf: { cert: certPath, chain: chainPath, ocsp: 'leaf.der', ocsp_responder_uri: responder.url } },
        });
        const r = await runCli(['run', '-c', cfg, '--force']);
        expect(r.code, showResult(r)).toBe(1);
        expect(JSON.parse(await readFile(out, 'utf8'))).toEqual([`$(touch ${pwned})`, '; touch PWNED']);
        expect(await exists(pwned)).toBe(false);
      } finally {
        await responder.close();
      }
    });
  });
});

describe('security: a revoked certificate is never hidden', () => {
  async function revokedRun(onRevokedWrite: boolean | undefined) {
    const folder = await tempDir('sk-revoked-');
    const pki = ctx.pki;
    const revokedLeaf = pki.leaves[1]!;
    const goodLeaf = pki.leaves[2]!;
    const responder = await startGoodResponder(pki, [revokedLeaf, goodLeaf]);
    responder.revoke(revokedLeaf.serial.toString('hex'), 1); // keyCompromise
    const a = await writeCert(folder, 'revoked', revokedLeaf, pki.root);
    const b = await writeCert(folder, 'fine', goodLeaf, pki.root);
    const oldStaple = makeScenarioContext(pki, revokedLeaf, new Date()).good();
    await writeFile(join(folder, 'revoked.der'), oldStaple);
    const old = new Date(Date.now() - 3_600_000);
    await utimes(join(folder, 'revoked.der'), old, old);
    const hookOut = join(folder, 'on_revoked.json');
    const cfg = await writeConfig(join(folder, 'c.yaml'), {
      ocsp_folder: folder,
      ...(onRevokedWrite === undefined ? {} : { on_revoked_write: onRevokedWrite }),
      hooks: { on_revoked: `cat > ${hookOut}` },
      domains: {
        revoked: { cert: a.cert, chain: a.chain, ocsp: 'revoked.der', ocsp_responder_uri: responder.url },
        fine: { cert: b.cert, chain: b.chain, ocsp: 'fine.der', ocsp_responder_uri: responder.url },
      },
    });
    try {
      const text = await runCli(['run', '-c', cfg, '--force']);
      // the second run is --json; restore the old staple first so both see the same start
      await writeFile(join(folder, 'revoked.der'), oldStaple);
      await utimes(join(folder, 'revoked.der'), old, old);
      const json = await runCli(['run', '-c', cfg, '--force', '--json']);
      return { text, json, folder, oldStaple, hookOut, revokedLeaf };
    } finally {
      await responder.close();
    }
  }

  for (const mode of [undefined, true] as const) {
    const label = mode ? 'with on_revoked_write: true' : 'by default';
    it(`${label}: logged as an error with time and reason, in --json, in the exit code, on_revoked runs`, async () => {
      await withSlot(async () => {
        const { text, json, folder, oldStaple, hookOut, revokedLeaf } = await revokedRun(mode);
        for (const r of [text, json]) expect(r.code, showResult(r)).toBe(255);
        // text: an error line on stderr naming the revocation time and reason
        expect(text.stderr, showResult(text)).toMatch(
          /\[revoked\] error OCSP_REVOKED: .*REVOKED at \d{4}-\d\d-\d\dT.* \(reason: keyCompromise\)/,
        );
        expect(text.stdout).toMatch(/^Failure: /m);
        expect(text.stdout).toContain('[fine] updated OCSP response: good');
        // json
        const o = outcomesById(json.stdout).get('revoked');
        expect(o?.error?.code).toBe('OCSP_REVOKED');
        expect(o?.revoked?.reason).toBe('keyCompromise');
        expect(o?.revoked?.time).toMatch(/^\d{4}-\d\d-\d\dT/);
        const summary = jsonLines(json.stdout).find((x) => x.type === 'summary');
        expect(summary?.revoked).toBe(1);
        expect(summary?.exitCode).toBe(255);
        expect(outcomesById(json.stdout).get('fine')?.result).toBe('updated');
        // the hook
        const hook = JSON.parse(await readFile(hookOut, 'utf8'));
        expect(hook.event).toBe('on_revoked');
        expect(hook.items.map((i: { id: string }) => i.id)).toEqual(['revoked']);
        expect(hook.items[0].revoked.reason).toBe('keyCompromise');
        // the staple
        const now = await readFile(join(folder, 'revoked.der'));
        const [cert] = loadCertificates(revokedLeaf.der);
        const [issuer] = loadCertificates(ctx.pki.root.der);
        if (mode) {
          expect(now.equals(oldStaple)).toBe(false);
          expect(verifyResponse(now, { cert: cert!, issuer: issuer!, now: new Date() }).status).toBe('revoked');
          // --json describes the staple now on disk: the revoked response, not the good one it replaced
          expect((o?.staple as { status?: string } | undefined)?.status, JSON.stringify(o)).toBe('revoked');
        } else {
          expect(now.equals(oldStaple)).toBe(true);
          expect(text.stderr).toContain('the current staple was kept');
        }
      });
    });
  }

  it('fetch of a revoked certificate exits 1 and keeps the staple', async () => {
    await withSlot(async () => {
      const revoked = SCENARIOS.find((s) => s.name === 'status-revoked')!;
      const responder = await startScenarioResponder(revoked, ctx);
      try {
        const { r, staple } = await fetchOne('revoked-fetch', responder.url);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/error OCSP_REVOKED: .*REVOKED at .*\(reason: keyCompromise\)/);
        expect((await readFile(staple)).equals(goodStaple)).toBe(true);
      } finally {
        await responder.close();
      }
    });
  });
});
