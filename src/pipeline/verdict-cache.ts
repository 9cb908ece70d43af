/**
 * The staple-folder cache: what does not change between runs, so that a
 * check of 10,000 fresh staples reads the files and decides without parsing
 * a certificate or verifying a signature.
 *
 * What is cached (one file per staple folder, `.staplekeeper-cache.json`),
 * per staple file name:
 * - `c`: a key over the exact contents of every file the certificate and its
 *   issuer were loaded from (certificate, issuer, chain, root chain), and the
 *   certificate facts a decision needs (notBefore, notAfter, subject);
 * - `s`: the SHA-256 of the staple file's bytes, and the verdict of
 *   {@link verifyResponse} on them: status, thisUpdate, nextUpdate,
 *   producedAt, usableUntil, responder, and the validity window of a
 *   delegated signer.
 *
 * Why it is safe:
 * - A record is used only when the SHA-256 of every input file read *now*
 *   equals what was verified. Nothing is trusted from file identity (size,
 *   mtime, inode): a certificate replaced in place within the same second
 *   misses the cache like any other change.
 * - Only what does not depend on the time is taken from the cache: the
 *   structure, the CertID match, the signature and the signer's authority
 *   (RFC 6960 §4.2.2.2). The checks that do depend on the time — the
 *   delegated signer's validity, thisUpdate not in the future, nextUpdate
 *   ahead, the certificate not expired (RFC 6960 §3.2 and §4.2.2) — are evaluated
 *   again at every run. When any of them fails, the staple is verified from
 *   scratch, so the decision and its message are exactly those of a run
 *   without cache.
 * - Only staples that passed every rule are recorded; failures are never
 *   cached, so their errors always come from a full verification.
 * - A certificate whose issuer came from outside its own files (a CA
 *   directory, the AIA caIssuers URL) is never recorded: those sources are
 *   not covered by the key.
 * - The file carries a format version, a fingerprint of the verification
 *   code (so a rule changed in a new release invalidates every verdict) and
 *   a SHA-256 of its body; anything that does not match, parse or type-check
 *   is ignored as if there were no file. Deleting or corrupting the cache
 *   changes the speed of a run, never a decision (test/unit/cache.test.ts).
 *
 * Every record line carries an HMAC-SHA256 under a per-host secret
 * ({@link verdictSecret}: 32 random bytes in `verdict-cache.key`, mode 0600,
 * in the configuration cache folder — `$STAPLEKEEPER_CACHE_DIR`,
 * `$XDG_CACHE_HOME/staplekeeper` or `~/.cache/staplekeeper` — created on first
 * use). A record whose MAC does not verify is ignored and the staple is
 * verified again from its bytes: whoever can write the staple folder but not
 * read the secret cannot make a revoked or garbage staple pass as "good until
 * 2063". When the secret cannot be read or created, the verdict cache is not
 * used at all (correct, only slower). It is written atomically (temporary
 * file and rename, no fsync: losing it in a crash only costs one cold run)
 * when the engine goes idle and at process exit, and not at all for dry
 * runs. A folder gets a new cache file only once a run has handled at least
 * {@link MIN_TARGETS_FOR_NEW_CACHE} of its staples, so `fetch` of one
 * certificate leaves nothing behind.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { configCacheDir } from '../config/config-cache.js';
import { MAX_INPUT_FILE } from '../io/files.js';
import { contentHash, moduleFingerprint } from '../io/fingerprint.js';
import { replaceCacheFileSync, TEMP_MARKER } from '../io/store.js';

/** The cache file inside each staple folder. */
export const CACHE_FILE_NAME = '.staplekeeper-cache.json';

/** The on-disk format; bump on any change of the record layout. */
export const CACHE_FORMAT_VERSION = 3;

const FORMAT_NAME = 'staplekeeper-cache';

/** A folder without a cache file gets one only after this many of its staples were handled in one process. */
export const MIN_TARGETS_FOR_NEW_CACHE = 8;

/** Records not used for this many days are dropped when the file is next written. */
export const CACHE_RETENTION_DAYS = 30;

const DAY_MS = 86_400_000;

/** SHA-256 of `data`, base64url (43 characters); io/fingerprint.ts. */
export { contentHash };

/**
 * One cache record: a certificate (by the contents of its files) and the
 * verdict on one staple (by the contents of the staple file). Times are
 * milliseconds since the epoch.
 */
export interface CacheRecord {
  /** Key over the contents of the certificate and issuer source files ({@link sourcesKey}). */
  c: string;
  /** SHA-256 of the staple file's bytes. */
  s: string;
  /** The day (since the epoch, UTC) the record was last used. */
  seen: number;
  /** Certificate notBefore / notAfter. */
  nb: number;
  na: number;
  /** Certificate subject, for messages. */
  subj: string;
  /** The verified staple: status and times. */
  st: 'good' | 'revoked' | 'unknown';
  tu: number;
  nu: number;
  pa: number;
  /** usableUntil: nextUpdate capped by a delegated signer's notAfter. */
  uu: number;
  /** Subject of the signer. */
  rsp: string;
  /** 1 when a delegated responder signed it. */
  dlg: 0 | 1;
  /**
   * For a delegated signer: a window inside which the signer is valid
   * (conservative: the intersection over every included certificate that
   * could be the signer). Outside it the staple is verified from scratch.
   */
  snb?: number;
  sna?: number;
  /** Revocation time and reason name, when revoked. */
  rt?: number;
  rr?: string;
  /** Warnings of the verification. */
  w: string[];
  /** The certificate's AIA OCSP URLs and CRL URLs, for triage (core/triage.ts) without parsing it. */
  ou?: string[];
  du?: string[];
  /** 1 when the certificate is must-staple (RFC 7633). */
  ms?: 1;
  /** 1 when the certificate carries noRevAvail (RFC 9608). */
  nra?: 1;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string';

/** Type-checks a record read from disk; anything unexpected makes it a miss. */
export function isCacheRecord(r: unknown): r is CacheRecord {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return false;
  const o = r as Record<string, unknown>;
  return (
    isStr(o.c) &&
    isStr(o.s) &&
    isNum(o.seen) &&
    isNum(o.nb) &&
    isNum(o.na) &&
    isStr(o.subj) &&
    (o.st === 'good' || o.st === 'revoked' || o.st === 'unknown') &&
    isNum(o.tu) &&
    isNum(o.nu) &&
    isNum(o.pa) &&
    isNum(o.uu) &&
    isStr(o.rsp) &&
    (o.dlg === 0 || o.dlg === 1) &&
    (o.dlg === 0 || (isNum(o.snb) && isNum(o.sna))) &&
    (o.rt === undefined || isNum(o.rt)) &&
    (o.rr === undefined || isStr(o.rr)) &&
    Array.isArray(o.w) &&
    o.w.every(isStr) &&
    (o.ou === undefined || (Array.isArray(o.ou) && o.ou.every(isStr))) &&
    (o.du === undefined || (Array.isArray(o.du) && o.du.every(isStr))) &&
    (o.ms === undefined || o.ms === 1) &&
    (o.nra === undefined || o.nra === 1)
  );
}

// ---------------------------------------------------------------------------
// The verification-code fingerprint
// ---------------------------------------------------------------------------

/** The modules whose rules a cached verdict stands for. */
const RULE_MODULES = [
  '../core/der',
  '../core/certs',
  '../core/response',
  '../core/signature',
  '../core/verify',
  './issuer',
  './process',
  './verdict-cache',
];

let rulesFingerprintValue: string | undefined;

/**
 * A fingerprint of the code that produced the cached verdicts: the version
 * and the bytes of the parsing, verification and issuer-discovery modules.
 * A fix to any rule changes it, and every cached verdict is then ignored.
 */
export function rulesFingerprint(): string {
  rulesFingerprintValue ??= moduleFingerprint(`${FORMAT_NAME}/${CACHE_FORMAT_VERSION}`, import.meta.url, RULE_MODULES);
  return rulesFingerprintValue;
}

// ---------------------------------------------------------------------------
// Fast reads of small local files
// ---------------------------------------------------------------------------

/** Files up to this size are read in one synchronous call; larger ones take the ordinary path. */
const FAST_READ_MAX = 64 * 1024;
const readBuffer = Buffer.allocUnsafe(FAST_READ_MAX);

/**
 * Reads a small file synchronously, or returns undefined on anything
 * unusual (missing, a directory, a FIFO, larger than 64 KiB or `maxBytes`,
 * any error): the caller then takes the ordinary asynchronous path, which
 * produces the canonical result or error. Certificates and staples are a few
 * KiB on a local disk; one synchronous read (open, read, close) costs
 * ~7 µs where `fs.promises.readFile` costs ~50–90 µs in thread-pool round
 * trips, which is most of a warm run.
 */
export function readRegularFileSync(path: string, maxBytes = MAX_INPUT_FILE): Buffer | undefined {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not block the event loop (its read then fails: ordinary path)
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const limit = Math.min(FAST_READ_MAX, maxBytes + 1);
    // a short read of a regular file is its end; a full buffer may be a larger file or a device
    // (a positioned read: a FIFO or terminal fails with ESPIPE; /dev/null reads nothing, /dev/zero fills the
    // buffer: every such file goes to the ordinary read, which refuses non-regular files before reading)
    const n = readSync(fd, readBuffer, 0, limit, 0);
    if (n >= limit || n === 0) return undefined;
    return Buffer.from(readBuffer.subarray(0, n));
  } catch {
    return undefined;
  } finally {
    try {
      closeSync(fd);
    } catch {
      // nothing to do
    }
  }
}

/** Reads a cache file (up to 256 MiB) synchronously, or undefined when it cannot be read as a regular file. */
export function readCacheFileSync(path: string): Buffer | undefined {
  return readWholeFileSync(path, 256 * 1024 * 1024);
}

/** Reads a file of any size up to `maxBytes` synchronously (the cache file itself), or undefined. */
function readWholeFileSync(path: string, maxBytes: number): Buffer | undefined {
  try {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.size > maxBytes) return undefined;
      return readFileSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// Source files of a target
// ---------------------------------------------------------------------------

/** A file read for this target, with its content hash. */
export interface SourceFile {
  bytes: Buffer;
  hash: string;
}

/** The files a target's certificate and issuer come from. */
export interface SourcePaths {
  certPath: string;
  issuerPath?: string;
  chainPath?: string;
  rootchainPath?: string;
}

/** The contents of every source file of a target, read at one moment. */
export interface SourceSet {
  cert: SourceFile;
  issuer?: SourceFile;
  chain?: SourceFile;
  rootchain?: SourceFile;
  /** {@link sourcesKey} of the set. */
  key: string;
}

/**
 * Issuer, chain and root-chain files are often shared by thousands of
 * certificates; within one burst of work (until the engine goes idle) each
 * path is read and hashed once. The map is dropped when the engine is idle,
 * so a daemon sees a changed chain file at its next pass.
 */
const sharedReads = new Map<string, SourceFile>();
const MAX_SHARED_READS = 4096;

function readShared(path: string): SourceFile | undefined {
  let f = sharedReads.get(path);
  if (f === undefined) {
    const bytes = readRegularFileSync(path);
    if (bytes === undefined) return undefined;
    f = { bytes, hash: contentHash(bytes) };
    if (sharedReads.size >= MAX_SHARED_READS) sharedReads.clear();
    sharedReads.set(path, f);
  }
  return f;
}

/** The cache key of a set of source contents (role-tagged, so a chain file is never mistaken for an issuer file). */
export function sourcesKey(cert: string, issuer?: string, chain?: string, rootchain?: string): string {
  return contentHash(`sk-sources/1\0${cert}\0${issuer ?? '-'}\0${chain ?? '-'}\0${rootchain ?? '-'}`);
}

/**
 * Reads every source file of a target synchronously. Returns undefined if
 * any of them cannot be read that way; the caller then loads the target the
 * ordinary way (and reports the ordinary errors).
 */
export function readSourcesSync(paths: SourcePaths): SourceSet | undefined {
  const certBytes = readRegularFileSync(paths.certPath);
  if (certBytes === undefined) return undefined;
  const cert = { bytes: certBytes, hash: contentHash(certBytes) };
  const set: Omit<SourceSet, 'key'> & { key?: string } = { cert };
  for (const role of ['issuer', 'chain', 'rootchain'] as const) {
    const p = role === 'issuer' ? paths.issuerPath : role === 'chain' ? paths.chainPath : paths.rootchainPath;
    if (p === undefined) continue;
    const f = readShared(p);
    if (f === undefined) return undefined;
    set[role] = f;
  }
  set.key = sourcesKey(cert.hash, set.issuer?.hash, set.chain?.hash, set.rootchain?.hash);
  return set as SourceSet;
}

// ---------------------------------------------------------------------------
// Cache files
// ---------------------------------------------------------------------------

function today(): number {
  // housekeeping only (retention); decisions never use this clock
  return Math.floor(Date.now() / DAY_MS);
}

/**
 * One record as one line: tab-separated fields, strings JSON-encoded (so a
 * tab or newline can never occur inside a field). Lines are split only
 * when their record is used, which keeps loading 10,000 records to a few
 * milliseconds where `JSON.parse` of the same data takes ~50 ms.
 */
const FIELDS = 20;

function num(s: string | undefined): number | undefined {
  if (s === undefined || s === '') return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

function str(s: string | undefined): string | undefined {
  if (s === undefined || s === '') return undefined;
  try {
    const v = JSON.parse(s) as unknown;
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Formats a record line (the name JSON-encoded first, the HMAC of the rest
 * last); undefined without a secret ({@link verdictSecret}).
 */
export function formatRecordLine(name: string, r: CacheRecord): string | undefined {
  const key = verdictSecret();
  if (key === null) return undefined;
  const opt = (v: number | undefined): string => (v === undefined ? '' : String(v));
  const body = [
    JSON.stringify(name),
    r.c,
    r.s,
    r.seen,
    r.nb,
    r.na,
    r.st,
    r.tu,
    r.nu,
    r.pa,
    r.uu,
    r.dlg,
    opt(r.snb),
    opt(r.sna),
    opt(r.rt),
    r.rr === undefined ? '' : JSON.stringify(r.rr),
    JSON.stringify(r.subj),
    JSON.stringify(r.rsp),
    JSON.stringify(r.w),
    // triage facts (version 2): [AIA OCSP URLs, CRL URLs, flags: 1 must-staple, 2 noRevAvail]
    JSON.stringify([r.ou ?? [], r.du ?? [], (r.ms ? 1 : 0) | (r.nra ? 2 : 0)]),
  ].join('\t');
  return `${body}\t${recordMac(key, body)}`;
}

// What a parsed record keeps is its own: a record's fields must not keep the whole file's text alive
// (fields split from a line are slices of it: 40 MB at 100,000 records), and the few values most records
// share (the status, the responder's name) are one string each.

/** `s` copied out of the text it was cut from (a 43-character hash: a slice of a 44-character copy). */
function own(s: string | undefined): string | undefined {
  return s === undefined ? undefined : ` ${s}`.slice(1);
}

const STATUSES = new Map<string, string>(['good', 'revoked', 'unknown'].map((x) => [x, x]));

/** Responder names seen, each kept once (bounded: a folder has a few responders). */
const signers = new Map<string, string>();
function sharedSigner(s: string | undefined): string | undefined {
  if (s === undefined) return undefined;
  const known = signers.get(s);
  if (known !== undefined) return known;
  if (signers.size < 256) signers.set(s, s);
  return s;
}

/** Parses a record line; undefined for anything malformed, or whose MAC does not verify (or no secret). */
export function parseRecordLine(line: string): { name: string; record: CacheRecord } | undefined {
  const key = verdictSecret();
  if (key === null) return undefined;
  const f = line.split('\t');
  if (f.length !== FIELDS + 1) return undefined;
  // a record someone edited (status good, nextUpdate 2063) without the secret is ignored
  if (!macMatches(key, line.slice(0, line.lastIndexOf('\t')), f[FIELDS] as string)) return undefined;
  const name = str(f[0]);
  let w: unknown;
  try {
    w = JSON.parse(f[18] as string);
  } catch {
    return undefined;
  }
  const record: Record<string, unknown> = {
    c: own(f[1]),
    s: own(f[2]),
    seen: num(f[3]),
    nb: num(f[4]),
    na: num(f[5]),
    st: STATUSES.get(f[6] as string) ?? f[6],
    tu: num(f[7]),
    nu: num(f[8]),
    pa: num(f[9]),
    uu: num(f[10]),
    dlg: num(f[11]),
    subj: str(f[16]),
    rsp: sharedSigner(str(f[17])),
    w,
  };
  const optional: Array<[string, unknown]> = [
    ['snb', num(f[12])],
    ['sna', num(f[13])],
    ['rt', num(f[14])],
    ['rr', str(f[15])],
  ];
  for (const [k, v] of optional) if (v !== undefined) record[k] = v;
  let tri: unknown;
  try {
    tri = JSON.parse(f[19] as string);
  } catch {
    return undefined;
  }
  if (!Array.isArray(tri) || tri.length !== 3 || typeof tri[2] !== 'number') return undefined;
  const [ou, du, flags] = tri as [unknown, unknown, number];
  if (Array.isArray(ou) && ou.length > 0) record.ou = ou;
  if (Array.isArray(du) && du.length > 0) record.du = du;
  if (flags & 1) record.ms = 1;
  if (flags & 2) record.nra = 1;
  if (name === undefined || !isCacheRecord(record)) return undefined;
  return { name, record };
}

// ---------------------------------------------------------------------------
// The per-host secret and the record MAC
// ---------------------------------------------------------------------------

/** The secret's file name inside the configuration cache folder. */
export const VERDICT_SECRET_FILE = 'verdict-cache.key';
const SECRET_BYTES = 32;

/** undefined: not looked up yet; null: unavailable (the verdict cache is then off). */
let secretValue: Buffer | null | undefined;

/**
 * The folder of the secret: the configuration cache folder
 * (config/config-cache.ts); with `STAPLEKEEPER_CACHE_DIR=off` (the configuration
 * cache switched off) the XDG/HOME default. Undefined when none can be named.
 */
export function verdictSecretDir(env: NodeJS.ProcessEnv): string | undefined {
  const own = configCacheDir(env);
  if (own !== undefined) return own;
  return configCacheDir({ ...env, STAPLEKEEPER_CACHE_DIR: undefined });
}

function readSecretFile(path: string): Buffer | null | 'missing' {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : null;
  }
  try {
    const st = fstatSync(fd);
    const mine = typeof process.getuid !== 'function' || st.uid === process.getuid();
    // a secret others can read (or write) is no secret
    if (!st.isFile() || st.size !== SECRET_BYTES || (st.mode & 0o077) !== 0 || !mine) return null;
    const b = readFileSync(fd);
    return b.length === SECRET_BYTES ? b : null;
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

function loadSecret(): Buffer | null {
  const dir = verdictSecretDir(process.env);
  if (dir === undefined) return null;
  const path = join(dir, VERDICT_SECRET_FILE);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    return null;
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    const got = readSecretFile(path);
    if (got !== 'missing') return got;
    // created whole under a temporary name, then linked: a concurrent process sees all of it or none
    const tmp = `${path}${TEMP_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      writeFileSync(tmp, randomBytes(SECRET_BYTES), { mode: 0o600, flag: 'wx' });
      try {
        linkSync(tmp, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return null; // another process won: read theirs
      }
    } catch {
      return null;
    } finally {
      try {
        unlinkSync(tmp);
      } catch {
        // never created
      }
    }
  }
  return null;
}

/** The per-host secret of the record MACs, or null when it cannot be read or created (no verdict cache then). */
export function verdictSecret(): Buffer | null {
  if (secretValue === undefined) secretValue = loadSecret();
  return secretValue;
}

/** Forgets the secret (tests: another STAPLEKEEPER_CACHE_DIR). */
export function resetVerdictSecret(): void {
  secretValue = undefined;
}

function recordMac(key: Buffer, body: string): string {
  return createHmac('sha256', key).update('sk-cache-record/1\0').update(body).digest('base64url');
}

function macMatches(key: Buffer, body: string, mac: string): boolean {
  const want = Buffer.from(recordMac(key, body));
  const got = Buffer.from(mac);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** The cache of one staple folder. */
export class StapleCache {
  readonly dir: string;
  readonly path: string;
  /** Records in use (parsed, new or changed), by staple file name. */
  private records = new Map<string, CacheRecord>();
  /** Lines read from the file and not parsed yet, by JSON-encoded staple file name. */
  private lines = new Map<string, string>();
  private loaded = false;
  private existed = false;
  private dirty = false;
  /** A non-dry-run call touched this folder: writing is allowed. */
  private writable = false;
  private handled = new Set<string>();

  constructor(dir: string) {
    this.dir = dir;
    this.path = join(dir, CACHE_FILE_NAME);
  }

  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    if (verdictSecret() === null) return; // no secret: no verdict cache
    const data = readWholeFileSync(this.path, 256 * 1024 * 1024);
    if (data === undefined) return;
    this.existed = true;
    this.lines = readCacheLines(data) ?? new Map();
  }

  /** Notes that a target of this folder is being handled (for the creation threshold and write permission). */
  touch(name: string, persist: boolean): void {
    this.load();
    this.handled.add(name);
    if (persist) this.writable = true;
  }

  /** The record for a staple file name, if there is a well-formed one. */
  get(name: string): CacheRecord | undefined {
    this.load();
    const r = this.records.get(name);
    if (r !== undefined) return r;
    const key = JSON.stringify(name);
    const line = this.lines.get(key);
    if (line === undefined) return undefined;
    this.lines.delete(key);
    const parsed = parseRecordLine(line);
    if (parsed === undefined || parsed.name !== name) {
      this.dirty = true; // dropped from the file at the next write
      return undefined;
    }
    this.records.set(name, parsed.record);
    return parsed.record;
  }

  /** Marks a record as used today (rewritten at most once a day for this). */
  markSeen(r: CacheRecord): void {
    const d = today();
    if (r.seen < d) {
      r.seen = d;
      this.dirty = true;
    }
  }

  /** Stores or replaces the record of a staple file name. */
  set(name: string, r: Omit<CacheRecord, 'seen'>): void {
    this.load();
    this.lines.delete(JSON.stringify(name));
    this.records.set(name, { ...r, seen: today() } as CacheRecord);
    this.dirty = true;
  }

  /** Number of records held. */
  get size(): number {
    this.load();
    return this.records.size + this.lines.size;
  }

  /** Writes the file if there is something new and writing is allowed. Never throws. */
  flush(): boolean {
    if (!this.dirty || !this.writable) return false;
    if (!this.existed && this.handled.size < MIN_TARGETS_FOR_NEW_CACHE) return false;
    if (verdictSecret() === null) return false;
    const oldest = today() - CACHE_RETENTION_DAYS;
    const out: string[] = [];
    for (const [name, r] of this.records) {
      if (r.seen < oldest) continue;
      const line = formatRecordLine(name, r);
      if (line !== undefined) out.push(line);
    }
    for (const line of this.lines.values()) {
      // records not used by this process: kept while recently seen elsewhere
      const seen = num(line.split('\t', 4)[3]);
      if (seen !== undefined && seen >= oldest) out.push(line);
    }
    const ok = writeCacheFile(this.path, out);
    if (ok) {
      this.dirty = false;
      this.existed = true;
    }
    return ok;
  }
}

/** The record lines of a cache file by JSON-encoded name; undefined when the file is not a valid cache for this code. */
function readCacheLines(data: Buffer): Map<string, string> | undefined {
  try {
    const nl = data.indexOf(0x0a);
    if (nl < 0) return undefined;
    const header = JSON.parse(data.toString('utf8', 0, nl)) as Record<string, unknown>;
    if (
      header === null ||
      typeof header !== 'object' ||
      header.format !== FORMAT_NAME ||
      header.version !== CACHE_FORMAT_VERSION ||
      header.rules !== rulesFingerprint()
    ) {
      return undefined;
    }
    const body = data.subarray(nl + 1);
    if (header.sha256 !== contentHash(body)) return undefined;
    const lines = new Map<string, string>();
    const text = body.toString('utf8');
    for (let p = 0; p < text.length;) {
      let e = text.indexOf('\n', p);
      if (e < 0) e = text.length;
      const tab = text.indexOf('\t', p);
      if (tab > p && tab < e) lines.set(text.slice(p, tab), text.slice(p, e));
      p = e + 1;
    }
    return lines;
  } catch {
    return undefined;
  }
}

/** Parses a whole cache file (tests, tools); undefined when it is not a valid cache for this code. */
export function parseCacheFile(data: Buffer): Map<string, CacheRecord> | undefined {
  const lines = readCacheLines(data);
  if (lines === undefined) return undefined;
  const out = new Map<string, CacheRecord>();
  for (const line of lines.values()) {
    const p = parseRecordLine(line);
    if (p) out.set(p.name, p.record);
  }
  return out;
}

function serializeLines(lines: string[]): Buffer {
  const body = Buffer.from(lines.length === 0 ? '' : `${lines.join('\n')}\n`, 'utf8');
  const header = JSON.stringify({
    format: FORMAT_NAME,
    version: CACHE_FORMAT_VERSION,
    rules: rulesFingerprint(),
    count: lines.length,
    sha256: contentHash(body),
  });
  return Buffer.concat([Buffer.from(`${header}\n`, 'utf8'), body]);
}

/**
 * Serialises records into the cache file format: a JSON header line
 * (format, version, rules fingerprint, count, SHA-256 of the body), then one
 * line per record ({@link formatRecordLine}).
 */
export function serializeCacheFile(records: Record<string, CacheRecord>): Buffer {
  const lines: string[] = [];
  for (const [name, r] of Object.entries(records)) {
    const line = formatRecordLine(name, r);
    if (line !== undefined) lines.push(line);
  }
  return serializeLines(lines);
}

function writeCacheFile(path: string, lines: string[]): boolean {
  return replaceCacheFileSync(path, serializeLines(lines));
}

// ---------------------------------------------------------------------------
// The process-wide registry, idle and exit flushing
// ---------------------------------------------------------------------------

const caches = new Map<string, StapleCache>();
const stats = { hits: 0, misses: 0 };

/** Counts of cache lookups in this process (for tests and the benchmark). */
export function stapleCacheStats(): { hits: number; misses: number } {
  return { ...stats };
}

/** Counts one lookup. */
export function noteCacheLookup(hit: boolean): void {
  if (hit) stats.hits++;
  else stats.misses++;
}
let active = 0;
let idleScheduled = false;
let exitHook = false;

/** The cache of the folder holding `staplePath` (one per folder and process). */
export function cacheForStaple(staplePath: string): { cache: StapleCache; name: string } {
  const dir = dirname(staplePath);
  let cache = caches.get(dir);
  if (cache === undefined) {
    cache = new StapleCache(dir);
    caches.set(dir, cache);
    if (!exitHook) {
      exitHook = true;
      // process.exit() skips pending callbacks; a synchronous write here still happens
      process.once('exit', flushStapleCaches);
    }
  }
  return { cache, name: basename(staplePath) };
}

/** Writes every cache with something new. Synchronous; never throws. */
export function flushStapleCaches(): void {
  for (const c of caches.values()) c.flush();
}

/** Forgets every in-memory cache without writing (tests: "as if the process restarted"). */
export function resetStapleCaches(): void {
  caches.clear();
  secretValue = undefined;
  sharedReads.clear();
  stats.hits = 0;
  stats.misses = 0;
}

/** Marks the start of one target's work. */
export function beginCacheWork(): void {
  active++;
}

/**
 * Marks the end of one target's work. When nothing is left running (checked
 * again on the next turn of the event loop, so a worker that immediately
 * starts its next target does not count as idle), the shared-file reads are
 * dropped and the caches are written.
 */
export function endCacheWork(): void {
  active--;
  if (active === 0 && !idleScheduled) {
    idleScheduled = true;
    setImmediate(() => {
      idleScheduled = false;
      if (active > 0) return;
      sharedReads.clear();
      flushStapleCaches();
    }).unref();
  }
}
