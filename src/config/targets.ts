/**
 * The targets of a load and the checks that need them: `domains` entries of
 * each file, `scan_keys` entries, `responders:` overrides, and the staple
 * paths compared by file identity.
 */
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { fsKind, prefetchKinds } from './fs-kinds.js';
import type { RawIncludeConfig, RawMainConfig } from './schema.js';
import { DEFAULT_MASKS, DOMAIN_PLACEHOLDER, flat } from './scan.js';
import { closestMatch } from './suggest.js';
import { DISTINCT_PLACEHOLDERS, expandOutputTemplate, templateProblem } from './templates.js';
import type { ScanConfig, TargetConfig } from './types.js';
import type { ConfigProblem, ConfigSource, KeyPath } from './problems.js';

/** A file whose `domains` and `scan_keys` contribute targets. */
export interface Contributor {
  source: ConfigSource;
  raw: RawMainConfig | RawIncludeConfig;
}

/** A target with the place in the YAML that defines it, for follow-up messages. */
export interface Placed {
  target: TargetConfig;
  source: ConfigSource;
  at: KeyPath;
  /** Names the target in "first defined at …" messages. */
  where: string;
}

/** The kinds of certificate files a domain names, for messages. */
const FILE_KEYS = [
  ['cert', 'certificate'],
  ['chain', 'chain'],
  ['rootchain', 'rootchain'],
] as const;

/**
 * For a "not found" message: a relative path resolves against the working
 * directory (as in ocspbot), which is `/` under cron and systemd.
 */
export function relativeNote(given: string, cwd: string): string {
  if (path.isAbsolute(given)) return '';
  return ` (a relative path: resolved against the working directory ${cwd}; cron and systemd start in /, so give an absolute path)`;
}

/**
 * Builds the `domains` targets of one file. Certificate, chain and root chain
 * paths resolve against the working directory and must exist; the staple
 * resolves against `ocsp_folder` (an absolute `ocsp` is kept) and need not
 * exist yet: the writer reports a folder it cannot write to.
 */
export function domainTargets(
  { source, raw }: Contributor,
  cwd: string,
  ocspFolder: string,
  problems: ConfigProblem[],
  perTarget = false,
): Placed[] {
  const placed: Placed[] = [];
  const files: Array<{
    id: string;
    at: KeyPath;
    key: (typeof FILE_KEYS)[number][0];
    what: string;
    abs: string;
    given: string;
  }> = [];
  // chain and root-chain files are shared by many domains: one string each
  const shared = new Map<string, string>();
  const resolveShared = (given: string): string => {
    let abs = shared.get(given);
    if (abs === undefined) shared.set(given, (abs = flat(path.resolve(cwd, given))));
    return abs;
  };
  const domains = raw.domains ?? {};
  // (keys, not entries: no pair per domain)
  for (const id of Object.keys(domains)) {
    const domain = domains[id] as NonNullable<(typeof domains)[string]>;
    const at: KeyPath = ['domains', id];
    if (id.trim() === '') {
      problems.push(source.problem(at, 'a domain identifier must not be empty', true));
      continue;
    }
    const resolved: Partial<Record<(typeof FILE_KEYS)[number][0], string>> = {};
    for (const [key, what] of FILE_KEYS) {
      const given = domain[key];
      if (given === undefined) continue;
      const abs = key === 'cert' ? flat(path.resolve(cwd, given)) : resolveShared(given);
      resolved[key] = abs;
      // (with certFilesPerTarget they are not checked here: see below)
      if (!perTarget) files.push({ id, at, key, what, abs, given });
    }
    const certPath = resolved.cert ?? flat(path.resolve(cwd, domain.cert));
    const ocspProblem = templateProblem(domain.ocsp);
    if (ocspProblem !== undefined) problems.push(source.problem([...at, 'ocsp'], ocspProblem));
    const target: TargetConfig = {
      id,
      certPath,
      staplePath: flat(path.resolve(ocspFolder, expandOutputTemplate(domain.ocsp, { certPath, domain: id }))),
      responder: domain.ocsp_responder_uri ?? 'certificate',
      origin: flat(source.origin(at, true)),
    };
    if (resolved.chain !== undefined) target.chainPath = resolved.chain;
    if (resolved.rootchain !== undefined) target.rootchainPath = resolved.rootchain;
    placed.push({ target, source, at, where: target.origin });
  }
  // with certFilesPerTarget, a file that is not there is that certificate's failure when it is processed
  if (perTarget) return placed;
  prefetchKinds(files.map((f) => f.abs));
  for (const { id, at, key, what, abs, given } of files) {
    const kind = fsKind(abs);
    if (kind === 'missing') {
      problems.push(
        source.problem([...at, key], `${what} file not found: ${abs} (domain ${id})${relativeNote(given, cwd)}`),
      );
    } else if (kind.startsWith('unusable: ')) {
      problems.push(
        source.problem([...at, key], `${what} file cannot be used: ${abs}: ${kind.slice(10)} (domain ${id})`),
      );
    } else if (kind !== 'file') {
      problems.push(source.problem([...at, key], `${what} path is not a file: ${abs} (domain ${id})`));
    }
  }
  return placed;
}

/**
 * Resolves one `scan_keys` entry (ocspbot defaults; the folder relative to the
 * working directory) and checks what can be checked before scanning.
 */
export async function resolveScan(
  source: ConfigSource,
  at: KeyPath,
  raw: NonNullable<RawMainConfig['scan_keys']>[number],
  cwd: string,
  problems: ConfigProblem[],
): Promise<ScanConfig | undefined> {
  const scan: ScanConfig = {
    folder: path.resolve(cwd, raw.folder ?? ''),
    recursive: raw.recursive ?? true,
    certMask: raw.cert_mask ?? DEFAULT_MASKS.certMask,
    chainMask: raw.chain_mask ?? DEFAULT_MASKS.chainMask,
    rootchainMask: raw.rootchain_mask ?? DEFAULT_MASKS.rootchainMask,
    ocspMask: raw.ocsp_mask ?? DEFAULT_MASKS.ocspMask,
    origin: source.origin(at),
  };
  const before = problems.length;
  if (!scan.certMask.includes(DOMAIN_PLACEHOLDER)) {
    problems.push(source.problem([...at, 'cert_mask'], `the mask must contain ${DOMAIN_PLACEHOLDER}`));
  } else if (scan.certMask.includes('/') || scan.certMask.includes(path.sep)) {
    problems.push(
      source.problem(
        [...at, 'cert_mask'],
        'the mask is matched against file names and must not contain a path separator',
      ),
    );
  }
  const maskProblem = templateProblem(scan.ocspMask);
  if (maskProblem !== undefined) {
    problems.push(source.problem([...at, 'ocsp_mask'], maskProblem));
  } else if (!DISTINCT_PLACEHOLDERS.some((p) => scan.ocspMask.includes(p))) {
    problems.push(
      source.problem(
        [...at, 'ocsp_mask'],
        scan.ocspMask.includes('{cert_dir}')
          ? `the mask must contain ${DOMAIN_PLACEHOLDER} (or {cert}, {cert_name} or {cert_stem}), or every certificate would share one staple file`
          : `the mask must contain ${DOMAIN_PLACEHOLDER}, or every certificate would share one staple file`,
      ),
    );
  }
  const folderAt: KeyPath = raw.folder === undefined ? at : [...at, 'folder'];
  const kind = fsKind(scan.folder);
  if (kind === 'missing')
    problems.push(
      source.problem(folderAt, `scan folder not found: ${scan.folder}${relativeNote(raw.folder ?? '', cwd)}`),
    );
  else if (kind !== 'folder') problems.push(source.problem(folderAt, `scan folder is not a folder: ${scan.folder}`));
  return problems.length === before ? scan : undefined;
}

/** Applies `responders:` and returns the URL-keyed and the id-keyed overrides. */
export function applyResponders(
  main: ConfigSource,
  raw: RawMainConfig,
  placed: readonly Placed[],
  problems: ConfigProblem[],
): { byUrl: Record<string, string>; byId: Record<string, string> } {
  // names are keys: null-prototype objects (a domain may be called `constructor` or `__proto__`)
  const byUrl = Object.create(null) as Record<string, string>;
  const byId = Object.create(null) as Record<string, string>;
  const targetsById = new Map(placed.map((p) => [p.target.id, p]));
  for (const [key, value] of Object.entries(raw.responders ?? {})) {
    const at: KeyPath = ['responders', key];
    if (/^https?:\/\//i.test(key)) {
      byUrl[key] = value;
      continue;
    }
    const p = targetsById.get(key);
    if (p === undefined) {
      const suggestion = closestMatch(key, targetsById.keys());
      problems.push(
        main.problem(
          at,
          `no domain has the identifier ${JSON.stringify(key)}` +
            (suggestion === undefined ? '' : `; did you mean \`${suggestion}\`?`) +
            ' (a key here is either a responder URL from a certificate, starting with http:// or https://, or a domain identifier)',
          true,
        ),
      );
      continue;
    }
    const current = p.target.responder;
    if (current !== 'certificate' && current !== value) {
      problems.push(
        main.problem(
          at,
          `domain ${key} already sets ocsp_responder_uri: ${current} at ${p.source.origin([...p.at, 'ocsp_responder_uri'])}; keep one of the two`,
          true,
        ),
      );
      continue;
    }
    p.target.responder = value;
    byId[key] = value;
  }
  return { byUrl, byId };
}

/**
 * The identity of a file for {@link checkStaplePaths}: device and inode when
 * it exists (a chain reached through a symlinked folder, a hard link), else
 * the real path of its folder and its name. Path strings alone are not enough.
 * Kept as numbers, not as a string per file: a load of 100,000 domains
 * compares 200,000 files.
 */
type FileIdentity = { dev: number; ino: number } | string;

function fileIdentity(file: string, realDirs: Map<string, string>): FileIdentity {
  try {
    const st = statSync(file, { throwIfNoEntry: false });
    if (st !== undefined) return { dev: st.dev, ino: st.ino };
  } catch {
    // unusable: named by its path, as a missing file
  }
  const dir = path.dirname(file);
  let real = realDirs.get(dir);
  if (real === undefined) {
    try {
      real = realpathSync(dir);
    } catch {
      real = dir;
    }
    realDirs.set(dir, real);
  }
  return path.join(real, path.basename(file));
}

/** Targets by {@link FileIdentity}: inodes by device, paths apart. */
class ByIdentity {
  private readonly inodes = new Map<number, Map<number, Placed>>();
  private readonly paths = new Map<string, Placed>();

  get(id: FileIdentity): Placed | undefined {
    return typeof id === 'string' ? this.paths.get(id) : this.inodes.get(id.dev)?.get(id.ino);
  }

  /** Sets the target of `id` unless it has one. */
  add(id: FileIdentity, p: Placed): void {
    if (typeof id === 'string') {
      if (!this.paths.has(id)) this.paths.set(id, p);
      return;
    }
    let m = this.inodes.get(id.dev);
    if (m === undefined) this.inodes.set(id.dev, (m = new Map()));
    if (!m.has(id.ino)) m.set(id.ino, p);
  }
}

/**
 * Two targets writing one staple file would overwrite each other's staple;
 * a staple path that is a certificate file would overwrite the certificate
 * with a DER response. Both are configuration errors. Files are compared by
 * identity ({@link fileIdentity}), not by the path strings.
 */
export function checkStaplePaths(placed: readonly Placed[], problems: ConfigProblem[]): void {
  const staples = new ByIdentity();
  const inputs = new ByIdentity();
  const realDirs = new Map<string, string>();
  // chain and root-chain files are shared by many targets: looked up once each
  const shared = new Map<string, FileIdentity>();
  for (const p of placed) {
    inputs.add(fileIdentity(p.target.certPath, realDirs), p);
    for (const file of [p.target.chainPath, p.target.rootchainPath]) {
      if (file === undefined) continue;
      let id = shared.get(file);
      if (id === undefined) {
        id = fileIdentity(file, realDirs);
        if (shared.size < 4096) shared.set(file, id);
      }
      inputs.add(id, p);
    }
  }
  for (const p of placed) {
    const staple = p.target.staplePath;
    const stapleId = fileIdentity(staple, realDirs);
    const ocspAt: KeyPath = p.at[0] === 'domains' ? [...p.at, 'ocsp'] : p.at;
    const other = staples.get(stapleId);
    if (other !== undefined) {
      problems.push(
        p.source.problem(
          ocspAt,
          `staple file ${staple} of domain ${p.target.id} is also the staple file of domain ${other.target.id} (${other.where})`,
        ),
      );
    } else {
      staples.add(stapleId, p);
    }
    const input = inputs.get(stapleId);
    if (input !== undefined) {
      problems.push(
        p.source.problem(
          ocspAt,
          `staple file ${staple} of domain ${p.target.id} is a certificate file of domain ${input.target.id} (${input.where}); writing the staple would destroy it`,
        ),
      );
    }
  }
}
