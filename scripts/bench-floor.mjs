/**
 * The benchmark's floors: plain Node scripts that do only what no staple
 * manager can avoid, so that each staplekeeper figure can be shown as a ratio
 * to the limit of this machine. Run by scripts/bench.mjs as whole processes,
 * exactly like staplekeeper is.
 *
 *   node scripts/bench-floor.mjs check  <pki-dir> <n> verify   read every certificate, the chain and every staple, verify each staple's signature once
 *   node scripts/bench-floor.mjs check  <pki-dir> <n> read     read every certificate, the chain and every staple
 *   node scripts/bench-floor.mjs renew  <pki-dir> <n> <url> <in-flight>
 *        for each certificate: one GET through an undici keep-alive Agent, one
 *        signature verification, one durable atomic write (temporary file,
 *        fsync, rename, fsync of the folder: io/store.ts)
 *   node scripts/bench-floor.mjs idle   <pki-dir> <n>            hold every certificate and staple in memory, sleep on one timer
 *   node scripts/bench-floor.mjs version                         print a version string
 *
 * Nothing here checks what staplekeeper checks (CertID, signer authority,
 * times, issuer signature): the floor is a lower bound, not a competitor.
 */
import { constants as fsc, closeSync, fsync, openSync, readFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { promisify } from 'node:util';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { join } from 'node:path';

const [mode, dir, nArg, ...rest] = process.argv.slice(2);
const n = Number(nArg);
const id = (i) => `d${String(i).padStart(5, '0')}`;

function tlv(buf, off) {
  let p = off + 1;
  let len = buf[p++];
  if (len & 0x80) {
    const k = len & 0x7f;
    len = 0;
    for (let i = 0; i < k; i++) len = len * 256 + buf[p++];
  }
  return { tag: buf[off], start: off, vs: p, end: p + len };
}
const pemDer = (text) => Buffer.from(text.replace(/-----[^-]+-----|\s+/g, ''), 'base64');

/** tbsResponseData and signature of an OCSPResponse, by a minimal walk. */
function signedParts(der) {
  const resp = tlv(der, 0);
  const status = tlv(der, resp.vs);
  const rb = tlv(der, status.end); // [0]
  const rbSeq = tlv(der, rb.vs);
  const type = tlv(der, rbSeq.vs);
  const octets = tlv(der, type.end);
  const basic = tlv(der, octets.vs);
  const tbs = tlv(der, basic.vs);
  const alg = tlv(der, tbs.end);
  const sig = tlv(der, alg.end);
  return { tbs: der.subarray(tbs.start, tbs.end), sig: der.subarray(sig.vs + 1, sig.end) };
}

function responderKey() {
  return createPublicKey({
    key: spkiOf(pemDer(readFileSync(join(dir, 'responder.pem'), 'latin1'))),
    format: 'der',
    type: 'spki',
  });
}
function spkiOf(certDer) {
  const cert = tlv(certDer, 0);
  const tbs = tlv(certDer, cert.vs);
  let el = tlv(certDer, tbs.vs);
  if (el.tag === 0xa0) el = tlv(certDer, el.end); // version
  for (let i = 0; i < 5; i++) el = tlv(certDer, el.end); // serial → alg, issuer, validity, subject, spki
  return certDer.subarray(el.start, el.end);
}
function serialOf(certDer) {
  const cert = tlv(certDer, 0);
  const tbs = tlv(certDer, cert.vs);
  let el = tlv(certDer, tbs.vs);
  if (el.tag === 0xa0) el = tlv(certDer, el.end);
  return certDer.subarray(el.vs, el.end);
}
function nameAndKeyHashes(rootDer) {
  const cert = tlv(rootDer, 0);
  const tbs = tlv(rootDer, cert.vs);
  let el = tlv(rootDer, tbs.vs);
  if (el.tag === 0xa0) el = tlv(rootDer, el.end);
  el = tlv(rootDer, el.end); // alg
  el = tlv(rootDer, el.end); // issuer
  el = tlv(rootDer, el.end); // validity
  const subject = tlv(rootDer, el.end);
  const spki = tlv(rootDer, subject.end);
  const bits = tlv(rootDer, tlv(rootDer, spki.vs).end);
  return {
    name: createHash('sha1').update(rootDer.subarray(subject.start, subject.end)).digest(),
    key: createHash('sha1')
      .update(rootDer.subarray(bits.vs + 1, bits.end))
      .digest(),
  };
}
function der(tag, ...parts) {
  const body = Buffer.concat(parts);
  const len = body.length < 0x80 ? Buffer.from([body.length]) : Buffer.from([0x81, body.length]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

if (mode === 'version') {
  process.stdout.write('0.1.0\n');
} else if (mode === 'check') {
  const doVerify = rest[0] === 'verify';
  const key = doVerify ? responderKey() : undefined;
  readFileSync(join(dir, 'chain.pem'));
  let ok = 0;
  for (let i = 1; i <= n; i++) {
    readFileSync(join(dir, 'certs', `${id(i)}.pem`));
    const staple = readFileSync(join(dir, 'staples', `${id(i)}.der`));
    if (key) {
      const { tbs, sig } = signedParts(staple);
      if (verify('sha256', tbs, key, sig)) ok++;
    } else ok++;
  }
  if (ok !== n) throw new Error(`floor: ${n - ok} staples failed`);
} else if (mode === 'renew') {
  const [url, inFlightArg] = rest;
  const inFlight = Number(inFlightArg);
  const { Agent, request } = await import('undici');
  const agent = new Agent({ connections: inFlight, keepAliveTimeout: 4000 });
  const key = responderKey();
  const hashes = nameAndKeyHashes(pemDer(readFileSync(join(dir, 'chain.pem'), 'latin1')));
  const sha1Alg = Buffer.from('300906052b0e03021a0500', 'hex');
  const outDir = join(dir, 'staples');
  const dirFd = openSync(outDir, fsc.O_RDONLY);
  const fsyncDir = promisify(fsync);
  let next = 1;
  const worker = async () => {
    while (next <= n) {
      const i = next++;
      const serial = serialOf(pemDer(readFileSync(join(dir, 'certs', `${id(i)}.pem`), 'latin1')));
      const certId = der(0x30, sha1Alg, der(0x04, hashes.name), der(0x04, hashes.key), der(0x02, serial));
      const req = der(0x30, der(0x30, der(0x30, der(0x30, certId))));
      const res = await request(`${url}/${encodeURIComponent(req.toString('base64'))}`, { dispatcher: agent });
      const body = Buffer.from(await res.body.arrayBuffer());
      const { tbs, sig } = signedParts(body);
      if (!verify('sha256', tbs, key, sig)) throw new Error('floor: bad signature');
      const target = join(outDir, `${id(i)}.der`);
      const tmp = `${target}.floor-tmp`;
      const fh = await open(tmp, 'w', 0o644);
      await fh.write(body, 0, body.length, 0);
      await fh.sync();
      await fh.close();
      await rename(tmp, target);
      await fsyncDir(dirFd);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  closeSync(dirFd);
  await agent.close();
} else if (mode === 'idle') {
  const held = [];
  for (let i = 1; i <= n; i++) {
    held.push(readFileSync(join(dir, 'certs', `${id(i)}.pem`)), readFileSync(join(dir, 'staples', `${id(i)}.der`)));
  }
  globalThis.held = held;
  process.stdout.write('ready\n');
  setInterval(() => {}, 3_600_000);
} else {
  process.stderr.write('usage: bench-floor.mjs check|renew|idle|version …\n');
  process.exit(2);
}
