/**
 * ocspbot's `scan_keys`: find certificates in a folder by file-name masks.
 *
 * A certificate is taken only as part of a complete "triple" (certificate,
 * chain and root chain side by side), exactly as ocspbot 0.9.3 does. The
 * triple rule is also what keeps `{domain}.pem` from picking up
 * `example.com-chain.pem` as a certificate for a domain `example.com-chain`:
 * that would need an `example.com-chain-chain.pem` next to it.
 */
import { createHash } from 'node:crypto';
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { StapleError } from '../core/errors.js';
import { contentHash } from '../io/fingerprint.js';
import type { ScanConfig, TargetConfig } from './types.js';
import { expandOutputTemplate, hasCertPlaceholder } from './templates.js';

/** The placeholder of every mask. */
export const DOMAIN_PLACEHOLDER = '{domain}';

/** ocspbot's default masks. */
export const DEFAULT_MASKS = {
  certMask: '{domain}.pem',
  chainMask: '{domain}-chain.pem',
  rootchainMask: '{domain}-rootchain.pem',
  ocspMask: '{domain}.ocsp-resp',
} as const;

/**
 * Turns a certificate mask into a regular expression over file names: the
 * first `{domain}` captures a non-empty name without `/` (shortest first), any
 * further `{domain}` must repeat it, everything else is literal. Masks are
 * not globs: `*` in a mask is a literal star, as in ocspbot.
 */
export function maskToRegExp(mask: string): RegExp {
  const parts = mask.split(DOMAIN_PLACEHOLDER);
  if (parts.length < 2) {
    throw new StapleError('CONFIG_INVALID', `the mask ${JSON.stringify(mask)} does not contain ${DOMAIN_PLACEHOLDER}`);
  }
  const literal = parts.map((p) => p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
  let source = literal[0] ?? '';
  for (let i = 1; i < literal.length; i++) source += (i === 1 ? '([^/]+?)' : '\\1') + (literal[i] ?? '');
  return new RegExp(`^${source}$`);
}

/**
 * `s`, made flat (one piece instead of the tree of pieces `path.join` and
 * `path.resolve` build; reading a character makes V8 copy it into one, and the
 * garbage collector then drops the tree): a target keeps ~90 bytes per path
 * instead of ~420, 100,000 targets ~70 MB less.
 */
export function flat(s: string): string {
  s.charCodeAt(0);
  return s;
}

/** Replaces every `{domain}` of `mask` by `domain`. */
export function fillMask(mask: string, domain: string): string {
  return mask.split(DOMAIN_PLACEHOLDER).join(domain);
}

/** Options for {@link scanFolder}. */
export interface ScanOptions {
  /**
   * Responder overrides by target id (`responders:` entries that name a
   * domain), applied to what the scan finds, so a re-scan keeps them.
   */
  responderOverrides?: Readonly<Record<string, string>>;
  /**
   * Receives every observation the scan's result depends on, in order
   * ({@link scanWitness} makes the same ones): the configuration cache keeps
   * a scan's result whole only while they are all the same.
   */
  witness?: string[];
}

/** What a folder entry is for a scan: a regular file, a folder (links followed), or anything else. */
type EntryKind = 'f' | 'd' | 'o';

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Walks a scan's folders as {@link scanFolder} does and calls `found` for each
 * folder visited (unless `found` is undefined) with its kinds of entries.
 * Every observation the walk makes goes to `witness`, one string each: the
 * real path of each folder reached (a folder already visited is not listed
 * again), and each entry's kind and name (for a symbolic link, the kind of
 * its target, from `stat`). File names hold no NUL, and each string starts
 * with a letter telling what it is, so equal witnesses joined with NUL mean
 * equal observations, and so equal results of the walk.
 */
async function walkScan(
  scan: ScanConfig,
  witness: { push(observation: string): unknown } | undefined,
  found: ((dir: string, rel: string, kinds: Map<string, EntryKind>) => void) | undefined,
): Promise<void> {
  const visited = new Set<string>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    const real = await realpath(dir);
    witness?.push(`R${real}`);
    if (visited.has(real)) return;
    visited.add(real);
    // regular files and folders from the listing itself: no stat per entry (30,000 of them in a large folder);
    // the kinds of all entries only for `found` (a witness alone needs none of them kept)
    const kinds = found === undefined ? undefined : new Map<string, EntryKind>();
    const subfolders: string[] = [];
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      let kind: EntryKind = entry.isFile() ? 'f' : entry.isDirectory() ? 'd' : 'o';
      if (entry.isSymbolicLink()) {
        const target = await stat(path.join(dir, entry.name)).catch(() => undefined);
        kind = target?.isFile() ? 'f' : target?.isDirectory() ? 'd' : 'o';
      }
      kinds?.set(entry.name, kind);
      if (kind === 'd') subfolders.push(entry.name);
      witness?.push(`${kind}${entry.name}`);
    }
    if (kinds !== undefined) found?.(dir, rel, kinds);
    if (!scan.recursive) return;
    for (const name of subfolders.sort(byName)) {
      await walk(path.join(dir, name), rel === '' ? name : `${rel}/${name}`);
    }
  };
  await walk(scan.folder, '');
}

/**
 * The digest of what a scan of `scan` observes now ({@link ScanOptions.witness}),
 * or undefined when the folder cannot be walked. Equal digests mean a scan
 * would find exactly the same targets.
 */
export async function scanWitness(scan: ScanConfig): Promise<string | undefined> {
  const witness = new WitnessDigest();
  try {
    await walkScan(scan, witness, undefined);
  } catch {
    return undefined;
  }
  return witness.digest();
}

/** The SHA-256 of a scan's observations, joined with NUL. */
export function witnessDigest(witness: readonly string[]): string {
  return contentHash(witness.join('\0'));
}

/**
 * {@link witnessDigest} of observations pushed one by one, without keeping
 * them (30,000 strings for a folder of 10,000 certificates, and their joined
 * text): the SHA-256 of the same text, given to the hash in pieces of ~32 KB
 * (each piece ends at a whole observation, so its UTF-8 is the text's).
 */
export class WitnessDigest {
  private readonly hash = createHash('sha256');
  private pending = '';
  private first = true;

  push(observation: string): void {
    this.pending += this.first ? observation : `\0${observation}`;
    this.first = false;
    if (this.pending.length >= 32 * 1024) {
      this.hash.update(this.pending, 'utf8');
      this.pending = '';
    }
  }

  /** The digest, as {@link witnessDigest} gives it (base64url). */
  digest(): string {
    this.hash.update(this.pending, 'utf8');
    this.pending = '';
    return this.hash.digest('base64url');
  }
}

/**
 * Finds every certificate triple under `scan.folder` and returns one target
 * per triple. Exported for the daemon, which re-runs it when a watched folder
 * changes.
 *
 * - The id is `<relative subfolder>/<domain>` (just `<domain>` at the top), so
 *   the same domain in two subfolders gives two distinct targets.
 * - The staple is `ocspFolder/<relative subfolder>/<ocsp_mask with domain>`:
 *   ocspbot keeps the relative path in the OCSP file name.
 * - Subfolders are visited only when `recursive`; symbolic links to files are
 *   followed (certbot's `live/` folders consist of them), links to folders
 *   too, but each real folder is visited once, so a link loop cannot hang us.
 * - The result is sorted by folder, then file name, so runs are reproducible.
 *
 * @throws StapleError `CONFIG_INVALID` when the folder does not exist or is not a folder.
 */
export async function scanFolder(
  scan: ScanConfig,
  ocspFolder: string,
  options: ScanOptions = {},
): Promise<TargetConfig[]> {
  const certPattern = maskToRegExp(scan.certMask);
  const overrides = options.responderOverrides ?? {};
  try {
    if (!(await stat(scan.folder)).isDirectory()) {
      throw new StapleError('CONFIG_INVALID', `${scan.origin} scan_keys: not a folder: ${scan.folder}`);
    }
  } catch (e) {
    if (e instanceof StapleError) throw e;
    throw new StapleError('CONFIG_INVALID', `${scan.origin} scan_keys: folder not found: ${scan.folder}`, { cause: e });
  }

  const targets: TargetConfig[] = [];
  await walkScan(scan, options.witness, (dir, rel, kinds) => {
    for (const name of [...kinds.keys()].sort(byName)) {
      if (kinds.get(name) !== 'f') continue;
      const domain = certPattern.exec(name)?.[1];
      if (domain === undefined) continue;
      const chainName = fillMask(scan.chainMask, domain);
      const rootchainName = fillMask(scan.rootchainMask, domain);
      if (kinds.get(chainName) !== 'f' || kinds.get(rootchainName) !== 'f') continue;
      const id = rel === '' ? domain : `${rel}/${domain}`;
      targets.push({
        id,
        certPath: flat(path.join(dir, name)),
        chainPath: flat(path.join(dir, chainName)),
        rootchainPath: flat(path.join(dir, rootchainName)),
        staplePath: flat(path.resolve(ocspFolder, ...rel.split('/'), fillMask(scan.ocspMask, domain))),
        responder: (Object.hasOwn(overrides, id) ? overrides[id] : undefined) ?? 'certificate',
        origin: scan.origin,
      });
    }
  });
  return targets;
}

/**
 * The staple path of a scanned target under a mask with certificate
 * placeholders. The target id is `<relative subfolder>/<domain>`, and the
 * staple keeps that subfolder below `ocsp_folder`, as ocspbot does.
 */
function scannedStaplePath(target: TargetConfig, ocspMask: string, ocspFolder: string): string {
  const cut = target.id.lastIndexOf('/');
  const domain = target.id.slice(cut + 1);
  const rel = cut < 0 ? [] : target.id.slice(0, cut).split('/');
  return path.resolve(ocspFolder, ...rel, expandOutputTemplate(ocspMask, { certPath: target.certPath, domain }));
}

/**
 * {@link scanFolder} with the output placeholders of {@link OUTPUT_PLACEHOLDERS}
 * applied to `ocsp_mask`. The daemon's re-scans use this so that they name
 * staples exactly as {@link loadConfig} did.
 */
export async function scanTargets(
  scan: ScanConfig,
  ocspFolder: string,
  options: ScanOptions = {},
): Promise<TargetConfig[]> {
  const targets = await scanFolder(scan, ocspFolder, options);
  if (!hasCertPlaceholder(scan.ocspMask)) return targets;
  return targets.map((t) => ({ ...t, staplePath: scannedStaplePath(t, scan.ocspMask, ocspFolder) }));
}
