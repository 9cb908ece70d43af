/**
 * The rules of ocsprenewer (docs/migrating.md), so that its command line can
 * run on staplekeeper's engine unchanged: which files are certificates, where
 * their staples go, which are skipped, and the T1 refresh ratio.
 *
 * - Arguments are certificate files, or with `-dirs` folders whose files
 *   ending in one of `-cert-extensions` (default `.crt .cert .pem`) are
 *   certificates (ocsprenewer globs `<dir>/*<ext>`, no recursion).
 * - `*.issuer.crt` files are the issuers of their neighbours, not
 *   certificates to renew; beyond ocsprenewer, `<stem>.issuer.crt` beside a
 *   certificate is used as its chain file, and the core's issuer discovery
 *   (the rest of the same PEM file first, then AIA caIssuers) does the rest,
 *   where ocsprenewer stopped with `UNIMPLEMENTED findIssuer`.
 * - `<certificate file>.noocsp` skips that certificate.
 * - A certificate without an OCSP URL is an error, except in a folder scan
 *   with `-allow-nonocsp-in-dir`, where it is skipped quietly (private CAs
 *   issue such certificates, and since 2025 Let's Encrypt does too, §7).
 * - The staple is `<out-dir>/<file name without its certificate
 *   extension><extension>`; like ocsprenewer, each extension of the list that
 *   the name ends with is cut in list order. An empty `-cert-extensions`
 *   cuts nothing (`x.crt` → `x.crt.ocsp`), while a folder scan then looks
 *   for `*.crt`, both as ocsprenewer does.
 * - One certificate reached twice (the same file or folder given twice, or
 *   `x.crt` and `x.pem` holding the same certificate) is renewed once, as
 *   ocsprenewer renews it without complaint; two DIFFERENT certificates
 *   whose staples would have one name are an error.
 * - A folder in which no certificate is left to try (every one flagged
 *   `.noocsp`, or only `*.issuer.crt` files) is a failure, as in
 *   ocsprenewer ("no certificate files found in a directory").
 * - `-timer-t1` is a ratio of the response's producedAt..nextUpdate window
 *   (0.10–0.95), or a percentage (1–100); refresh at
 *   `producedAt + (nextUpdate - producedAt) × T1` (§4).
 */
import type { Dirent } from 'node:fs';
import { access, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { defineConfig, defineSettings } from '../config/index.js';
import type { LoadedConfig, Settings, TargetConfig } from '../config/types.js';
import { loadCertificates } from '../core/certs.js';
import { StapleError, toStapleError } from '../core/errors.js';
import { contentHash } from '../io/fingerprint.js';
import { readInputFile, readRegularFileViewSync } from '../io/files.js';
import type { DaemonSource, DiscoveryProblem, WatchDir } from '../daemon/daemon.js';
import { discoveryCacheFor } from './ocsprenewer-cache.js';
import { pickLeaf } from '../pipeline/issuer.js';

/** ocsprenewer's flag defaults. */
export const RENEWER_DEFAULTS = {
  outDir: './',
  extension: '.ocsp',
  certExtensions: '.crt .cert .pem',
  timerT1: 0.5,
} as const;

/** The suffix of a flag file that skips a certificate. */
export const NOOCSP_SUFFIX = '.noocsp';

/** What an ocsprenewer invocation asks for, resolved. */
export interface RenewerSettings {
  /** Certificate files, or folders with {@link RenewerSettings.dirs}; absolute. */
  paths: string[];
  dirs: boolean;
  /** Absolute output folder. */
  outDir: string;
  extension: string;
  /**
   * `-cert-extensions` split on white space, as given: cut from file names
   * for the staple name (none when the flag is empty). A folder scan takes
   * {@link scanExtensions} of it.
   */
  certExtensions: string[];
  /** T1 as a ratio (0.10–0.95). */
  timerT1: number;
  allowNonOcspInDir: boolean;
  /** `-http HOST:PORT`: the status service in persist mode. */
  statusListen?: string;
  /**
   * The discovery cache of the output folder (discovery/ocsprenewer-cache.ts):
   * `read` uses it, `write` also records what was parsed and writes the file
   * (never in `-not-really` mode). Off unless asked, as every library cache.
   */
  discoveryCache?: 'read' | 'write';
}

/** A certificate left out on purpose, for `-verbose`. */
export interface SkippedCert {
  path: string;
  reason: string;
}

/** What a scan of the arguments found. */
export interface RenewerDiscovery {
  targets: TargetConfig[];
  problems: DiscoveryProblem[];
  skipped: SkippedCert[];
  /**
   * Every certificate file this discovery read, by path: the content hash
   * (io/fingerprint.ts `contentHash`) of the bytes it read. A run that starts
   * right after it in the same process may look its staples up by them
   * instead of reading the files again (`RunOptions.certHashes`); they are
   * never kept for a later run.
   */
  certHashes: Map<string, string>;
}

/**
 * Turns a `-timer-t1` value into a ratio: 1–100 is a percentage (as
 * ocsprenewer reads it), and the ratio must lie in 0.10–0.95.
 *
 * @throws StapleError `BAD_ARGUMENTS` with ocsprenewer's wording.
 */
export function normaliseTimerT1(value: number): number {
  // Go's flag package takes "inf" and "nan": an infinity is simply out of range, as in ocsprenewer;
  // NaN has no refresh point at all (ocsprenewer's timers then fire at every check), so it is refused
  if (Number.isNaN(value)) throw new StapleError('BAD_ARGUMENTS', `timer T1 must be a number, got ${value}`);
  const ratio = value >= 1 && value <= 100 ? value / 100 : value;
  if (ratio < 0.1) throw new StapleError('BAD_ARGUMENTS', `timer T1 set too small (10% minimum): ${value}`);
  if (ratio > 0.95) throw new StapleError('BAD_ARGUMENTS', `timer T1 set too large (95% maximum): ${value}`);
  return ratio;
}

/** Splits `-cert-extensions` on white space, as ocsprenewer does (an empty flag gives an empty list). */
export function parseCertExtensions(list: string): string[] {
  return list.split(/\s+/).filter((e) => e.length > 0);
}

/** The extensions a folder scan looks for: `-cert-extensions`, or `.crt` when it is empty (as in ocsprenewer). */
export function scanExtensions(certExtensions: readonly string[]): readonly string[] {
  return certExtensions.length > 0 ? certExtensions : ['.crt'];
}

/** The file name without its certificate extension(s), cut in list order as ocsprenewer does. */
export function certStem(certPath: string, certExtensions: readonly string[]): string {
  let name = path.basename(certPath);
  for (const ext of certExtensions) if (name.endsWith(ext)) name = name.slice(0, name.length - ext.length);
  return name;
}

/**
 * The staple path of a certificate: `<out-dir>/<stem><extension>`.
 *
 * @throws StapleError `BAD_ARGUMENTS` when the stem is empty (a file named just `.crt`).
 */
export function stapleNameFor(
  certPath: string,
  s: Pick<RenewerSettings, 'outDir' | 'extension' | 'certExtensions'>,
): string {
  const stem = certStem(certPath, s.certExtensions);
  if (stem.length === 0)
    throw new StapleError('BAD_ARGUMENTS', `${certPath}: derived an empty file name for the staple`);
  return path.join(s.outDir, `${stem}${s.extension}`);
}

/** True for `*.issuer.crt` (and `.issuer` before any other certificate extension): an issuer, not a certificate to renew. */
export function isIssuerFile(name: string, certExtensions: readonly string[]): boolean {
  return scanExtensions(certExtensions).some((ext) => name.endsWith(`.issuer${ext}`)) || name.endsWith('.issuer.crt');
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/** A value now or later: the discovery of 10,000 files answers almost everything now, without a promise each. */
type Maybe<T> = T | Promise<T>;

/** `f(x)`, now when `x` is a value, else once the promise settles. */
function after<T, R>(x: Maybe<T>, f: (v: T) => Maybe<R>): Maybe<R> {
  return x instanceof Promise ? x.then(f) : f(x);
}

/**
 * `path.join(dir, name)` for a file name (no `/`, neither `.` nor `..`, not
 * empty), as a prefix to concatenate: `path.join` normalises its whole
 * argument each time (~600 bytes of garbage per call), while for such a name
 * the result is always the joined folder, a separator, and the name.
 */
class Joiner {
  private readonly prefix: string;
  constructor(dir: string) {
    const x = path.join(dir, 'x');
    this.prefix = x.slice(0, x.length - 1);
  }
  join(name: string): string {
    return isPlainName(name) ? this.prefix + name : path.join(this.prefix, name);
  }
  /** The name of `p` when `p` is this folder's prefix followed by a plain name, else undefined. */
  nameOf(p: string): string | undefined {
    if (!p.startsWith(this.prefix)) return undefined;
    const name = p.slice(this.prefix.length);
    return isPlainName(name) ? name : undefined;
  }
}

function isPlainName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && !name.includes('/');
}

/**
 * A folder's listing, to answer "is this a regular file?" for its entries
 * without a `stat` each (30,000 of them for 10,000 certificates): a name the
 * listing calls a regular file is one, a name it does not hold is not, and a
 * link (or an entry of unknown type) is asked with `stat`, exactly as
 * {@link isFile} would. The answers from the listing come now, not as promises.
 */
class Listing {
  private readonly types = new Map<string, 'file' | 'ask' | 'other'>();
  readonly paths: Joiner;
  constructor(folder: string, entries: readonly Dirent[]) {
    this.paths = new Joiner(folder);
    for (const e of entries) {
      this.types.set(
        e.name,
        e.isFile() ? 'file' : e.isSymbolicLink() || e.isDirectory() === e.isFile() ? 'ask' : 'other',
      );
    }
  }
  isFile(p: string): Maybe<boolean> {
    const name = this.paths.nameOf(p);
    if (name === undefined) return isFile(p);
    const t = this.types.get(name);
    if (t === undefined || t === 'other') return false;
    return t === 'file' || isFile(p);
  }
}

/** What a discovery computes once from its settings. */
interface Rules {
  /** Issuer-file name endings ({@link isIssuerFile}). */
  issuerSuffixes: string[];
  /** The extensions tried for `<stem>.issuer<ext>`, in order. */
  issuerExts: string[];
  /** The output folder, to join staple names to. */
  out: Joiner;
}

function rulesOf(s: RenewerSettings): Rules {
  return {
    issuerSuffixes: [...scanExtensions(s.certExtensions).map((ext) => `.issuer${ext}`), '.issuer.crt'],
    issuerExts: [...new Set(['.crt', ...s.certExtensions])],
    out: new Joiner(s.outDir),
  };
}

/** {@link stapleNameFor} with the output folder's prefix. */
function stapleName(certPath: string, s: RenewerSettings, rules: Rules): string {
  const stem = certStem(certPath, s.certExtensions);
  if (stem.length === 0)
    throw new StapleError('BAD_ARGUMENTS', `${certPath}: derived an empty file name for the staple`);
  return rules.out.join(`${stem}${s.extension}`);
}

function issuerFileFor(
  certPath: string,
  s: RenewerSettings,
  rules: Rules,
  is: (p: string) => Maybe<boolean>,
  paths: Joiner | undefined,
): Maybe<string | undefined> {
  const dir = paths ?? new Joiner(path.dirname(certPath));
  const stem = certStem(certPath, scanExtensions(s.certExtensions));
  const tryFrom = (i: number): Maybe<string | undefined> => {
    for (; i < rules.issuerExts.length; i++) {
      const candidate = dir.join(`${stem}.issuer${rules.issuerExts[i] as string}`);
      if (candidate === certPath) continue;
      const found = is(candidate);
      if (found === true) return candidate;
      if (found !== false) {
        const next = i + 1;
        return found.then((yes) => (yes ? candidate : tryFrom(next)));
      }
    }
    return undefined;
  };
  return tryFrom(0);
}

/** What discovery needs of a certificate file: its leaf's DER hash, or why it is left out. */
type LeafFacts =
  { ok: true; leafHash: string } | { ok: false; subject: string } | { ok: false; error: unknown; subject?: undefined };

/**
 * Reads a certificate file and finds its leaf: from the discovery cache when
 * it holds the hash of exactly these bytes, else by parsing (and then
 * recorded when the leaf names a responder; nothing else is ever recorded).
 */
function leafFacts(certPath: string, s: RenewerSettings, hashes: Map<string, string>): Maybe<LeafFacts> {
  // read before the certificate file, so that nothing between the read and the copy below reads a file
  const cache = s.discoveryCache === undefined ? undefined : discoveryCacheFor(s.outDir).open();
  // a view of the fast read's buffer (no copy): hashed here, and copied only when it must be parsed
  const view = readRegularFileViewSync(certPath);
  if (view !== undefined) return factsOf(view, true);
  return readInputFile(certPath, 'certificate').then(
    (bytes) => factsOf(bytes, false),
    (e: unknown): LeafFacts => ({ ok: false, error: e }),
  );

  function factsOf(bytes: Buffer, isView: boolean): LeafFacts {
    const fileHash = contentHash(bytes);
    hashes.set(certPath, fileHash);
    const known = cache?.get(fileHash);
    if (known !== undefined) return { ok: true, leafHash: known };
    let leaf;
    try {
      leaf = pickLeaf(loadCertificates(isView ? Buffer.from(bytes) : bytes, certPath)).leaf;
    } catch (e) {
      return { ok: false, error: e };
    }
    if (leaf.ocspUrls.length === 0) return { ok: false, subject: leaf.subject };
    const leafHash = contentHash(leaf.der);
    if (s.discoveryCache === 'write') cache?.set(fileHash, leafHash);
    return { ok: true, leafHash };
  }
}

/**
 * Finds the certificates the arguments name, by ocsprenewer's rules (see the
 * module comment). Never throws: everything wrong is a problem (an error for
 * the exit code and the log), everything left out on purpose is in `skipped`.
 *
 * Certificates are considered one after the other, each completely before
 * the next (the order of `targets`, `problems` and `skipped` is the order of
 * the arguments and of each folder's sorted listing); what can be answered
 * at once (a listing's entry, a file read synchronously) is, without a
 * promise per step.
 */
export async function discoverRenewerTargets(s: RenewerSettings): Promise<RenewerDiscovery> {
  const out: RenewerDiscovery = { targets: [], problems: [], skipped: [], certHashes: new Map() };
  /** The first certificate of each staple path: its file and the SHA-256 of its leaf's DER. */
  const byStaple = new Map<string, { certPath: string; leafHash: string }>();
  const rules = rulesOf(s);

  const problem = (certPath: string, e: unknown): true => {
    const err = toStapleError(e, 'NOT_A_CERTIFICATE');
    out.problems.push({
      path: certPath,
      code: err.code,
      message: err.message.startsWith(certPath) ? err.message : `${certPath}: ${err.message}`,
    });
    return true;
  };

  /** True when the certificate was tried (ocsprenewer's count: not skipped by a flag file). */
  const consider = (certPath: string, inDir: boolean, listing?: Listing): Maybe<boolean> => {
    const is = listing ? (p: string): Maybe<boolean> => listing.isFile(p) : isFile;
    return after(is(`${certPath}${NOOCSP_SUFFIX}`), (flagged): Maybe<boolean> => {
      if (flagged) {
        out.skipped.push({
          path: certPath,
          reason: `a ${path.basename(certPath)}${NOOCSP_SUFFIX} flag file is present`,
        });
        return false;
      }
      let staplePath: string;
      try {
        staplePath = stapleName(certPath, s, rules);
      } catch (e) {
        return problem(certPath, e);
      }
      if (byStaple.get(staplePath)?.certPath === certPath) {
        // the same file named twice (or its folder given twice): one certificate, renewed once
        out.skipped.push({ path: certPath, reason: 'named more than once; renewed once' });
        return true;
      }
      return after(leafFacts(certPath, s, out.certHashes), (facts): Maybe<boolean> => {
        if (!facts.ok) {
          if (facts.subject === undefined) return problem(certPath, facts.error);
          if (inDir && s.allowNonOcspInDir) {
            out.skipped.push({
              path: certPath,
              reason: 'the certificate names no OCSP responder (-allow-nonocsp-in-dir)',
            });
            return true;
          }
          out.problems.push({
            path: certPath,
            code: 'NO_OCSP_URL',
            message: `${certPath}: the certificate "${facts.subject}" names no OCSP responder${inDir ? ' (use -allow-nonocsp-in-dir to skip such certificates)' : ''}`,
          });
          return true;
        }
        const leafHash = facts.leafHash;
        const first = byStaple.get(staplePath);
        if (first !== undefined) {
          if (first.leafHash === leafHash) {
            // x.crt and x.pem holding one certificate: one staple, renewed once
            out.skipped.push({
              path: certPath,
              reason: `the same certificate as ${first.certPath}, whose staple ${staplePath} it shares; renewed once`,
            });
          } else {
            out.problems.push({
              path: certPath,
              code: 'BAD_ARGUMENTS',
              message: `${certPath}: its staple ${staplePath} would also be the staple of ${first.certPath}, a different certificate; rename one of them`,
            });
          }
          return true;
        }
        byStaple.set(staplePath, { certPath, leafHash });
        const target: TargetConfig = {
          id: certStem(certPath, s.certExtensions),
          certPath,
          staplePath,
          responder: 'certificate',
          origin: certPath,
        };
        return after(issuerFileFor(certPath, s, rules, is, listing?.paths), (issuer) => {
          if (issuer) target.chainPath = issuer;
          out.targets.push(target);
          return true;
        });
      });
    });
  };

  for (const p of s.paths) {
    let st;
    try {
      st = await stat(p);
    } catch (e) {
      out.problems.push({
        path: p,
        code: 'FILE_UNREADABLE',
        message: `${p}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`,
      });
      continue;
    }
    if (!s.dirs) {
      if (!st.isFile()) {
        out.problems.push({
          path: p,
          code: 'BAD_ARGUMENTS',
          message: `not a regular file: ${JSON.stringify(p)}${st.isDirectory() ? ' (use -dirs for folders)' : ''}`,
        });
        continue;
      }
      await consider(p, false);
      continue;
    }
    if (!st.isDirectory()) {
      out.problems.push({ path: p, code: 'BAD_ARGUMENTS', message: `not a directory: ${JSON.stringify(p)}` });
      continue;
    }
    let entries: Dirent[];
    try {
      entries = (await readdir(p, { withFileTypes: true })).sort((a, b) =>
        a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
      );
    } catch (e) {
      out.problems.push({
        path: p,
        code: 'FILE_UNREADABLE',
        message: `${p}: cannot read the folder: ${(e as Error).message}`,
      });
      continue;
    }
    const listing = new Listing(p, entries);
    const exts = scanExtensions(s.certExtensions);
    const candidates: string[] = [];
    for (const { name } of entries) {
      if (!exts.some((ext) => name.endsWith(ext))) continue;
      if (rules.issuerSuffixes.some((suffix) => name.endsWith(suffix))) continue;
      const full = listing.paths.join(name);
      const file = listing.isFile(full);
      if (file === true || (file !== false && (await file))) candidates.push(full);
    }
    if (candidates.length === 0) {
      out.problems.push({
        path: p,
        code: 'NOT_A_CERTIFICATE',
        message: `${p}: no certificate files found in the directory (extensions ${exts.join(' ')})`,
      });
      continue;
    }
    let tried = 0;
    for (const c of candidates) {
      const r = consider(c, true, listing);
      if (r === true || (r !== false && (await r))) tried++;
    }
    if (tried === 0) {
      // every certificate is flagged .noocsp: nothing to keep fresh here, which ocsprenewer reports as a failure
      out.problems.push({
        path: p,
        code: 'NOT_A_CERTIFICATE',
        message: `${p}: no certificate files found in the directory (every one has a ${NOOCSP_SUFFIX} flag file)`,
      });
    }
  }
  if (s.discoveryCache === 'write') discoveryCacheFor(s.outDir).flush();
  return out;
}

/** The settings an ocsprenewer invocation runs with: staplekeeper's defaults, ocsprenewer's T1 and output folder. */
export function renewerSettings(s: RenewerSettings): Settings {
  return defineSettings({
    ocspFolder: s.outDir,
    refreshAt: s.timerT1,
    daemon: { statusListen: s.statusListen },
    // ocsprenewer never looked at CRLs: the drop-in does not either
    crl: { watch: false },
  });
}

/** A {@link LoadedConfig} for the engine (`runOnce`, the daemon) from ocsprenewer's arguments: no configuration file. */
export function renewerConfig(s: RenewerSettings, targets: TargetConfig[]): LoadedConfig {
  return defineConfig({ settings: renewerSettings(s), targets });
}

/**
 * The daemon source of `ocsprenewer -persist`: the arguments re-scanned at
 * every change in their folders and at every sweep, so new, renewed and
 * removed certificates (and `.noocsp` files) are noticed without a restart.
 */
export function renewerSource(s: RenewerSettings, initial?: RenewerDiscovery): DaemonSource {
  const config = renewerConfig(s, initial?.targets ?? []);
  const folders = s.dirs ? s.paths : [...new Set(s.paths.map((p) => path.dirname(p)))];
  const files = new Set(s.paths);
  return {
    config,
    describe: `ocsprenewer ${s.dirs ? 'folders' : 'files'} ${s.paths.join(' ')}`,
    async discover() {
      const found = await discoverRenewerTargets(s);
      config.targets = found.targets;
      return { targets: found.targets, problems: found.problems };
    },
    watchDirs(): WatchDir[] {
      return folders.map((p) => ({ path: p, recursive: false }));
    },
    isRelevant(p) {
      if (s.dirs) return folders.includes(path.dirname(p));
      if (files.has(p)) return true;
      if (p.endsWith(NOOCSP_SUFFIX) && files.has(p.slice(0, -NOOCSP_SUFFIX.length))) return true;
      return [...files].some(
        (f) => path.dirname(f) === path.dirname(p) && isIssuerFile(path.basename(p), s.certExtensions),
      );
    },
  };
}

/** True when the process may write in `dir` (for `-not-really`, which must not create files). */
export async function canWrite(dir: string): Promise<boolean> {
  try {
    await access(dir, 2 /* W_OK */);
    return true;
  } catch {
    return false;
  }
}
