/**
 * The monitoring check (`staplekeeper check`): judges every staple on disk
 * at `now` and reduces the judgements to one Nagios/Icinga plugin state.
 *
 * It reads staples only and never fetches (promise 8 of docs/ARCHITECTURE.md: "say so
 * loudly" must not itself depend on the responder). Each staple is verified
 * with the same rules as at every run ({@link readStapleState}), so a staple
 * that `run` would count as missing is critical here too.
 *
 * Per certificate, in order:
 * - CRITICAL: no staple, a staple that fails verification (including an
 *   expired one), `revoked` or `unknown`, the certificate itself expired, or
 *   a staple that stops being usable within the critical threshold;
 * - WARNING: usable for less than the warning threshold, or past its refresh
 *   point by more than a grace while still valid (renewal is failing: the run
 *   that should have replaced it did not);
 * - UNKNOWN: the staple could not be judged (certificate unreadable, issuer
 *   not available locally: a check never downloads a caIssuers URL);
 * - OK otherwise.
 *
 * Thresholds are relative to each staple's validity window (thisUpdate to
 * the end of its usability) unless absolute ones are given (`--warn`,
 * `--crit`): WARNING when less than a quarter of the window remains, CRITICAL
 * when less than an eighth (at most one day) remains, which is the margin the
 * daemon's retries need; the grace past the refresh point is an eighth of the
 * window, at least one hour. So a fresh staple is OK whatever its CA's
 * validity period (a 3-day staple from a CA that issues 3-day responses is
 * not a warning), and the same rules fit a 10-minute and a 10-day responder.
 *
 * The overall state is the worst one, ranked OK < UNKNOWN < WARNING <
 * CRITICAL (the monitoring-plugins `max_state_alt` order: a known problem
 * outranks a certificate that could not be judged).
 */
import type { LoadedConfig, TargetConfig } from '../config/types.js';
import { toStapleError } from '../core/errors.js';
import { CHECK_EXIT } from '../core/exit-codes.js';
import { failureLine } from '../core/message.js';
import type { StapleFacts } from '../core/policy.js';
import { classifyStaple, usableUntil } from '../core/usability.js';
import { createFileStore } from '../io/store.js';
import { IssuerResolver } from '../pipeline/issuer.js';
import { forEachLimited } from '../pipeline/limit.js';
import { crlWatchFor, policyOf, toTarget, transportFor } from '../batch/run.js';
import { mustStapleAdvice, mustStapleStranded, noOcspNotice, type Triage } from '../core/triage.js';
import { readMarks } from '../revocation/marks.js';
import { certFingerprint, type LoadedCert } from '../pipeline/context.js';
import type { CrlChecker } from '../pipeline/contracts.js';
import { judgeTarget, type TargetJudgement } from '../pipeline/judge.js';
import type {
  CertCheck,
  CheckLevel,
  CheckOptions,
  CheckReport,
  CheckTargetContext,
  Thresholds,
} from './check-types.js';
import { PassMemo } from '../pipeline/pass-memo.js';

export type {
  CertCheck,
  CheckLevel,
  CheckOptions,
  CheckReport,
  CheckState,
  CheckTargetContext,
  Thresholds,
} from './check-types.js';

/** The plugin exit code of each state: core/exit-codes.ts, the one table. */
export { CHECK_EXIT };

const RANK: Record<CheckLevel, number> = { ok: 0, unknown: 1, warning: 2, critical: 3 };

/** The absolute thresholds used for the one of --warn/--crit that is not given when the other one is. */
export const DEFAULT_WARN_MS = 3 * 86_400_000;
export const DEFAULT_CRIT_MS = 86_400_000;

/** The grace past the refresh point before a still-valid staple is a WARNING: an eighth of its window, at least 1 h. */
export function dueGrace(windowMs: number): number {
  return Math.max(3_600_000, Math.floor(windowMs / 8));
}

/**
 * The default thresholds of a staple whose validity window (thisUpdate to
 * the end of its usability) is `windowMs`: WARNING when less than a quarter
 * of it remains, CRITICAL when less than an eighth, at most one day, remains.
 */
export function relativeThresholds(windowMs: number): Thresholds {
  const w = Math.max(0, windowMs);
  return { warnMs: Math.floor(w / 4), critMs: Math.min(86_400_000, Math.floor(w / 8)), graceMs: dueGrace(w) };
}

/** `20h`, `2d 3h`, `45m`, `30s`: the two most significant units, zero parts dropped. */
export function formatSpan(ms: number): string {
  let s = Math.max(0, Math.floor(ms / 1000));
  const units: Array<[string, number]> = [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ];
  const parts: string[] = [];
  for (const [name, size] of units) {
    const n = Math.floor(s / size);
    s -= n * size;
    if (parts.length > 0 || n > 0) parts.push(n > 0 ? `${n}${name}` : '');
    if (parts.length === 2) break;
  }
  const shown = parts.filter((p) => p !== '');
  return shown.length > 0 ? shown.join(' ') : '0s';
}

/** The default certificate-expiry thresholds of `check`. */
export const DEFAULT_CERT_WARN_MS = 14 * 86_400_000;
export const DEFAULT_CERT_CRIT_MS = 3 * 86_400_000;

/**
 * Judges one target at `now`: its staple (or revocation state) and the
 * expiry of the certificate itself — WARNING within `certWarnMs`, CRITICAL
 * within `certCritMs`, whichever of the two judgements is worse. Never throws.
 */
export async function checkTarget(target: TargetConfig, ctx: CheckTargetContext): Promise<CertCheck> {
  const c = await judgeOne(target, ctx);
  if (c.certNotAfter === undefined || c.state === 'cert-expired') return c;
  const left = Date.parse(c.certNotAfter) - ctx.now.getTime();
  if (left <= 0) return c;
  const crit = left <= (ctx.certCritMs ?? DEFAULT_CERT_CRIT_MS);
  const warn = left <= (ctx.certWarnMs ?? DEFAULT_CERT_WARN_MS);
  if (!crit && !warn) return c;
  const level: CheckLevel = crit ? 'critical' : 'warning';
  const note = `the certificate expires in ${formatSpan(left)} (${c.certNotAfter}): renew it`;
  if (RANK[level] > RANK[c.level]) {
    return { ...c, level, state: 'cert-expiring', reason: c.reason ? `${note}; ${c.reason}` : note };
  }
  return { ...c, reason: c.reason ? `${c.reason}; ${note}` : note };
}

/**
 * One certificate through the pipeline's judge step ({@link judgeTarget}:
 * load, triage, read and verify the staple; never a responder), then the
 * revocation marks, the triage and the one usability classifier
 * (core/usability.ts) reduced to a plugin state.
 */
async function judgeOne(target: TargetConfig, ctx: CheckTargetContext): Promise<CertCheck> {
  const base = { id: target.id, certPath: target.certPath, staplePath: target.staplePath };
  const { now } = ctx;
  let judged: TargetJudgement;
  try {
    judged = await judgeTarget(toTarget(target), { ...ctx, now: () => now });
  } catch (e) {
    const err = toStapleError(e);
    // A missing staple is critical whatever else is wrong; only a present one needs the issuer to be judged.
    const present = await ctx.store.read(target.staplePath).then(
      (d) => d !== undefined,
      () => true,
    );
    if (!present) return { ...base, level: 'critical', state: 'missing', reason: 'no staple', expiresInSeconds: 0 };
    // the certificate's own file missing, unreadable or not a certificate: that certificate is broken, not the check
    if (err.code === 'FILE_UNREADABLE' || err.code === 'NOT_A_CERTIFICATE') {
      return {
        ...base,
        level: 'critical',
        state: 'unjudgeable',
        code: err.code,
        reason: `certificate unusable: ${err.message}`,
        expiresInSeconds: 0,
      };
    }
    const hint = err.code === 'NO_ISSUER' ? 'check never downloads caIssuers URLs' : undefined;
    const line = failureLine({ code: err.code, message: err.message, command: 'check', after: hint ? [hint] : [] });
    return {
      ...base,
      level: 'unknown',
      state: 'unjudgeable',
      code: err.code,
      reason: `cannot judge the staple: ${line.slice(`error ${err.code}: `.length)}`,
    };
  }
  const loaded = judged.load.loaded;
  const cert = loaded.cert;
  Object.assign(base, { certNotAfter: cert.notAfter.toISOString() });
  const tri = judged.triage;
  const triaged = {
    mechanism: tri.mechanism,
    mustStaple: tri.mustStaple,
    ...(tri.crlUrls.length > 0 ? { crlUrls: tri.crlUrls } : {}),
  };
  Object.assign(base, triaged);
  // a revoked answer recorded by a run or the daemon, written over the staple or not (src/revocation/marks.ts)
  const mark = ctx.marks?.[target.id];
  if (mark && mark.certificate === certFingerprint(cert)) {
    const from =
      mark.source === 'crl' ? `its CRL ${mark.url ?? ''}`.trim() : `the OCSP responder ${mark.url ?? ''}`.trim();
    const r = revocation(mark.time, mark.reason);
    return {
      ...base,
      ...r.fields,
      level: 'critical',
      state: 'revoked',
      reason: `${r.phrase} according to ${from}; replace the certificate`,
      code: mark.source === 'crl' ? 'CRL_REVOKED' : 'OCSP_REVOKED',
      expiresInSeconds: 0,
    };
  }
  if (tri.mechanism !== 'ocsp' && cert.notAfter.getTime() > now.getTime()) {
    if (mustStapleStranded(tri)) {
      const until = judged.state.kind === 'valid' ? usableUntil(judged.state.facts) : undefined;
      return {
        ...base,
        level: 'critical',
        state: 'must-staple-no-responder',
        code: 'MUST_STAPLE_NO_RESPONDER',
        reason: mustStapleAdvice(tri, until),
        expiresInSeconds: until ? Math.max(0, Math.floor((until.getTime() - now.getTime()) / 1000)) : 0,
      };
    }
    if (tri.mechanism === 'crl' && ctx.crl) return await crlCheck(base, tri, loaded, ctx.crl);
    return { ...base, level: 'ok', state: 'no-ocsp', reason: noOcspNotice(tri) };
  }
  // the thresholds depend on the staple's validity window: thisUpdate to the end of its usability
  const th = judged.state.kind === 'valid' ? thresholdsFor(judged.state.facts, ctx) : undefined;
  const u = classifyStaple(
    judged.state,
    cert,
    ctx.policy,
    now,
    th ? { expiringMs: Math.max(th.warnMs, th.critMs), dueGraceMs: th.graceMs } : {},
  );
  const expiresInSeconds = Math.floor((u.leftMs ?? 0) / 1000);
  if (u.health === 'cert-expired') {
    return {
      ...base,
      level: 'critical',
      state: 'cert-expired',
      reason: `certificate expired at ${cert.notAfter.toISOString()}`,
      expiresInSeconds,
    };
  }
  if (judged.state.kind === 'missing') {
    return { ...base, level: 'critical', state: 'missing', reason: 'no staple', expiresInSeconds };
  }
  if (judged.state.kind === 'invalid') {
    const { code, message } = judged.state.error;
    const expired = u.health === 'expired';
    return {
      ...base,
      level: 'critical',
      state: expired ? 'expired' : 'invalid',
      reason: expired ? `staple expired (${message})` : `invalid staple: ${code}: ${message}`,
      expiresInSeconds,
      code,
    };
  }
  const v = judged.verified;
  const facts = judged.state.facts;
  const out: CertCheck = {
    ...base,
    level: 'ok',
    state: 'good',
    reason: '',
    status: facts.status,
    thisUpdate: facts.thisUpdate.toISOString(),
    nextUpdate: facts.nextUpdate.toISOString(),
    producedAt: facts.producedAt.toISOString(),
  };
  if (v) out.responder = v.responder;
  if (u.usableUntil) out.usableUntil = u.usableUntil.toISOString();
  out.expiresInSeconds = expiresInSeconds;
  const left = u.leftMs ?? 0;
  switch (u.health) {
    case 'revoked': {
      const r = revocation(v?.revocationTime?.toISOString(), v?.revocationReason);
      return { ...out, ...r.fields, level: 'critical', state: 'revoked', reason: r.phrase };
    }
    case 'unknown-status':
      return {
        ...out,
        level: 'critical',
        state: 'unknown-status',
        reason: 'the responder does not know the certificate',
      };
    case 'expired':
      return { ...out, level: 'critical', state: 'expired', reason: `staple expired (${u.error?.message ?? ''})` };
    default:
      break;
  }
  if (u.refreshAt) out.refreshAt = u.refreshAt.toISOString();
  if (th) {
    out.warnSeconds = Math.floor(th.warnMs / 1000);
    out.critSeconds = Math.floor(th.critMs / 1000);
  }
  if (u.health === 'expiring') {
    const level = left <= (th?.critMs ?? 0) ? 'critical' : 'warning';
    return { ...out, level, state: 'expiring', reason: `expires in ${formatSpan(left)}` };
  }
  if (u.health === 'due') {
    const ago = now.getTime() - (u.refreshAt?.getTime() ?? now.getTime());
    return {
      ...out,
      level: 'warning',
      state: 'due',
      reason: `past its refresh point ${formatSpan(ago)} ago (renewal failing?), expires in ${formatSpan(left)}`,
    };
  }
  return { ...out, reason: `expires in ${formatSpan(left)}` };
}

/** `REVOKED at T (reason)`, and the fields that carry the time and the reason. */
function revocation(
  time: string | undefined,
  reason: string | undefined,
): { phrase: string; fields: Pick<CertCheck, 'revocationTime' | 'revocationReason'> } {
  const fields: Pick<CertCheck, 'revocationTime' | 'revocationReason'> = {};
  if (time) fields.revocationTime = time;
  if (reason) fields.revocationReason = reason;
  return { phrase: `REVOKED${time ? ` at ${time}` : ''}${reason ? ` (${reason})` : ''}`, fields };
}

/** The thresholds of one valid staple: the absolute ones when given, else relative to its window. */
function thresholdsFor(facts: StapleFacts, ctx: { warnMs?: number; critMs?: number }): Thresholds {
  const rel = relativeThresholds(usableUntil(facts).getTime() - facts.thisUpdate.getTime());
  return { warnMs: ctx.warnMs ?? rel.warnMs, critMs: ctx.critMs ?? rel.critMs, graceMs: rel.graceMs };
}

/**
 * A `crl` certificate with CRL watch on: revoked is CRITICAL (with the time
 * and reason), a CRL that cannot be had or verified is WARNING (never OK,
 * never a false revoked), a listed-nowhere certificate is OK and, like every
 * certificate without a responder, not counted as a staple.
 */
async function crlCheck(
  base: Pick<CertCheck, 'id' | 'certPath' | 'staplePath'> & Partial<CertCheck>,
  tri: Triage,
  loaded: LoadedCert,
  crl: CrlChecker,
): Promise<CertCheck> {
  const v = await crl.check(loaded.cert, loaded.issuer, tri.crlUrls);
  const facts: Partial<CertCheck> = { crlUrl: v.url, crlStatus: v.status };
  if (v.thisUpdate) facts.crlThisUpdate = v.thisUpdate;
  if (v.nextUpdate) facts.crlNextUpdate = v.nextUpdate;
  if (v.status === 'revoked') {
    const r = revocation(v.revocationTime, v.revocationReason);
    return {
      ...base,
      ...facts,
      ...r.fields,
      level: 'critical',
      state: 'revoked',
      code: 'CRL_REVOKED',
      reason: `${r.phrase} according to its CRL ${v.url}; replace the certificate`,
      expiresInSeconds: 0,
    };
  }
  if (v.status === 'unavailable') {
    return {
      ...base,
      ...facts,
      level: 'warning',
      state: 'crl-unavailable',
      code: v.error?.code ?? 'CRL_MALFORMED',
      reason: `revocation unknown: the CRL could not be checked: ${v.error?.code ?? ''}: ${v.error?.message ?? ''}`,
    };
  }
  return {
    ...base,
    ...facts,
    level: 'ok',
    state: 'no-ocsp',
    reason: `${noOcspNotice(tri)}; not revoked (CRL of ${v.thisUpdate ?? '?'})`,
  };
}

const LIST_MAX = 5;

/** `2 without an OCSP responder (nothing to staple): le1, le2`: certificates triaged crl or none, never counted as failures. */
function noOcspText(certs: CertCheck[]): string {
  const items = certs.filter((c) => c.state === 'no-ocsp');
  const shown = items.slice(0, LIST_MAX).map((c) => `${c.id} (${c.mechanism === 'crl' ? 'CRL' : 'none'})`);
  if (items.length > LIST_MAX) shown.push(`and ${items.length - LIST_MAX} more`);
  return `${items.length} without an OCSP responder (nothing to staple): ${shown.join(', ')}`;
}

function listOf(items: CertCheck[]): string {
  const shown = items.slice(0, LIST_MAX).map((c) => `${c.id} ${c.reason}`);
  if (items.length > LIST_MAX) shown.push(`and ${items.length - LIST_MAX} more`);
  return shown.join(', ');
}

/**
 * The plugin output line. Perfdata thresholds use the plugin range syntax
 * `N:` ("alert when below N"), since less remaining validity is worse.
 */
export function formatCheckLine(report: Omit<CheckReport, 'line'>): string {
  const { counts, certs } = report;
  const by = (l: CheckLevel): CertCheck[] => certs.filter((c) => c.level === l);
  const parts: string[] = [];
  if (counts.certs === 0) {
    parts.push('no staples to check (every certificate is disabled or none is configured)');
  } else if (report.level === 'ok') {
    const soonest = [...certs].sort((a, b) => (a.expiresInSeconds ?? Infinity) - (b.expiresInSeconds ?? Infinity))[0];
    const staples = counts.certs - counts.noOcsp;
    if (staples > 0 || counts.noOcsp === 0) {
      parts.push(
        `${staples} staple${staples === 1 ? '' : 's'} good` +
          (soonest?.expiresInSeconds !== undefined
            ? `, earliest expiry in ${formatSpan(soonest.expiresInSeconds * 1000)} (${soonest.id})`
            : ''),
      );
    }
    if (counts.noOcsp > 0) parts.push(noOcspText(certs));
  } else {
    const noun = counts.certs === 1 ? 'staple' : 'staples';
    let first = true;
    for (const l of ['critical', 'warning', 'unknown'] as const) {
      const items = by(l);
      if (items.length === 0) continue;
      const word = l === 'unknown' ? 'not checkable' : l;
      parts.push(
        first
          ? `${items.length} of ${counts.certs} ${noun} ${word}: ${listOf(items)}`
          : `${items.length} ${word}: ${listOf(items)}`,
      );
      first = false;
    }
  }
  if (report.level !== 'ok' && counts.noOcsp > 0) parts.push(noOcspText(certs));
  const perf: string[] = [];
  if (report.expiryMinSeconds !== undefined) {
    const w = report.warnSeconds === undefined ? '' : `${report.warnSeconds}:`;
    const c = report.critSeconds === undefined ? '' : `${report.critSeconds}:`;
    perf.push(`expiry_min=${report.expiryMinSeconds}s;${w};${c};0`);
  }
  perf.push(
    `certs=${counts.certs}`,
    `critical=${counts.critical}`,
    `warning=${counts.warning}`,
    `unknown=${counts.unknown}`,
  );
  // A `|` in the text would start the perfdata early: plugin output must not contain one.
  const text = parts.join('; ').replaceAll('|', '/');
  return `STAPLEKEEPER ${report.level.toUpperCase()} - ${text} | ${perf.join(' ')}`;
}

/** Judges every enabled target of `config`. Never fetches; never throws for a single certificate. */
export async function checkStaples(config: LoadedConfig, options: CheckOptions = {}): Promise<CheckReport> {
  const now = options.now ?? options.clock?.now() ?? new Date();
  const absolute = options.warnMs !== undefined || options.critMs !== undefined;
  const warnMs = options.warnMs ?? (absolute ? Math.max(options.critMs ?? 0, DEFAULT_WARN_MS) : undefined);
  const critMs = options.critMs ?? (absolute ? Math.min(warnMs ?? 0, DEFAULT_CRIT_MS) : undefined);
  const ctx = {
    store: options.store ?? createFileStore(),
    // No transport: an issuer reachable only through caIssuers makes that certificate UNKNOWN.
    resolver: options.resolver ?? new IssuerResolver({ caDirs: config.settings.caDirs }),
    policy: policyOf(config),
    now,
    ...(warnMs !== undefined ? { warnMs } : {}),
    ...(critMs !== undefined ? { critMs } : {}),
    urlOverrides: config.settings.responderUrlOverrides,
    marks: readMarks(config.settings.ocspFolder),
    ...(options.certWarnMs !== undefined ? { certWarnMs: options.certWarnMs } : {}),
    ...(options.certCritMs !== undefined ? { certCritMs: options.certCritMs } : {}),
    // one pass: chain files read and parsed once
    pass: new PassMemo(),
    ...(options.signatures ? { signatures: options.signatures } : {}),
  };
  const targets = config.targets.filter((t) => t.responder !== 'disabled');
  const certs: CertCheck[] = new Array(targets.length);
  const watchCrl = options.crl ?? config.settings.crl.watch !== false;
  const ownTransport = watchCrl && !options.transport ? transportFor(config) : undefined;
  const transport = options.transport ?? ownTransport;
  const crl = watchCrl && transport ? crlWatchFor(config, transport, ctx.store, () => now) : undefined;
  try {
    await forEachLimited(targets, Math.max(1, config.settings.concurrency), async (t, i) => {
      certs[i] = await checkTarget(t, crl ? { ...ctx, crl } : ctx);
    });
  } finally {
    await ownTransport?.close();
  }
  const counts = { certs: certs.length, ok: 0, warning: 0, critical: 0, unknown: 0, noOcsp: 0 };
  let level: CheckLevel = 'ok';
  let expiryMin: number | undefined;
  let soonest: CertCheck | undefined;
  for (const c of certs) {
    counts[c.level]++;
    if (c.state === 'no-ocsp') counts.noOcsp++;
    if (RANK[c.level] > RANK[level]) level = c.level;
    if (c.expiresInSeconds !== undefined && c.expiresInSeconds < (expiryMin ?? Infinity)) {
      expiryMin = c.expiresInSeconds;
      soonest = c;
    }
  }
  const report: Omit<CheckReport, 'line'> = {
    level,
    exitCode: CHECK_EXIT[level],
    checkedAt: now.toISOString(),
    thresholds: absolute ? 'absolute' : 'relative',
    certs,
    counts,
  };
  if (absolute) {
    report.warnSeconds = Math.floor((warnMs as number) / 1000);
    report.critSeconds = Math.floor((critMs as number) / 1000);
  } else if (soonest?.warnSeconds !== undefined && soonest.critSeconds !== undefined) {
    report.warnSeconds = soonest.warnSeconds;
    report.critSeconds = soonest.critSeconds;
  }
  if (expiryMin !== undefined) report.expiryMinSeconds = expiryMin;
  return { ...report, line: formatCheckLine(report) };
}
