/**
 * The fixture layer itself (scripts/lib): throwaway PKIs and a real `openssl ocsp` responder,
 * checked with OpenSSL's own OCSP client so that the other integration tests can trust them.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addLeaf,
  createPki,
  revokeLeaf,
  type KeyType,
  type Leaf,
  type Pki,
  type SignerMode,
} from '../../scripts/lib/pki.mjs';
import { freePort, startResponder, type Responder } from '../../scripts/lib/responder.mjs';
import { cleanUp, tempDir } from '../helpers/temp.js';

const execFileAsync = promisify(execFile);

interface Answer {
  /** good | revoked | unknown, as the openssl client prints it. */
  status: string | undefined;
  verified: boolean;
  /** `-resp_text` of the saved response. */
  text: string;
}

/** Asks the responder about one leaf with `openssl ocsp`, verifying against the PKI's root. */
async function ask(pki: Pki, responder: Responder, leaf: Leaf): Promise<Answer> {
  const respout = path.join(pki.dir, `${leaf.name}.ocsp-resp`);
  const { stdout, stderr } = await execFileAsync('openssl', [
    'ocsp',
    '-issuer',
    pki.ca.cert,
    '-cert',
    leaf.cert,
    '-url',
    responder.url,
    '-CAfile',
    pki.ca.cert,
    '-respout',
    respout,
  ]);
  const line = stdout.split('\n').find((l) => l.startsWith(`${leaf.cert}: `));
  const text = await respText(respout);
  return { status: line?.slice(leaf.cert.length + 2).trim(), verified: stderr.includes('Response verify OK'), text };
}

async function respText(file: string): Promise<string> {
  const { stdout } = await execFileAsync('openssl', ['ocsp', '-respin', file, '-resp_text', '-noverify']);
  return stdout;
}

const setups: Array<{ keyType: KeyType; signer: SignerMode }> = [
  { keyType: 'ec', signer: 'delegated' },
  { keyType: 'rsa', signer: 'issuer' },
];

afterAll(async () => {
  await cleanUp();
});

for (const { keyType, signer } of setups) {
  describe(`${keyType} PKI, ${signer}-signed responses`, () => {
    let pki: Pki;
    let responder: Responder | undefined;

    beforeAll(async () => {
      const dir = await tempDir('sk-fixtures-');
      const port = await freePort();
      pki = await createPki({ dir, keyType, ocspUrl: `http://127.0.0.1:${port}`, responder: signer });
      responder = await startResponder({ pki, port });
    });

    afterAll(async () => {
      await responder?.stop();
    });

    it('lays out the PKI files', async () => {
      expect(Object.keys(pki.leaves)).toEqual(['good', 'revoked', 'unknown']);
      const good = pki.leaves.good!;
      for (const file of [pki.ca.cert, pki.ca.key, pki.ca.der, pki.responder.cert, pki.responder.key, pki.index]) {
        await expect(fs.stat(file)).resolves.toBeTruthy();
      }
      const read = (file: string) => fs.readFile(file, 'utf8');
      const [leafPem, caPem, bundle, chain, rootchain] = await Promise.all([
        read(good.cert),
        read(pki.ca.cert),
        read(good.bundle),
        read(good.chain),
        read(good.rootchain),
      ]);
      expect(bundle).toBe(leafPem + caPem);
      expect(chain).toBe(caPem);
      expect(rootchain).toBe(caPem);
      expect(good.serialHex).toMatch(/^[0-9A-F]{32}$/);

      // The unknown leaf is signed by the CA but absent from the index; the revoked one is an R line.
      const index = await fs.readFile(pki.index, 'utf8');
      expect(index.trim().split('\n')).toHaveLength(2);
      expect(index).toContain(`V\t`);
      expect(index).toMatch(
        new RegExp(`^R\\t\\d{12}Z\\t\\d{12}Z,keyCompromise\\t${pki.leaves.revoked!.serialHex}\\t`, 'm'),
      );
      expect(index).not.toContain(pki.leaves.unknown!.serialHex);

      const { stdout } = await execFileAsync('openssl', ['x509', '-in', good.cert, '-noout', '-text']);
      expect(stdout).toContain(`OCSP - URI:${pki.ocspUrl}`);
      expect(stdout).toContain('DNS:good.test');
      expect(stdout).toContain(keyType === 'ec' ? 'id-ecPublicKey' : 'rsaEncryption');
      const verify = await execFileAsync('openssl', ['verify', '-CAfile', pki.ca.cert, good.cert, pki.responder.cert]);
      expect(verify.stdout).toContain(`${good.cert}: OK`);
    });

    it.each(['good', 'revoked', 'unknown'])('says %s for that leaf, with a verifiable signature', async (name) => {
      const leaf = pki.leaves[name]!;
      const answer = await ask(pki, responder!, leaf);
      expect(answer.status).toBe(name);
      expect(answer.verified).toBe(true);
      expect(answer.text).toContain('Next Update:');
      // Who signed: the delegated responder certificate, or the CA itself.
      const signerName = signer === 'delegated' ? 'Staplekeeper Test OCSP Responder' : 'Staplekeeper Test Root CA';
      expect(answer.text).toMatch(new RegExp(`Responder Id: .*${signerName}`));
      if (name === 'revoked') {
        expect(answer.text).toContain('Revocation Reason: keyCompromise');
        const revoked = /Revocation Time: (.+)/.exec(answer.text)?.[1];
        expect(new Date(revoked!).getTime()).toBe(leaf.revokedAt!.getTime());
      }
    });

    it('serves leaves added and revoked after the start', async () => {
      const late = await addLeaf(pki, { name: 'late', days: 10 });
      expect((await ask(pki, responder!, late)).status).toBe('good');
      await revokeLeaf(pki, 'late');
      expect((await ask(pki, responder!, late)).status).toBe('revoked');
      await revokeLeaf(pki, 'unknown', { reason: 'superseded' });
      const answer = await ask(pki, responder!, pki.leaves.unknown!);
      expect(answer.status).toBe('revoked');
      expect(answer.text).toContain('Revocation Reason: superseded');
    });
  });
}

describe('responder details', () => {
  let pki: Pki;
  let responder: Responder | undefined;

  beforeAll(async () => {
    const dir = await tempDir('sk-fixtures-');
    // No explicit port anywhere: the responder takes the one in the PKI's OCSP URL.
    pki = await createPki({
      dir,
      ocspUrl: `http://127.0.0.1:${await freePort()}`,
      leaves: [{ name: 'a' }, { name: 'no-aia', noOcspUrl: true, san: 'other.example' }],
    });
    responder = await startResponder({ pki, noNextUpdate: true });
  });

  afterAll(async () => {
    await responder?.stop();
  });

  it('listens on the port of the OCSP URL and honours leaf options', async () => {
    expect(responder!.url).toBe(pki.ocspUrl);
    const { stdout } = await execFileAsync('openssl', ['x509', '-in', pki.leaves['no-aia']!.cert, '-noout', '-text']);
    expect(stdout).not.toContain('OCSP - URI');
    expect(stdout).toContain('DNS:other.example');
  });

  it('answers RFC 5019 GET requests at the root path, without nextUpdate when told so', async () => {
    const leaf = pki.leaves.a!;
    const reqout = path.join(pki.dir, 'a.ocsp-req');
    await execFileAsync('openssl', [
      'ocsp',
      '-issuer',
      pki.ca.cert,
      '-cert',
      leaf.cert,
      '-no_nonce',
      '-reqout',
      reqout,
    ]);
    const b64 = (await fs.readFile(reqout)).toString('base64');
    const res = await fetch(`${responder!.url}/${encodeURIComponent(b64)}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/ocsp-response');
    const respFile = path.join(pki.dir, 'a.get-resp');
    await fs.writeFile(respFile, Buffer.from(await res.arrayBuffer()));
    const text = await respText(respFile);
    expect(text).toContain('Cert Status: good');
    expect(text).not.toContain('Next Update:');
    expect(responder!.requests.at(-1)).toMatch(/^GET \/\S+ HTTP\/1\.1$/);
  });

  it('rejects clearly when the port is taken', async () => {
    await expect(startResponder({ pki, port: responder!.port })).rejects.toThrow(/address already in use/);
  });

  it('stops, and stop() can be called again', async () => {
    const extra = await startResponder({ pki, port: 0 });
    expect(extra.port).toBeGreaterThan(0);
    await extra.stop();
    expect(extra.process.exitCode !== null || extra.process.signalCode !== null).toBe(true);
    await extra.stop();
  });
});
