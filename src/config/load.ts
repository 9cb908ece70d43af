/**
 * Loading the configuration: YAML → shape validation → defaults → checks that
 * need the file system → one resolved {@link LoadedConfig}.
 *
 * The file is a superset of ocspbot 0.9.3's, so an ocspbot user switches
 * without editing it (docs/migrating.md). Every problem is reported as
 * `file:line:col key.path: what is wrong`, the whole configuration is checked
 * before anything is fetched, and nothing is changed on disk here.
 *
 * Error codes: `CONFIG_YAML` for unreadable files and YAML syntax (ocspbot's
 * exit -2 / 254), `CONFIG_INVALID` for everything else (exit -3 / 253). The
 * message holds one problem per line, in file order; `details.problems` holds
 * them as {@link ConfigProblem} objects for `--json`.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describeFsError, readBounded } from '../io/files.js';
import { contentHash } from '../io/fingerprint.js';
import { StapleError, type ErrorCode } from '../core/errors.js';
import { scanTargets, scanWitness, witnessDigest } from './scan.js';
import type { RawIncludeConfig, RawMainConfig } from './schema.js';
import { defineSettings } from './settings.js';
import { closestMatch } from './suggest.js';
import type { LoadedConfig, ScanConfig } from './types.js';
import { CachedSource, ConfigCache, countResultHit, needsParser, type FileRole } from './config-cache.js';
import { clearFsKinds, fsKind, prefetchKinds } from './fs-kinds.js';
import { displayPath, formatProblem, type ConfigProblem, type ConfigSource, type KeyPath } from './problems.js';
import {
  applyResponders,
  checkStaplePaths,
  domainTargets,
  relativeNote,
  resolveScan,
  type Contributor,
  type Placed,
} from './targets.js';
import type { ReadFile } from './parse.js';

/**
 * The largest configuration (or included) file read: a configuration of
 * 10,000 domains is ~1 MB. A larger file, a FIFO or a device is refused
 * before it is read (io/files.ts readBounded).
 */
export const MAX_CONFIG_FILE = 64 * 1024 * 1024;

/** Default file names, in the order they are tried: ours first, then ocspbot's, so a drop-in just works. */
export const DEFAULT_CONFIG_NAMES = ['staplekeeper.yaml', 'ocspbot.yaml'] as const;

/** The note shown when an ocspbot file sets `openssl_executable`. */
export const OPENSSL_NOTE = 'openssl_executable is ignored: staplekeeper does not need OpenSSL';

/**
 * The configuration file `staplekeeper run` uses without `-c`:
 * `staplekeeper.yaml` in `cwd`, else `ocspbot.yaml`, else `undefined` (the
 * caller then names both in its error). Returns an absolute path.
 */
export function findDefaultConfig(cwd: string): string | undefined {
  for (const name of DEFAULT_CONFIG_NAMES) {
    const candidate = path.resolve(cwd, name);
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return undefined;
}

export { expandOutputTemplate, hasCertPlaceholder, OUTPUT_PLACEHOLDERS } from './templates.js';
export { scanTargets } from './scan.js';
export { relativeNote } from './targets.js';

/** Options for {@link loadConfig}. */
export interface LoadConfigOptions {
  /**
   * The working directory relative paths are resolved against, as ocspbot
   * does (certificates, `ocsp_folder`, scan and include folders, log files).
   * Default: `process.cwd()`. Tests and the daemon pass it explicitly.
   */
  cwd?: string;
  /**
   * The folder of the configuration cache (config/config-cache.ts), or undefined
   * for none (the default: the library writes nothing unless asked). The
   * CLI passes {@link configCacheDir} of its environment.
   */
  cacheDir?: string;
  /**
   * ocspbot 0.9.3's load rules, for the `ocspbot` command (docs/migrating.md): an
   * include folder that does not exist is a warning ("Cannot find include
   * file", in {@link LoadedConfig.warnings}) and the other files are loaded;
   * a staple path that exists and is not a regular file (a folder) is a
   * configuration error. Default: both are handled as `staplekeeper run`
   * handles them (a missing include folder is an error; a folder in the way
   * of a staple fails that staple's write).
   */
  ocspbot?: boolean;
  /**
   * A certificate, chain or root-chain file that is missing, not a file or
   * unusable is a failure of that certificate when it is processed (one bad
   * certificate never stops the others), not a configuration
   * error. `staplekeeper run`, `check` and `daemon` set it; the library
   * default and the `ocspbot` drop-in (exit 253, as ocspbot) report such
   * files as configuration errors. Syntax and schema errors stop the load
   * either way.
   */
  certFilesPerTarget?: boolean;
}

/**
 * Throws the problems as one error. They are sorted by file (in the order the
 * files were read: main file first) and position, so the first line is the
 * first thing to fix when reading the file top to bottom.
 */
function fail(code: ErrorCode, unsorted: readonly ConfigProblem[], fileOrder: readonly string[] = []): never {
  const rank = (file: string): number => {
    const i = fileOrder.indexOf(file);
    return i === -1 ? fileOrder.length : i;
  };
  const problems = [...unsorted].sort((a, b) => rank(a.file) - rank(b.file) || a.line - b.line || a.col - b.col);
  throw new StapleError(code, problems.map(formatProblem).join('\n'), { details: { problems } });
}

/**
 * Reads, parses and validates one configuration file ({@link parseValidated}),
 * or takes it from the cache when its text is the one cached.
 */
async function readValidated(
  file: string,
  cwd: string,
  role: 'main',
  cache?: ConfigCache,
  fast?: boolean,
): Promise<ReadFile<RawMainConfig>>;
async function readValidated(
  file: string,
  cwd: string,
  role: 'include',
  cache?: ConfigCache,
  fast?: boolean,
): Promise<ReadFile<RawIncludeConfig>>;
async function readValidated(
  file: string,
  cwd: string,
  role: FileRole,
  cache?: ConfigCache,
  fast = false,
): Promise<ReadFile<RawMainConfig | RawIncludeConfig>> {
  const name = displayPath(file, cwd);
  let text: string;
  try {
    text = (await readBounded(file, MAX_CONFIG_FILE)).toString('utf8');
  } catch (e) {
    throw new StapleError('CONFIG_YAML', `${name}: cannot read the configuration file: ${describeFsError(e)}`, {
      cause: e,
      details: { file },
    });
  }
  const textHash = cache === undefined ? '' : contentHash(text);
  cache?.deps.files.push([file, textHash]);
  const cached = cache?.get(file, role, textHash);
  if (cached !== undefined) {
    return { source: new CachedSource(file, name, cached), value: cached.value as RawMainConfig, problems: [] };
  }
  // the parser and the schema are loaded only when a file is not in the cache
  const { parseValidated } = await import('./parse.js');
  const read = parseValidated(file, name, text, role, fast);
  if ('value' in read) cache?.put(file, role, textHash, read.value, read.source);
  return read;
}

/**
 * Reads the included folders: every `*.yml`/`*.yaml` file in each, in name
 * order. Files are read from the include folder itself; ocspbot 0.9.3 tested
 * the bare file name against the working directory and so usually skipped
 * them (docs/migrating.md), which is not copied. The main file is skipped
 * if an include folder contains it, so `includes: [.]` works.
 */
async function readIncludes(
  main: ConfigSource,
  raw: RawMainConfig,
  cwd: string,
  problems: ConfigProblem[],
  readOrder: string[],
  cache: ConfigCache | undefined,
  warnings?: string[],
  fast = false,
): Promise<Contributor[]> {
  const contributors: Contributor[] = [];
  for (const [i, folder] of (raw.includes ?? []).entries()) {
    const dir = path.resolve(cwd, folder);
    const files = await includeFiles(dir, main.file);
    if (!Array.isArray(files) && files.code === 'ENOENT' && warnings !== undefined) {
      // ocspbot 0.9.3 warns and goes on without the folder (its "include file" is the folder)
      warnings.push(
        formatProblem(main.problem(['includes', i], `Cannot find include file ${JSON.stringify(folder)}! (${dir})`)),
      );
      continue;
    }
    if (!Array.isArray(files)) {
      const why = files.code === 'ENOTDIR' ? 'not a folder' : 'include folder not found';
      problems.push(
        main.problem(['includes', i], `${why}: ${dir}${why === 'not a folder' ? '' : relativeNote(folder, cwd)}`),
      );
      continue;
    }
    cache?.deps.includeDirs.push([dir, files]);
    for (const file of files) {
      const read = await readValidated(file, cwd, 'include', cache, fast);
      readOrder.push(read.source.name);
      if ('value' in read) contributors.push({ source: read.source, raw: read.value });
      else problems.push(...read.problems);
    }
  }
  return contributors;
}

/**
 * The files an include folder contributes: every `*.yml`/`*.yaml` regular
 * file in it, in name order, except the main file (so `includes: [.]`
 * works). The error when the folder cannot be listed.
 */
async function includeFiles(dir: string, mainFile: string): Promise<string[] | NodeJS.ErrnoException> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch (e) {
    return e as NodeJS.ErrnoException;
  }
  return names.map((name) => path.join(dir, name)).filter((file) => file !== mainFile && fsKind(file) === 'file');
}

/**
 * Loads, validates and resolves a configuration file.
 *
 * Relative paths resolve as ocspbot resolves them: certificates, chains,
 * `ocsp_folder`, scan folders, include folders, `ca_dirs` and log files
 * against the working directory; staples against `ocsp_folder`. Included
 * files follow the same rules. Certificate files and folders must exist;
 * staples need not.
 *
 * @throws StapleError `CONFIG_YAML` (unreadable file, YAML syntax) or
 *   `CONFIG_INVALID` (anything else), with one `file:line:col key.path: …`
 *   line per problem.
 */
export async function loadConfig(file: string, opts: LoadConfigOptions = {}): Promise<LoadedConfig> {
  try {
    const loaded = await loadConfigOnce(file, opts);
    if (opts.ocspbot) checkStaplesAreFiles(loaded);
    return loaded;
  } finally {
    // the kinds of 30,000 paths are not kept past the load (a daemon would hold them for good)
    clearFsKinds();
  }
}

async function loadConfigOnce(file: string, opts: LoadConfigOptions): Promise<LoadedConfig> {
  const cwd = path.resolve(opts.cwd ?? process.cwd());
  const mainFile = path.resolve(cwd, file);
  const ocspbot = opts.ocspbot ?? false;
  const perTarget = (opts.certFilesPerTarget ?? false) && !ocspbot;
  if (opts.cacheDir !== undefined) {
    const cache = ConfigCache.open(opts.cacheDir, mainFile);
    // (a kept result always has every certificate file in place: cachedResult checks them, so it
    // is the same whether a missing file is a configuration error or a certificate's failure)
    const known = await cachedResult(cache, cwd);
    if (known !== undefined) return known;
    try {
      const loaded = await loadOnce(mainFile, cwd, cache, ocspbot, true, perTarget);
      // (a scan's targets are kept with the digest of what it observed, cachedResult observes it again);
      // not kept: a load that went without a missing include folder, which may appear by the next run
      if (loaded.warnings === undefined) cache.putResult(cwd, loaded);
      cache.saveSoon();
      return loaded;
    } catch (e) {
      // a problem in a file taken from the cache: load again with the parser, for its exact positions
      if (!needsParser(e)) throw e;
    }
  }
  try {
    // a large plain `domains` block is read by lines (config/fast-domains.ts) ...
    return await loadOnce(mainFile, cwd, undefined, ocspbot, true, perTarget);
  } catch (e) {
    // ... and any problem inside it is reported from the parser's reading, for its exact positions
    if (!needsParser(e)) throw e;
  }
  return loadOnce(mainFile, cwd, undefined, ocspbot, false, perTarget);
}

/**
 * ocspbot 0.9.3 refuses, at load, a staple path that exists and is not a
 * regular file ("OCSP response file … exists, but is not a file!", exit
 * 253); checked after every load (also one from the cache), as the folder may
 * appear at any time.
 */
function checkStaplesAreFiles(config: LoadedConfig): void {
  const lines: string[] = [];
  // what `stat` says of each staple, for most of them from their folder's listing (fs-kinds.ts)
  clearFsKinds();
  prefetchKinds(config.targets.map((t) => t.staplePath));
  for (const t of config.targets) {
    const kind = fsKind(t.staplePath);
    // missing (it is created) or unusable (the write reports it), as ocspbot's exists()
    if (kind === 'file' || kind === 'missing' || kind.startsWith('unusable: ')) continue;
    const what = kind === 'folder' ? 'a folder' : 'not a regular file';
    lines.push(
      `${t.origin} domain ${t.id}: the staple file ${t.staplePath} exists, but is ${what}; a staple cannot be written there`,
    );
  }
  if (lines.length > 0) throw new StapleError('CONFIG_INVALID', lines.join('\n'));
}

/**
 * The whole result of an earlier load, when it is still what a load would
 * give: made in the same working directory, every file it read has the same
 * text now, every include folder holds the same configuration files, and
 * the checks that look at the file system pass again (every certificate,
 * chain and root chain is a file, every CA folder a folder). Otherwise
 * undefined, and the configuration is loaded (a failing check then gives its
 * ordinary message).
 */
async function cachedResult(cache: ConfigCache, cwd: string): Promise<LoadedConfig | undefined> {
  const result = cache.getResult(cwd);
  if (result === undefined) return undefined;
  clearFsKinds();
  for (const [file, textHash] of result.deps.files) {
    let text: string;
    try {
      text = (await readBounded(file, MAX_CONFIG_FILE)).toString('utf8');
    } catch {
      return undefined;
    }
    if (contentHash(text) !== textHash) return undefined;
  }
  for (const [dir, files] of result.deps.includeDirs) {
    const now = await includeFiles(dir, result.config.file ?? '');
    if (!Array.isArray(now) || now.length !== files.length || now.some((f, i) => f !== files[i])) return undefined;
  }
  const { config } = result;
  // a scan's targets are what it observed: observed again, they are again what a scan finds (the
  // listing says which of their certificate, chain and root chain files are regular files)
  if (result.deps.scans.length !== config.scans.length) return undefined;
  for (const [i, scan] of config.scans.entries()) {
    if ((await scanWitness(scan)) !== result.deps.scans[i]) return undefined;
  }
  const paths: string[] = [];
  for (const t of config.targets.slice(0, config.targets.length - result.deps.scanned)) {
    paths.push(t.certPath);
    if (t.chainPath !== undefined) paths.push(t.chainPath);
    if (t.rootchainPath !== undefined) paths.push(t.rootchainPath);
  }
  prefetchKinds(paths);
  for (const p of paths) if (fsKind(p) !== 'file') return undefined;
  for (const d of config.settings.caDirs) if (fsKind(d) !== 'folder') return undefined;
  countResultHit();
  return config;
}

async function loadOnce(
  mainFile: string,
  cwd: string,
  cache: ConfigCache | undefined,
  ocspbot = false,
  fast = false,
  perTarget = false,
): Promise<LoadedConfig> {
  clearFsKinds();
  // 1. Shape: the main file, then the included ones.
  const read = await readValidated(mainFile, cwd, 'main', cache, fast);
  if (!('value' in read)) fail('CONFIG_INVALID', read.problems);
  const { source: main, value: raw } = read;
  const problems: ConfigProblem[] = [];
  const fileOrder = [main.name];
  const warnings: string[] | undefined = ocspbot ? [] : undefined;
  const contributors: Contributor[] = [
    { source: main, raw },
    ...(await readIncludes(main, raw, cwd, problems, fileOrder, cache, warnings, fast)),
  ];
  if (problems.length > 0) fail('CONFIG_INVALID', problems, fileOrder);

  // 2. Settings.
  const notes: string[] = [];
  if (raw.openssl_executable !== undefined) notes.push(OPENSSL_NOTE);
  if (
    raw.refresh_at !== undefined &&
    (raw.minimum_validity !== undefined || raw.minimum_validity_percentage !== undefined)
  ) {
    notes.push(
      'refresh_at is ignored: minimum_validity or minimum_validity_percentage is set, and the ocspbot rule takes precedence',
    );
  }
  if (raw.parallel_threads !== undefined && raw.concurrency !== undefined && raw.parallel_threads !== raw.concurrency) {
    problems.push(
      main.problem(
        ['parallel_threads'],
        `parallel_threads (${raw.parallel_threads}) and concurrency (${raw.concurrency}, at ${main.origin(['concurrency'])}) disagree; parallel_threads is ocspbot's name for concurrency, keep one of the two`,
      ),
    );
  }
  const ocspFolder = path.resolve(cwd, raw.ocsp_folder ?? '');
  const caDirs: string[] = [];
  for (const [i, dir] of (raw.ca_dirs ?? []).entries()) {
    const abs = path.resolve(cwd, dir);
    const kind = fsKind(abs);
    if (kind === 'missing')
      problems.push(main.problem(['ca_dirs', i], `CA folder not found: ${abs}${relativeNote(dir, cwd)}`));
    else if (kind !== 'folder') problems.push(main.problem(['ca_dirs', i], `not a folder: ${abs}`));
    caDirs.push(abs);
  }

  // 3. Targets: domains of every file, then scans, one identifier space.
  const placed: Placed[] = [];
  const firstById = new Map<string, Placed>();
  const addTarget = (p: Placed, duplicateMessage: (first: Placed) => string): void => {
    const first = firstById.get(p.target.id);
    if (first !== undefined) {
      problems.push(p.source.problem(p.at, duplicateMessage(first), p.at[0] === 'domains'));
      return;
    }
    firstById.set(p.target.id, p);
    placed.push(p);
  };
  for (const contributor of contributors) {
    for (const p of domainTargets(contributor, cwd, ocspFolder, problems, perTarget)) {
      addTarget(
        p,
        (first) => `duplicate domain identifier ${JSON.stringify(p.target.id)} (first defined at ${first.where})`,
      );
    }
  }
  const scans: ScanConfig[] = [];
  for (const { source, raw: contributed } of contributors) {
    for (const [i, entry] of (contributed.scan_keys ?? []).entries()) {
      const at: KeyPath = ['scan_keys', i];
      const scan = await resolveScan(source, at, entry, cwd, problems);
      if (scan === undefined) continue;
      scans.push(scan);
      const witness = cache === undefined ? undefined : [];
      const found = await scanTargets(scan, ocspFolder, { witness });
      if (cache !== undefined && witness !== undefined) {
        cache.deps.scans.push(witnessDigest(witness));
        cache.deps.scanned += found.length;
      }
      for (const target of found) {
        addTarget(
          { target, source, at, where: `${scan.origin} (scan of ${target.certPath})` },
          (first) =>
            `the scan finds domain identifier ${JSON.stringify(target.id)} (${target.certPath}), already defined at ${first.where}`,
        );
      }
    }
  }

  // 4. Cross-checks that need every target.
  const responders = applyResponders(main, raw, placed, problems);
  const haproxy = (raw.haproxy ?? []).map((h, i) => {
    for (const [j, id] of (h.certificates ?? []).entries()) {
      if (firstById.has(id)) continue;
      const suggestion = closestMatch(id, firstById.keys());
      problems.push(
        main.problem(
          ['haproxy', i, 'certificates', j],
          `no domain has the identifier ${JSON.stringify(id)}` +
            (suggestion === undefined ? '' : `; did you mean \`${suggestion}\`?`),
        ),
      );
    }
    // a unix socket path resolves against the working directory like every other path; host:port is TCP
    const tcp = !h.socket.includes('/') && /^(?:ipv[46]@)?(?:\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):\d{1,5}$/.test(h.socket);
    const socket = tcp
      ? h.socket
      : h.socket.startsWith('unix@')
        ? `unix@${path.resolve(cwd, h.socket.slice(5))}`
        : path.resolve(cwd, h.socket);
    return { socket, certificates: h.certificates ?? [] };
  });
  checkStaplePaths(placed, problems);
  if (problems.length > 0) fail('CONFIG_INVALID', problems, fileOrder);

  // every default is defineSettings'; this only says what the file says
  const settings = defineSettings({
    refreshAt: raw.refresh_at,
    concurrency: raw.concurrency ?? raw.parallel_threads,
    perHostConcurrency: raw.per_host_concurrency,
    stopOnError: raw.stop_on_error,
    makeBackups: raw.make_backups,
    ocspFolder,
    http: {
      timeoutMs: raw.http?.timeout,
      method: raw.http?.method,
      proxy: raw.http?.proxy,
      userAgent: raw.http?.user_agent,
      followRedirectsAcrossHosts: raw.http?.follow_redirects_across_hosts,
    },
    responderUrlOverrides: responders.byUrl,
    responderIdOverrides: responders.byId,
    caDirs,
    hooks: {
      onChange: raw.hooks?.on_change,
      onFailure: raw.hooks?.on_failure,
      onRevoked: raw.hooks?.on_revoked,
    },
    onRevokedWrite: raw.on_revoked_write,
    lockTimeoutMs: raw.lock_timeout,
    haproxy,
    daemon: {
      sweepIntervalMs: raw.daemon?.sweep_interval,
      watch: raw.daemon?.watch,
      statusListen: raw.daemon?.status?.listen,
    },
    crl: {
      ...(raw.crl?.interval !== undefined ? { intervalMs: raw.crl.interval } : {}),
      ...(raw.crl?.max_size !== undefined ? { maxBytes: raw.crl.max_size } : {}),
      ...(raw.crl?.timeout !== undefined ? { timeoutMs: raw.crl.timeout } : {}),
      ...(raw.crl?.watch !== undefined ? { watch: raw.crl.watch } : {}),
    },
    notes,
    minimumValidityMs: raw.minimum_validity,
    minimumValidityPercentage: raw.minimum_validity_percentage,
    backupsKeep: raw.backups?.keep,
    overwriteNonOcsp: raw.overwrite_non_ocsp,
    outputLog: raw.output_log === undefined ? undefined : path.resolve(cwd, raw.output_log),
    errorLog: raw.error_log === undefined ? undefined : path.resolve(cwd, raw.error_log),
    fleet: raw.fleet,
  });

  const loaded: LoadedConfig = { file: main.file, settings, targets: placed.map((p) => p.target), scans };
  if (warnings !== undefined && warnings.length > 0) loaded.warnings = warnings;
  return loaded;
}
