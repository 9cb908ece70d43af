/**
 * The configuration cache: the validated contents of each configuration
 * file, so that a run whose configuration did not change skips the YAML
 * parser and the schema. For a 40,000-line `domains` file these are ~0.3 s
 * of a warm check that otherwise takes ~0.2 s (docs/PERFORMANCE.md).
 *
 * What is cached, per configuration file read (the main file and every
 * included one): the value the schema produced from its text, and the
 * positions that messages of a successful load name (`domains.<id>` keys and
 * `scan_keys` entries). An entry is used only when the SHA-256 of the file's
 * text read *now* equals the one it was made from, the file plays the same
 * role (main or included), and the entry was made by this exact code (the
 * package version and the bytes of the configuration modules). Everything
 * that depends on the file system — which files an include folder holds,
 * whether certificates exist, what a scan finds — is checked at every load,
 * exactly as without the cache.
 *
 * And the last whole result (load.ts `cachedResult`), used only when every
 * file it was made from has the same text, every include folder lists the
 * same files, every certificate file is still a file, and every scan
 * observes the same (config/scan.ts `scanWitness`: the digest of every
 * folder reached and every entry's name and kind).
 *
 * Why it never changes a result:
 * - Only files that parsed and validated without a problem are cached;
 *   any file with an error goes through the parser and gives its message.
 * - When a load from cached entries finds any problem (a missing
 *   certificate, a duplicate identifier across files, …), it starts again
 *   without the cache, so every message comes with the positions the parser
 *   finds, word for word.
 * - A cache file that is missing, unreadable, truncated, edited, of another
 *   format or code, or not owned by the user running staplekeeper (or
 *   writable by others) is ignored as a whole.
 *
 * Where: one file per main configuration file (named by a hash of its
 * absolute path) in `$STAPLEKEEPER_CACHE_DIR`, else
 * `$XDG_CACHE_HOME/staplekeeper`, else `~/.cache/staplekeeper`;
 * `STAPLEKEEPER_CACHE_DIR=off` turns it off. The folder is created with mode
 * 0700 and the files with 0600 (a configuration may hold a proxy password).
 * Files not rewritten for 30 days are removed when another one is written.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { contentHash, moduleFingerprint } from '../io/fingerprint.js';
import type { ConfigProblem, ConfigSource, KeyPath } from './problems.js';
import type { LoadedConfig } from './types.js';

const FORMAT_NAME = 'staplekeeper-config-cache';
const FORMAT_VERSION = 2;
const RETENTION_MS = 30 * 86_400_000;

/** The modules whose output an entry stands for. */
const CONFIG_MODULES = [
  './schema',
  './yaml-source',
  './parse',
  './fast-domains',
  './problems',
  './duration',
  './settings',
  './load',
  './fs-kinds',
  './targets',
  './templates',
  './scan',
  './config-cache',
];

let codeFingerprintValue: string | undefined;
function codeFingerprint(): string {
  codeFingerprintValue ??= moduleFingerprint(`${FORMAT_NAME}/${FORMAT_VERSION}`, import.meta.url, CONFIG_MODULES);
  return codeFingerprintValue;
}

/**
 * The cache folder for an environment (see the module comment); undefined
 * when the cache is off or no folder can be named (no HOME).
 */
export function configCacheDir(env: NodeJS.ProcessEnv): string | undefined {
  const own = env.STAPLEKEEPER_CACHE_DIR;
  if (own !== undefined && own !== '') {
    return own === 'off' || !path.isAbsolute(own) ? undefined : own;
  }
  const xdg = env.XDG_CACHE_HOME;
  if (xdg !== undefined && path.isAbsolute(xdg)) return path.join(xdg, 'staplekeeper');
  const home = env.HOME;
  if (home !== undefined && path.isAbsolute(home)) return path.join(home, '.cache', 'staplekeeper');
  return undefined;
}

const stats = { results: 0, files: 0 };

/** How many whole results and single files loads took from the cache in this process (tests, benchmarks). */
export function configCacheStats(): { results: number; files: number } {
  return { ...stats };
}

/** Counts a whole result taken from the cache (load.ts calls it once the result is known to hold). */
export function countResultHit(): void {
  stats.results++;
}

/** What a file contributes, as the schema produced it. */
export type FileRole = 'main' | 'include';

/** One cached file. */
interface Entry {
  role: FileRole;
  /** SHA-256 of the file's text. */
  sha256: string;
  /** The schema's output for the text. */
  value: unknown;
  /** `[line, col]` of each `domains.<id>` key. */
  domains: Record<string, [number, number]>;
  /** `[line, col]` of each `scan_keys` entry. */
  scans: Array<[number, number]>;
}

/** Thrown by a cached source when a load needs the parser's positions: the load starts again without the cache. */
export class NeedsParser extends Error {
  constructor() {
    super('the configuration must be loaded without the cache');
  }
}

/** A file restored from the cache: the positions a successful load names, nothing else. */
export class CachedSource implements ConfigSource {
  constructor(
    readonly file: string,
    readonly name: string,
    private readonly entry: Entry,
  ) {}

  origin(keyPath: KeyPath, key = false): string {
    const { line, col } = this.position(keyPath, key);
    return `${this.name}:${line}:${col}`;
  }

  position(keyPath: KeyPath, key = false): { line: number; col: number } {
    let pos: [number, number] | undefined;
    if (keyPath.length === 2 && keyPath[0] === 'domains' && key) {
      const id = keyPath[1] as string;
      pos = Object.hasOwn(this.entry.domains, id) ? this.entry.domains[id] : undefined;
    } else if (keyPath.length === 2 && keyPath[0] === 'scan_keys' && !key && typeof keyPath[1] === 'number') {
      pos = this.entry.scans[keyPath[1]];
    }
    if (pos === undefined) throw new NeedsParser();
    return { line: pos[0], col: pos[1] };
  }

  problem(): ConfigProblem {
    throw new NeedsParser();
  }
}

/**
 * A file this load parsed and validated: the positions {@link CachedSource.origin} serves are taken
 * from its source as the cache is written (never a second table of 100,000 positions during the load).
 */
interface NewEntry {
  role: FileRole;
  sha256: string;
  value: unknown;
  source: ConfigSource;
}

/** The JSON of a {@link NewEntry} as an {@link Entry}, in pieces: its value, and the positions of its source. */
function* newEntryPieces(e: NewEntry): Generator<string> {
  const v = e.value as { domains?: Record<string, unknown>; scan_keys?: unknown[] };
  yield `{"role":${JSON.stringify(e.role)},"sha256":${JSON.stringify(e.sha256)},"value":`;
  yield* jsonPieces(e.value);
  yield ',"domains":{';
  let first = true;
  for (const id of Object.keys(v.domains ?? {})) {
    const { line, col } = e.source.position(['domains', id], true);
    yield `${first ? '' : ','}${JSON.stringify(id)}:[${line},${col}]`;
    first = false;
  }
  const scans = (v.scan_keys ?? []).map((_, i) => {
    const { line, col } = e.source.position(['scan_keys', i]);
    return [line, col];
  });
  yield `},"scans":${JSON.stringify(scans)}}`;
}

/**
 * True when `value` survives JSON unchanged: strings, finite numbers,
 * booleans, null, arrays and plain objects (an undefined property is as
 * good as an absent one, which is how the loader reads them).
 */
export function isPlainJson(value: unknown, depth = 0): boolean {
  if (depth > 64) return false;
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value) && !Object.is(value, -0);
  if (Array.isArray(value)) return value.every((x) => x !== undefined && isPlainJson(x, depth + 1));
  if (typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  return Object.values(value).every((x) => x === undefined || isPlainJson(x, depth + 1));
}

function isEntry(e: unknown): e is Entry {
  const o = e as Partial<Entry> | null;
  return (
    o !== null &&
    typeof o === 'object' &&
    (o.role === 'main' || o.role === 'include') &&
    typeof o.sha256 === 'string' &&
    o.value !== null &&
    typeof o.value === 'object' &&
    o.domains !== null &&
    typeof o.domains === 'object' &&
    Array.isArray(o.scans)
  );
}

/** True when a cache file or folder is ours alone: owned by this user, not writable by group or others. */
function privateTo(mode: number, uid: number): boolean {
  const me = process.getuid?.();
  return (me === undefined || uid === me) && (mode & 0o022) === 0;
}

/**
 * What a whole load read: each file with the SHA-256 of its text, the files
 * each include folder listed, the digest of what each scan observed
 * (config/scan.ts scanWitness), and how many targets (the last ones) the
 * scans found.
 */
export interface LoadDeps {
  files: Array<[string, string]>;
  includeDirs: Array<[string, string[]]>;
  scans: string[];
  scanned: number;
}

/** Writes deferred by {@link ConfigCache.saveSoon}, by cache file. */
const pendingSaves = new Map<string, () => void>();

/** A whole load's result, with what it was made from. */
export interface CachedResult {
  cwd: string;
  deps: LoadDeps;
  config: LoadedConfig;
}

function isResult(r: unknown): r is CachedResult {
  const o = r as Partial<CachedResult> | null;
  const c = o?.config as Partial<LoadedConfig> | undefined;
  return (
    o !== null &&
    typeof o === 'object' &&
    typeof o.cwd === 'string' &&
    typeof o.deps === 'object' &&
    o.deps !== null &&
    Array.isArray(o.deps.files) &&
    o.deps.files.every((f) => Array.isArray(f) && typeof f[0] === 'string' && typeof f[1] === 'string') &&
    Array.isArray(o.deps.includeDirs) &&
    o.deps.includeDirs.every((d) => Array.isArray(d) && typeof d[0] === 'string' && Array.isArray(d[1])) &&
    Array.isArray(o.deps.scans) &&
    o.deps.scans.every((d) => typeof d === 'string') &&
    Number.isSafeInteger(o.deps.scanned) &&
    typeof c === 'object' &&
    c !== null &&
    typeof c.file === 'string' &&
    typeof c.settings === 'object' &&
    c.settings !== null &&
    Array.isArray(c.settings.caDirs) &&
    Array.isArray(c.targets) &&
    c.targets.every((t) => typeof t === 'object' && t !== null && typeof t.certPath === 'string') &&
    Array.isArray(c.scans) &&
    c.scans.every((x) => typeof x === 'object' && x !== null && typeof x.folder === 'string') &&
    o.deps.scans.length === c.scans.length &&
    o.deps.scanned >= 0 &&
    o.deps.scanned <= c.targets.length
  );
}

/**
 * The cache of one main configuration file, for one load. The file holds a
 * JSON header line (format, version, code fingerprint, SHA-256 of the rest),
 * a line with the files' entries and a line with the last whole result; each
 * line is parsed only when it is needed.
 */
export class ConfigCache {
  private readonly file: string;
  private filesText: string | undefined;
  private resultText: string | undefined;
  private entries: Map<string, Entry> | undefined;
  private readonly used = new Map<string, Entry | NewEntry>();
  private result: CachedResult | undefined;
  private dirty = false;
  /** What the current load read (load.ts records it). */
  readonly deps: LoadDeps = { files: [], includeDirs: [], scans: [], scanned: 0 };

  private constructor(
    private readonly dir: string,
    mainFile: string,
  ) {
    this.file = path.join(dir, `config-${contentHash(mainFile).slice(0, 32)}.json`);
    this.read();
  }

  /** The cache for `mainFile` (absolute) in `dir`. Never throws: an unusable cache is an empty one. */
  static open(dir: string, mainFile: string): ConfigCache {
    // a write still pending for this file (saveSoon) is made first, so this load sees it
    pendingSaves.get(path.join(dir, `config-${contentHash(mainFile).slice(0, 32)}.json`))?.();
    return new ConfigCache(dir, mainFile);
  }

  private read(): void {
    let fd: number | undefined;
    try {
      const dirStat = statSync(this.dir);
      if (!privateTo(dirStat.mode, dirStat.uid)) return;
      fd = openSync(this.file, 'r');
      const st = fstatSync(fd);
      if (!st.isFile() || !privateTo(st.mode, st.uid)) return;
      const data = readFileSync(fd);
      const nl = data.indexOf(0x0a);
      if (nl < 0) return;
      const header = JSON.parse(data.toString('utf8', 0, nl)) as Record<string, unknown> | null;
      if (
        header === null ||
        typeof header !== 'object' ||
        header.format !== FORMAT_NAME ||
        header.version !== FORMAT_VERSION ||
        header.code !== codeFingerprint()
      ) {
        return;
      }
      const body = data.subarray(nl + 1);
      if (header.sha256 !== contentHash(body)) return;
      const text = body.toString('utf8');
      const cut = text.indexOf('\n');
      if (cut < 0) return;
      this.filesText = text.slice(0, cut);
      this.resultText = text.slice(cut + 1);
    } catch {
      // no cache, or not one we can use
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  private fileEntries(): Map<string, Entry> {
    if (this.entries === undefined) {
      this.entries = new Map();
      try {
        const files = JSON.parse(this.filesText ?? 'null') as Record<string, unknown> | null;
        if (files !== null && typeof files === 'object') {
          for (const [file, entry] of Object.entries(files)) if (isEntry(entry)) this.entries.set(file, entry);
        }
      } catch {
        // an unusable line is an empty one
      }
    }
    return this.entries;
  }

  /** The cached entry for `file` with this text, if there is one. */
  get(file: string, role: FileRole, textHash: string): Entry | undefined {
    const e = this.fileEntries().get(file);
    if (e === undefined || e.role !== role || e.sha256 !== textHash) return undefined;
    stats.files++;
    this.used.set(file, e);
    return e;
  }

  /** Records a file that parsed and validated without a problem. */
  put(file: string, role: FileRole, textHash: string, value: unknown, source: ConfigSource): void {
    if (!isPlainJson(value)) return;
    this.used.set(file, { role, sha256: textHash, value, source });
    this.dirty = true;
  }

  /** The last whole result made in `cwd`, unchecked (load.ts checks that it still holds). */
  getResult(cwd: string): CachedResult | undefined {
    try {
      const r = JSON.parse(this.resultText ?? 'null') as unknown;
      return isResult(r) && r.cwd === cwd ? r : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records a whole result, made in `cwd` from what {@link deps} lists. */
  putResult(cwd: string, config: LoadedConfig): void {
    if (!isPlainJson(config)) return;
    this.result = { cwd, deps: this.deps, config };
    this.dirty = true;
  }

  /**
   * {@link save} at the next turn of the event loop, or at process exit if
   * that comes first: the write (a few MB of JSON for 10,000 domains) then
   * falls into a moment the main thread would wait anyway, not before the
   * first target is checked.
   */
  saveSoon(): void {
    if (!this.dirty) return;
    const save = (): void => {
      if (pendingSaves.get(this.file) !== save) return;
      pendingSaves.delete(this.file);
      process.removeListener('exit', save);
      this.save();
    };
    pendingSaves.get(this.file)?.();
    pendingSaves.set(this.file, save);
    process.once('exit', save);
    setImmediate(save).unref();
  }

  /**
   * Writes the entries of this load (and only those: files no longer read
   * are dropped) and its result, when anything is new. Failures are
   * ignored: the cache only saves time.
   */
  save(): void {
    if (!this.dirty) return;
    this.dirty = false;
    // written piece by piece, hashed as it goes: a 100,000-domain result is ~40 MB of JSON, and the file's
    // entry ~10 MB; never one string, nor all the pieces at once (config/config-cache.ts `jsonPieces`)
    const code = codeFingerprint();
    const header = (sha256: string): string =>
      `${JSON.stringify({ format: FORMAT_NAME, version: FORMAT_VERSION, code, sha256 })}\n`;
    // the SHA-256 is 43 characters of base64url whatever the body: the header's length is known before it
    const headerLength = Buffer.byteLength(header('x'.repeat(43)), 'utf8');
    const tmp = `${this.file}.tmp-${process.pid}-${Math.random().toString(16).slice(2, 10)}`;
    let fd: number | undefined;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      fd = openSync(tmp, 'wx', 0o600);
      const sha = createHash('sha256');
      let at = headerLength;
      const used = this.used;
      const result = this.result;
      function* body(): Generator<string> {
        yield '{';
        let first = true;
        for (const [file, e] of used) {
          yield `${first ? '' : ','}${JSON.stringify(file)}:`;
          first = false;
          yield* 'source' in e ? newEntryPieces(e) : jsonPieces(e);
        }
        yield '}\n';
        yield* resultPieces(result);
      }
      for (const piece of joinPieces(body())) {
        const data = Buffer.from(piece, 'utf8');
        sha.update(data);
        writeAllAt(fd, data, at);
        at += data.length;
      }
      const head = Buffer.from(header(sha.digest('base64url')), 'utf8');
      if (head.length !== headerLength) throw new Error('the header changed length');
      writeAllAt(fd, head, 0);
      closeSync(fd);
      fd = undefined;
      renameSync(tmp, this.file);
    } catch {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(tmp);
      } catch {
        // never created
      }
      return;
    }
    this.prune();
  }

  /** Removes other cache files not rewritten for {@link RETENTION_MS}, and temporary files left by a crash. */
  private prune(): void {
    try {
      const now = Date.now();
      for (const name of readdirSync(this.dir)) {
        if (!name.startsWith('config-')) continue;
        const p = path.join(this.dir, name);
        if (p === this.file) continue;
        const age = now - statSync(p).mtimeMs;
        if (age > RETENTION_MS || (name.includes('.tmp-') && age > 3_600_000)) unlinkSync(p);
      }
    } catch {
      // pruning is housekeeping
    }
  }
}

/** Writes all of `data` at `position` (a write may take less than it is given). */
function writeAllAt(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length;) done += writeSync(fd, data, done, data.length - done, position + done);
}

/** Entries of an object or array above which {@link jsonPieces} writes it entry by entry. */
const SPLIT_ENTRIES = 256;

/** Characters per piece written ({@link joinPieces}). */
const PIECE_CHARS = 256 * 1024;

/**
 * The JSON text of a plain JSON value ({@link isPlainJson}) as a sequence of
 * pieces, made one at a time: their concatenation is `JSON.stringify(value)`.
 * Objects and arrays with more than {@link SPLIT_ENTRIES} entries are
 * written entry by entry (each entry again by this rule), the rest whole.
 */
export function* jsonPieces(value: unknown): Generator<string> {
  if (value === null || typeof value !== 'object') {
    yield JSON.stringify(value);
    return;
  }
  if (Array.isArray(value)) {
    if (value.length <= SPLIT_ENTRIES) {
      yield JSON.stringify(value);
      return;
    }
    yield '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) yield ',';
      yield* jsonPieces(value[i]);
    }
    yield ']';
    return;
  }
  const keys = Object.keys(value);
  if (keys.length <= SPLIT_ENTRIES) {
    yield JSON.stringify(value);
    return;
  }
  yield '{';
  let first = true;
  for (const k of keys) {
    const v = (value as Record<string, unknown>)[k];
    if (v === undefined) continue; // as JSON.stringify
    yield `${first ? '' : ','}${JSON.stringify(k)}:`;
    first = false;
    yield* jsonPieces(v);
  }
  yield '}';
}

/** Pieces of text joined into pieces of about {@link PIECE_CHARS} characters (fewer, larger writes). */
function* joinPieces(pieces: Iterable<string>): Generator<string> {
  let held: string[] = [];
  let size = 0;
  for (const p of pieces) {
    held.push(p);
    size += p.length;
    if (size >= PIECE_CHARS) {
      yield held.join('');
      held = [];
      size = 0;
    }
  }
  if (held.length > 0) yield held.join('');
}

/**
 * The JSON of a whole result in pieces whose concatenation is
 * `JSON.stringify(result ?? null)` up to the order of the keys: the targets
 * go last, entry by entry.
 */
function* resultPieces(result: CachedResult | undefined): Generator<string> {
  if (result === undefined) {
    yield 'null';
    return;
  }
  const { targets, ...rest } = result.config;
  const head = JSON.stringify({ cwd: result.cwd, deps: result.deps, config: rest });
  // `head` ends with the two closing braces of `config` and of the result; `rest` is never empty (file, settings)
  yield `${head.slice(0, -2)},"targets":`;
  yield* jsonPieces(targets);
  yield '}}';
}

/** True for the signal of a cached source that needs the parser. */
export function needsParser(e: unknown): e is NeedsParser {
  return e instanceof NeedsParser;
}
