/**
 * One certificate, end to end: load it and its issuer, judge the staple on
 * disk (pipeline/judge.ts), decide (core/policy.ts), and when due obtain,
 * accept and deliver (pipeline/renew.ts). `run`, `daemon`, `fetch` and the
 * embedded mode all go through {@link processTarget}. The seams it talks
 * through are named in pipeline/contracts.ts.
 *
 * Invariant: the staple file is replaced only by a response that passed
 * verifyResponse (core/verify.ts) and says `good` — or, when the operator
 * opted in with `onRevokedWrite`, a verified `revoked` response.
 *
 * The staple-folder cache (pipeline/verdict-cache.ts) lets a staple whose
 * bytes, certificate and issuer are unchanged skip parsing and signature
 * verification while every time-dependent rule is still applied at `now`
 * (pipeline/verdict-record.ts).
 */
import { toStapleError } from '../core/errors.js';
import { decideRefresh, type CertWindow, type StapleState } from '../core/policy.js';
import type { DecodedResponse } from '../core/response.js';
import { mustStapleAdvice, mustStapleStranded, noOcspNotice, triage as triageOf, type Triage } from '../core/triage.js';
import { contentHash } from '../io/fingerprint.js';
import {
  certFingerprint,
  responderUrls,
  summarize,
  type EngineContext,
  type ProcessOptions,
  type Target,
  type TargetOutcome,
} from './context.js';
import {
  judgeTarget,
  loadFromSources,
  readStapleFileAsync,
  readStapleFileSync,
  type LoadResult,
  type StapleRead,
} from './judge.js';
import { fleetStep, renew, type FleetJob, type RenewInput } from './renew.js';
import { knownSourcesKey, readSourcesSync, type SourceSet } from './sources.js';
import type { VerdictRecord } from './verdict-cache.js';
import { isRecordValidAt, recordFacts, recordFor, recordSummary } from './verdict-record.js';

/** Every AIA responder URL of the certificate is disabled by configuration (reported as such, not triaged). */
function disabledByOverride(
  target: Target,
  hit: VerdictRecord | undefined,
  load: LoadResult | undefined,
  ctx: EngineContext,
): boolean {
  if (target.responderUrls && target.responderUrls.length > 0) return false;
  const aia = hit ? (hit.ocspUrls ?? []) : (load?.loaded.cert.ocspUrls ?? []);
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
    load ??= await loadFromSources(target, ctx.resolver, sources, ctx);
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

/** An outcome as {@link processTarget} starts it (its notices array is kept: the notice function holds it). */
function resetOutcome(out: TargetOutcome): void {
  const { id, certPath, staplePath, notices } = out;
  for (const k of Object.keys(out)) delete (out as unknown as Record<string, unknown>)[k];
  notices.length = 0;
  Object.assign(out, { id, certPath, staplePath, result: 'unchanged', notices });
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
  ctx.pass?.begin();
  try {
    return await processEnabled(target, ctx, options, out, notice);
  } finally {
    ctx.pass?.end();
  }
}

async function processEnabled(
  target: Target,
  ctx: EngineContext,
  options: ProcessOptions,
  out: TargetOutcome,
  notice: (m: string) => void,
  useKnownHash = true,
): Promise<TargetOutcome> {
  const slot = target.certificate ? undefined : ctx.verdicts?.forStaple(target.staplePath);
  let fleetJob: FleetJob | 'done' | undefined;
  try {
    slot?.folder.touch(slot.name, !options.dryRun);
    // The certificate's files are read once, here. Only when the cache holds a
    // record for exactly these contents is the staple read before the
    // certificate is parsed; otherwise the order is the ordinary one (load,
    // then read the staple), so a certificate that fails to load never
    // touches the staple file.
    // A certificate file that discovery read and hashed just before this pass
    // (the ocsprenewer drop-in) is looked up by that hash, not read again.
    const knownKey = target.certificate || !useKnownHash ? undefined : knownSourcesKey(target, ctx.pass);
    const readNow = (): SourceSet | undefined => (target.certificate ? undefined : readSourcesSync(target, ctx.pass));
    let sources = knownKey === undefined ? readNow() : undefined;
    const key = knownKey ?? sources?.key;
    const record = slot && key !== undefined ? slot.folder.get(slot.name) : undefined;
    let stapleRead: StapleRead | undefined;
    let stapleHash: string | undefined;
    let hit: VerdictRecord | undefined;
    let now: Date | undefined;
    if (record && record.sourcesKey === key) {
      stapleRead =
        readStapleFileSync(ctx.store, target.staplePath) ?? (await readStapleFileAsync(ctx.store, target.staplePath));
      now = ctx.now();
      if (stapleRead.data) {
        stapleHash = contentHash(stapleRead.data);
        if (record.stapleHash === stapleHash && isRecordValidAt(record, now, ctx.skewMs)) hit = record;
      }
    }
    ctx.verdicts?.noteLookup(hit !== undefined);

    let load: LoadResult | undefined;
    let state: StapleState;
    let currentDecoded: DecodedResponse | undefined;
    let window: CertWindow & { subject: string };
    if (hit) {
      slot?.folder.markSeen(hit);
      state = { kind: 'valid', facts: recordFacts(hit) };
      out.staple = recordSummary(hit);
      window = { notBefore: new Date(hit.certNotBefore), notAfter: new Date(hit.certNotAfter), subject: hit.subject };
      out.triage = triageOf(
        {
          notBefore: window.notBefore,
          notAfter: window.notAfter,
          mustStaple: hit.mustStaple === true,
          noRevAvail: hit.noRevAvail === true,
          crlUrls: hit.crlUrls ?? [],
          crlDistributionPoints: [],
        },
        responderUrls(target, { ocspUrls: hit.ocspUrls ?? [] }, ctx.urlOverrides),
      );
    } else {
      sources ??= readNow();
      const current = await judgeTarget(target, ctx, { sources, read: stapleRead });
      load = current.load;
      const cert = load.loaded.cert;
      out.triage = current.triage;
      stapleRead = current.read;
      now = current.now;
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
            ctx.pass,
          );
          if (rec) slot.folder.set(slot.name, rec);
        }
      }
      window = { notBefore: cert.notBefore, notAfter: cert.notAfter, subject: cert.subject };
    }
    now ??= ctx.now(); // (set on both paths above)
    // After a hit by discovery's hash, what needs the certificate's bytes reads
    // the file now; if it no longer holds what discovery read, the target is
    // judged again from the bytes read now, as a run without the hash would
    // (so a renewal never mixes one content's verdict with another's bytes,
    // and a record is always keyed by the bytes it was made from).
    const stillKnown = (): boolean => {
      if (knownKey === undefined || load !== undefined) return true;
      sources ??= readNow();
      return sources?.key === knownKey;
    };
    const again = (): Promise<TargetOutcome> => {
      resetOutcome(out);
      return processEnabled(target, ctx, options, out, notice, false);
    };
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
      if (!stillKnown()) return await again();
      return await noResponder(target, ctx, options, out, notice, tri, state, load, sources);
    }
    if (ctx.fleet && !options.dryRun && (decision.action === 'renew' || options.fleetApply || options.fleetOnly)) {
      if (!stillKnown()) return await again();
      load ??= await loadFromSources(target, ctx.resolver, sources, ctx);
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
    if (!stillKnown()) return await again();
    const loaded = (load ??= await loadFromSources(target, ctx.resolver, sources, ctx));
    const renewal: RenewInput = {
      target,
      ctx,
      out,
      notice,
      loaded: loaded.loaded,
      state,
      stapleData: stapleRead?.data,
      currentDecoded,
      decision,
      now,
      fleetJob: fleetJob === 'done' ? undefined : fleetJob,
    };
    const writtenKey = sources?.key;
    if (slot && writtenKey !== undefined && loaded.issuerFromFiles) {
      // What is written was verified just now: the next run can take it from the cache.
      renewal.onWritten = (v, decoded) => {
        const rec = recordFor(writtenKey, contentHash(v.der), loaded.loaded.cert, v, decoded, ctx.pass);
        if (rec) slot.folder.set(slot.name, rec);
      };
    }
    return await renew(renewal);
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
