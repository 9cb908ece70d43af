/**
 * The discovery cache of the ocsprenewer drop-in: which certificate files are
 * already known to hold a certificate that names an OCSP responder, so that a
 * `-dirs` scan of 10,000 bundles need not parse every one of them before the
 * staple-folder cache (pipeline/verdict-cache.ts) can help.
 *
 * One file per output folder, `.staplekeeper-discovery.json`, one line per
 * certificate file content:
 *
 *     <SHA-256 of the file's bytes> TAB <SHA-256 of the leaf's DER> TAB <day last used>
 *
 * Why it never changes a decision:
 * - It is keyed by the SHA-256 of the bytes read *now*; nothing is trusted
 *   from a name, a size or a modification time. A file replaced in place
 *   misses like any other change.
 * - Only what discovery decides from the bytes alone is recorded, and only
 *   the outcome "parsed, has a leaf, and the leaf names an OCSP responder":
 *   a file that fails to parse or names no responder is never recorded, so
 *   its problem (or its quiet skip) always comes from a full parse, word for
 *   word. The leaf's DER hash stands in for the DER when two files share one
 *   staple name (the same certificate in `x.crt` and `x.pem` is renewed once).
 * - The file carries a format version, a fingerprint of the parsing and
 *   discovery code and a SHA-256 of its body (the cache-file format of
 *   io/cache-file.ts); anything that does not match is ignored as a whole, a
 *   malformed line alone.
 *
 * Like the staple-folder cache, it is as trustworthy as the output folder:
 * whoever can write it can write the staples. It is written atomically
 * (temporary file and rename), never in `-not-really` mode, and only once a
 * discovery has looked at least {@link MIN_FILES_FOR_NEW_CACHE} files up (a
 * single certificate leaves nothing behind).
 */
import { join } from 'node:path';
import { decodeCacheFile, readCacheFileSync, writeCacheFile, type CacheFileFormat } from '../io/cache-file.js';
import { moduleFingerprint } from '../io/fingerprint.js';

/** The file name, in the output folder. */
export const DISCOVERY_CACHE_FILE = '.staplekeeper-discovery.json';
const FORMAT_NAME = 'staplekeeper-discovery';
const FORMAT_VERSION = 1;
/** A folder gets a new cache file only when a discovery looked up at least this many files. */
export const MIN_FILES_FOR_NEW_CACHE = 8;
/** Entries not used for this many days are dropped. */
const RETENTION_DAYS = 30;

/** The modules whose rules a recorded outcome stands for: certificate parsing, leaf choice, discovery. */
const RULE_MODULES = ['../core/der', '../core/certs', '../pipeline/issuer', './ocsprenewer', './ocsprenewer-cache'];
/** The header its file must carry (io/cache-file.ts); the rules fingerprint is computed once per cache object. */
function fileFormat(): CacheFileFormat {
  return {
    name: FORMAT_NAME,
    version: FORMAT_VERSION,
    rules: moduleFingerprint(`${FORMAT_NAME}/${FORMAT_VERSION}`, import.meta.url, RULE_MODULES),
  };
}

function today(): number {
  // housekeeping only (retention); no decision uses this clock
  return Math.floor(Date.now() / 86_400_000);
}

/** The start of a well-formed entry line: two SHA-256 hashes (base64url), each followed by a tab. */
const ENTRY_START = /^[A-Za-z0-9_-]{43}\t[A-Za-z0-9_-]{43}\t/;

/** The discovery cache of one output folder. */
export class DiscoveryCache {
  readonly path: string;
  /** leaf DER hash and day last used, by file content hash. */
  private entries = new Map<string, { leaf: string; seen: number }>();
  private loaded = false;
  private existed = false;
  private dirty = false;
  private lookups = 0;
  private format: CacheFileFormat | undefined;

  constructor(dir: string) {
    this.path = join(dir, DISCOVERY_CACHE_FILE);
  }

  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    const data = readCacheFileSync(this.path);
    if (data === undefined) return;
    this.existed = true;
    this.format ??= fileFormat();
    const body = decodeCacheFile(this.format, data);
    if (body === undefined) return;
    // each line `<file hash>\t<leaf hash>\t<day>[\t…]`: one test of both hashes and their tabs, then slices
    for (let p = 0; p < body.length;) {
      let e = body.indexOf('\n', p);
      if (e < 0) e = body.length;
      const line = body.slice(p, e);
      p = e + 1;
      if (!ENTRY_START.test(line)) continue;
      const tab = line.indexOf('\t', 88);
      const day = Number(tab < 0 ? line.slice(88) : line.slice(88, tab));
      if (!Number.isInteger(day)) continue;
      this.entries.set(line.slice(0, 43), { leaf: line.slice(44, 87), seen: day });
    }
  }

  /** Reads the file now if it was not read yet, so that later lookups do no I/O. */
  open(): this {
    this.load();
    return this;
  }

  /** The leaf DER hash recorded for a certificate file with exactly these contents' hash, if any. */
  get(fileHash: string): string | undefined {
    this.load();
    this.lookups++;
    const e = this.entries.get(fileHash);
    if (e === undefined) return undefined;
    const d = today();
    if (e.seen < d) {
      e.seen = d;
      this.dirty = true;
    }
    return e.leaf;
  }

  /** Records that a file with this content hash parsed, and its leaf (of this DER hash) names an OCSP responder. */
  set(fileHash: string, leafHash: string): void {
    this.load();
    this.entries.set(fileHash, { leaf: leafHash, seen: today() });
    this.dirty = true;
  }

  /** Number of entries held. */
  get size(): number {
    this.load();
    return this.entries.size;
  }

  /** Writes the file when something changed (and it exists or enough was looked up). Never throws. */
  flush(): boolean {
    if (!this.dirty) return false;
    if (!this.existed && this.lookups < MIN_FILES_FOR_NEW_CACHE) return false;
    const oldest = today() - RETENTION_DAYS;
    const lines: string[] = [];
    for (const [file, e] of this.entries) if (e.seen >= oldest) lines.push(`${file}\t${e.leaf}\t${e.seen}`);
    this.format ??= fileFormat();
    if (!writeCacheFile(this.path, this.format, lines)) return false;
    this.dirty = false;
    this.existed = true;
    return true;
  }
}

const caches = new Map<string, DiscoveryCache>();

/** The discovery cache of an output folder (one per folder and process). */
export function discoveryCacheFor(outDir: string): DiscoveryCache {
  let c = caches.get(outDir);
  if (c === undefined) {
    c = new DiscoveryCache(outDir);
    caches.set(outDir, c);
  }
  return c;
}

/** Forgets every in-memory discovery cache (tests: "as if the process restarted"). */
export function resetDiscoveryCaches(): void {
  caches.clear();
}
