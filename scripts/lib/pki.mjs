// Throwaway PKIs for tests and the demo, minted with the `openssl` CLI.
//
// Which minter is for what: this one makes real openssl artefacts on disk (CA folder, index.txt
// for `openssl ocsp`, `openssl ca -gencrl` CRLs) for the demo and the end-to-end tests, which reach
// it through test/helpers/mint.ts (the tests' one door, which also mints in-process for unit and
// hostile tests); scripts/lib/bench-pki.mjs is the benchmark's fast in-process minter, bench only.
//
// Plain JavaScript (ESM + JSDoc) so that `node scripts/demo.mjs` can use it without a build step;
// TypeScript code gets its types from pki.d.mts next to this file.
//
// One PKI is: a self-signed root CA that issues the leaves directly, a delegated OCSP responder
// certificate (always minted, so a responder can be started in either signer mode), and an
// `openssl ca`-style index.txt that `openssl ocsp -index` answers from (see responder.mjs).
//
// `pki.leaves` is the source of truth for certificate status: index.txt is rendered from it on
// every change, so do not edit index.txt by hand (and do not keep two PKI objects for one dir).
// A running `openssl ocsp` (OpenSSL 3.0) does re-read a changed index.txt, but only one request
// late (see responder.mjs); addLeaf() and revokeLeaf() make every responder started on this PKI
// catch up before they resolve, so the very next query sees the change.
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** @typedef {'ec' | 'rsa'} KeyType */
/** @typedef {'good' | 'revoked' | 'unknown'} LeafStatus */
/** @typedef {'delegated' | 'issuer'} SignerMode */
/**
 * Revocation reasons `openssl ocsp` understands in index.txt (certificateHold is left out: it
 * needs a hold instruction as well).
 * @typedef {'unspecified' | 'keyCompromise' | 'CACompromise' | 'affiliationChanged' | 'superseded' | 'cessationOfOperation'} RevocationReason
 */
/**
 * @typedef {object} LeafOptions
 * @property {string} name file-name stem and CN prefix (CN=<name>.test); letters, digits, `.`, `_`, `-`
 * @property {LeafStatus} [status] default 'good'; 'unknown' = issued by the CA but absent from index.txt
 * @property {number} [days] validity in days, default 90 (at least 1: `openssl req` cannot backdate)
 * @property {boolean} [noOcspUrl] leave the OCSP URI out of the AIA extension
 * @property {string} [crlUrl] a CRL distribution point URI (crlDistributionPoints extension)
 * @property {boolean} [mustStaple] add the TLS Feature extension with status_request (RFC 7633)
 * @property {string} [san] a DNS name (default <name>.test), or a raw subjectAltName value such as
 *   `DNS:a.test,IP:127.0.0.1` when it contains a colon
 */
/**
 * @typedef {object} CreatePkiOptions
 * @property {string} dir directory to fill (created if missing)
 * @property {KeyType} [keyType] 'ec' (P-256, the default) or 'rsa' (2048 bits)
 * @property {string} ocspUrl OCSP URI put into the leaves' AIA extension
 * @property {string} [caIssuersUrl] caIssuers URI put into the leaves' AIA extension
 * @property {SignerMode} [responder] who signs responses by default, 'delegated' (default) or 'issuer'
 * @property {number} [responderDays] validity of the delegated responder certificate, default 365
 * @property {LeafOptions[]} [leaves] default: good, revoked, unknown (each with that status)
 */
/**
 * @typedef {object} Leaf
 * @property {string} name
 * @property {string} cert leaf certificate only (PEM)
 * @property {string} key leaf private key (PEM, unencrypted)
 * @property {string} bundle leaf then CA (PEM)
 * @property {string} chain CA only (PEM): the issuer
 * @property {string} rootchain CA only (PEM): the root, which here is also the issuer
 * @property {string} serialHex serial number, uppercase hex, 32 digits
 * @property {string} subject e.g. `/CN=good.test` (the form index.txt uses)
 * @property {Date} notAfter
 * @property {LeafStatus} status
 * @property {Date} [revokedAt] set when status is 'revoked'
 * @property {RevocationReason} [revocationReason] set when status is 'revoked'
 */
/**
 * @typedef {object} Pki
 * @property {string} dir
 * @property {KeyType} keyType
 * @property {{ cert: string, key: string, der: string, subject: string }} ca
 * @property {{ cert: string, key: string, subject: string }} responder the delegated responder
 * @property {SignerMode} signer default signer for startResponder()
 * @property {string} index
 * @property {Record<string, Leaf>} leaves
 * @property {string} ocspUrl
 * @property {string} [caIssuersUrl]
 */

/** @type {LeafOptions[]} */
const DEFAULT_LEAVES = [
  { name: 'good', status: 'good' },
  { name: 'revoked', status: 'revoked' },
  { name: 'unknown', status: 'unknown' },
];

// File stems the PKI itself uses; a leaf with one of these names would overwrite them.
const RESERVED_NAMES = new Set(['ca', 'responder', 'index', 'openssl']);
const LEAF_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

// At most this many openssl processes at once (RSA key generation is CPU-bound).
const PARALLEL = Math.max(2, os.availableParallelism());

/**
 * Mints a CA, a delegated responder and the leaves into `opts.dir`, and writes index.txt.
 * @param {CreatePkiOptions} opts
 * @returns {Promise<Pki>}
 */
export async function createPki(opts) {
  const dir = path.resolve(opts.dir);
  const keyType = opts.keyType ?? 'ec';
  if (keyType !== 'ec' && keyType !== 'rsa') throw new Error(`createPki: unknown keyType ${String(keyType)}`);
  const signer = opts.responder ?? 'delegated';
  if (signer !== 'delegated' && signer !== 'issuer') throw new Error(`createPki: unknown responder ${String(signer)}`);
  checkUrl('ocspUrl', opts.ocspUrl);
  if (opts.caIssuersUrl !== undefined) checkUrl('caIssuersUrl', opts.caIssuersUrl);
  const leafOpts = opts.leaves ?? DEFAULT_LEAVES;
  const seen = new Set();
  for (const l of leafOpts) {
    checkLeafName(l.name);
    if (seen.has(l.name)) throw new Error(`createPki: duplicate leaf name ${l.name}`);
    seen.add(l.name);
  }

  await fs.mkdir(path.join(dir, 'openssl'), { recursive: true });
  // A short random tag keeps the names of different PKIs apart in logs and error messages.
  const tag = randomBytes(3).toString('hex');
  /** @type {Pki} */
  const pki = {
    dir,
    keyType,
    ca: {
      cert: path.join(dir, 'ca.crt'),
      key: path.join(dir, 'ca.key'),
      der: path.join(dir, 'ca.der'),
      subject: `/O=staplekeeper tests/CN=Staplekeeper Test Root CA ${tag}`,
    },
    responder: {
      cert: path.join(dir, 'responder.crt'),
      key: path.join(dir, 'responder.key'),
      subject: `/O=staplekeeper tests/CN=Staplekeeper Test OCSP Responder ${tag}`,
    },
    signer,
    index: path.join(dir, 'index.txt'),
    leaves: {},
    ocspUrl: opts.ocspUrl,
    ...(opts.caIssuersUrl !== undefined ? { caIssuersUrl: opts.caIssuersUrl } : {}),
  };

  // The root first: everything else is signed by it.
  await mint(pki, {
    stem: 'ca',
    subject: pki.ca.subject,
    days: 3650,
    serialHex: randomSerialHex(),
    extensions: [
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
    ],
    selfSigned: true,
  });
  await fs.writeFile(pki.ca.der, new X509Certificate(await fs.readFile(pki.ca.cert)).raw);

  // "unique_subject = no": without this file openssl assumes "yes" and refuses to load an index
  // in which two valid entries share a subject.
  await fs.writeFile(path.join(dir, 'index.txt.attr'), 'unique_subject = no\n');

  const responderJob = mint(pki, {
    stem: 'responder',
    subject: pki.responder.subject,
    days: opts.responderDays ?? 365,
    serialHex: randomSerialHex(),
    extensions: [
      'basicConstraints = critical, CA:FALSE',
      'keyUsage = critical, digitalSignature',
      'extendedKeyUsage = OCSPSigning',
      // id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1), as real delegated responder certificates carry.
      'noCheck = ignored',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid:always',
    ],
  });
  const [leaves] = await Promise.all([mapLimit(leafOpts, (l) => mintLeaf(pki, l)), responderJob]);
  for (const leaf of leaves) pki.leaves[leaf.name] = leaf;
  await writeIndex(pki);
  return pki;
}

/**
 * Mints one more leaf into an existing PKI and updates index.txt (running responders started on
 * this PKI are told to reload it before this resolves).
 * @param {Pki} pki
 * @param {LeafOptions} leafOpts
 * @returns {Promise<Leaf>}
 */
export async function addLeaf(pki, leafOpts) {
  checkLeafName(leafOpts.name);
  if (pki.leaves[leafOpts.name]) throw new Error(`addLeaf: a leaf named ${leafOpts.name} already exists`);
  const leaf = await mintLeaf(pki, leafOpts);
  // Checked again: a concurrent addLeaf() with the same name may have finished meanwhile.
  if (pki.leaves[leaf.name]) throw new Error(`addLeaf: a leaf named ${leaf.name} already exists`);
  pki.leaves[leaf.name] = leaf;
  await writeIndex(pki);
  return leaf;
}

/**
 * Marks a leaf revoked (also a leaf that was 'unknown') and updates index.txt; running
 * responders started on this PKI are told to reload it before this resolves. Revoking a revoked
 * leaf again changes nothing.
 * @param {Pki} pki
 * @param {string} name
 * @param {{ reason?: RevocationReason, time?: Date }} [opts] default keyCompromise, now
 * @returns {Promise<Leaf>}
 */
export async function revokeLeaf(pki, name, opts = {}) {
  const leaf = pki.leaves[name];
  if (!leaf) throw new Error(`revokeLeaf: no leaf named ${name}`);
  if (leaf.status !== 'revoked') {
    leaf.status = 'revoked';
    leaf.revokedAt = wholeSeconds(opts.time ?? new Date());
    leaf.revocationReason = opts.reason ?? 'keyCompromise';
    await writeIndex(pki);
  }
  return leaf;
}

/**
 * Issues a CRL with `openssl ca -gencrl` from the PKI's index.txt (every revoked leaf is listed),
 * signed by the CA, and writes it to `opts.out` (DER when the name ends in `.crl` or `.der`, else
 * PEM). thisUpdate is now; nextUpdate `opts.hours` (default 24) hours later.
 * @param {Pki} pki
 * @param {{ out: string, hours?: number, crlNumber?: number }} opts
 * @returns {Promise<string>} the path written
 */
export async function genCrl(pki, opts) {
  const dir = path.join(pki.dir, 'openssl', 'ca');
  await fs.mkdir(dir, { recursive: true });
  await writeIndex(pki); // make sure the file reflects `leaves`
  const crlnumber = path.join(dir, 'crlnumber');
  if (opts.crlNumber !== undefined) await fs.writeFile(crlnumber, `${opts.crlNumber.toString(16).padStart(2, '0')}\n`);
  else await fs.access(crlnumber).catch(() => fs.writeFile(crlnumber, '01\n'));
  const config = path.join(dir, 'ca.cnf');
  await fs.writeFile(
    config,
    [
      '[ca]',
      'default_ca = ca_default',
      '[ca_default]',
      `database = ${pki.index}`,
      `crlnumber = ${crlnumber}`,
      'default_md = sha256',
      'crl_extensions = crl_ext',
      '[crl_ext]',
      'authorityKeyIdentifier = keyid:always',
      '',
    ].join('\n'),
  );
  const pem = path.join(dir, `crl-${process.pid}-${randomBytes(3).toString('hex')}.pem`);
  await openssl([
    'ca',
    '-gencrl',
    '-config',
    config,
    '-keyfile',
    pki.ca.key,
    '-cert',
    pki.ca.cert,
    '-crlhours',
    String(opts.hours ?? 24),
    '-out',
    pem,
  ]);
  if (/\.(crl|der)$/.test(opts.out)) {
    await openssl(['crl', '-in', pem, '-outform', 'DER', '-out', opts.out]);
    await fs.rm(pem, { force: true });
  } else {
    await fs.rename(pem, opts.out);
  }
  return opts.out;
}

/**
 * Registers a callback run (and awaited) after every rewrite of `pki.index`; responder.mjs uses
 * it to make a running `openssl ocsp` pick up the change. Returns the unregister function.
 * @param {Pki} pki
 * @param {() => Promise<void>} listener
 * @returns {() => void}
 */
export function onIndexChange(pki, listener) {
  let set = indexListeners.get(pki.index);
  if (!set) indexListeners.set(pki.index, (set = new Set()));
  set.add(listener);
  return () => {
    set.delete(listener);
    if (set.size === 0) indexListeners.delete(pki.index);
  };
}

// ---------------------------------------------------------------------------------------------
// index.txt

/** @type {Map<string, Set<() => Promise<void>>>} listeners by index path */
const indexListeners = new Map();
/** @type {Map<string, Promise<void>>} the last queued write, by index path */
const indexWrites = new Map();

/**
 * Renders index.txt from `pki.leaves` and replaces the file atomically. Writes to one index are
 * queued so they land in call order; each renders the state current at its turn.
 * @param {Pki} pki
 */
function writeIndex(pki) {
  const previous = indexWrites.get(pki.index) ?? Promise.resolve();
  const next = previous.catch(() => {}).then(() => replaceIndex(pki));
  indexWrites.set(pki.index, next);
  return next;
}

/** @param {Pki} pki */
async function replaceIndex(pki) {
  const lines = [];
  for (const leaf of Object.values(pki.leaves)) {
    if (leaf.status === 'unknown') continue; // signed by the CA, but the responder never heard of it
    const expiry = indexTime(leaf.notAfter);
    const revocation =
      leaf.status === 'revoked'
        ? `${indexTime(leaf.revokedAt ?? new Date())},${leaf.revocationReason ?? 'keyCompromise'}`
        : '';
    // Six tab-separated fields: type, expiry, revocation, serial, file name, subject. The
    // responder looks entries up by serial, compared as a string after stripping leading zeros:
    // the hex must be UPPERCASE (lowercase never matches), its length does not matter.
    lines.push(
      [leaf.status === 'revoked' ? 'R' : 'V', expiry, revocation, leaf.serialHex, 'unknown', leaf.subject].join('\t'),
    );
  }
  const content = lines.map((l) => l + '\n').join('');

  // `openssl ocsp` notices a changed index by comparing the file's mtime, ctime, inode and device
  // with what it loaded; the times have one-second resolution. Writing a new file and renaming it
  // over the old one changes the inode, but inode numbers get reused, so the mtime is also forced
  // to strictly increase from one version to the next (possibly a few seconds into the future):
  // every version then differs from whatever version the responder has loaded.
  let mtimeSec = Math.floor(Date.now() / 1000);
  try {
    const st = await fs.stat(pki.index);
    mtimeSec = Math.max(mtimeSec, Math.floor(st.mtimeMs / 1000) + 1);
  } catch (err) {
    if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'ENOENT') throw err;
  }
  const tmp = `${pki.index}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(tmp, content);
  await fs.utimes(tmp, mtimeSec, mtimeSec);
  await fs.rename(tmp, pki.index);

  for (const listener of indexListeners.get(pki.index) ?? []) await listener();
}

/**
 * index.txt times: UTCTime YYMMDDHHMMSSZ, GeneralizedTime from 2050 on (as `openssl ca` writes).
 * @param {Date} d
 */
function indexTime(d) {
  const iso = d.toISOString(); // 2026-11-22T10:34:40.123Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, ''); // 20261122103440
  return (d.getUTCFullYear() >= 2050 ? digits : digits.slice(2)) + 'Z';
}

// ---------------------------------------------------------------------------------------------
// Minting

/**
 * @param {Pki} pki
 * @param {LeafOptions} l
 * @returns {Promise<Leaf>}
 */
async function mintLeaf(pki, l) {
  const status = l.status ?? 'good';
  if (!['good', 'revoked', 'unknown'].includes(status)) throw new Error(`leaf ${l.name}: unknown status ${status}`);
  const days = l.days ?? 90;
  const san = l.san === undefined ? `DNS:${l.name}.test` : l.san.includes(':') ? l.san : `DNS:${l.san}`;
  checkConfigValue(`leaf ${l.name} san`, san);
  const aia = [];
  if (!l.noOcspUrl) aia.push(`OCSP;URI:${pki.ocspUrl}`);
  if (pki.caIssuersUrl !== undefined) aia.push(`caIssuers;URI:${pki.caIssuersUrl}`);
  const serialHex = randomSerialHex();
  const subject = `/CN=${l.name}.test`;
  await mint(pki, {
    stem: l.name,
    subject,
    days,
    serialHex,
    extensions: [
      'basicConstraints = critical, CA:FALSE',
      // RSA TLS 1.2 key exchange needs keyEncipherment; EC keys must not have it.
      `keyUsage = critical, digitalSignature${pki.keyType === 'rsa' ? ', keyEncipherment' : ''}`,
      'extendedKeyUsage = serverAuth',
      `subjectAltName = ${san}`,
      ...(aia.length > 0 ? [`authorityInfoAccess = ${aia.join(', ')}`] : []),
      ...(l.crlUrl !== undefined ? [`crlDistributionPoints = URI:${l.crlUrl}`] : []),
      ...(l.mustStaple ? ['tlsfeature = status_request'] : []),
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid:always',
    ],
  });

  const file = (/** @type {string} */ suffix) => path.join(pki.dir, `${l.name}${suffix}`);
  const [leafPem, caPem] = await Promise.all([fs.readFile(file('.crt'), 'utf8'), fs.readFile(pki.ca.cert, 'utf8')]);
  const x509 = new X509Certificate(leafPem);
  // Belt and braces: the serial openssl wrote must be the one the index will carry.
  if (x509.serialNumber.toUpperCase().replace(/^0+/, '') !== serialHex.replace(/^0+/, '')) {
    throw new Error(`leaf ${l.name}: openssl wrote serial ${x509.serialNumber}, expected ${serialHex}`);
  }
  /** @type {Leaf} */
  const leaf = {
    name: l.name,
    cert: file('.crt'),
    key: file('.key'),
    bundle: file('-bundle.pem'),
    chain: file('-chain.pem'),
    rootchain: file('-rootchain.pem'),
    serialHex,
    subject,
    notAfter: new Date(x509.validTo),
    status,
  };
  if (status === 'revoked') {
    leaf.revokedAt = wholeSeconds(new Date());
    leaf.revocationReason = 'keyCompromise';
  }
  await Promise.all([
    fs.writeFile(leaf.bundle, ensureNewline(leafPem) + caPem),
    fs.writeFile(leaf.chain, caPem),
    fs.writeFile(leaf.rootchain, caPem),
  ]);
  return leaf;
}

/**
 * One `openssl req` run: new key, certificate signed by the CA (or self-signed), extensions from
 * a small config file kept under <dir>/openssl/ for inspection.
 * @param {Pki} pki
 * @param {{ stem: string, subject: string, days: number, serialHex: string, extensions: string[], selfSigned?: boolean }} c
 */
async function mint(pki, c) {
  if (!Number.isInteger(c.days) || c.days < 1)
    throw new Error(`${c.stem}: days must be a whole number >= 1, got ${c.days}`);
  for (const e of c.extensions) checkConfigValue(c.stem, e);
  const config = path.join(pki.dir, 'openssl', `${c.stem}.cnf`);
  await fs.writeFile(
    config,
    ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', '[ext]', ...c.extensions, ''].join('\n'),
  );
  const keyArgs =
    pki.keyType === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  await openssl([
    'req',
    ...keyArgs,
    '-noenc',
    '-keyout',
    path.join(pki.dir, `${c.stem}.key`),
    '-out',
    path.join(pki.dir, `${c.stem}.crt`),
    '-subj',
    c.subject,
    '-days',
    String(c.days),
    '-set_serial',
    `0x${c.serialHex}`,
    '-config',
    config,
    '-extensions',
    'ext',
    // `-CA` (new in OpenSSL 3.0) makes `req` sign with the CA instead of self-signing, so key,
    // CSR and certificate take one process instead of three.
    ...(c.selfSigned ? ['-x509'] : ['-CA', pki.ca.cert, '-CAkey', pki.ca.key]),
  ]);
}

/** @param {string[]} args */
async function openssl(args) {
  try {
    await execFileAsync('openssl', args, { maxBuffer: 4 * 1024 * 1024 });
  } catch (err) {
    const e = /** @type {Error & { stderr?: string }} */ (err);
    throw new Error(`openssl ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/**
 * 16 random bytes as a positive DER INTEGER that needs no leading zero byte: top bit clear, and
 * the first byte non-zero so the serial always has exactly 32 hex digits.
 */
function randomSerialHex() {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x10;
  return b.toString('hex').toUpperCase();
}

/** @param {string} name */
function checkLeafName(name) {
  if (typeof name !== 'string' || !LEAF_NAME.test(name) || RESERVED_NAMES.has(name)) {
    throw new Error(
      `invalid leaf name ${JSON.stringify(name)} (letters, digits, . _ -; not ca/responder/index/openssl)`,
    );
  }
}

/**
 * @param {string} what
 * @param {string} url
 */
function checkUrl(what, url) {
  if (typeof url !== 'string' || !URL.canParse(url)) throw new Error(`createPki: ${what} is not a URL: ${String(url)}`);
  checkConfigValue(what, url);
  if (url.includes(',')) throw new Error(`createPki: ${what} must not contain a comma: ${url}`);
}

/**
 * Values go into an OpenSSL config file, where `$` expands variables, `#` starts a comment and
 * quotes/backslashes are special; nothing a test URL or DNS name needs.
 * @param {string} what
 * @param {string} value
 */
function checkConfigValue(what, value) {
  if (/[$#"'\\\n\r]/.test(value)) throw new Error(`${what}: unsupported character in ${JSON.stringify(value)}`);
}

/**
 * index.txt keeps whole seconds; so does `leaf.revokedAt`, so that it equals the revocation time
 * in the responses.
 * @param {Date} d
 */
function wholeSeconds(d) {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

/** @param {string} pem */
function ensureNewline(pem) {
  return pem.endsWith('\n') ? pem : pem + '\n';
}

/**
 * Promise.all over `items` with at most PARALLEL calls of `fn` running at once; keeps order.
 * @template T, R
 * @param {T[]} items
 * @param {(item: T) => Promise<R>} fn
 * @returns {Promise<R[]>}
 */
async function mapLimit(items, fn) {
  /** @type {R[]} */
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(/** @type {T} */ (items[i]));
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
  return results;
}
