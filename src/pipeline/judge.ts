/**
 * Load and judge: read a target's certificate and find its issuer, then read
 * the staple on disk and judge it with every acceptance rule of RFC 6960
 * §3.2 and §4.2.2 at `now` (core/verify.ts).
 *
 * The read path is built for 10,000 certificates (docs/PERFORMANCE.md):
 * small local files are read synchronously, chain files shared by many
 * certificates are read and parsed once, and signature checks are started
 * ahead on the signature thread (pipeline/check-ahead.ts).
 */
import { type Certificate, decodePem, loadCertificates } from '../core/certs.js';
import { StapleError, toStapleError, type ErrorCode } from '../core/errors.js';
import type { StapleFacts, StapleState } from '../core/policy.js';
import { decodeResponse, type DecodedResponse } from '../core/response.js';
import { triage as triageOf, type Triage } from '../core/triage.js';
import { verifyResponse, type VerifiedResponse } from '../core/verify.js';
import { readInputFile, readRegularFileSync } from '../io/files.js';
import { contentHash } from '../io/fingerprint.js';
import type { StapleStore } from '../io/store.js';
import { checkAhead, leafChecks, responseChecks } from './check-ahead.js';
import { responderUrls, type EngineContext, type EngineMemos, type LoadedCert, type Target } from './context.js';
import type { SyncReadableStore } from './contracts.js';
import { pickLeaf, type IssuerResolver } from './issuer.js';
import type { PassMemo, SourceFile } from './pass-memo.js';
import type { SourceSet } from './sources.js';

/** Reads a certificate, issuer or chain file: the fast synchronous read, else the ordinary one (with its errors). */
async function readSource(path: string, what: string, pre: SourceFile | undefined): Promise<Buffer> {
  if (pre) return pre.bytes;
  return readRegularFileSync(path) ?? (await readInputFile(path, what));
}

/**
 * Reads and parses an issuer, chain or root-chain file: once per pass with a
 * {@link PassMemo} (thousands of certificates usually share one chain, and the
 * same Certificate objects come back, so their keys are made once too).
 */
async function loadList(
  path: string | undefined,
  what: string,
  pre: SourceFile | undefined,
  pass: PassMemo | undefined,
): Promise<Certificate[] | undefined> {
  if (!path) return undefined;
  const data = await readSource(path, what, pre);
  if (!pass) return loadCertificates(data, path);
  return pass.certificates(data, pre?.hash ?? contentHash(data), path);
}

/** A loaded certificate, and whether its issuer came from the target's own files (only then may it be cached). */
export interface LoadResult {
  loaded: LoadedCert;
  issuerFromFiles: boolean;
  /** Every other certificate of the target's files (a CRL signer may be among them). */
  others: Certificate[];
}

/**
 * Loads a target's certificate and finds its issuer. `pre`: the target's
 * files read already (pipeline/sources.ts `readSourcesSync`).
 */
export async function loadFromSources(
  target: Target,
  resolver: IssuerResolver,
  pre: SourceSet | undefined,
  memos: EngineMemos,
): Promise<LoadResult> {
  if (target.certificate) return loadGiven(target.certificate, resolver, memos);
  const all = loadCertificates(await readSource(target.certPath, 'certificate', pre?.cert), target.certPath);
  const { leaf, rest } = pickLeaf(all);
  // read and parsed in order, so that the first problem reported is deterministic
  const explicit = await loadList(target.issuerPath, 'issuer certificate', pre?.issuer, memos.pass);
  const chain = await loadList(target.chainPath, 'chain', pre?.chain, memos.pass);
  const rootchain = await loadList(target.rootchainPath, 'root chain', pre?.rootchain, memos.pass);
  await checkAhead(memos, () => leafChecks(leaf, [explicit, rest, chain, rootchain]));
  const sources: Parameters<IssuerResolver['resolve']>[1] = { bundle: rest };
  if (explicit) sources.explicit = explicit;
  if (chain) sources.chain = chain;
  if (rootchain) sources.rootchain = rootchain;
  const issuer = await resolver.resolve(leaf, sources, memos.signatures?.memo);
  const issuerFromFiles = [rest, explicit, chain, rootchain].some((l) => l?.includes(issuer) ?? false);
  const others = [...new Set([rest, explicit, chain, rootchain].flatMap((l) => l ?? []))].filter((c) => c !== issuer);
  return { loaded: { cert: leaf, issuer }, issuerFromFiles, others };
}

/** {@link loadFromSources} for a certificate given in memory ({@link Target.certificate}). */
async function loadGiven(
  given: NonNullable<Target['certificate']>,
  resolver: IssuerResolver,
  memos: EngineMemos,
): Promise<LoadResult> {
  const sources: Parameters<IssuerResolver['resolve']>[1] = { bundle: given.bundle ?? [] };
  if (given.chain) sources.chain = given.chain;
  const issuer = await resolver.resolve(given.leaf, sources, memos.signatures?.memo);
  const others = [...(given.bundle ?? []), ...(given.chain ?? [])].filter((c) => c !== issuer);
  return { loaded: { cert: given.leaf, issuer }, issuerFromFiles: false, others };
}

/** Loads a target's certificate and finds its issuer (`memos`: a context's signature verifier and pass memo). */
export async function loadTargetCert(
  target: Target,
  resolver: IssuerResolver,
  memos: EngineMemos = {},
): Promise<LoadedCert> {
  return (await loadFromSources(target, resolver, undefined, memos)).loaded;
}

/** Decodes staple file contents: DER, or PEM `OCSP RESPONSE`. */
export function stapleBytes(data: Buffer, path: string): Buffer {
  if (data.includes('-----BEGIN ')) {
    const blocks = decodePem(data.toString('latin1'), 'OCSP_MALFORMED');
    const b = blocks.find((x) => x.label === 'OCSP RESPONSE');
    if (!b) throw new StapleError('OCSP_MALFORMED', `${path}: no "OCSP RESPONSE" PEM block`);
    return b.der;
  }
  return data;
}

/** The staple file as read: its bytes, nothing (missing), or why it could not be read. */
export interface StapleRead {
  data?: Buffer;
  error?: { code: ErrorCode; message: string };
}

export async function readStapleFile(store: StapleStore, path: string): Promise<StapleRead> {
  return readStapleFileSync(store, path) ?? readStapleFileAsync(store, path);
}

/** {@link readStapleFile} without a promise, when the store can read synchronously; else undefined. */
export function readStapleFileSync(store: StapleStore, path: string): StapleRead | undefined {
  const readSync = (store as Partial<SyncReadableStore>).readSync;
  if (typeof readSync !== 'function') return undefined;
  try {
    const data = readSync.call(store, path);
    return data === undefined ? {} : { data };
  } catch (e) {
    return { error: errorOf(e) };
  }
}

/** The code and message of an error, as {@link StapleState} carries them. */
function errorOf(e: unknown): { code: ErrorCode; message: string } {
  const err = toStapleError(e);
  return { code: err.code, message: err.message };
}

export async function readStapleFileAsync(store: StapleStore, path: string): Promise<StapleRead> {
  try {
    const data = await store.read(path);
    return data === undefined ? {} : { data };
  } catch (e) {
    return { error: errorOf(e) };
  }
}

/** The result of judging the staple on disk. */
export interface StapleJudgement {
  state: StapleState;
  verified?: VerifiedResponse;
  decoded?: DecodedResponse;
  bytes?: Buffer;
}

/** Verifies staple bytes with every acceptance rule of RFC 6960 §3.2 and §4.2.2 at `now`. */
export async function judgeStaple(
  read: StapleRead,
  path: string,
  loaded: LoadedCert,
  now: Date,
  skewMs: number | undefined,
  memos: EngineMemos,
): Promise<StapleJudgement> {
  if (read.error !== undefined) return { state: { kind: 'invalid', error: read.error } };
  const data = read.data;
  if (data === undefined) return { state: { kind: 'missing' } };
  try {
    const opts: Parameters<typeof verifyResponse>[1] = { cert: loaded.cert, issuer: loaded.issuer, now };
    if (skewMs !== undefined) opts.skewMs = skewMs;
    if (memos.signatures) opts.signatures = memos.signatures.memo;
    const decoded = decodeResponse(stapleBytes(data, path));
    await checkAhead(memos, () => responseChecks(decoded, loaded.issuer, memos.pass));
    const verified = verifyResponse(decoded, opts);
    return { state: { kind: 'valid', facts: factsOf(verified) }, verified, decoded, bytes: data };
  } catch (e) {
    return { state: { kind: 'invalid', error: errorOf(e) }, bytes: data };
  }
}

export function factsOf(v: VerifiedResponse): StapleFacts {
  return {
    status: v.status,
    thisUpdate: v.thisUpdate,
    nextUpdate: v.nextUpdate,
    producedAt: v.producedAt,
    usableUntil: v.usableUntil,
  };
}

/** What the judge step found for one target. */
export interface TargetJudgement extends StapleJudgement {
  /** The certificate, its issuer and the other certificates of its files. */
  load: LoadResult;
  /** How revocation of the certificate is published, after responder overrides (core/triage.ts). */
  triage: Triage;
  /** The staple file as read. */
  read: StapleRead;
  /** The time the staple was judged at. */
  now: Date;
}

/**
 * The judge step of the pipeline, and all of it: load the target's
 * certificate and find its issuer, triage it, read its staple from the store
 * and judge it at `ctx.now()`. It never asks a responder (the issuer is
 * downloaded only when the resolver has a transport). Used by
 * {@link processTarget} before it decides, by `check` (status/check.ts) as its
 * whole look at a staple, and by the embedded stapler for its first look at
 * a disk copy. Throws what loading the certificate throws; the staple is then
 * not read. `pre`: files already read (the staple-folder cache's look-up).
 */
export async function judgeTarget(
  target: Target,
  ctx: Pick<EngineContext, 'store' | 'resolver' | 'now' | 'skewMs' | 'urlOverrides' | 'signatures' | 'pass'>,
  pre: { sources?: SourceSet | undefined; read?: StapleRead | undefined } = {},
): Promise<TargetJudgement> {
  const load = await loadFromSources(target, ctx.resolver, pre.sources, ctx);
  const cert = load.loaded.cert;
  const triage = triageOf(cert, responderUrls(target, cert, ctx.urlOverrides));
  const read = pre.read ?? (await readStapleFile(ctx.store, target.staplePath));
  const now = ctx.now();
  const judged = await judgeStaple(read, target.staplePath, load.loaded, now, ctx.skewMs, ctx);
  return { ...judged, load, triage, read, now };
}

/** Reads and verifies the staple on disk (`memos`: a context's signature verifier and pass memo). */
export async function readStapleState(
  store: StapleStore,
  path: string,
  loaded: LoadedCert,
  now: Date,
  skewMs?: number,
  memos: EngineMemos = {},
): Promise<{ state: StapleState; verified?: VerifiedResponse; bytes?: Buffer }> {
  const read = await readStapleFile(store, path);
  const { state, verified, bytes } = await judgeStaple(read, path, loaded, now, skewMs, memos);
  const result: { state: StapleState; verified?: VerifiedResponse; bytes?: Buffer } = { state };
  if (verified) result.verified = verified;
  if (bytes) result.bytes = bytes;
  return result;
}
