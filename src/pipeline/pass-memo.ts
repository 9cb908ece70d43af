/**
 * What one pass over many certificates shares: chain files read and parsed
 * once, and the certificates included in responses parsed once. Thousands of
 * certificates usually share one chain file and one delegated responder
 * certificate; because the same {@link Certificate} objects come back, so do
 * their public keys and CertID hashes (core/certs.ts `CertificateMemo`).
 *
 * Scope: one pass. `run` makes one per run; the daemon keeps one whose
 * tables are dropped whenever the engine goes idle (no certificate in
 * progress), so a chain file changed between two bursts of work is read
 * again. Without one (a library caller of processTarget), every certificate
 * reads and parses its own files: same answers, more work.
 *
 * A pass may start knowing the content hashes of certificate files that the
 * same process read just before it (the ocsprenewer drop-in's discovery,
 * `RunOptions.certHashes`): the staple-folder cache is then looked up with
 * them instead of reading and hashing each file a second time
 * (pipeline/sources.ts `knownSourcesKey`). They are the hashes of
 * bytes read in this pass, made by the same function (io/fingerprint.ts
 * `contentHash`) the engine uses, and are dropped with the other tables.
 */
import { loadCertificates, parseCertificate, type Certificate } from '../core/certs.js';
import { readRegularFileViewSync } from '../io/files.js';
import { contentHash } from '../io/fingerprint.js';

/** A file read for a target, with its content hash. */
export interface SourceFile {
  bytes: Buffer;
  hash: string;
}

/** Per-pass tables of shared reads and parses (see the module doc). */
export class PassMemo {
  /** Bounds of the tables (each is emptied when full). */
  private static readonly limits = { sharedReads: 4096, parsedLists: 256, includedCerts: 256 };
  /** Issuer, chain and root-chain files by path, read and hashed once. */
  private readonly sharedReads = new Map<string, SourceFile>();
  /**
   * The distinct contents of shared files read in this pass, most recently
   * used first (at most {@link PassMemo.recentLimit}): a file whose bytes
   * equal one of them gets that one (same bytes, so the same hash) without a
   * copy or a hash of its own.
   */
  private recentContents: SourceFile[] = [];
  private static readonly recentLimit = 16;
  /** Parsed certificate files by content hash. */
  private readonly parsedLists = new Map<string, Certificate[]>();
  /** Certificates included in responses, parsed, by content hash (null: unparseable). */
  private readonly includedCerts = new Map<string, Certificate | null>();
  /** The last included certificate parsed: a pass's responses usually all carry the same one. */
  private lastIncluded: { der: Buffer; cert: Certificate | null } | undefined;
  /** Certificate files read just before this pass, by path: the content hash of the bytes read. */
  private certHashes: ReadonlyMap<string, string> | undefined;
  private active = 0;
  private idleScheduled = false;
  private readonly onIdle: (() => void) | undefined;

  /**
   * `onIdle`: called when the engine goes idle, after the tables are dropped (the daemon flushes its verdict cache).
   * `certHashes`: certificate files this process read just before the pass, path → `contentHash` of the bytes
   * read (see the module doc); never give hashes of an earlier pass.
   */
  constructor(options: { onIdle?: () => void; certHashes?: ReadonlyMap<string, string> } = {}) {
    this.onIdle = options.onIdle;
    this.certHashes = options.certHashes;
  }

  /** The content hash of a certificate file read just before this pass, if it was given. */
  knownCertHash(path: string): string | undefined {
    return this.certHashes?.get(path);
  }

  /**
   * A shared file read synchronously (once per pass), or undefined when it
   * cannot be read that way. Every path is read (a path already read in this
   * pass is not read again); when the bytes read equal those of a content
   * read earlier in the pass (ocspbot's layout has a `<d>-chain.pem` and a
   * `<d>-rootchain.pem` per certificate, usually copies of one or two files),
   * that content's object is returned: equal bytes, and the hash of equal
   * bytes, so nothing that uses them can tell the difference, while the read
   * costs no copy and no hash.
   */
  readShared(path: string): SourceFile | undefined {
    let f = this.sharedReads.get(path);
    if (f === undefined) {
      const view = readRegularFileViewSync(path);
      if (view === undefined) return undefined;
      f = this.content(view);
      if (this.sharedReads.size >= PassMemo.limits.sharedReads) this.sharedReads.clear();
      this.sharedReads.set(path, f);
    }
    return f;
  }

  /** The content object for `view`'s bytes: a recent one with equal bytes, else a copy and its hash. */
  private content(view: Buffer): SourceFile {
    const recent = this.recentContents;
    for (let i = 0; i < recent.length; i++) {
      const r = recent[i] as SourceFile;
      if (r.bytes.length === view.length && r.bytes.equals(view)) {
        if (i > 0) {
          recent.splice(i, 1);
          recent.unshift(r);
        }
        return r;
      }
    }
    const bytes = Buffer.from(view);
    const f = { bytes, hash: contentHash(bytes) };
    recent.unshift(f);
    if (recent.length > PassMemo.recentLimit) recent.pop();
    return f;
  }

  /** The certificates of a file with content hash `hash` (parsed once per pass). */
  certificates(data: Buffer, hash: string, name: string): Certificate[] {
    let list = this.parsedLists.get(hash);
    if (list === undefined) {
      list = loadCertificates(data, name);
      if (this.parsedLists.size >= PassMemo.limits.parsedLists) this.parsedLists.clear();
      this.parsedLists.set(hash, list);
    }
    return list;
  }

  /** A certificate included in a response, parsed once per pass; undefined when it does not parse. */
  included(der: Buffer): Certificate | undefined {
    const last = this.lastIncluded;
    if (last !== undefined && last.der.equals(der)) return last.cert ?? undefined;
    const key = contentHash(der);
    let c = this.includedCerts.get(key);
    if (c === undefined) {
      c = parseIncludedCert(der) ?? null;
      if (this.includedCerts.size >= PassMemo.limits.includedCerts) this.includedCerts.clear();
      this.includedCerts.set(key, c);
    }
    this.lastIncluded = { der: Buffer.from(der), cert: c };
    return c ?? undefined;
  }

  /** Drops every table. */
  clear(): void {
    this.sharedReads.clear();
    this.recentContents = [];
    this.parsedLists.clear();
    this.includedCerts.clear();
    this.lastIncluded = undefined;
    this.certHashes = undefined;
  }

  /** Marks the start of one certificate's work. */
  begin(): void {
    this.active++;
  }

  /**
   * Marks the end of one certificate's work. When nothing is left running
   * (checked again on the next turn of the event loop, so a worker that
   * immediately starts its next certificate does not count as idle), the
   * tables are dropped and `onIdle` is called.
   */
  end(): void {
    this.active--;
    if (this.active === 0 && !this.idleScheduled) {
      this.idleScheduled = true;
      setImmediate(() => {
        this.idleScheduled = false;
        if (this.active > 0) return;
        this.clear();
        this.onIdle?.();
      }).unref();
    }
  }
}

/** Parses an included certificate; undefined when it does not parse (verifyResponse ignores such a certificate too). */
export function parseIncludedCert(der: Buffer): Certificate | undefined {
  try {
    return parseCertificate(der);
  } catch {
    return undefined;
  }
}
