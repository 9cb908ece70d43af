/**
 * `fetch` and `inspect` against a real `openssl ocsp` responder with the
 * tests' own PKIs (ECDSA and RSA; delegated and issuer-signed; good, revoked
 * and unknown certificates), and the OpenSSL cross-check of what we write.
 */
import { execFile } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../../src/cli/main.js';
import { createPki, type Pki } from '../helpers/mint.js';
import { freePort, startResponder, type Responder } from '../helpers/servers.js';
import { memoryIo } from '../helpers/memory-io.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

const run = promisify(execFile);

interface Setup {
  name: string;
  pki: Pki;
  responder: Responder;
}

const setups: Setup[] = [];
let dir: string;

beforeAll(async () => {
  dir = await tempDir('sk-fetch-');
  for (const [keyType, signer] of [
    ['ec', 'delegated'],
    ['rsa', 'issuer'],
  ] as const) {
    const port = await freePort();
    const pki = await createPki({
      dir: join(dir, `${keyType}-${signer}`),
      keyType,
      ocspUrl: `http://127.0.0.1:${port}`,
      responder: signer,
    });
    const responder = await startResponder({ pki, port });
    setups.push({ name: `${keyType}/${signer}`, pki, responder });
  }
});

afterAll(async () => {
  await Promise.all(setups.map((s) => s.responder.stop()));
  await cleanUp();
});

describe.each([0, 1])('setup %i', (i) => {
  const s = (): Setup => setups[i]!;

  it('fetches a good staple, writes it, and OpenSSL verifies it', async () => {
    const { pki } = s();
    const out = join(dir, `good-${i}.der`);
    const io = memoryIo(dir);
    const code = await cli(['fetch', '--cert', pki.leaves.good!.bundle, '--out', out], io);
    expect(io.err()).toBe('');
    expect(code).toBe(0);
    expect(io.out()).toMatch(/: good, valid until \d{4}-.*responder ".*" via GET http:\/\/127\.0\.0\.1:\d+/);
    const { stdout, stderr } = await run('openssl', [
      'ocsp',
      '-respin',
      out,
      '-issuer',
      pki.ca.cert,
      '-cert',
      pki.leaves.good!.cert,
      '-CAfile',
      pki.ca.cert,
      '-no_nonce',
    ]);
    expect(stderr + stdout).toContain('Response verify OK');
    expect(stdout).toContain(': good');
  });

  it('uses POST when asked, and a SHA-256 CertID', async () => {
    const { pki, responder } = s();
    const out = join(dir, `post-${i}.der`);
    const before = responder.requests.length;
    const io = memoryIo(dir);
    const code = await cli(
      [
        'fetch',
        '--cert',
        pki.leaves.good!.cert,
        '--chain',
        pki.leaves.good!.chain,
        '--out',
        out,
        '--method',
        'post',
        '--hash',
        'sha256',
      ],
      io,
    );
    expect(io.err()).toBe('');
    expect(code).toBe(0);
    expect(io.out()).toContain('via POST');
    expect(responder.requests.slice(before).some((r) => r.startsWith('POST'))).toBe(true);
  });

  it('refuses a revoked certificate and leaves the old staple untouched', async () => {
    const { pki } = s();
    const out = join(dir, `revoked-${i}.der`);
    await writeFile(out, 'previous staple');
    const before = await stat(out);
    const io = memoryIo(dir);
    const code = await cli(['fetch', '--cert', pki.leaves.revoked!.bundle, '--out', out], io);
    expect(code).toBe(1);
    expect(io.err()).toMatch(/^staplekeeper: error OCSP_REVOKED: .*REVOKED at .*keyCompromise.*left untouched\n$/);
    expect(await readFile(out, 'utf8')).toBe('previous staple');
    expect((await stat(out)).mtimeMs).toBe(before.mtimeMs);
  });

  it('refuses an unknown certificate with OCSP_UNKNOWN_CERT', async () => {
    const { pki } = s();
    const out = join(dir, `unknown-${i}.der`);
    const io = memoryIo(dir);
    expect(await cli(['fetch', '--cert', pki.leaves.unknown!.bundle, '--out', out], io)).toBe(1);
    expect(io.err()).toContain('error OCSP_UNKNOWN_CERT');
    await expect(stat(out)).rejects.toThrow();
  });

  it('inspect shows the staple and its validity for the certificate', async () => {
    const { pki } = s();
    const out = join(dir, `inspect-${i}.der`);
    expect(await cli(['fetch', '--cert', pki.leaves.good!.bundle, '--out', out], memoryIo(dir))).toBe(0);
    const io = memoryIo(dir);
    expect(await cli(['inspect', out, '--cert', pki.leaves.good!.bundle], io)).toBe(0);
    expect(io.out()).toContain('Response status:    successful');
    expect(io.out()).toMatch(/Status:\s+good/);
    expect(io.out()).toMatch(/Valid for:.*yes, 2d 2\dh left/);
    const json = memoryIo(dir);
    expect(
      await cli(['inspect', out, '--cert', pki.leaves.good!.cert, '--chain', pki.leaves.good!.chain, '--json'], json),
    ).toBe(0);
    const doc = JSON.parse(json.out()) as {
      validity: { valid: boolean };
      responses: Array<{ status: string; certId: { serial: string } }>;
    };
    expect(doc.validity.valid).toBe(true);
    expect(doc.responses[0]!.certId.serial).toBe(pki.leaves.good!.serialHex);
    // the same staple is not valid for another certificate
    const other = memoryIo(dir);
    expect(await cli(['inspect', out, '--cert', pki.leaves.revoked!.bundle], other)).toBe(1);
    expect(other.out()).toContain('NO: OCSP_CERTID_MISMATCH');
  });

  it('inspect reads PEM staples ("OCSP RESPONSE")', async () => {
    const { pki } = s();
    const der = join(dir, `pem-${i}.der`);
    expect(await cli(['fetch', '--cert', pki.leaves.good!.bundle, '--out', der], memoryIo(dir))).toBe(0);
    const b64 = (await readFile(der)).toString('base64').replace(/.{64}/g, '$&\n');
    const pem = join(dir, `pem-${i}.pem`);
    await writeFile(pem, `-----BEGIN OCSP RESPONSE-----\n${b64}\n-----END OCSP RESPONSE-----\n`);
    const io = memoryIo(dir);
    expect(await cli(['inspect', pem, '--cert', pki.leaves.good!.bundle], io)).toBe(0);
    expect(io.out()).toContain('yes,');
  });
});

describe('fetch errors', () => {
  it('names a missing certificate file and exits 1', async () => {
    const io = memoryIo(dir);
    expect(await cli(['fetch', '--cert', 'nope.pem', '--out', 'x.der'], io)).toBe(1);
    expect(io.err()).toMatch(/error FILE_UNREADABLE: .*nope\.pem: cannot read certificate: no such file/);
  });

  it('reports a certificate without an OCSP URL', async () => {
    const { pki } = setups[0]!;
    const { addLeaf } = await import('../helpers/mint.js');
    const leaf = await addLeaf(pki, { name: 'no-ocsp', noOcspUrl: true });
    const io = memoryIo(dir);
    expect(await cli(['fetch', '--cert', leaf.bundle, '--out', join(dir, 'no-ocsp.der')], io)).toBe(1);
    expect(io.err()).toContain('error NO_OCSP_URL');
  });

  it('rejects a responder URL that is not http(s)', async () => {
    const { pki } = setups[0]!;
    const io = memoryIo(dir);
    expect(
      await cli(
        ['fetch', '--cert', pki.leaves.good!.bundle, '--url', 'ftp://127.0.0.1/', '--out', join(dir, 'ftp.der')],
        io,
      ),
    ).toBe(1);
    expect(io.err()).toContain('error HTTP_BAD_URL');
  });

  it('bad arguments exit 252 with a one-line error', async () => {
    const io = memoryIo(dir);
    expect(await cli(['fetch', '--out', 'x'], io)).toBe(252);
    expect(io.err()).toContain("required option '--cert <file>' not specified");
    const m = memoryIo(dir);
    expect(await cli(['fetch', '--cert', 'a', '--out', 'b', '--method', 'put'], m)).toBe(252);
  });

  it('--version and --help', async () => {
    const io = memoryIo(dir);
    expect(await cli(['--version'], io)).toBe(0);
    expect(io.out()).toMatch(/^\d+\.\d+\.\d+\n$/);
    const h = memoryIo(dir);
    expect(await cli(['--help'], h)).toBe(0);
    expect(h.out()).toContain('fetch');
    expect(h.out()).toContain('inspect');
  });
});
