/**
 * Obtain → accept → deliver, for a certificate whose staple is due
 * (pipeline/process.ts decided). Sources, in order: the fleet (a
 * StapleSource, src/fleet: asked before the responder), then the responders
 * of the certificate. A candidate is accepted only when it passed every rule
 * of core/verify.ts and is better than the valid staple on disk
 * (core/compare.ts — the one place the "a staple only ever gets better" rule
 * is applied); it is delivered to the store, then published to the fleet
 * (a StapleOutput).
 *
 * Invariant: the staple file is replaced only by a response that passed
 * verifyResponse and says `good` — or, when the operator opted in with
 * `onRevokedWrite`, a verified `revoked` response.
 */
import { compareStaples, keptMessage, rankOfVerified, type RankedStaple } from '../core/compare.js';
import {
  cacheDeadline,
  decideRefresh,
  type RefreshDecision,
  type StapleFacts,
  type StapleState,
} from '../core/policy.js';
import { decodeResponse, type DecodedResponse } from '../core/response.js';
import { assertGood, type VerifiedResponse } from '../core/verify.js';
import type { Fleet, Lease } from '../fleet/contract.js';
import { fleetKeyOf } from '../fleet/key.js';
import { fleetTurn, type Verdict } from '../fleet/turn.js';
import type { StapleStore } from '../io/store.js';
import { checkingAhead } from './check-ahead.js';
import {
  certFingerprint,
  responderUrls,
  summarize,
  type EngineContext,
  type LoadedCert,
  type ProcessOptions,
  type Target,
  type TargetOutcome,
} from './context.js';
import { factsOf, judgeStaple, stapleBytes } from './judge.js';

/** What the renewal of one certificate starts from: the judged staple on disk and the decision to renew. */
export interface RenewInput {
  target: Target;
  ctx: EngineContext;
  out: TargetOutcome;
  notice: (m: string) => void;
  loaded: LoadedCert;
  /** The staple on disk, as judged: the bar a candidate must pass. */
  state: StapleState;
  /** Its bytes and decoding, when read (to count its answers). */
  stapleData: Buffer | undefined;
  currentDecoded: DecodedResponse | undefined;
  decision: RefreshDecision;
  /** When the staple on disk was judged. */
  now: Date;
  /** A fetch the fleet let this node make: the staple written is published. */
  fleetJob: FleetJob | undefined;
  /** Told of each staple written, verified just now (the verdict cache remembers it). */
  onWritten?: (v: VerifiedResponse, decoded: DecodedResponse) => void;
}

/**
 * Obtains a staple from the responders, accepts it only when verified and
 * better than the staple on disk (core/compare.ts: a staple only ever gets
 * better), and delivers it: the store, then the fleet. Throws on a failure
 * before the write; {@link processTarget} turns that into the outcome.
 */
export async function renew(input: RenewInput): Promise<TargetOutcome> {
  const { target, ctx, out, notice, loaded, state, stapleData, currentDecoded, decision, now, fleetJob } = input;
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
    transport: checkingAhead(ctx.transport, loaded.issuer, ctx),
    now: ctx.now,
    onNotice: notice,
  };
  if (ctx.method) fopts.method = ctx.method;
  if (ctx.hash) fopts.hash = ctx.hash;
  if (ctx.nonce) fopts.nonce = ctx.nonce;
  if (ctx.skewMs !== undefined) fopts.skewMs = ctx.skewMs;
  if (ctx.fetchDeadlineMs !== undefined) fopts.deadlineMs = ctx.fetchDeadlineMs;
  if (ctx.signatures) fopts.signatures = ctx.signatures.memo;
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
    if (candidateDecoded) input.onWritten?.(v, candidateDecoded);
  };
  // A staple only ever gets better (core/compare.ts): the valid staple on disk is the bar.
  const currentRank: RankedStaple | undefined =
    state.kind === 'valid'
      ? { ...state.facts, answers: answersIn(stapleData, currentDecoded, target.staplePath) }
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
  if (ctx.fleet && fleetJob) await publishFetched(ctx.fleet, fleetJob, v, out, notice);
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
}

/** A fetch the fleet let this node make: publish it afterwards. */
export interface FleetJob {
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
export async function fleetStep(
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
      const j = await judgeStaple({ data: der }, 'fleet staple', loaded, now, ctx.skewMs, ctx);
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
