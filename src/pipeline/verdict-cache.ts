/**
 * The verdict cache: what does not change between runs, so that a check of
 * 10,000 fresh staples reads the files and decides without parsing a
 * certificate or verifying a signature.
 *
 * A {@link VerdictCache} is an object passed in the engine context
 * (`EngineContext.verdicts`): `run` (the CLI) and the daemon create one; a
 * library caller has none unless it passes one, so nothing is written beside
 * its staples unless asked. It keeps one file per staple folder,
 * `.staplekeeper-cache.json`, in the cache-file format of io/cache-file.ts,
 * with one line per staple file name:
 * - a key over the exact contents of every file the certificate and its
 *   issuer were loaded from (certificate, issuer, chain, root chain), and the
 *   certificate facts a decision needs (notBefore, notAfter, subject, the
 *   URLs and flags triage needs);
 * - the SHA-256 of the staple file's bytes, and the verdict of verifyResponse
 *   on them: status, thisUpdate, nextUpdate, producedAt, usableUntil,
 *   responder, and the validity window of a delegated signer.
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
 *   ahead, the certificate not expired (RFC 6960 §3.2 and §4.2.2) — are
 *   evaluated again at every run (pipeline/verdict-record.ts). When any of
 *   them fails, the staple is verified from scratch, so the decision and its
 *   message are exactly those of a run without cache.
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
 * (`verdict-cache.key`, mode 0600, in the configuration cache folder —
 * `$STAPLEKEEPER_CACHE_DIR`, `$XDG_CACHE_HOME/staplekeeper` or
 * `~/.cache/staplekeeper` — created on first use; io/cache-file.ts). A record
 * whose MAC does not verify is ignored and the staple is verified again from
 * its bytes: whoever can write the staple folder but not read the secret
 * cannot make a revoked or garbage staple pass as "good until 2063". When the
 * secret cannot be read or created, the verdict cache is not used at all
 * (correct, only slower).
 *
 * Files are written by {@link VerdictCache.flush} — at the end of `run`, when
 * the daemon goes idle and when it stops; never by an exit handler, never for
 * dry runs — atomically and piece by piece (io/cache-file.ts `writeCacheFile`:
 * a temporary file, written 1,024 signed lines at a time, flushed to disk,
 * then renamed; a crash before the rename leaves the old file as it was). A folder gets a new cache file only once
 * at least {@link MIN_TARGETS_FOR_NEW_CACHE} of its staples were handled, so
 * `fetch` of one certificate leaves nothing behind.
 */
import { basename, dirname, join } from 'node:path';
import { configCacheDir } from '../config/config-cache.js';
import {
  decodeCacheFile,
  encodeCacheFile,
  LineMac,
  loadCacheSecret,
  readCacheFileSync,
  writeCacheFile,
  type CacheFileFormat,
} from '../io/cache-file.js';
import { moduleFingerprint } from '../io/fingerprint.js';

/** The cache file inside each staple folder. */
export const CACHE_FILE_NAME = '.staplekeeper-cache.json';

/** The on-disk format; bump on any change of the record layout. */
export const CACHE_FORMAT_VERSION = 3;

const FORMAT_NAME = 'staplekeeper-cache';

/** A folder without a cache file gets one only after this many of its staples were handled by one cache. */
export const MIN_TARGETS_FOR_NEW_CACHE = 8;

/** Record lines signed and written at a time when a cache file is written. */
const LINES_PER_PIECE = 1024;

/** Records not used for this many days are dropped when the file is next written. */
export const CACHE_RETENTION_DAYS = 30;

/** The secret's file name inside the configuration cache folder. */
export const VERDICT_SECRET_FILE = 'verdict-cache.key';

/** The MAC domain of record lines. */
const MAC_DOMAIN = 'sk-cache-record/1';

const DAY_MS = 86_400_000;

/**
 * One cache record: a certificate (by the contents of its files) and the
 * verdict on one staple (by the contents of the staple file). Times are
 * milliseconds since the epoch.
 */
export interface VerdictRecord {
  /** Key over the contents of the certificate and issuer source files ({@link sourcesKey}). */
  sourcesKey: string;
  /** SHA-256 of the staple file's bytes. */
  stapleHash: string;
  /** The day (since the epoch, UTC) the record was last used. */
  seenDay: number;
  certNotBefore: number;
  certNotAfter: number;
  /** Certificate subject, for messages. */
  subject: string;
  /** The verified staple: status and times. */
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: number;
  nextUpdate: number;
  producedAt: number;
  /** nextUpdate capped by a delegated signer's notAfter. */
  usableUntil: number;
  /** Subject of the signer. */
  responder: string;
  /** A delegated responder signed it. */
  delegated: boolean;
  /**
   * For a delegated signer: a window inside which the signer is valid
   * (conservative: the intersection over every included certificate that
   * could be the signer). Outside it the staple is verified from scratch.
   */
  signerNotBefore?: number;
  signerNotAfter?: number;
  /** Revocation time and reason name, when revoked. */
  revocationTime?: number;
  revocationReason?: string;
  /** Warnings of the verification. */
  warnings: string[];
  /** The certificate's AIA OCSP URLs and CRL URLs, for triage (core/triage.ts) without parsing it. */
  ocspUrls?: string[];
  crlUrls?: string[];
  /** The certificate is must-staple (RFC 7633). */
  mustStaple?: true;
  /** The certificate carries noRevAvail (RFC 9608). */
  noRevAvail?: true;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isStrList = (v: unknown): v is string[] => Array.isArray(v) && v.every(isStr);

/** Type-checks a record (as read from disk); anything unexpected makes it a miss. */
export function isVerdictRecord(r: unknown): r is VerdictRecord {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return false;
  const o = r as Record<string, unknown>;
  return (
    isStr(o.sourcesKey) &&
    isStr(o.stapleHash) &&
    isNum(o.seenDay) &&
    isNum(o.certNotBefore) &&
    isNum(o.certNotAfter) &&
    isStr(o.subject) &&
    (o.status === 'good' || o.status === 'revoked' || o.status === 'unknown') &&
    isNum(o.thisUpdate) &&
    isNum(o.nextUpdate) &&
    isNum(o.producedAt) &&
    isNum(o.usableUntil) &&
    isStr(o.responder) &&
    typeof o.delegated === 'boolean' &&
    (!o.delegated || (isNum(o.signerNotBefore) && isNum(o.signerNotAfter))) &&
    (o.revocationTime === undefined || isNum(o.revocationTime)) &&
    (o.revocationReason === undefined || isStr(o.revocationReason)) &&
    isStrList(o.warnings) &&
    (o.ocspUrls === undefined || isStrList(o.ocspUrls)) &&
    (o.crlUrls === undefined || isStrList(o.crlUrls)) &&
    (o.mustStaple === undefined || o.mustStaple === true) &&
    (o.noRevAvail === undefined || o.noRevAvail === true)
  );
}

/** The modules whose rules a cached verdict stands for. */
const RULE_MODULES = [
  '../core/der',
  '../core/certs',
  '../core/response',
  '../core/signature',
  '../core/verify',
  './issuer',
  './judge',
  './verdict-record',
  './verdict-cache',
  './sources',
];

/**
 * A fingerprint of the code that produced the cached verdicts: the version
 * and the bytes of the parsing, verification and issuer-discovery modules.
 * A fix to any rule changes it, and every cached verdict is then ignored.
 */
export function rulesFingerprint(): string {
  return moduleFingerprint(`${FORMAT_NAME}/${CACHE_FORMAT_VERSION}`, import.meta.url, RULE_MODULES);
}

// ---------------------------------------------------------------------------
// Record lines
// ---------------------------------------------------------------------------

function today(): number {
  // housekeeping only (retention); decisions never use this clock
  return Math.floor(Date.now() / DAY_MS);
}

/**
 * One record as one line: tab-separated fields, strings JSON-encoded (so a
 * tab or newline can never occur inside a field), the MAC last. Lines are
 * split only when their record is used, which keeps loading 10,000 records
 * to a few milliseconds where `JSON.parse` of the same data takes ~50 ms.
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

function json(s: string | undefined): unknown {
  try {
    return JSON.parse(s as string) as unknown;
  } catch {
    return undefined;
  }
}

/** The fields of a record line, before its MAC. */
function recordFields(name: string, r: VerdictRecord): string {
  const opt = (v: number | undefined): string => (v === undefined ? '' : String(v));
  return [
    JSON.stringify(name),
    r.sourcesKey,
    r.stapleHash,
    r.seenDay,
    r.certNotBefore,
    r.certNotAfter,
    r.status,
    r.thisUpdate,
    r.nextUpdate,
    r.producedAt,
    r.usableUntil,
    r.delegated ? 1 : 0,
    opt(r.signerNotBefore),
    opt(r.signerNotAfter),
    opt(r.revocationTime),
    r.revocationReason === undefined ? '' : JSON.stringify(r.revocationReason),
    JSON.stringify(r.subject),
    JSON.stringify(r.responder),
    JSON.stringify(r.warnings),
    // triage facts (version 2): [AIA OCSP URLs, CRL URLs, flags: 1 must-staple, 2 noRevAvail]
    JSON.stringify([r.ocspUrls ?? [], r.crlUrls ?? [], (r.mustStaple ? 1 : 0) | (r.noRevAvail ? 2 : 0)]),
  ].join('\t');
}

// What a parsed record keeps is its own: a record's fields must not keep the whole file's text alive
// (fields split from a line are slices of it: 40 MB at 100,000 records), and the few values most records
// share (the status, the responder's name) are one string each.

/** `s` copied out of the text it was cut from (a 43-character hash: a slice of a 44-character copy). */
function own(s: string | undefined): string | undefined {
  return s === undefined ? undefined : ` ${s}`.slice(1);
}

const STATUSES = new Map<string, string>(['good', 'revoked', 'unknown'].map((x) => [x, x]));

/**
 * The record of a line whose MAC verified; undefined for anything malformed.
 * `shared`: one string per responder name (the cache's).
 */
function recordOfFields(
  f: string[],
  shared: (s: string | undefined) => string | undefined,
): { name: string; record: VerdictRecord } | undefined {
  const name = str(f[0]);
  const dlg = num(f[11]);
  const record: Record<string, unknown> = {
    sourcesKey: own(f[1]),
    stapleHash: own(f[2]),
    seenDay: num(f[3]),
    certNotBefore: num(f[4]),
    certNotAfter: num(f[5]),
    status: STATUSES.get(f[6] as string) ?? f[6],
    thisUpdate: num(f[7]),
    nextUpdate: num(f[8]),
    producedAt: num(f[9]),
    usableUntil: num(f[10]),
    delegated: dlg === 1 ? true : dlg === 0 ? false : undefined,
    subject: str(f[16]),
    responder: shared(str(f[17])),
    warnings: json(f[18]),
  };
  const optional: Array<[string, unknown]> = [
    ['signerNotBefore', num(f[12])],
    ['signerNotAfter', num(f[13])],
    ['revocationTime', num(f[14])],
    ['revocationReason', str(f[15])],
  ];
  for (const [k, v] of optional) if (v !== undefined) record[k] = v;
  const tri = json(f[19]);
  if (!Array.isArray(tri) || tri.length !== 3 || typeof tri[2] !== 'number') return undefined;
  const [ou, du, flags] = tri as [unknown, unknown, number];
  if (Array.isArray(ou) && ou.length > 0) record.ocspUrls = ou;
  if (Array.isArray(du) && du.length > 0) record.crlUrls = du;
  if (flags & 1) record.mustStaple = true;
  if (flags & 2) record.noRevAvail = true;
  if (name === undefined || !isVerdictRecord(record)) return undefined;
  return { name, record };
}

// ---------------------------------------------------------------------------
// The cache of one staple folder
// ---------------------------------------------------------------------------

/** The verdicts of one staple folder (made by {@link VerdictCache.forStaple}). */
export class FolderVerdicts {
  readonly dir: string;
  readonly path: string;
  private readonly owner: VerdictCache;
  /** Records in use (parsed, new or changed), by staple file name. */
  private records = new Map<string, VerdictRecord>();
  /** Lines read from the file and not parsed yet, by JSON-encoded staple file name. */
  private lines = new Map<string, string>();
  private loaded = false;
  private existed = false;
  private dirty = false;
  /** A non-dry-run call touched this folder: writing is allowed. */
  private writable = false;
  /** Names of staples handled, kept only up to {@link MIN_TARGETS_FOR_NEW_CACHE} (all the threshold needs). */
  private handled = new Set<string>();
  /** One-shot: the name of each record handed out by {@link get} (so that {@link markSeen} can sign it again). */
  private readonly names = new WeakMap<VerdictRecord, string>();

  constructor(owner: VerdictCache, dir: string) {
    this.owner = owner;
    this.dir = dir;
    this.path = join(dir, CACHE_FILE_NAME);
  }

  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    if (this.owner.lineMac() === undefined) return; // no secret: no verdict cache
    const data = readCacheFileSync(this.path);
    if (data === undefined) return;
    this.existed = true;
    this.lines = this.owner.readLines(data) ?? new Map();
  }

  /** Notes that a target of this folder is being handled (for the creation threshold and write permission). */
  touch(name: string, persist: boolean): void {
    this.load();
    if (this.handled.size < MIN_TARGETS_FOR_NEW_CACHE) this.handled.add(name);
    if (persist) this.writable = true;
  }

  /** The record for a staple file name, if there is a well-formed one. */
  get(name: string): VerdictRecord | undefined {
    this.load();
    const r = this.records.get(name);
    if (r !== undefined) return r;
    const key = JSON.stringify(name);
    const line = this.lines.get(key);
    if (line === undefined) return undefined;
    const parsed = this.owner.parseLine(line);
    if (parsed === undefined || parsed.name !== name) {
      this.lines.delete(key);
      this.dirty = true; // dropped from the file at the next write
      return undefined;
    }
    if (this.owner.oneShot) {
      // the line stays what is kept; the record is the caller's for this lookup
      this.names.set(parsed.record, name);
      return parsed.record;
    }
    this.lines.delete(key);
    this.records.set(name, parsed.record);
    return parsed.record;
  }

  /** Marks a record as used today (rewritten at most once a day for this). */
  markSeen(r: VerdictRecord): void {
    const d = today();
    if (r.seenDay < d) {
      r.seenDay = d;
      this.dirty = true;
      const name = this.names.get(r);
      if (name !== undefined) this.keepLine(name, r);
    }
  }

  /** One-shot: keeps a record as its signed line; false when there is no secret to sign it with. */
  private keepLine(name: string, r: VerdictRecord): boolean {
    const mac = this.owner.lineMac();
    if (mac === undefined) return false;
    const line = mac.sign(recordFields(name, r));
    line.charCodeAt(0); // flattened: one string, not the pieces it was joined from
    this.lines.set(JSON.stringify(name), line);
    this.records.delete(name);
    return true;
  }

  /** Stores or replaces the record of a staple file name. */
  set(name: string, r: Omit<VerdictRecord, 'seenDay'>): void {
    this.load();
    this.dirty = true;
    const record = { ...r, seenDay: today() };
    if (this.owner.oneShot && this.keepLine(name, record)) return;
    this.lines.delete(JSON.stringify(name));
    this.records.set(name, record);
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
    const mac = this.owner.lineMac();
    if (mac === undefined) return false;
    const oldest = today() - CACHE_RETENTION_DAYS;
    // records not used by this cache are kept while recently seen elsewhere
    const keptLine = (line: string): boolean => {
      const seen = num(line.split('\t', 4)[3]);
      return seen !== undefined && seen >= oldest;
    };
    let count = 0;
    for (const r of this.records.values()) if (r.seenDay >= oldest) count++;
    for (const line of this.lines.values()) if (keptLine(line)) count++;
    // signed and written a piece at a time (io/cache-file.ts): 100,000 lines are ~40 MB of text
    const records = this.records;
    const lines = this.lines;
    function* pieces(): Generator<string[]> {
      let piece: string[] = [];
      for (const [name, r] of records) {
        if (r.seenDay < oldest) continue;
        piece.push((mac as LineMac).sign(recordFields(name, r)));
        if (piece.length === LINES_PER_PIECE) {
          yield piece;
          piece = [];
        }
      }
      for (const line of lines.values()) {
        if (!keptLine(line)) continue;
        piece.push(line);
        if (piece.length === LINES_PER_PIECE) {
          yield piece;
          piece = [];
        }
      }
      yield piece;
    }
    const ok = writeCacheFile(this.path, this.owner.format(), { count, pieces: pieces() });
    if (ok) {
      this.dirty = false;
      this.existed = true;
    }
    return ok;
  }
}

// ---------------------------------------------------------------------------
// The verdict cache of a run or a daemon
// ---------------------------------------------------------------------------

/** Options of a {@link VerdictCache}. */
export interface VerdictCacheOptions {
  /** The environment naming the secret's folder ({@link verdictSecretDir}; default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** The secret itself, instead of the file (null: no secret, so no verdict cache). */
  secret?: Buffer | null;
  /**
   * For a process that looks each staple up once and then exits (`run`): records are kept as their
   * signed lines (~0.4 KB each, the file's own) instead of objects (~0.75 KB), and a record read from
   * the file is parsed for each lookup (its MAC verified each time) instead of kept parsed. The same
   * records are written; only what is held between lookups differs. Default false (the daemon looks
   * its staples up again at every pass).
   */
  oneShot?: boolean;
}

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

/** The verdict cache of a run or a daemon: one {@link FolderVerdicts} per staple folder, and the lookup counts. */
export class VerdictCache {
  private readonly folders = new Map<string, FolderVerdicts>();
  private readonly env: NodeJS.ProcessEnv;
  /** undefined: not looked up yet; null: unavailable (the verdict cache is then off). */
  private secret: Buffer | null | undefined;
  private mac: LineMac | undefined;
  private fileFormat: CacheFileFormat | undefined;
  private hits = 0;
  private misses = 0;
  /** Responder names seen in records, each kept once (bounded: a folder has a few responders). */
  private readonly signers = new Map<string, string>();

  /** See {@link VerdictCacheOptions.oneShot}. */
  readonly oneShot: boolean;

  constructor(options: VerdictCacheOptions = {}) {
    this.env = options.env ?? process.env;
    this.secret = options.secret;
    this.oneShot = options.oneShot ?? false;
  }

  /** The MAC of record lines, or undefined when there is no secret (the cache is then off). */
  lineMac(): LineMac | undefined {
    if (this.secret === undefined) this.secret = loadCacheSecret(verdictSecretDir(this.env), VERDICT_SECRET_FILE);
    if (this.secret === null) return undefined;
    this.mac ??= new LineMac(this.secret, MAC_DOMAIN);
    return this.mac;
  }

  /** The header a cache file must carry (the rules fingerprint is computed once per cache). */
  format(): CacheFileFormat {
    this.fileFormat ??= { name: FORMAT_NAME, version: CACHE_FORMAT_VERSION, rules: rulesFingerprint() };
    return this.fileFormat;
  }

  /** The cache of the folder holding `staplePath`, and the staple's name in it. */
  forStaple(staplePath: string): { folder: FolderVerdicts; name: string } {
    const dir = dirname(staplePath);
    let folder = this.folders.get(dir);
    if (folder === undefined) {
      folder = new FolderVerdicts(this, dir);
      this.folders.set(dir, folder);
    }
    return { folder, name: basename(staplePath) };
  }

  /** Counts one lookup. */
  noteLookup(hit: boolean): void {
    if (hit) this.hits++;
    else this.misses++;
  }

  /** Counts of lookups (tests and the benchmark). */
  stats(): { hits: number; misses: number } {
    return { hits: this.hits, misses: this.misses };
  }

  /** Writes every folder's file with something new. Synchronous; never throws. */
  flush(): void {
    for (const f of this.folders.values()) f.flush();
  }

  /** The record lines of a cache file by JSON-encoded name; undefined when it is not a valid cache for this code. */
  readLines(data: Buffer): Map<string, string> | undefined {
    const text = decodeCacheFile(this.format(), data);
    if (text === undefined) return undefined;
    const lines = new Map<string, string>();
    for (let p = 0; p < text.length;) {
      let e = text.indexOf('\n', p);
      if (e < 0) e = text.length;
      const tab = text.indexOf('\t', p);
      if (tab > p && tab < e) lines.set(text.slice(p, tab), text.slice(p, e));
      p = e + 1;
    }
    return lines;
  }

  private sharedSigner(s: string | undefined): string | undefined {
    if (s === undefined) return undefined;
    const known = this.signers.get(s);
    if (known !== undefined) return known;
    if (this.signers.size < 256) this.signers.set(s, s);
    return s;
  }

  /** Parses a record line; undefined for anything malformed, or whose MAC does not verify (or no secret). */
  parseLine(line: string): { name: string; record: VerdictRecord } | undefined {
    const mac = this.lineMac();
    if (mac === undefined) return undefined;
    const f = line.split('\t');
    // a record someone edited (status good, nextUpdate 2063) without the secret is ignored
    if (f.length !== FIELDS + 1 || !mac.verify(line)) return undefined;
    return recordOfFields(f, (n) => this.sharedSigner(n));
  }

  /** Parses a whole cache file (tests, tools); undefined when it is not a valid cache for this code. */
  parseFile(data: Buffer): Map<string, VerdictRecord> | undefined {
    const lines = this.readLines(data);
    if (lines === undefined) return undefined;
    const out = new Map<string, VerdictRecord>();
    for (const line of lines.values()) {
      const p = this.parseLine(line);
      if (p) out.set(p.name, p.record);
    }
    return out;
  }

  /** A cache file holding `records` (tests, tools); signed lines only with a secret. */
  serializeFile(records: Record<string, VerdictRecord>): Buffer {
    const mac = this.lineMac();
    const lines: string[] = [];
    if (mac) for (const [name, r] of Object.entries(records)) lines.push(mac.sign(recordFields(name, r)));
    return encodeCacheFile(this.format(), lines);
  }
}
