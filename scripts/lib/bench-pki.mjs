/**
 * Benchmark PKI: a root CA, a delegated OCSP responder and N leaf
 * certificates with a good staple each, minted in-process with hand-framed
 * DER and node:crypto (no `openssl` per certificate, no schema library in the
 * hot loop). P-256 mints ~10,000 certificates and staples per second; RSA-2048
 * is bound by RSA signing (~1 ms per signature) and is spread over worker
 * threads, one per core.
 *
 * Layout written under `dir`:
 *   chain.pem              the root CA (issuer of every leaf)
 *   responder.pem/.key     the delegated responder (EKU id-kp-OCSPSigning), for `openssl ocsp`
 *   certs/dNNNNN.pem       leaf certificates (leaf only; the issuer is in chain.pem)
 *   staples/dNNNNN.der     a good, delegated-signed response for each leaf
 *   index.txt              an OpenSSL CA index of every leaf (for `openssl ocsp -index`)
 *   manifest.json          parameters and generation time
 *
 * The leaves name `AIA_OCSP_URL` as their responder; benchmark configurations
 * map it to the local responder with `responders:`.
 */
import { createHash, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

/** The responder URL the leaves carry (mapped to the real one in the configuration). */
export const AIA_OCSP_URL = 'http://ocsp.bench.invalid/ocsp';

const DAY = 86_400_000;

// ------------------------------------------------------------------ DER framing

function len(n) {
  if (n < 0x80) return Buffer.from([n]);
  const b = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) b.unshift(v & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}
export function tlv(tag, ...parts) {
  const body = parts.length === 1 ? parts[0] : Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
}
const seq = (...p) => tlv(0x30, ...p);
function oid(dotted) {
  const p = dotted.split('.').map(Number);
  const out = [40 * p[0] + p[1]];
  for (const v of p.slice(2)) {
    const b = [v & 0x7f];
    for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) b.unshift(0x80 | (x & 0x7f));
    out.push(...b);
  }
  return tlv(0x06, Buffer.from(out));
}
const utf8 = (s) => tlv(0x0c, Buffer.from(s, 'utf8'));
const octets = (b) => tlv(0x04, b);
const bits = (b) => tlv(0x03, Buffer.from([0]), b);
const bool = (v) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const NULL = Buffer.from([0x05, 0x00]);
function pad(n, w = 2) {
  return String(n).padStart(w, '0');
}
function utcTime(d) {
  return tlv(
    0x17,
    Buffer.from(
      `${pad(d.getUTCFullYear() % 100)}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`,
    ),
  );
}
function genTime(d) {
  return tlv(
    0x18,
    Buffer.from(
      `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`,
    ),
  );
}
function name(cn, o) {
  const rdn = (t, v) => tlv(0x31, seq(oid(t), utf8(v)));
  return seq(...(o ? [rdn('2.5.4.10', o)] : []), rdn('2.5.4.3', cn));
}
function ext(id, critical, value) {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}
export function toPem(der, label = 'CERTIFICATE') {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/** Walks to the parts of a certificate the PKI needs (subject, SPKI bits). */
function readTlv(buf, off) {
  let p = off + 1;
  let l = buf[p++];
  if (l & 0x80) {
    const n = l & 0x7f;
    l = 0;
    for (let i = 0; i < n; i++) l = l * 256 + buf[p++];
  }
  return { start: off, vs: p, end: p + l };
}
function children(buf, el) {
  const out = [];
  for (let p = el.vs; p < el.end;) {
    const c = readTlv(buf, p);
    out.push(c);
    p = c.end;
  }
  return out;
}
function spkiBits(spkiDer) {
  const s = readTlv(spkiDer, 0);
  const b = children(spkiDer, s)[1];
  return spkiDer.subarray(b.vs + 1, b.end);
}

// ------------------------------------------------------------------ keys and algorithms

function makeKey(keyType) {
  const pair =
    keyType === 'rsa-2048'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey: pair.privateKey, spki: pair.publicKey.export({ type: 'spki', format: 'der' }) };
}
function algFor(keyType) {
  return keyType === 'rsa-2048' ? seq(oid('1.2.840.113549.1.1.11'), NULL) : seq(oid('1.2.840.10045.4.3.2'));
}
function signer(keyType, privateKey) {
  return keyType === 'rsa-2048'
    ? (data) => sign('sha256', data, privateKey)
    : (data) => sign('sha256', data, { key: privateKey, dsaEncoding: 'der' });
}

// ------------------------------------------------------------------ certificates and responses

const V3 = tlv(0xa0, tlv(0x02, Buffer.from([2])));

function mintCert({ serial, issuerName, subject, spki, notBefore, notAfter, exts, alg, sign: signFn }) {
  const tbs = seq(
    V3,
    tlv(0x02, serial),
    alg,
    issuerName,
    seq(utcTime(notBefore), utcTime(notAfter)),
    subject,
    spki,
    tlv(0xa3, seq(...exts)),
  );
  return seq(tbs, alg, bits(signFn(tbs)));
}

function serialFor(i, salt) {
  const s = createHash('sha256').update(`${salt}/${i}`).digest().subarray(0, 16);
  s[0] = (s[0] & 0x7f) | 0x01;
  return Buffer.from(s);
}

/** Builds everything one leaf needs; shared by the main thread and workers. */
function leafMaker(p) {
  const leafKeySpki = Buffer.from(p.leafSpki, 'base64');
  const rootName = Buffer.from(p.rootName, 'base64');
  const rootSki = Buffer.from(p.rootSki, 'base64');
  const responderName = Buffer.from(p.responderName, 'base64');
  const responderDer = Buffer.from(p.responderDer, 'base64');
  const rootKey = createPrivateKey({ key: Buffer.from(p.rootKey, 'base64'), format: 'der', type: 'pkcs8' });
  const responderKey = createPrivateKey({ key: Buffer.from(p.responderKey, 'base64'), format: 'der', type: 'pkcs8' });
  const alg = algFor(p.keyType);
  const signRoot = signer(p.keyType, rootKey);
  const signResponder = signer(p.keyType, responderKey);
  const now = new Date(p.now);
  const notBefore = new Date(now.getTime() - DAY);
  const notAfter = new Date(now.getTime() + 90 * DAY);
  const thisUpdate = new Date(now.getTime() - 3_600_000);
  const nextUpdate = new Date(now.getTime() + 7 * DAY);
  const nameHash = createHash('sha1').update(rootName).digest();
  const keyHash = createHash('sha1').update(Buffer.from(p.rootKeyBits, 'base64')).digest();
  const leafSki = createHash('sha1').update(spkiBits(leafKeySpki)).digest();
  const common = [
    ext('2.5.29.15', true, bits(Buffer.from([0x80]))),
    ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'))),
    ext('2.5.29.14', false, octets(leafSki)),
    ext('2.5.29.35', false, seq(tlv(0x80, rootSki))),
    ext('1.3.6.1.5.5.7.1.1', false, seq(seq(oid('1.3.6.1.5.5.7.48.1'), tlv(0x86, Buffer.from(AIA_OCSP_URL))))),
  ];
  const certsField = tlv(0xa0, seq(responderDer));
  const basicOid = oid('1.3.6.1.5.5.7.48.1.1');
  const sha1Alg = seq(oid('1.3.14.3.2.26'), NULL);
  return (i) => {
    const id = `d${String(i).padStart(5, '0')}`;
    const serial = serialFor(i, p.salt);
    const cert = mintCert({
      serial,
      issuerName: rootName,
      subject: name(`${id}.bench.test`),
      spki: leafKeySpki,
      notBefore,
      notAfter,
      exts: [...common, ext('2.5.29.17', false, seq(tlv(0x82, Buffer.from(`${id}.bench.test`))))],
      alg,
      sign: signRoot,
    });
    const single = seq(
      seq(sha1Alg, octets(nameHash), octets(keyHash), tlv(0x02, serial)),
      Buffer.from([0x80, 0x00]),
      genTime(thisUpdate),
      tlv(0xa0, genTime(nextUpdate)),
    );
    const tbs = seq(tlv(0xa1, responderName), genTime(thisUpdate), seq(single));
    const basic = seq(tbs, alg, bits(signResponder(tbs)), certsField);
    const staple = seq(tlv(0x0a, Buffer.from([0])), tlv(0xa0, seq(basicOid, octets(basic))));
    return { id, serial, cert, staple };
  };
}

function writeRange(p, from, to) {
  const make = leafMaker(p);
  const index = [];
  for (let i = from; i < to; i++) {
    const { id, serial, cert, staple } = make(i);
    writeFileSync(join(p.dir, 'certs', `${id}.pem`), toPem(cert));
    writeFileSync(join(p.dir, 'staples', `${id}.der`), staple);
    writeFileSync(join(p.dir, 'responses', `${serial.toString('hex').toUpperCase()}.der`), staple);
    index.push(`V\t${p.indexExpiry}\t\t${serial.toString('hex').toUpperCase()}\tunknown\t/CN=${id}.bench.test`);
  }
  return index;
}

if (!isMainThread && workerData?.benchPki) {
  const { p, from, to } = workerData;
  parentPort.postMessage(writeRange(p, from, to));
}

/**
 * Mints (or reuses, when a matching tree younger than `maxAgeMs` exists) a
 * benchmark PKI of `n` leaves under `dir`. Returns the manifest.
 */
export async function buildBenchPki({ dir, n, keyType, maxAgeMs = 12 * 3_600_000, log = () => {} }) {
  const manifestPath = join(dir, 'manifest.json');
  if (existsSync(manifestPath)) {
    try {
      const m = JSON.parse(readFileSync(manifestPath, 'utf8'));
      if (m.n === n && m.keyType === keyType && Date.now() - m.generatedAt < maxAgeMs && m.complete) return m;
    } catch {
      // regenerate
    }
  }
  rmSync(dir, { recursive: true, force: true });
  for (const sub of ['certs', 'staples', 'responses']) mkdirSync(join(dir, sub), { recursive: true });
  const started = Date.now();
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);
  const rootKey = makeKey(keyType);
  const responderKey = makeKey(keyType);
  const leafKey = makeKey(keyType);
  const alg = algFor(keyType);
  const rootName = name(`bench root ${keyType}`, 'staplekeeper bench');
  const rootBits = spkiBits(rootKey.spki);
  const rootSki = createHash('sha1').update(rootBits).digest();
  const long = { notBefore: new Date(now.getTime() - 30 * DAY), notAfter: new Date(now.getTime() + 365 * DAY) };
  const root = mintCert({
    serial: Buffer.from([1]),
    issuerName: rootName,
    subject: rootName,
    spki: rootKey.spki,
    ...long,
    exts: [
      ext('2.5.29.19', true, seq(bool(true))),
      ext('2.5.29.15', true, tlv(0x03, Buffer.from([1, 0x86]))),
      ext('2.5.29.14', false, octets(rootSki)),
    ],
    alg,
    sign: signer(keyType, rootKey.privateKey),
  });
  const responderName = name(`bench ocsp responder ${keyType}`, 'staplekeeper bench');
  const responder = mintCert({
    serial: Buffer.from([2]),
    issuerName: rootName,
    subject: responderName,
    spki: responderKey.spki,
    ...long,
    exts: [
      ext('2.5.29.15', true, bits(Buffer.from([0x80]))),
      ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.9'))),
      ext('2.5.29.14', false, octets(createHash('sha1').update(spkiBits(responderKey.spki)).digest())),
      ext('2.5.29.35', false, seq(tlv(0x80, rootSki))),
    ],
    alg,
    sign: signer(keyType, rootKey.privateKey),
  });
  writeFileSync(join(dir, 'chain.pem'), toPem(root));
  writeFileSync(join(dir, 'responder.pem'), toPem(responder));
  const pkcs8 = (k) => k.privateKey.export({ type: 'pkcs8', format: 'der' });
  writeFileSync(join(dir, 'responder.key'), toPem(pkcs8(responderKey), 'PRIVATE KEY'), { mode: 0o600 });
  const expiry = new Date(now.getTime() + 90 * DAY);
  const p = {
    dir,
    keyType,
    now: now.toISOString(),
    salt: `${keyType}-${now.getTime()}`,
    leafSpki: leafKey.spki.toString('base64'),
    rootName: rootName.toString('base64'),
    rootSki: rootSki.toString('base64'),
    rootKeyBits: rootBits.toString('base64'),
    rootKey: pkcs8(rootKey).toString('base64'),
    responderName: responderName.toString('base64'),
    responderDer: responder.toString('base64'),
    responderKey: pkcs8(responderKey).toString('base64'),
    indexExpiry: `${pad(expiry.getUTCFullYear() % 100)}${pad(expiry.getUTCMonth() + 1)}${pad(expiry.getUTCDate())}000000Z`,
  };
  // RSA signing dominates: split the leaves over one worker per core. P-256 is fast enough in one thread.
  const workers = keyType === 'rsa-2048' && n >= 200 ? Math.max(1, availableParallelism()) : 1;
  let index;
  if (workers === 1) {
    index = writeRange(p, 1, n + 1);
  } else {
    const per = Math.ceil(n / workers);
    const parts = await Promise.all(
      Array.from({ length: workers }, (_, w) => {
        const from = 1 + w * per;
        const to = Math.min(n + 1, from + per);
        return new Promise((resolve, reject) => {
          const wk = new Worker(new URL(import.meta.url), { workerData: { benchPki: true, p, from, to } });
          wk.once('message', resolve);
          wk.once('error', reject);
        });
      }),
    );
    index = parts.flat();
  }
  writeFileSync(join(dir, 'index.txt'), `${index.join('\n')}\n`);
  const manifest = {
    n,
    keyType,
    generatedAt: Date.now(),
    now: p.now,
    aia: AIA_OCSP_URL,
    mintMs: Date.now() - started,
    complete: true,
  };
  writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
  log(`minted ${n} ${keyType} certificates and staples in ${manifest.mintMs} ms`);
  return manifest;
}

/** The `domains` configuration for a tree: one entry per leaf, all sharing chain.pem. */
export function domainsConfig({ n, responderUrl, extra = '' }) {
  const lines = ['ocsp_folder: staples', 'responders:', `  "${AIA_OCSP_URL}": "${responderUrl}"`, extra, 'domains:'];
  for (let i = 1; i <= n; i++) {
    const id = `d${String(i).padStart(5, '0')}`;
    lines.push(`  ${id}:`, `    cert: certs/${id}.pem`, '    chain: chain.pem', `    ocsp: ${id}.der`);
  }
  return `${lines.filter((l) => l !== '').join('\n')}\n`;
}
