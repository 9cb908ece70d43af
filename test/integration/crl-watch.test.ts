/**
 * CRL watch (README.md "Certificates without OCSP"): real CRLs from `openssl ca -gencrl` served by a local
 * HTTP server on 127.0.0.1 (with ETag / Last-Modified), a mixed configuration
 * (OCSP, CRL-only, must-staple) through `run`, `check` and the daemon, a
 * revocation between two checks, and CRLs that must never say OK or revoked
 * falsely: wrong key, expired, another issuer, truncated, over the size cap;
 * plus a huge (1,000,000-entry) CRL minted in-process.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../../src/cli/main.js';
import type { DaemonSnapshot } from '../../src/daemon/daemon.js';
import {
  genCrl,
  hugeCrlEntries,
  hugeCrlSerial,
  mintCert,
  mintCrl,
  revokeLeaf,
  sharedKey,
  toPem,
  type Pki,
} from '../helpers/mint.js';
import { memoryIo } from '../helpers/memory-io.js';
import { startStatusDaemon, startOpensslPki } from '../helpers/servers.js';
import { cleanUp } from '../helpers/temp.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const DAY = 86_400_000;

/** A CRL server: one body per path, ETag and Last-Modified, a log of (path, status). */
interface CrlServer {
  url: string;
  bodies: Map<string, Buffer>;
  log: Array<{ path: string; status: number }>;
  server: Server;
}

async function startCrlServer(): Promise<CrlServer> {
  const bodies = new Map<string, Buffer>();
  const log: CrlServer['log'] = [];
  const server = createServer((req, res) => {
    const p = req.url ?? '/';
    const body = bodies.get(p);
    if (!body) {
      log.push({ path: p, status: 404 });
      res.writeHead(404).end('not found');
      return;
    }
    const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
    if (req.headers['if-none-match'] === etag) {
      log.push({ path: p, status: 304 });
      res.writeHead(304, { etag }).end();
      return;
    }
    log.push({ path: p, status: 200 });
    res.writeHead(200, {
      'content-type': 'application/pkix-crl',
      'content-length': body.length,
      etag,
      'last-modified': new Date(Date.now() - 60_000).toUTCString(),
    });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, bodies, log, server };
}

let root: string;
let pki: Pki;
let crls: CrlServer;

beforeAll(async () => {
  crls = await startCrlServer();
  ({ root, pki } = await startOpensslPki(
    'sk-crlwatch-',
    {
      leaves: [
        { name: 'ocsp' },
        { name: 'ms', mustStaple: true },
        { name: 'le1', noOcspUrl: true, crlUrl: `${crls.url}/ca.crl` },
        { name: 'le2', noOcspUrl: true, crlUrl: `${crls.url}/ca.crl` },
      ],
    },
    { nmin: 7 * 24 * 60 },
  ));
  crls.bodies.set('/ca.crl', await readFile(await genCrl(pki, { out: path.join(root, 'ca1.crl') })));
}, 60_000);

afterAll(async () => {
  await new Promise((r) => crls?.server.close(r));
  await cleanUp();
});

async function mixedConfig(name: string, extra: string[] = []): Promise<string> {
  const dir = path.join(root, name);
  await mkdir(path.join(dir, 'ocsp'), { recursive: true });
  const lines = [`ocsp_folder: ${path.join(dir, 'ocsp')}`, ...extra, 'domains:'];
  for (const l of ['ocsp', 'ms', 'le1', 'le2']) {
    const leaf = pki.leaves[l]!;
    lines.push(`  ${l}:`, `    cert: ${leaf.cert}`, `    chain: ${leaf.chain}`, `    ocsp: ${l}.der`);
  }
  await writeFile(path.join(dir, 'staplekeeper.yaml'), `${lines.join('\n')}\n`);
  return dir;
}

describe('a configuration mixing OCSP, CRL-only and must-staple certificates', () => {
  it('run exits with the number renewed; check is OK until a revocation, then CRITICAL naming it within one CRL fetch; an unchanged CRL is never downloaded twice', async () => {
    const dir = await mixedConfig('mixed', ['hooks:', `  on_revoked: echo "revoked $STAPLEKEEPER_IDS" >> hooks.log`]);
    const run = memoryIo(dir);
    expect(await cli(['run'], run)).toBe(2);
    expect(run.err()).toBe('');

    crls.log.length = 0;
    const chk = memoryIo(dir);
    expect(await cli(['check', '--json'], chk)).toBe(0);
    const doc = JSON.parse(chk.out()) as { summary: string; certificates: Array<Record<string, unknown>> };
    expect(doc.summary).toMatch(/^STAPLEKEEPER OK - 2 staples good.*2 without an OCSP responder/);
    const le1 = doc.certificates.find((c) => c.id === 'le1')!;
    expect(le1).toMatchObject({ state: 'no-ocsp', level: 'ok', mechanism: 'crl', crlStatus: 'good' });
    // one download for both certificates of the same distribution point
    expect(crls.log).toEqual([{ path: '/ca.crl', status: 200 }]);

    // the CRL is unchanged: the next check asks with If-None-Match and gets 304
    const chk2 = memoryIo(dir);
    expect(await cli(['check'], chk2)).toBe(0);
    expect(crls.log).toEqual([
      { path: '/ca.crl', status: 200 },
      { path: '/ca.crl', status: 304 },
    ]);

    // revoked between two checks: the CA publishes a new CRL
    await revokeLeaf(pki, 'le2', { reason: 'keyCompromise' });
    crls.bodies.set('/ca.crl', await readFile(await genCrl(pki, { out: path.join(root, 'ca2.crl') })));
    const chk3 = memoryIo(dir);
    expect(await cli(['check'], chk3)).toBe(2);
    const at = pki.leaves.le2!.revokedAt!.toISOString();
    expect(chk3.out()).toMatch(
      new RegExp(
        `^STAPLEKEEPER CRITICAL - 1 of 4 staples critical: le2 REVOKED at ${at.replace(/\./g, '\\.')} \\(keyCompromise\\) according to its CRL`,
      ),
    );
    expect(crls.log.at(-1)).toEqual({ path: '/ca.crl', status: 200 });

    // run --crl reports it revoked, runs on_revoked, and records it for later checks
    const run2 = memoryIo(dir);
    expect(await cli(['run', '--crl'], run2)).toBe(255);
    expect(run2.err()).toMatch(
      /\[le2\] error CRL_REVOKED: certificate REVOKED at .* \(reason: keyCompromise\) according to its CRL/,
    );
    expect(run2.out()).toMatch(
      /\[le1\] skipped: no OCSP responder: .*; CRL http:\/\/127\.0\.0\.1:\d+\/ca\.crl: not revoked/,
    );
    expect(await readFile(path.join(dir, 'hooks.log'), 'utf8')).toBe('revoked le2\n');
    // without CRL watch, check still knows (the revocation mark)
    const chk4 = memoryIo(dir);
    expect(await cli(['check', '--no-crl'], chk4)).toBe(2);
    expect(chk4.out()).toMatch(/le2 REVOKED at .* according to its CRL/);
    // plain run (no CRL watch) is unaffected: nothing renewed, exit 0
    expect(await cli(['run'], memoryIo(dir))).toBe(0);
  }, 90_000);
});

describe('CRLs that must never give OK or a false revoked', () => {
  const now = new Date();
  const ca = mintCert({
    subjectCN: 'crl-watch test CA',
    key: sharedKey('ec-p256', 'cw-ca'),
    isCA: true,
    notBefore: new Date(now.getTime() - 30 * DAY),
    notAfter: new Date(now.getTime() + 3650 * DAY),
  });
  const impostor = mintCert({
    subjectCN: 'crl-watch test CA',
    key: sharedKey('ec-p256', 'cw-impostor'),
    isCA: true,
    notBefore: new Date(now.getTime() - 30 * DAY),
    notAfter: new Date(now.getTime() + 3650 * DAY),
  });
  const stranger = mintCert({
    subjectCN: 'some other CA',
    key: sharedKey('ec-p256', 'cw-stranger'),
    isCA: true,
    notBefore: new Date(now.getTime() - 30 * DAY),
    notAfter: new Date(now.getTime() + 3650 * DAY),
  });
  const thisUpdate = new Date(now.getTime() - 3_600_000);

  async function checkWith(name: string, body: Buffer | undefined, extra: string[] = [], serial?: Buffer) {
    const dir = path.join(root, `bad-${name}`);
    await mkdir(path.join(dir, 'ocsp'), { recursive: true });
    const leaf = mintCert({
      subjectCN: `${name}.test`,
      issuer: ca,
      notBefore: new Date(now.getTime() - DAY),
      notAfter: new Date(now.getTime() + 60 * DAY),
      crlUrls: [`${crls.url}/${name}.crl`],
      ...(serial ? { serial } : {}),
    });
    await writeFile(path.join(dir, 'leaf.pem'), leaf.pem + ca.pem);
    if (body) crls.bodies.set(`/${name}.crl`, body);
    await writeFile(
      path.join(dir, 'staplekeeper.yaml'),
      [
        `ocsp_folder: ${path.join(dir, 'ocsp')}`,
        ...extra,
        'domains:',
        '  leaf:',
        '    cert: leaf.pem',
        '    ocsp: leaf.der',
        '',
      ].join('\n'),
    );
    const io = memoryIo(dir);
    const code = await cli(['check', '--json'], io);
    const doc = JSON.parse(io.out()) as { certificates: Array<Record<string, unknown>> };
    return { code, cert: doc.certificates[0]! };
  }

  const cases: Array<[string, () => Buffer | undefined, string]> = [
    ['wrong-key', () => mintCrl({ signer: impostor, thisUpdate }), 'CRL_BAD_SIGNATURE'],
    [
      'expired',
      () =>
        mintCrl({
          signer: ca,
          thisUpdate: new Date(now.getTime() - 9 * DAY),
          nextUpdate: new Date(now.getTime() - DAY),
        }),
      'CRL_STALE',
    ],
    ['other-issuer', () => mintCrl({ signer: stranger, thisUpdate }), 'CRL_WRONG_ISSUER'],
    [
      'truncated',
      () => mintCrl({ signer: ca, thisUpdate, revokedEntriesDer: hugeCrlEntries(500, now) }).subarray(0, 5000),
      'CRL_MALFORMED',
    ],
    ['unreachable', () => undefined, 'HTTP_STATUS'],
  ];
  for (const [name, body, code] of cases) {
    it(`${name}: WARNING (${code})`, async () => {
      const r = await checkWith(name, body());
      expect(r.code).toBe(1);
      expect(r.cert).toMatchObject({ level: 'warning', state: 'crl-unavailable', code, crlStatus: 'unavailable' });
    }, 30_000);
  }

  it('over the size cap: WARNING (HTTP_TOO_LARGE), nothing cached', async () => {
    const r = await checkWith(
      'capped',
      mintCrl({ signer: ca, thisUpdate, revokedEntriesDer: hugeCrlEntries(5000, now) }),
      ['crl:', '  max_size: 64KiB'],
    );
    expect(r.cert).toMatchObject({ level: 'warning', code: 'HTTP_TOO_LARGE' });
  });

  it('a huge CRL (1,000,000 entries, ~30 MB) minted in-process: the listed serial is found, an unlisted one is good', async () => {
    const entries = hugeCrlEntries(1_000_000, new Date(now.getTime() - DAY));
    const body = mintCrl({ signer: ca, thisUpdate, revokedEntriesDer: entries });
    expect(body.length).toBeGreaterThan(25_000_000);
    const listed = await checkWith('huge', body, [], hugeCrlSerial(999_998));
    expect(listed.code).toBe(2);
    expect(listed.cert).toMatchObject({ state: 'revoked', code: 'CRL_REVOKED', crlStatus: 'revoked' });
    const fine = await checkWith('huge2', body, [], Buffer.from([0x7e, 1, 2, 3, 4, 5, 6, 7]));
    expect(fine.code).toBe(0);
    expect(fine.cert).toMatchObject({ state: 'no-ocsp', crlStatus: 'good' });
  }, 120_000);

  it('a PEM CRL body is accepted too', async () => {
    const r = await checkWith('pem', Buffer.from(toPem(mintCrl({ signer: ca, thisUpdate }), 'X509 CRL')));
    expect(r.code).toBe(0);
    expect(r.cert).toMatchObject({ crlStatus: 'good' });
  });
});

describe('the daemon watches CRLs at crl.interval', () => {
  it('/status and /metrics show a CRL revocation without a restart', async () => {
    const dir = await mixedConfig('daemon', ['crl:', '  interval: 2s']);
    // le2 is revoked already (test above); revoke le1 only after the daemon has started
    crls.bodies.set('/ca.crl', await readFile(await genCrl(pki, { out: path.join(root, 'ca3.crl') })));
    const end = Date.now() + 40_000;
    const daemon = await startStatusDaemon(dir);
    const url = daemon.url;
    const states = async (): Promise<Record<string, DaemonSnapshot['certificates'][number]>> => {
      const snap = (await (await fetch(`${url}/status`)).json()) as DaemonSnapshot;
      return Object.fromEntries(snap.certificates.map((c) => [c.id, c]));
    };
    for (;;) {
      const s = await states();
      if (s.le1?.crlStatus === 'good' && s.le2?.state === 'revoked' && s.ocsp?.state === 'good') break;
      if (Date.now() > end) throw new Error(`never settled: ${JSON.stringify(s)}\n${daemon.output()}`);
      await sleep(100);
    }
    let s = await states();
    expect(s.le1).toMatchObject({ state: 'no-ocsp-url', mechanism: 'crl', crlStatus: 'good' });
    expect(s.ms).toMatchObject({ state: 'good', mustStaple: true });

    await revokeLeaf(pki, 'le1', { reason: 'cessationOfOperation' });
    crls.bodies.set('/ca.crl', await readFile(await genCrl(pki, { out: path.join(root, 'ca4.crl') })));
    for (;;) {
      s = await states();
      if (s.le1?.state === 'revoked') break;
      if (Date.now() > end + 20_000) throw new Error(`le1 never revoked: ${JSON.stringify(s.le1)}\n${daemon.output()}`);
      await sleep(200);
    }
    expect(s.le1).toMatchObject({ revocationReason: 'cessationOfOperation', crlStatus: 'revoked' });
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^staplekeeper_certificate_revoked\{id="le1"\} 1$/m);
    expect(metrics).toMatch(/^staplekeeper_certificates\{state="revoked"\} 2$/m);
    expect(metrics).toMatch(
      /^staplekeeper_certificate_state\{id="le1",state="revoked",mechanism="crl",must_staple="false"\} 1$/m,
    );
    // the CRL was asked again with a conditional GET between changes
    expect(crls.log.some((l) => l.status === 304)).toBe(true);
  }, 90_000);
});
