/**
 * The one format of staplekeeper's cache files: the verdict cache
 * (pipeline/verdict-cache.ts, `.staplekeeper-cache.json` in each staple
 * folder) and the discovery cache (discovery/ocsprenewer-cache.ts,
 * `.staplekeeper-discovery.json` in an output folder).
 *
 *     {"format":"<name>","version":<n>,"rules":"<fingerprint>","count":<lines>,"sha256":"<of the body>"}
 *     <entry line>
 *     <entry line>
 *     …
 *
 * The header names the format and its version, and carries a fingerprint of
 * the code whose rules the entries stand for (io/fingerprint.ts
 * `moduleFingerprint`): a file of another format, version or rule set, or
 * whose body does not match its SHA-256, is read as no file at all. Each
 * entry is one line of tab-separated fields, the cache's own; a cache whose
 * entries must not be forged by whoever can write the folder signs each line
 * with a {@link LineMac} under a per-host secret ({@link loadCacheSecret}).
 *
 * A cache file is best effort: read synchronously (small, local), replaced
 * atomically ({@link writeCacheFile}: written to a temporary file in the same
 * folder, flushed to disk, renamed over the old one); losing or damaging it
 * costs speed, never a decision.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { contentHash } from './fingerprint.js';
import { TEMP_MARKER } from './store.js';

/** What a cache file's header must say for its entries to be read. */
export interface CacheFileFormat {
  /** The format's name (`staplekeeper-cache`, `staplekeeper-discovery`). */
  name: string;
  /** Bumped on any change of the entry layout. */
  version: number;
  /** The fingerprint of the rules the entries stand for (computed once by the caller). */
  rules: string;
}

/** The largest cache file read (a 100,000-staple folder's is ~40 MiB). */
const MAX_CACHE_FILE = 256 * 1024 * 1024;

/** Reads a cache file synchronously, or undefined when it cannot be read as a regular file of at most `maxBytes`. */
export function readCacheFileSync(path: string, maxBytes = MAX_CACHE_FILE): Buffer | undefined {
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

/**
 * The body of a cache file (the entry lines, as text) when its header matches
 * `format` and its checksum matches; undefined otherwise.
 */
export function decodeCacheFile(format: CacheFileFormat, data: Buffer): string | undefined {
  try {
    const nl = data.indexOf(0x0a);
    if (nl < 0) return undefined;
    const header = JSON.parse(data.toString('utf8', 0, nl)) as Record<string, unknown> | null;
    if (
      header === null ||
      typeof header !== 'object' ||
      header.format !== format.name ||
      header.version !== format.version ||
      header.rules !== format.rules
    ) {
      return undefined;
    }
    const body = data.subarray(nl + 1);
    if (header.sha256 !== contentHash(body)) return undefined;
    return body.toString('utf8');
  } catch {
    return undefined;
  }
}

/** The header line of a cache file of `format` with `count` entry lines whose body has SHA-256 `sha256` (base64url). */
function headerLine(format: CacheFileFormat, count: number, sha256: string): string {
  return `${JSON.stringify({ format: format.name, version: format.version, rules: format.rules, count, sha256 })}\n`;
}

/** A cache file of `format` holding `lines` (each without its newline). */
export function encodeCacheFile(format: CacheFileFormat, lines: readonly string[]): Buffer {
  const body = Buffer.from(lines.length === 0 ? '' : `${lines.join('\n')}\n`, 'utf8');
  return Buffer.concat([Buffer.from(headerLine(format, lines.length, contentHash(body)), 'utf8'), body]);
}

/**
 * The entry lines of a cache file, produced piece by piece: `count` lines in
 * all, each piece a list of lines (each without its newline). A 100,000-line
 * file (~40 MiB) is never one string or one buffer: each piece is made,
 * hashed and written, then dropped.
 */
export interface CacheFileLines {
  count: number;
  pieces: Iterable<readonly string[]>;
}

/** Writes all of `data` at `position` (a write may take less than it is given). */
function writeAllAt(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length;) done += writeSync(fd, data, done, data.length - done, position + done);
}

/**
 * Replaces the cache file at `path`, best effort, atomically and durably: the
 * lines are written to a temporary file in the same folder (named with
 * io/store.ts `TEMP_MARKER` and this process's id, so that a run after a
 * crash removes it), the header last at the start of the file (its length is
 * known before the body's checksum is: the checksum has a fixed length), the
 * file is flushed to disk (`fsync`) and renamed over the old one. Until the
 * rename, the old file is untouched: a crash or an error at any point before
 * it leaves the old file as it was. The bytes are exactly
 * {@link encodeCacheFile}'s for the same lines.
 *
 * @returns false when it could not be written (the old file is then kept).
 */
export function writeCacheFile(
  path: string,
  format: CacheFileFormat,
  lines: readonly string[] | CacheFileLines,
  mode = 0o644,
): boolean {
  const { count, pieces } = Array.isArray(lines)
    ? { count: lines.length, pieces: [lines as readonly string[]] }
    : (lines as CacheFileLines);
  const tmp = join(dirname(path), `.${basename(path)}${TEMP_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', mode);
    // the checksum is 43 characters of base64url whatever the body: the header's length is known now
    const headerLength = Buffer.byteLength(headerLine(format, count, 'x'.repeat(43)), 'utf8');
    const sha = createHash('sha256');
    let at = headerLength;
    let written = 0;
    for (const piece of pieces) {
      if (piece.length === 0) continue;
      written += piece.length;
      const data = Buffer.from(`${piece.join('\n')}\n`, 'utf8');
      sha.update(data);
      writeAllAt(fd, data, at);
      at += data.length;
    }
    if (written !== count) throw new Error(`${written} lines written, ${count} announced`);
    const header = Buffer.from(headerLine(format, count, sha.digest('base64url')), 'utf8');
    if (header.length !== headerLength) throw new Error('the header changed length');
    writeAllAt(fd, header, 0);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
    return true;
  } catch {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      // never created
    }
    return false;
  }
}

/**
 * An HMAC-SHA256 over each entry line, appended as its last tab-separated
 * field. `domain` separates the MACs of different caches under one secret.
 */
export class LineMac {
  private readonly key: Buffer;
  private readonly domain: string;

  constructor(key: Buffer, domain: string) {
    this.key = key;
    this.domain = domain;
  }

  private mac(body: string): string {
    return createHmac('sha256', this.key).update(`${this.domain}\0`).update(body).digest('base64url');
  }

  /** The line: `body`, a tab, its MAC. */
  sign(body: string): string {
    return `${body}\t${this.mac(body)}`;
  }

  /** True when the last field of `line` is the MAC of the rest. */
  verify(line: string): boolean {
    const tab = line.lastIndexOf('\t');
    if (tab < 0) return false;
    const want = Buffer.from(this.mac(line.slice(0, tab)));
    const got = Buffer.from(line.slice(tab + 1));
    return got.length === want.length && timingSafeEqual(got, want);
  }
}

const SECRET_BYTES = 32;

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

/**
 * The per-host secret `<dir>/<fileName>`: 32 random bytes, mode 0600, owned
 * by this user, created on first use (folder mode 0700). null when it cannot
 * be read or created, or when it is readable by others: the caller then does
 * without the signed cache (correct, only slower).
 */
export function loadCacheSecret(dir: string | undefined, fileName: string): Buffer | null {
  if (dir === undefined) return null;
  const path = join(dir, fileName);
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
