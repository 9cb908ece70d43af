/**
 * One certificate, end to end: load it and its issuer, judge the staple on
 * disk, decide, fetch, verify and store. `run`, `daemon`, `fetch` and the
 * embedded mode all go through {@link processTarget}.
 *
 * Invariant: the staple file is replaced only by a response that passed
 * {@link verifyResponse} and says `good` — or, when the operator opted in
 * with `onRevokedWrite`, a verified `revoked` response.
 *
 * The read path is built for 10,000 certificates (docs/PERFORMANCE.md):
 * small local files are read synchronously, chain files shared by many
 * certificates are read and parsed once, and the staple-folder cache
 * (pipeline/verdict-cache.ts) lets a staple whose bytes, certificate and issuer are
 * unchanged skip parsing and signature verification while every
 * time-dependent rule is still applied at `now`.
 */
import type { KeyObject } from 'node:crypto';
import {
  type Certificate,
  decodePem,
  fingerprint,
  keyHashSha1,
  loadCertificates,
  parseCertificate,
  publicKeyOf,
} from '../core/certs.js';
import {
  compareStaples,
  keptMessage,
  rankOfVerified,
  type ComparisonReason,
  type RankedStaple,
} from '../core/compare.js';
import { StapleError, toStapleError, type ErrorCode } from '../core/errors.js';
import {
  cacheDeadline,
  decideRefresh,
  type CertWindow,
  type RefreshDecision,
  type RefreshPolicy,
  type StapleFacts,
  type StapleState,
} from '../core/policy.js';
import type { CertIdHash } from '../core/request.js';
import { decodeResponse, type DecodedResponse } from '../core/response.js';
import { mustStapleAdvice, mustStapleStranded, noOcspNotice, triage as triageOf, type Triage } from '../core/triage.js';
import {
  DEFAULT_SKEW_MS,
  MAX_THIS_UPDATE_AGE_MS,
  assertGood,
  verifyResponse,
  type VerifiedResponse,
} from '../core/verify.js';
import type { Fleet, Lease } from '../fleet/contract.js';
import { fleetKeyOf } from '../fleet/key.js';
import { fleetTurn, type Verdict } from '../fleet/turn.js';
import { readInputFile } from '../io/files.js';
import type { HttpTransport } from '../io/http.js';
import type { StapleStore } from '../io/store.js';
import {
  beginCacheWork,
  cacheForStaple,
  contentHash,
  endCacheWork,
  noteCacheLookup,
  readRegularFileSync,
  readSourcesSync,
  type CacheRecord,
  type SourceFile,
  type SourceSet,
} from './verdict-cache.js';
import type { MethodChoice } from './responder.js';
import { checkOnThread } from './signature-thread.js';
import { pickLeaf, type IssuerResolver } from './issuer.js';

/** What staplekeeper needs to know about one staple it maintains. */
export interface Target {
  id: string;
  certPath: string;
  staplePath: string;
  issuerPath?: string;
  chainPath?: string;
  rootchainPath?: string;
  /** Responder URLs overriding the AIA (tried in order). */
  responderUrls?: string[];
  /** Do not maintain this staple. */
  disabled?: boolean;
  /**
   * The certificate, already parsed (the embedded stapler has it from the TLS
   * handshake): nothing is read for it, `certPath` only names it, and its
   * issuer is looked for in `bundle`, then `chain`, then the resolver's CA
   * folders and caIssuers URL. Such a target never uses the staple-folder cache.
   */
  certificate?: { leaf: Certificate; bundle?: Certificate[]; chain?: Certificate[] };
}

/** Shared dependencies of the engine. */
export interface EngineContext {
  store: StapleStore;
  transport: HttpTransport;
  resolver: IssuerResolver;
  now: () => Date;
  policy: RefreshPolicy;
  method?: MethodChoice;
  hash?: CertIdHash;
  nonce?: boolean;
  skewMs?: number;
  makeBackups?: boolean;
  backupKeep?: number;
  /** Write a verified revoked response over the staple (default false; see docs/SECURITY.md). */
  onRevokedWrite?: boolean;
  /** Maps an AIA URL to an override URL or 'disabled'. */
  urlOverrides?: Record<string, string>;
  /** How messages name the current staple (default "the staple on disk"; the embedded stapler: "the staple in use"). */
  stapleName?: string;
  /** Overall time to obtain a staple for one certificate (default 2 × the default HTTP timeout; pipeline/responder.ts). */
  fetchDeadlineMs?: number;
  /**
   * The staple folder (`ocsp_folder`): missing folders below it are created
   * for a staple (a recursive scan's subfolders); any other missing folder is
   * an error naming it. Without it, a staple's folder must exist.
   */
  stapleRoot?: string;
  /** Replace an existing non-empty file that is not an OCSP response (`overwrite_non_ocsp`; default false). */
  overwriteNonOcsp?: boolean;
  /**
   * A certificate without a responder is a failure (`NO_OCSP_URL`), as in
   * ocspbot. Default false: it is triaged (core/triage.ts) and, unless it is
   * must-staple, skipped with one notice.
   */
  strictOcsp?: boolean;
  /**
   * Checks the CRL of a `crl` certificate (engine/crl-watch.ts); absent: CRLs
   * are not watched (the default of `run`).
   */
  crl?: CrlChecker;
  onNotice?: (targetId: string, message: string) => void;
  /**
   * Use the staple-folder cache (default true): a staple whose bytes,
   * certificate and issuer files are unchanged since it was verified is not
   * parsed or verified again; the time-dependent rules still apply at `now`.
   * See pipeline/verdict-cache.ts for why this never changes a decision.
   */
  cache?: boolean;
  /**
   * Fleet mode (src/fleet, docs/fleet.md): asked before the responder, told
   * after a fetch. Absent: no fleet.
   */
  fleet?: Fleet;
  /** With a fleet: wait for another node's publication here ('block', `run`) or report it pending ('defer', the daemon). */
  fleetWait?: 'block' | 'defer';
}

/**
 * A store that can also read synchronously with the same contract as
 * `read` (undefined when missing, `FILE_UNREADABLE` otherwise). A staple
 * is a few KiB on a local disk: one synchronous read costs ~7 µs, the
 * asynchronous one ~50–90 µs of thread-pool round trips, which is most of a
 * 10,000-certificate check. Stores without it are read through `read`.
 */
export interface SyncReadableStore extends StapleStore {
  readSync(path: string): Buffer | undefined;
}

/** The facts of a staple for output (`--json`, `/status`). */
export interface StapleSummary {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: string;
  nextUpdate: string;
  producedAt: string;
  /** When it stops being usable: nextUpdate, capped by a delegated signer's notAfter (core/usability.ts). */
  usableUntil: string;
  responder: string;
}

/** What happened to one target. */
export interface TargetOutcome {
  id: string;
  certPath: string;
  staplePath: string;
  /** updated: a new staple was written; unchanged: kept; failed: an error; skipped: disabled or nothing to do. */
  result: 'updated' | 'unchanged' | 'failed' | 'skipped';
  decision?: RefreshDecision;
  /** The staple now on disk (after this run), if valid. */
  staple?: StapleSummary;
  error?: { code: ErrorCode; message: string };
  /** Set when the responder says the certificate is revoked. */
  revoked?: RevokedInfo;
  url?: string;
  method?: 'GET' | 'POST';
  backupPath?: string;
  /** When the staple should next be looked at (the refresh point), ISO. */
  nextRefresh?: string;
  /**
   * Set when the responder's verified answer was not better than the valid
   * staple on disk (core/compare.ts), which was kept byte-for-byte: the result
   * is `unchanged`, nothing is counted as renewed, and the daemon retries
   * with its failure backoff.
   */
  kept?: { reason: ComparisonReason; message: string };
  /** The staple was written, but keeping its backup failed (a warning: the write is what counts). */
  backupError?: string;
  /** Notices gathered while processing. */
  notices: string[];
  /**
   * Fleet mode: `hit` the staple came from the fleet (no request); `published`
   * fetched here and published; `pending` another node is fetching it;
   * `direct` fetched without the fleet (down or silent); `kept` fetch is false
   * and the fleet had nothing better.
   */
  fleet?: { role: 'hit' | 'published' | 'pending' | 'direct' | 'kept'; detail?: string };
  /** How revocation of the certificate is published (absent when the certificate could not be loaded). */
  triage?: Triage;
  /** The result of the CRL check of a `crl` certificate, when CRLs are watched. */
  crl?: CrlVerdict;
}

/**
 * What the engine needs from a CRL watcher (engine/crl-watch.ts): the
 * verdict on one certificate. Contract: never throws; a CRL that cannot be
 * fetched or verified is `unavailable`, never `good` and never `revoked`.
 */
export interface CrlChecker {
  check(
    cert: Certificate,
    issuer: Certificate,
    urls: readonly string[],
    candidates?: readonly Certificate[],
  ): Promise<CrlVerdict>;
}

/** The verdict of a CRL check. */
export interface CrlVerdict {
  /** good: listed nowhere on a valid CRL; revoked: listed; unavailable: no valid CRL could be had. */
  status: 'good' | 'revoked' | 'unavailable';
  /** The distribution point the verdict comes from. */
  url: string;
  thisUpdate?: string;
  nextUpdate?: string;
  revocationTime?: string;
  revocationReason?: string;
  /** When unavailable: why (a stable code and a message). */
  error?: { code: ErrorCode; message: string };
  /** How the CRL was had: downloaded, confirmed unchanged (HTTP 304), or from the disk cache. */
  source?: 'downloaded' | 'not-modified' | 'cached';
}

/** A revoked answer (responder or CRL), written or not. */
export interface RevokedInfo {
  /** revocationTime, ISO. */
  time?: string;
  /** CRLReason name. */
  reason?: string;
  /** Where the answer came from. */
  source?: 'ocsp' | 'crl';
  /** The responder or CRL URL. */
  url?: string;
  /** SHA-256 of the certificate DER (hex): revocation marks (revocation/marks.ts) name certificates by it. */
  certificate?: string;
}

/** SHA-256 of a certificate's DER, lower-case hex. */
export function certFingerprint(cert: Certificate): string {
  return fingerprint(cert);
}

/** A certificate with everything needed to talk about its staple. */
export interface LoadedCert {
  cert: Certificate;
  issuer: Certificate;
}

/**
 * Parsed issuer, chain and root-chain files by content hash. Thousands of
 * certificates usually share one chain: it is parsed once, and because the
 * same {@link Certificate} objects come back, so is its public key.
 */
const parsedLists = new Map<string, Certificate[]>();
const MAX_PARSED_LISTS = 256;

/** Reads a certificate, issuer or chain file: the fast synchronous read, else the ordinary one (with its errors). */
async function readSource(path: string, what: string, pre: SourceFile | undefined): Promise<Buffer> {
  if (pre) return pre.bytes;
  return readRegularFileSync(path) ?? (await readInputFile(path, what));
}

async function loadList(
  path: string | undefined,
  what: string,
  pre: SourceFile | undefined,
): Promise<Certificate[] | undefined> {
  if (!path) return undefined;
  const data = await readSource(path, what, pre);
  const key = pre?.hash ?? contentHash(data);
  let list = parsedLists.get(key);
  if (list === undefined) {
    list = loadCertificates(data, path);
    if (parsedLists.size >= MAX_PARSED_LISTS) parsedLists.clear();
    parsedLists.set(key, list);
  }
  return list;
}

/** A loaded certificate, and whether its issuer came from the target's own files (only then may it be cached). */
interface LoadResult {
  loaded: LoadedCert;
  issuerFromFiles: boolean;
  /** Every other certificate of the target's files (a CRL signer may be among them). */
  others: Certificate[];
}

async function loadFromSources(target: Target, resolver: IssuerResolver, pre?: SourceSet): Promise<LoadResult> {
  if (target.certificate) return loadGiven(target.certificate, resolver);
  const all = loadCertificates(await readSource(target.certPath, 'certificate', pre?.cert), target.certPath);
  const { leaf, rest } = pickLeaf(all);
  // read and parsed in order, so that the first problem reported is deterministic
  const explicit = await loadList(target.issuerPath, 'issuer certificate', pre?.issuer);
  const chain = await loadList(target.chainPath, 'chain', pre?.chain);
  const rootchain = await loadList(target.rootchainPath, 'root chain', pre?.rootchain);
  await checkAhead(leafChecks(leaf, [explicit, rest, chain, rootchain]));
  const sources: Parameters<IssuerResolver['resolve']>[1] = { bundle: rest };
  if (explicit) sources.explicit = explicit;
  if (chain) sources.chain = chain;
  if (rootchain) sources.rootchain = rootchain;
  const issuer = await resolver.resolve(leaf, sources);
  const issuerFromFiles = [rest, explicit, chain, rootchain].some((l) => l?.includes(issuer) ?? false);
  const others = [...new Set([rest, explicit, chain, rootchain].flatMap((l) => l ?? []))].filter((c) => c !== issuer);
  return { loaded: { cert: leaf, issuer }, issuerFromFiles, others };
}

/** {@link loadFromSources} for a certificate given in memory ({@link Target.certificate}). */
async function loadGiven(given: NonNullable<Target['certificate']>, resolver: IssuerResolver): Promise<LoadResult> {
  const sources: Parameters<IssuerResolver['resolve']>[1] = { bundle: given.bundle ?? [] };
  if (given.chain) sources.chain = given.chain;
  const issuer = await resolver.resolve(given.leaf, sources);
  const others = [...(given.bundle ?? []), ...(given.chain ?? [])].filter((c) => c !== issuer);
  return { loaded: { cert: given.leaf, issuer }, issuerFromFiles: false, others };
}

// ---------------------------------------------------------------------------
// Signature checks ahead, on the check thread
// ---------------------------------------------------------------------------

/** One signature check: data, signature, algorithm and the key to check it with. */
interface SignatureCheck {
  alg: Buffer;
  data: Buffer;
  signature: Buffer;
  signer: Certificate;
}

/**
 * Runs signature checks on the check thread (check-thread.ts), which remembers the results
 * (core/signature.ts), so that the synchronous rules that follow — issuer
 * discovery, {@link verifyResponse} — find them done. Nothing is decided
 * here: a check of the same inputs gives the same answer either way; this
 * only lets the checks of several certificates run on every core while the
 * main thread reads and parses the next ones.
 */
async function checkAhead(checks: SignatureCheck[]): Promise<void> {
  if (checks.length === 0) return;
  const jobs: Array<Promise<void>> = [];
  for (const c of checks) {
    let key: KeyObject;
    try {
      key = publicKeyOf(c.signer);
    } catch {
      continue; // the synchronous rule reports the unusable key
    }
    // every key type: batched, even an RSA-2048 check (~20 µs) is cheaper there than here
    jobs.push(checkOnThread(c.alg, c.data, c.signature, key));
  }
  if (jobs.length > 0) await Promise.all(jobs);
}

/**
 * Certificates included in responses, parsed, by content: every staple of a
 * CA usually carries the same delegated responder certificate.
 */
const includedCerts = new Map<string, Certificate | null>();
const MAX_INCLUDED_CERTS = 256;

/** The last included certificate parsed: a run's responses usually all carry the same one. */
let lastIncluded: { der: Buffer; cert: Certificate | null } | undefined;

function parseIncluded(der: Buffer): Certificate | undefined {
  if (lastIncluded !== undefined && lastIncluded.der.equals(der)) return lastIncluded.cert ?? undefined;
  const c = parseIncludedByHash(der);
  lastIncluded = { der: Buffer.from(der), cert: c ?? null };
  return c;
}

function parseIncludedByHash(der: Buffer): Certificate | undefined {
  const key = contentHash(der);
  let c = includedCerts.get(key);
  if (c === undefined) {
    try {
      c = parseCertificate(der);
    } catch {
      c = null; // verifyResponse ignores an unparseable included certificate too
    }
    if (includedCerts.size >= MAX_INCLUDED_CERTS) includedCerts.clear();
    includedCerts.set(key, c);
  }
  return c ?? undefined;
}

/** The checks issuer discovery will make: the leaf's signature under each candidate named as its issuer. */
function leafChecks(leaf: Certificate, lists: Array<Certificate[] | undefined>): SignatureCheck[] {
  const out: SignatureCheck[] = [];
  const seen = new Set<Certificate>();
  for (const list of lists) {
    for (const c of list ?? []) {
      if (c === leaf || seen.has(c) || !leaf.issuerDer.equals(c.subjectDer)) continue;
      seen.add(c);
      out.push({ alg: leaf.signatureAlgorithmDer, data: leaf.tbsDer, signature: leaf.signature, signer: c });
    }
  }
  return out;
}

/**
 * The checks {@link verifyResponse} will make on a response: its signature
 * under the issuer or an included certificate named by the responder ID, and
 * an included signer's certificate under the issuer (RFC 6960 §4.2.2.2).
 */
function responseChecks(decoded: DecodedResponse, issuer: Certificate): SignatureCheck[] {
  const basic = decoded.basic;
  if (!basic) return [];
  const rid = basic.responderId;
  const out: SignatureCheck[] = [];
  const candidates: Certificate[] = [issuer];
  for (const der of basic.certs) {
    const c = parseIncluded(der);
    if (c) candidates.push(c);
  }
  for (const c of candidates) {
    const named = 'byName' in rid ? c.subjectDer.equals(rid.byName) : keyHashSha1(c).equals(rid.byKey);
    if (!named) continue;
    out.push({ alg: basic.signatureAlgorithmDer, data: basic.tbsDer, signature: basic.signature, signer: c });
    if (c !== issuer && c.issuerDer.equals(issuer.subjectDer)) {
      out.push({ alg: c.signatureAlgorithmDer, data: c.tbsDer, signature: c.signature, signer: issuer });
    }
  }
  return out;
}

/**
 * The transport, with the signature checks of each answer started in the
 * check thread as soon as it arrives; fetchResponse's verification then finds
 * them done. The answer itself is passed on untouched.
 */
function checkingAhead(transport: HttpTransport, issuer: Certificate): HttpTransport {
  return {
    async send(req) {
      const res = await transport.send(req);
      if (res.status === 200) {
        let decoded: DecodedResponse | undefined;
        try {
          decoded = decodeResponse(res.body);
        } catch {
          // fetchResponse reports it
        }
        if (decoded) await checkAhead(responseChecks(decoded, issuer));
      }
      return res;
    },
    close: () => transport.close(),
  };
}

/** Loads a target's certificate and finds its issuer. */
export async function loadTargetCert(target: Target, resolver: IssuerResolver): Promise<LoadedCert> {
  return (await loadFromSources(target, resolver)).loaded;
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
interface StapleRead {
  data?: Buffer;
  error?: { code: ErrorCode; message: string };
}

async function readStapleFile(store: StapleStore, path: string): Promise<StapleRead> {
  return readStapleFileSync(store, path) ?? readStapleFileAsync(store, path);
}

/** {@link readStapleFile} without a promise, when the store can read synchronously; else undefined. */
function readStapleFileSync(store: StapleStore, path: string): StapleRead | undefined {
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

async function readStapleFileAsync(store: StapleStore, path: string): Promise<StapleRead> {
  try {
    const data = await store.read(path);
    return data === undefined ? {} : { data };
  } catch (e) {
    return { error: errorOf(e) };
  }
}

/** The result of judging the staple on disk. */
interface StapleJudgement {
  state: StapleState;
  verified?: VerifiedResponse;
  decoded?: DecodedResponse;
  bytes?: Buffer;
}

/** Verifies staple bytes with every acceptance rule of RFC 6960 §3.2 and §4.2.2 at `now`. */
async function judgeStaple(
  read: StapleRead,
  path: string,
  loaded: LoadedCert,
  now: Date,
  skewMs?: number,
): Promise<StapleJudgement> {
  if (read.error !== undefined) return { state: { kind: 'invalid', error: read.error } };
  const data = read.data;
  if (data === undefined) return { state: { kind: 'missing' } };
  try {
    const opts: Parameters<typeof verifyResponse>[1] = { cert: loaded.cert, issuer: loaded.issuer, now };
    if (skewMs !== undefined) opts.skewMs = skewMs;
    const decoded = decodeResponse(stapleBytes(data, path));
    await checkAhead(responseChecks(decoded, loaded.issuer));
    const verified = verifyResponse(decoded, opts);
    return { state: { kind: 'valid', facts: factsOf(verified) }, verified, decoded, bytes: data };
  } catch (e) {
    return { state: { kind: 'invalid', error: errorOf(e) }, bytes: data };
  }
}

function factsOf(v: VerifiedResponse): StapleFacts {
  return {
    status: v.status,
    thisUpdate: v.thisUpdate,
    nextUpdate: v.nextUpdate,
    producedAt: v.producedAt,
    usableUntil: v.usableUntil,
  };
}

/** Reads and verifies the staple on disk. */
export async function readStapleState(
  store: StapleStore,
  path: string,
  loaded: LoadedCert,
  now: Date,
  skewMs?: number,
): Promise<{ state: StapleState; verified?: VerifiedResponse; bytes?: Buffer }> {
  const { state, verified, bytes } = await judgeStaple(await readStapleFile(store, path), path, loaded, now, skewMs);
  const result: { state: StapleState; verified?: VerifiedResponse; bytes?: Buffer } = { state };
  if (verified) result.verified = verified;
  if (bytes) result.bytes = bytes;
  return result;
}

// ---------------------------------------------------------------------------
// Cache records: building them from a verification, using them at `now`
// ---------------------------------------------------------------------------

/**
 * True when every time-dependent rule of {@link verifyResponse} holds at
 * `now` for a cached verdict (the others were proved when it was recorded):
 * a delegated signer valid (RFC 6960 §4.2.2.2), thisUpdate not in the
 * future beyond the skew nor older than a year, producedAt not in the
 * future, nextUpdate ahead (RFC 5019 §4), the certificate
 * not expired. When one fails, the staple is verified from scratch, so the
 * error reported is the ordinary one.
 */
export function isRecordValidAt(r: CacheRecord, now: Date, skewMs: number = DEFAULT_SKEW_MS): boolean {
  const t = now.getTime();
  if (r.dlg === 1 && ((r.sna as number) <= t || (r.snb as number) > t + skewMs)) return false;
  if (r.tu > t + skewMs) return false;
  if (r.tu < t - MAX_THIS_UPDATE_AGE_MS) return false;
  if (r.pa > t + skewMs) return false;
  if (r.nu <= t) return false;
  if (r.na <= t) return false;
  return true;
}

/**
 * A window inside which a delegated signer is valid: the intersection over
 * every included certificate that could be it (same subject as the one
 * named). Being conservative only sends a staple to full verification earlier.
 */
function signerWindow(decoded: DecodedResponse, responder: string): { snb: number; sna: number } | undefined {
  let snb = -Infinity;
  let sna = Infinity;
  let found = false;
  for (const der of decoded.basic?.certs ?? []) {
    const c = parseIncluded(der);
    if (!c || c.subject !== responder) continue;
    found = true;
    snb = Math.max(snb, c.notBefore.getTime());
    sna = Math.min(sna, c.notAfter.getTime());
  }
  return found ? { snb, sna } : undefined;
}

/** The cache record for a verified staple, or undefined when it cannot be described safely. */
function recordFor(
  key: string,
  stapleHash: string,
  cert: Certificate,
  v: VerifiedResponse,
  decoded: DecodedResponse,
): Omit<CacheRecord, 'seen'> | undefined {
  const r: Omit<CacheRecord, 'seen'> = {
    c: key,
    s: stapleHash,
    nb: cert.notBefore.getTime(),
    na: cert.notAfter.getTime(),
    subj: cert.subject,
    st: v.status,
    tu: v.thisUpdate.getTime(),
    nu: v.nextUpdate.getTime(),
    pa: v.producedAt.getTime(),
    uu: v.usableUntil.getTime(),
    rsp: v.responder,
    dlg: v.delegated ? 1 : 0,
    w: [...v.warnings],
  };
  if (v.delegated) {
    const w = signerWindow(decoded, v.responder);
    if (!w) return undefined;
    r.snb = w.snb;
    r.sna = w.sna;
  }
  if (v.revocationTime) r.rt = v.revocationTime.getTime();
  if (v.revocationReason !== undefined) r.rr = v.revocationReason;
  if (cert.ocspUrls.length > 0) r.ou = [...cert.ocspUrls];
  if (cert.crlUrls.length > 0) r.du = [...cert.crlUrls];
  if (cert.mustStaple) r.ms = 1;
  if (cert.noRevAvail) r.nra = 1;
  return r;
}

function recordFacts(r: CacheRecord): StapleFacts {
  return {
    status: r.st,
    thisUpdate: new Date(r.tu),
    nextUpdate: new Date(r.nu),
    producedAt: new Date(r.pa),
    usableUntil: new Date(r.uu),
  };
}

function recordSummary(r: CacheRecord): StapleSummary {
  return {
    status: r.st,
    thisUpdate: new Date(r.tu).toISOString(),
    nextUpdate: new Date(r.nu).toISOString(),
    producedAt: new Date(r.pa).toISOString(),
    usableUntil: new Date(r.uu).toISOString(),
    responder: r.rsp,
  };
}

/** Summarises a verified response for output. */
export function summarize(v: VerifiedResponse): StapleSummary {
  return {
    status: v.status,
    thisUpdate: v.thisUpdate.toISOString(),
    nextUpdate: v.nextUpdate.toISOString(),
    producedAt: v.producedAt.toISOString(),
    usableUntil: v.usableUntil.toISOString(),
    responder: v.responder,
  };
}

/** Options of one {@link processTarget} call. */
export interface ProcessOptions {
  /** Renew whatever the policy says. */
  force?: boolean;
  /** Decide only; fetch and write nothing. */
  dryRun?: boolean;
  /** Fleet mode: take a better staple from the fleet even when this one is not due (publications, sweeps). */
  fleetApply?: boolean;
  /** Fleet mode: only take a better staple from the fleet; never fetch (the responder is in backoff). */
  fleetOnly?: boolean;
}

/** The responder URLs for a certificate, after overrides. Empty when disabled. */
export function responderUrls(
  target: Target,
  cert: Pick<Certificate, 'ocspUrls'>,
  overrides: Record<string, string> = {},
): string[] {
  if (target.responderUrls && target.responderUrls.length > 0) return target.responderUrls;
  const urls: string[] = [];
  for (const u of cert.ocspUrls) {
    const o = Object.hasOwn(overrides, u) ? overrides[u] : undefined; // names are keys: never Object.prototype
    if (o === 'disabled') continue;
    urls.push(o ?? u);
  }
  return urls;
}

/** Every AIA responder URL of the certificate is disabled by configuration (reported as such, not triaged). */
function disabledByOverride(
  target: Target,
  hit: CacheRecord | undefined,
  load: LoadResult | undefined,
  ctx: EngineContext,
): boolean {
  if (target.responderUrls && target.responderUrls.length > 0) return false;
  const aia = hit ? (hit.ou ?? []) : (load?.loaded.cert.ocspUrls ?? []);
  return aia.length > 0 && responderUrls(target, { ocspUrls: aia }, ctx.urlOverrides).length === 0;
}

/**
 * A certificate without a responder (triage `crl` or `none`): nothing to
 * staple. Not a failure — one notice, `skipped` — unless it is must-staple
 * (a failure with what to do). A `crl` certificate's CRL is checked when the
 * context watches CRLs; a listed certificate is reported revoked.
 */
async function noResponder(
  target: Target,
  ctx: EngineContext,
  options: ProcessOptions,
  out: TargetOutcome,
  notice: (m: string) => void,
  tri: Triage,
  state: StapleState,
  load: LoadResult | undefined,
  sources: SourceSet | undefined,
): Promise<TargetOutcome> {
  if (mustStapleStranded(tri)) {
    const until = state.kind === 'valid' ? (state.facts.usableUntil ?? state.facts.nextUpdate) : undefined;
    out.result = 'failed';
    out.error = { code: 'MUST_STAPLE_NO_RESPONDER', message: mustStapleAdvice(tri, until) };
  } else {
    out.result = 'skipped';
    notice(noOcspNotice(tri));
  }
  if (tri.mechanism === 'crl' && ctx.crl && !options.dryRun) {
    load ??= await loadFromSources(target, ctx.resolver, sources);
    const verdict = await ctx.crl.check(load.loaded.cert, load.loaded.issuer, tri.crlUrls, load.others);
    out.crl = verdict;
    if (verdict.status === 'revoked') {
      out.revoked = { source: 'crl', url: verdict.url, certificate: certFingerprint(load.loaded.cert) };
      if (verdict.revocationTime) out.revoked.time = verdict.revocationTime;
      if (verdict.revocationReason) out.revoked.reason = verdict.revocationReason;
      out.result = 'failed';
      const when = verdict.revocationTime ? ` at ${verdict.revocationTime}` : '';
      const why = verdict.revocationReason ? ` (${verdict.revocationReason})` : '';
      out.error = {
        code: 'CRL_REVOKED',
        message: `the certificate "${load.loaded.cert.subject}" is REVOKED${when}${why} according to its CRL ${verdict.url}; replace it now`,
      };
    } else if (verdict.status === 'unavailable') {
      notice(`CRL not checked: ${verdict.error?.code ?? 'CRL_MALFORMED'}: ${verdict.error?.message ?? ''}`);
    }
  }
  return out;
}

/**
 * Processes one target: decide, and when due fetch, verify and store.
 * Never throws: every failure is reported in the outcome, and a failure never
 * touches the staple on disk.
 */
export async function processTarget(
  target: Target,
  ctx: EngineContext,
  options: ProcessOptions = {},
): Promise<TargetOutcome> {
  const out: TargetOutcome = {
    id: target.id,
    certPath: target.certPath,
    staplePath: target.staplePath,
    result: 'unchanged',
    notices: [],
  };
  const notice = (m: string): void => {
    out.notices.push(m);
    ctx.onNotice?.(target.id, m);
  };
  if (target.disabled) {
    out.result = 'skipped';
    notice('OCSP is disabled for this certificate');
    return out;
  }
  beginCacheWork();
  try {
    return await processEnabled(target, ctx, options, out, notice);
  } finally {
    endCacheWork();
  }
}

async function processEnabled(
  target: Target,
  ctx: EngineContext,
  options: ProcessOptions,
  out: TargetOutcome,
  notice: (m: string) => void,
): Promise<TargetOutcome> {
  const slot = ctx.cache === false || target.certificate ? undefined : cacheForStaple(target.staplePath);
  let fleetJob: FleetJob | 'done' | undefined;
  try {
    slot?.cache.touch(slot.name, !options.dryRun);
    // The certificate's files are read once, here. Only when the cache holds a
    // record for exactly these contents is the staple read before the
    // certificate is parsed; otherwise the order is the ordinary one (load,
    // then read the staple), so a certificate that fails to load never
    // touches the staple file.
    const sources = target.certificate ? undefined : readSourcesSync(target);
    const record = slot && sources ? slot.cache.get(slot.name) : undefined;
    let stapleRead: StapleRead | undefined;
    let stapleHash: string | undefined;
    let hit: CacheRecord | undefined;
    let now: Date | undefined;
    if (record && sources && record.c === sources.key) {
      stapleRead =
        readStapleFileSync(ctx.store, target.staplePath) ?? (await readStapleFileAsync(ctx.store, target.staplePath));
      now = ctx.now();
      if (stapleRead.data) {
        stapleHash = contentHash(stapleRead.data);
        if (record.s === stapleHash && isRecordValidAt(record, now, ctx.skewMs)) hit = record;
      }
    }
    if (slot) noteCacheLookup(hit !== undefined);

    let load: LoadResult | undefined;
    let state: StapleState;
    let currentDecoded: DecodedResponse | undefined;
    let window: CertWindow & { subject: string };
    if (hit) {
      slot?.cache.markSeen(hit);
      state = { kind: 'valid', facts: recordFacts(hit) };
      out.staple = recordSummary(hit);
      window = { notBefore: new Date(hit.nb), notAfter: new Date(hit.na), subject: hit.subj };
      out.triage = triageOf(
        {
          notBefore: window.notBefore,
          notAfter: window.notAfter,
          mustStaple: hit.ms === 1,
          noRevAvail: hit.nra === 1,
          crlUrls: hit.du ?? [],
          crlDistributionPoints: [],
        },
        responderUrls(target, { ocspUrls: hit.ou ?? [] }, ctx.urlOverrides),
      );
    } else {
      load = await loadFromSources(target, ctx.resolver, sources);
      const cert = load.loaded.cert;
      out.triage = triageOf(cert, responderUrls(target, cert, ctx.urlOverrides));
      stapleRead ??= await readStapleFile(ctx.store, target.staplePath);
      now = ctx.now();
      const current = await judgeStaple(stapleRead, target.staplePath, load.loaded, now, ctx.skewMs);
      state = current.state;
      currentDecoded = current.decoded;
      if (current.verified) {
        out.staple = summarize(current.verified);
        if (slot && sources && load.issuerFromFiles && stapleRead.data && current.decoded) {
          const rec = recordFor(
            sources.key,
            stapleHash ?? contentHash(stapleRead.data),
            cert,
            current.verified,
            current.decoded,
          );
          if (rec) slot.cache.set(slot.name, rec);
        }
      }
      window = { notBefore: cert.notBefore, notAfter: cert.notAfter, subject: cert.subject };
    }
    now ??= ctx.now(); // (set on both paths above)
    if (state.kind === 'invalid')
      notice(`the staple on disk is not usable: ${state.error.code}: ${state.error.message}`);
    const decision = decideRefresh(state, window, ctx.policy, now, { force: options.force ?? false });
    out.decision = decision;
    if (decision.action === 'skip') {
      out.result = 'failed';
      out.error = {
        code: 'CERT_EXPIRED',
        message: `the certificate "${window.subject}" expired at ${window.notAfter.toISOString()}; renew the certificate`,
      };
      return out;
    }
    const tri = out.triage;
    if (tri && tri.mechanism !== 'ocsp' && !ctx.strictOcsp && !disabledByOverride(target, hit, load, ctx)) {
      return await noResponder(target, ctx, options, out, notice, tri, state, load, sources);
    }
    if (ctx.fleet && !options.dryRun && (decision.action === 'renew' || options.fleetApply || options.fleetOnly)) {
      load ??= await loadFromSources(target, ctx.resolver, sources);
      fleetJob = await fleetStep(ctx.fleet, ctx, target, load.loaded, state, decision, options, out, notice);
      if (fleetJob === 'done') return out;
    }
    if (options.fleetOnly) {
      out.nextRefresh = decision.at.toISOString();
      return out;
    }
    if (decision.action === 'keep') {
      out.nextRefresh = decision.at.toISOString();
      return out;
    }
    if (options.dryRun) {
      out.nextRefresh = decision.at.toISOString();
      return out;
    }

    // Renewal needs the parsed certificate and issuer (a cache hit skipped them).
    load ??= await loadFromSources(target, ctx.resolver, sources);
    const loaded = load.loaded;
    const urls = responderUrls(target, loaded.cert, ctx.urlOverrides);
    if (urls.length === 0 && loaded.cert.ocspUrls.length > 0) {
      out.result = 'skipped';
      notice('every responder URL of this certificate is disabled by configuration');
      return out;
    }
    const { fetchResponse } = await import('./responder.js');
    const fopts: Parameters<typeof fetchResponse>[0] = {
      cert: loaded.cert,
      issuer: loaded.issuer,
      urls,
      transport: checkingAhead(ctx.transport, loaded.issuer),
      now: ctx.now,
      onNotice: notice,
    };
    if (ctx.method) fopts.method = ctx.method;
    if (ctx.hash) fopts.hash = ctx.hash;
    if (ctx.nonce) fopts.nonce = ctx.nonce;
    if (ctx.skewMs !== undefined) fopts.skewMs = ctx.skewMs;
    if (ctx.fetchDeadlineMs !== undefined) fopts.deadlineMs = ctx.fetchDeadlineMs;
    const fetched = await fetchResponse(fopts);
    out.url = fetched.url;
    out.method = fetched.method;
    const v = fetched.response;
    let candidateDecoded: DecodedResponse | undefined;
    try {
      candidateDecoded = decodeResponse(v.der);
    } catch {
      // verified from these very bytes: cannot happen
    }
    // What is written was verified just now: the next run can take it from the cache.
    const remember = (): void => {
      if (!slot || !sources || !load?.issuerFromFiles || !candidateDecoded) return;
      const rec = recordFor(sources.key, contentHash(v.der), loaded.cert, v, candidateDecoded);
      if (rec) slot.cache.set(slot.name, rec);
    };
    // A staple only ever gets better (core/compare.ts): the valid staple on disk is the bar.
    const currentRank: RankedStaple | undefined =
      state.kind === 'valid'
        ? { ...state.facts, answers: answersIn(stapleRead?.data, currentDecoded, target.staplePath) }
        : undefined;
    const candidateRank: RankedStaple = {
      status: v.status,
      thisUpdate: v.thisUpdate,
      nextUpdate: v.nextUpdate,
      usableUntil: v.usableUntil,
      answers: candidateDecoded?.basic?.singles.length ?? 1,
    };
    const verdict = compareStaples(currentRank, candidateRank);
    const keep = (): TargetOutcome => {
      const message = keptMessage(currentRank as RankedStaple, candidateRank, verdict.reason, ctx.stapleName);
      out.kept = { reason: verdict.reason, message };
      out.result = 'unchanged';
      notice(message);
      out.nextRefresh = decision.at.toISOString();
      return out;
    };
    if (v.status === 'revoked') {
      out.revoked = { source: 'ocsp', url: fetched.url, certificate: certFingerprint(loaded.cert) };
      if (v.revocationTime) out.revoked.time = v.revocationTime.toISOString();
      if (v.revocationReason) out.revoked.reason = v.revocationReason;
      if (ctx.onRevokedWrite && verdict.better) {
        await writeStaple(ctx, target, v, out);
        out.result = 'updated';
        out.staple = summarize(v); // the staple now on disk is the revoked response
        remember();
      } else if (ctx.onRevokedWrite) {
        notice(keptMessage(currentRank as RankedStaple, candidateRank, verdict.reason, ctx.stapleName));
      }
    }
    assertGood(v, `the certificate "${loaded.cert.subject}"`);
    if (!verdict.better) return keep();
    await writeStaple(ctx, target, v, out);
    // The staple is written: from here on nothing may report this as a failure.
    out.result = 'updated';
    out.staple = summarize(v);
    remember();
    if (ctx.fleet && fleetJob && fleetJob !== 'done') await publishFetched(ctx.fleet, fleetJob, v, out, notice);
    const decidedAt = ctx.now();
    const cacheUntil = fetched.maxAgeMs !== undefined ? cacheDeadline(now, fetched.maxAgeMs, v.usableUntil) : undefined;
    const after = decideRefresh(
      { kind: 'valid', facts: { ...v, ...(cacheUntil ? { cacheUntil } : {}) } },
      loaded.cert,
      ctx.policy,
      decidedAt,
    );
    out.nextRefresh = Number.isNaN(after.at.getTime()) ? decidedAt.toISOString() : after.at.toISOString();
    return out;
  } catch (e) {
    const err = toStapleError(e);
    if (out.result === 'updated') {
      // The staple was written: that is the event (on_change, HAProxy push); a revoked one is still an error
      if (err.code === 'OCSP_REVOKED') out.error = { code: err.code, message: err.message };
      else notice(`the staple was written, but then: ${err.code}: ${err.message}`);
      return out;
    }
    out.result = 'failed';
    out.error = { code: err.code, message: err.message };
    return out;
  } finally {
    // a lease not used for a publication (the fetch failed) is given up at once
    if (fleetJob && fleetJob !== 'done') await fleetJob.lease?.release();
  }
}

// ---------------------------------------------------------------------------
// Fleet mode: the one hook point (src/fleet/turn.ts decides, this acts)
// ---------------------------------------------------------------------------

/** A fetch the fleet let this node make: publish it afterwards. */
interface FleetJob {
  key: string;
  lease?: Lease;
  replaceStored?: string;
  direct?: string;
}

/** "Is the candidate better than the staple on disk": the one rule of core/compare.ts. */
function isBetterStaple(candidate: VerifiedResponse, current: StapleFacts | undefined): boolean {
  return compareStaples(current, rankOfVerified(candidate)).better;
}

/**
 * Asks the fleet (fleet/turn.ts) before the responder and acts on its
 * answer: writes a staple taken from the fleet, reports a pending or kept
 * staple ('done'), or lets the fetch go on (a {@link FleetJob} to publish).
 */
async function fleetStep(
  fleet: Fleet,
  ctx: EngineContext,
  target: Target,
  loaded: LoadedCert,
  state: StapleState,
  decision: RefreshDecision,
  options: ProcessOptions,
  out: TargetOutcome,
  notice: (m: string) => void,
): Promise<FleetJob | 'done' | undefined> {
  const key = fleetKeyOf(loaded.cert, loaded.issuer);
  const current = state.kind === 'valid' ? state.facts : undefined;
  const turn = await fleetTurn<VerifiedResponse>({
    fleet,
    key,
    targetId: target.id,
    due: decision.action === 'renew' && !options.fleetOnly,
    force: options.force ?? false,
    apply: (options.fleetApply ?? false) || (options.fleetOnly ?? false),
    // a forced renewal (SIGUSR2) waits for the node holding the lease, so that it is not lost if that node dies
    wait: options.force ? 'block' : (ctx.fleetWait ?? 'block'),
    notice,
    now: () => ctx.now().getTime(),
    accept: async (der, due): Promise<Verdict<VerifiedResponse>> => {
      const now = ctx.now();
      const j = await judgeStaple({ data: der }, 'fleet staple', loaded, now, ctx.skewMs);
      if (!j.verified)
        return {
          ok: false,
          unusable: true,
          reason: j.state.kind === 'invalid' ? `${j.state.error.code}: ${j.state.error.message}` : 'unreadable',
        };
      const v = j.verified;
      if (v.status !== 'good') return { ok: false, unusable: false, reason: `its status is ${v.status}` };
      const facts = factsOf(v);
      if (!isBetterStaple(v, current)) {
        return {
          ok: false,
          unusable: false,
          reason: `it is not newer than the staple on disk (nextUpdate ${v.nextUpdate.toISOString()})`,
        };
      }
      if (due && decideRefresh({ kind: 'valid', facts }, loaded.cert, ctx.policy, now).action !== 'keep') {
        return { ok: false, unusable: false, reason: 'it is due for renewal itself' };
      }
      return { ok: true, value: v };
    },
  });
  switch (turn.kind) {
    case 'none':
      return undefined;
    case 'take': {
      const v = turn.value;
      await writeStaple(ctx, target, v, out);
      out.result = 'updated';
      out.staple = summarize(v);
      const by = turn.from.fetchedBy || 'another node';
      const at = turn.from.fetchedAt > 0 ? ` at ${new Date(turn.from.fetchedAt).toISOString()}` : '';
      out.fleet = { role: 'hit', detail: `from the fleet, fetched by ${by}${at}` };
      out.nextRefresh = decideRefresh(
        { kind: 'valid', facts: factsOf(v) },
        loaded.cert,
        ctx.policy,
        ctx.now(),
      ).at.toISOString();
      return 'done';
    }
    case 'pending':
      out.fleet = { role: 'pending', detail: turn.reason };
      out.nextRefresh = new Date(turn.retryAt).toISOString();
      notice(turn.reason);
      return 'done';
    case 'keep': {
      out.fleet = { role: 'kept', detail: turn.message };
      const usable = current !== undefined && current.status === 'good';
      if (usable) {
        out.result = 'unchanged';
        notice(turn.message);
        out.nextRefresh = new Date(ctx.now().getTime() + 300_000).toISOString();
      } else {
        out.result = 'failed';
        out.error = { code: turn.code, message: turn.message };
      }
      return 'done';
    }
    case 'fetch': {
      const job: FleetJob = { key };
      if (turn.lease) job.lease = turn.lease;
      if (turn.replaceStored !== undefined) job.replaceStored = turn.replaceStored;
      if (turn.direct !== undefined) job.direct = turn.direct;
      return job;
    }
  }
}

/** Publishes a staple this node fetched and verified (releasing the lease). */
async function publishFetched(
  fleet: Fleet,
  job: FleetJob,
  v: VerifiedResponse,
  out: TargetOutcome,
  notice: (m: string) => void,
): Promise<void> {
  const r = await fleet.publish(
    job.key,
    v.der,
    { thisUpdate: v.thisUpdate, nextUpdate: v.nextUpdate, status: v.status },
    job.lease,
    job.replaceStored,
  );
  job.lease = undefined;
  if (r === 'published')
    out.fleet = { role: job.direct ? 'direct' : 'published', ...(job.direct ? { detail: job.direct } : {}) };
  else if (r === 'kept-newer') {
    out.fleet = { role: 'published', detail: 'the fleet already held a newer staple' };
    notice('the fleet already holds a newer staple than the one fetched; it was not replaced');
  } else {
    out.fleet = { role: 'direct', detail: job.direct ?? 'the fleet cannot be reached' };
    notice('the fleet cannot be reached: the staple was written here but not published');
  }
}

/** The number of answers in a staple (1 when it cannot be told: only a multi-answer staple is treated differently). */
function answersIn(data: Buffer | undefined, decoded: DecodedResponse | undefined, path: string): number {
  if (decoded?.basic) return decoded.basic.singles.length;
  if (data === undefined) return 1;
  try {
    return decodeResponse(stapleBytes(data, path)).basic?.singles.length ?? 1;
  } catch {
    return 1;
  }
}

async function writeStaple(ctx: EngineContext, target: Target, v: VerifiedResponse, out: TargetOutcome): Promise<void> {
  const opts: Parameters<StapleStore['write']>[2] = { backup: ctx.makeBackups ?? false, now: ctx.now() };
  if (ctx.backupKeep !== undefined) opts.backupKeep = ctx.backupKeep;
  if (ctx.stapleRoot !== undefined) opts.createBelow = ctx.stapleRoot;
  if (ctx.overwriteNonOcsp) opts.overwriteNonOcsp = true;
  const res = await ctx.store.write(target.staplePath, v.der, opts);
  if (res.backupPath) out.backupPath = res.backupPath;
  if (res.backupError) {
    out.backupError = res.backupError;
    out.notices.push(`warning: ${res.backupError}`);
    ctx.onNotice?.(target.id, `warning: ${res.backupError}`);
  }
}
