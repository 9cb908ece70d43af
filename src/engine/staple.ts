/**
 * One certificate, end to end: load it and its issuer, judge the staple on
 * disk, decide, fetch, verify and store. `run`, `daemon`, `fetch` and the
 * embedded mode all go through {@link processTarget}.
 *
 * Invariant: the staple file is replaced only by a response that passed
 * {@link verifyResponse} and says `good` — or, when the operator opted in
 * with `onRevokedWrite`, a verified `revoked` response.
 */
import { type Certificate, loadCertificates } from '../core/certs.js';
import { StapleError, toStapleError, type ErrorCode } from '../core/errors.js';
import { decodePem } from '../core/certs.js';
import {
  decideRefresh,
  type RefreshDecision,
  type RefreshPolicy,
  type StapleState,
} from '../core/policy.js';
import type { CertIdHash } from '../core/request.js';
import { assertGood, verifyResponse, type VerifiedResponse } from '../core/verify.js';
import { readInputFile } from '../io/files.js';
import type { HttpTransport } from '../io/http.js';
import type { StapleStore } from '../io/store.js';
import { fetchResponse, type MethodChoice } from './fetch.js';
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
  onNotice?: (targetId: string, message: string) => void;
}

/** The facts of a staple for output (`--json`, `/status`). */
export interface StapleSummary {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: string;
  nextUpdate: string;
  producedAt: string;
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
  revoked?: { time?: string; reason?: string };
  url?: string;
  method?: 'GET' | 'POST';
  backupPath?: string;
  /** When the staple should next be looked at (the refresh point), ISO. */
  nextRefresh?: string;
  /** Notices gathered while processing. */
  notices: string[];
}

/** A certificate with everything needed to talk about its staple. */
export interface LoadedCert {
  cert: Certificate;
  issuer: Certificate;
}

async function loadList(path: string | undefined, what: string): Promise<Certificate[] | undefined> {
  if (!path) return undefined;
  return loadCertificates(await readInputFile(path, what), path);
}

/** Loads a target's certificate and finds its issuer. */
export async function loadTargetCert(target: Target, resolver: IssuerResolver): Promise<LoadedCert> {
  const all = loadCertificates(await readInputFile(target.certPath, 'certificate'), target.certPath);
  const { leaf, rest } = pickLeaf(all);
  const [explicit, chain, rootchain] = await Promise.all([
    loadList(target.issuerPath, 'issuer certificate'),
    loadList(target.chainPath, 'chain'),
    loadList(target.rootchainPath, 'root chain'),
  ]);
  const sources: Parameters<IssuerResolver['resolve']>[1] = { bundle: rest };
  if (explicit) sources.explicit = explicit;
  if (chain) sources.chain = chain;
  if (rootchain) sources.rootchain = rootchain;
  const issuer = await resolver.resolve(leaf, sources);
  return { cert: leaf, issuer };
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

/** Reads and verifies the staple on disk. */
export async function readStapleState(
  store: StapleStore,
  path: string,
  loaded: LoadedCert,
  now: Date,
  skewMs?: number,
): Promise<{ state: StapleState; verified?: VerifiedResponse; bytes?: Buffer }> {
  let data: Buffer | undefined;
  try {
    data = await store.read(path);
  } catch (e) {
    return { state: { kind: 'invalid', error: toStapleError(e).message } };
  }
  if (data === undefined) return { state: { kind: 'missing' } };
  try {
    const opts: Parameters<typeof verifyResponse>[1] = { cert: loaded.cert, issuer: loaded.issuer, now };
    if (skewMs !== undefined) opts.skewMs = skewMs;
    const verified = verifyResponse(stapleBytes(data, path), opts);
    return {
      state: {
        kind: 'valid',
        facts: {
          status: verified.status,
          thisUpdate: verified.thisUpdate,
          nextUpdate: verified.nextUpdate,
          producedAt: verified.producedAt,
          usableUntil: verified.usableUntil,
        },
      },
      verified,
      bytes: data,
    };
  } catch (e) {
    const err = toStapleError(e);
    return { state: { kind: 'invalid', error: `${err.code}: ${err.message}` }, bytes: data };
  }
}

/** Summarises a verified response for output. */
export function summarize(v: VerifiedResponse): StapleSummary {
  return {
    status: v.status,
    thisUpdate: v.thisUpdate.toISOString(),
    nextUpdate: v.nextUpdate.toISOString(),
    producedAt: v.producedAt.toISOString(),
    responder: v.responder,
  };
}

/** Options of one {@link processTarget} call. */
export interface ProcessOptions {
  /** Renew whatever the policy says. */
  force?: boolean;
  /** Decide only; fetch and write nothing. */
  dryRun?: boolean;
}

/** The responder URLs for a certificate, after overrides. Empty when disabled. */
export function responderUrls(target: Target, cert: Certificate, overrides: Record<string, string> = {}): string[] {
  if (target.responderUrls && target.responderUrls.length > 0) return target.responderUrls;
  const urls: string[] = [];
  for (const u of cert.ocspUrls) {
    const o = overrides[u];
    if (o === 'disabled') continue;
    urls.push(o ?? u);
  }
  return urls;
}

/**
 * Processes one target: decide, and when due fetch, verify and store.
 * Never throws: every failure is reported in the outcome, and a failure never
 * touches the staple on disk.
 */
export async function processTarget(target: Target, ctx: EngineContext, options: ProcessOptions = {}): Promise<TargetOutcome> {
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
  try {
    const loaded = await loadTargetCert(target, ctx.resolver);
    const now = ctx.now();
    const current = await readStapleState(ctx.store, target.staplePath, loaded, now, ctx.skewMs);
    if (current.verified) out.staple = summarize(current.verified);
    if (current.state.kind === 'invalid') notice(`the staple on disk is not usable: ${current.state.error}`);
    const decision = decideRefresh(current.state, loaded.cert, ctx.policy, now, { force: options.force ?? false });
    out.decision = decision;
    if (decision.action === 'skip') {
      out.result = 'failed';
      out.error = { code: 'CERT_EXPIRED', message: `the certificate "${loaded.cert.subject}" expired at ${loaded.cert.notAfter.toISOString()}; renew the certificate` };
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
    const urls = responderUrls(target, loaded.cert, ctx.urlOverrides);
    if (urls.length === 0 && loaded.cert.ocspUrls.length > 0) {
      out.result = 'skipped';
      notice('every responder URL of this certificate is disabled by configuration');
      return out;
    }
    const fopts: Parameters<typeof fetchResponse>[0] = {
      cert: loaded.cert,
      issuer: loaded.issuer,
      urls,
      transport: ctx.transport,
      now: ctx.now,
      onNotice: notice,
    };
    if (ctx.method) fopts.method = ctx.method;
    if (ctx.hash) fopts.hash = ctx.hash;
    if (ctx.nonce) fopts.nonce = ctx.nonce;
    if (ctx.skewMs !== undefined) fopts.skewMs = ctx.skewMs;
    const fetched = await fetchResponse(fopts);
    out.url = fetched.url;
    out.method = fetched.method;
    const v = fetched.response;
    if (v.status === 'revoked') {
      out.revoked = {};
      if (v.revocationTime) out.revoked.time = v.revocationTime.toISOString();
      if (v.revocationReason) out.revoked.reason = v.revocationReason;
      if (ctx.onRevokedWrite) {
        await writeStaple(ctx, target, v, out);
        out.result = 'updated';
      }
    }
    assertGood(v, `the certificate "${loaded.cert.subject}"`);
    await writeStaple(ctx, target, v, out);
    out.result = 'updated';
    out.staple = summarize(v);
    const after = decideRefresh(
      { kind: 'valid', facts: { ...v, ...(fetched.maxAgeMs !== undefined ? { cacheUntil: new Date(now.getTime() + fetched.maxAgeMs) } : {}) } },
      loaded.cert,
      ctx.policy,
      ctx.now(),
    );
    out.nextRefresh = after.at.toISOString();
    return out;
  } catch (e) {
    const err = toStapleError(e);
    const wroteRevoked = out.result === 'updated' && err.code === 'OCSP_REVOKED';
    out.result = wroteRevoked ? 'updated' : 'failed';
    out.error = { code: err.code, message: err.message };
    return out;
  }
}

async function writeStaple(ctx: EngineContext, target: Target, v: VerifiedResponse, out: TargetOutcome): Promise<void> {
  const opts: Parameters<StapleStore['write']>[2] = { backup: ctx.makeBackups ?? false, now: ctx.now() };
  if (ctx.backupKeep !== undefined) opts.backupKeep = ctx.backupKeep;
  const res = await ctx.store.write(target.staplePath, v.der, opts);
  if (res.backupPath) out.backupPath = res.backupPath;
}
