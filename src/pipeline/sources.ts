/**
 * The source files of a target (its certificate, issuer, chain and root-chain
 * files), read at one moment and keyed by their contents: the key under which
 * the verdict cache (pipeline/verdict-cache.ts) remembers what a verification
 * proved. Shared files are read once per pass through the {@link PassMemo}.
 */
import { readRegularFileSync } from '../io/files.js';
import { contentHash } from '../io/fingerprint.js';
import type { PassMemo, SourceFile } from './pass-memo.js';

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

/** The cache key of a set of source contents (role-tagged, so a chain file is never mistaken for an issuer file). */
export function sourcesKey(cert: string, issuer?: string, chain?: string, rootchain?: string): string {
  return contentHash(`sk-sources/1\0${cert}\0${issuer ?? '-'}\0${chain ?? '-'}\0${rootchain ?? '-'}`);
}

function readOwn(path: string): SourceFile | undefined {
  const bytes = readRegularFileSync(path);
  return bytes === undefined ? undefined : { bytes, hash: contentHash(bytes) };
}

/** The issuer, chain and root-chain files of a target, read as {@link readSourcesSync} reads them; undefined if one cannot be. */
function readOtherSources(paths: SourcePaths, pass: PassMemo | undefined): Omit<SourceSet, 'cert' | 'key'> | undefined {
  const set: Omit<SourceSet, 'cert' | 'key'> = {};
  for (const role of ['issuer', 'chain', 'rootchain'] as const) {
    const p = role === 'issuer' ? paths.issuerPath : role === 'chain' ? paths.chainPath : paths.rootchainPath;
    if (p === undefined) continue;
    const f = pass ? pass.readShared(p) : readOwn(p);
    if (f === undefined) return undefined;
    set[role] = f;
  }
  return set;
}

/**
 * Reads every source file of a target synchronously (issuer and chain files
 * once per pass with a {@link PassMemo}). Returns undefined if any of them
 * cannot be read that way; the caller then loads the target the ordinary way
 * (and reports the ordinary errors).
 */
export function readSourcesSync(paths: SourcePaths, pass?: PassMemo): SourceSet | undefined {
  const cert = readOwn(paths.certPath);
  if (cert === undefined) return undefined;
  const others = readOtherSources(paths, pass);
  if (others === undefined) return undefined;
  const key = sourcesKey(cert.hash, others.issuer?.hash, others.chain?.hash, others.rootchain?.hash);
  return { cert, ...others, key };
}

/**
 * The {@link sourcesKey} of a target whose certificate file was read and
 * hashed just before this pass (PassMemo `knownCertHash`: the ocsprenewer
 * drop-in's discovery), without reading it again; its other files are read as
 * {@link readSourcesSync} reads them. Undefined when the hash was not given or
 * another file cannot be read that way. Only the cache lookup may use it:
 * whatever needs the certificate's bytes (a miss, a renewal, and the record
 * made from them) reads the file with {@link readSourcesSync}, so a record's
 * key is always the hash of the bytes it was made from.
 */
export function knownSourcesKey(paths: SourcePaths, pass: PassMemo | undefined): string | undefined {
  const cert = pass?.knownCertHash(paths.certPath);
  if (cert === undefined) return undefined;
  const others = readOtherSources(paths, pass);
  return others && sourcesKey(cert, others.issuer?.hash, others.chain?.hash, others.rootchain?.hash);
}
