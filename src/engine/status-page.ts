/**
 * The status page (`GET /`): one self-contained HTML document an operator
 * understands at a glance. No scripts, no external assets (the server sends
 * a Content-Security-Policy that forbids both), so it works on an air-gapped
 * host and through an SSH tunnel. It refreshes itself every 30 s with a meta
 * refresh.
 *
 * Certificates are sorted by urgency (expired, failing, due, good, disabled;
 * then by the time their staple has left). Each row is coloured by its state
 * and also names it in words, so the page does not rely on colour alone. Rows
 * carry `data-id`, `data-state` and `data-seconds-left` for tests and scrapers.
 */
import type { ErrorCode } from '../core/errors.js';
import { usableAt } from '../core/usability.js';
import type { NextAttemptReason } from './scheduler.js';
import type { StapleSummary, TargetOutcome } from './staple.js';

/** The state of a certificate at a glance (status page colours, `staplekeeper_certificates{state}`). */
export type CertificateState = 'good' | 'due' | 'failing' | 'expired' | 'disabled';

/** What `/status` reports for one certificate. */
export interface CertificateStatus {
  id: string;
  certPath: string;
  staplePath: string;
  /** good: fresh staple, last check fine; due: a check or renewal is pending; failing: renewals fail but the staple on disk still works; expired: no usable staple on disk; disabled: OCSP off for it. */
  state: CertificateState;
  /** certStatus of the staple on disk, when it is valid. */
  status: StapleSummary['status'] | null;
  thisUpdate: string | null;
  nextUpdate: string | null;
  /** When the staple on disk stops being usable: nextUpdate, capped by a delegated signer (core/usability.ts). */
  usableUntil: string | null;
  /** The policy's refresh point of the staple on disk. */
  nextRefresh: string | null;
  /** When the daemon will next look at it (null while queued or in progress). */
  nextAttempt: string | null;
  nextAttemptReason: NextAttemptReason | null;
  lastAttempt: string | null;
  lastResult: TargetOutcome['result'] | null;
  /** Error code of the last attempt, if it failed. */
  lastCode: ErrorCode | null;
  lastError: string | null;
  /** Last time an attempt ended with a good staple on disk (renewed or still fresh). */
  lastSuccess: string | null;
  consecutiveFailures: number;
  responderUrl: string | null;
  inProgress: boolean;
}

/** The whole daemon at one moment. */
export interface DaemonSnapshot {
  version: string;
  pid: number;
  source: string;
  startedAt: string;
  now: string;
  alive: boolean;
  /** When the single timer fires next. */
  nextWake: string | null;
  inProgress: number;
  queued: number;
  /** Responder hosts currently in backoff. */
  hostsInBackoff: number;
  certificates: CertificateStatus[];
}

/** What decides a certificate's state. */
export interface StateFacts {
  /** OCSP is disabled for it (the last attempt was skipped). */
  disabled: boolean;
  /** The staple on disk as last judged, if valid. */
  staple?: Pick<StapleSummary, 'status' | 'nextUpdate'> & Partial<Pick<StapleSummary, 'usableUntil'>>;
  /** It has been looked at at least once. */
  attempted: boolean;
  consecutiveFailures: number;
  /** The policy's refresh point of the staple on disk. */
  nextRefresh?: Date;
}

/**
 * The state at a glance: `expired` when no usable staple is on disk (the
 * server has nothing good to staple: OCSP-REFERENCE §1.8 says to be loud
 * about it), `failing` while renewals fail but the staple still works, `due`
 * while a check or renewal is pending, `good` otherwise.
 */
export function certificateState(f: StateFacts, now: Date): CertificateState {
  if (f.disabled) return 'disabled';
  const s = f.staple;
  const usable =
    s !== undefined &&
    usableAt(
      {
        status: s.status,
        nextUpdate: new Date(s.nextUpdate),
        ...(s.usableUntil !== undefined ? { usableUntil: new Date(s.usableUntil) } : {}),
      },
      now,
    );
  if (!usable) return f.attempted ? 'expired' : 'due';
  if (f.consecutiveFailures > 0) return 'failing';
  if (!f.attempted || (f.nextRefresh && f.nextRefresh.getTime() <= now.getTime())) return 'due';
  return 'good';
}

const STATE_RANK: Record<CertificateState, number> = { expired: 0, failing: 1, due: 2, good: 3, disabled: 4 };

/** Sorts certificates most urgent first: by state, then by the time their staple has left. */
export function byUrgency(a: CertificateStatus, b: CertificateStatus): number {
  const r = STATE_RANK[a.state] - STATE_RANK[b.state];
  if (r !== 0) return r;
  const ea = endOf(a);
  const eb = endOf(b);
  if (ea !== eb) return ea < eb ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** When a certificate's staple stops being usable, as a time (-Infinity without one). */
function endOf(c: CertificateStatus): number {
  const end = c.usableUntil ?? c.nextUpdate;
  return end ? Date.parse(end) : -Infinity;
}

/** Row background per state. */
export const STATE_COLOURS: Record<CertificateState, string> = {
  good: '#dff5e3',
  due: '#fff3c4',
  failing: '#ffd9a8',
  expired: '#ffc9c9',
  disabled: '#ececec',
};

const STATE_ACCENTS: Record<CertificateState, string> = {
  good: '#2e8540',
  due: '#b38600',
  failing: '#d9600f',
  expired: '#c62828',
  disabled: '#888888',
};

const STATE_WORDS: Record<CertificateState, string> = {
  good: 'good',
  due: 'due',
  failing: 'failing',
  expired: 'expired',
  disabled: 'disabled',
};

/** Escapes text for HTML element content and double-quoted attributes. */
export function escapeHtml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

/** A duration for people: `3d 4h`, `5h 12m`, `12m`, `40s`. */
export function humanDuration(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return h > 0 ? `${d}d ${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  if (m > 0) return `${m}m`;
  return `${s}s`;
}

function timeLeft(c: CertificateStatus, now: number): { text: string; seconds: number | null } {
  const end = endOf(c);
  if (end === -Infinity) return { text: c.state === 'disabled' ? '—' : 'no valid staple', seconds: null };
  const left = end - now;
  if (left <= 0) return { text: `expired ${humanDuration(left)} ago`, seconds: Math.round(left / 1000) };
  return { text: humanDuration(left), seconds: Math.round(left / 1000) };
}

function nextText(c: CertificateStatus, now: number): string {
  if (c.inProgress) return 'in progress';
  if (c.nextAttempt === null) return c.state === 'disabled' ? '—' : 'queued';
  const at = Date.parse(c.nextAttempt) - now;
  const why = c.nextAttemptReason ? ` (${c.nextAttemptReason})` : '';
  return at <= 0 ? `now${why}` : `in ${humanDuration(at)}${why}`;
}

function lastText(c: CertificateStatus): string {
  if (c.lastResult === null) return 'not checked yet';
  if (c.lastResult === 'failed') {
    const n = c.consecutiveFailures > 1 ? ` (${c.consecutiveFailures} failures in a row)` : '';
    return `${c.lastCode ?? 'error'}: ${c.lastError ?? ''}${n}`;
  }
  return c.lastResult;
}

function row(c: CertificateStatus, now: number): string {
  const left = timeLeft(c, now);
  const e = escapeHtml;
  const until = c.usableUntil ?? c.nextUpdate;
  const title = until ? ` title="valid until ${e(until)}"` : '';
  return [
    `<tr class="cert state-${c.state}" data-id="${e(c.id)}" data-state="${c.state}"${left.seconds === null ? '' : ` data-seconds-left="${left.seconds}"`}>`,
    `<td class="id"><strong>${e(c.id)}</strong><br><small>${e(c.certPath)}<br>→ ${e(c.staplePath)}</small></td>`,
    `<td class="state"><span class="badge">${STATE_WORDS[c.state]}</span></td>`,
    `<td class="left"${title}>${e(left.text)}</td>`,
    `<td class="next">${e(nextText(c, now))}</td>`,
    `<td class="last${c.lastResult === 'failed' ? ' error' : ''}">${e(lastText(c))}${c.responderUrl ? `<br><small>${e(c.responderUrl)}</small>` : ''}</td>`,
    '</tr>',
  ].join('');
}

/** Renders the page for a snapshot (certificates already sorted by urgency). */
export function renderStatusPage(s: DaemonSnapshot, refreshSeconds = 30): string {
  const now = Date.parse(s.now);
  const counts = new Map<CertificateState, number>();
  for (const c of s.certificates) counts.set(c.state, (counts.get(c.state) ?? 0) + 1);
  const attention = (counts.get('expired') ?? 0) + (counts.get('failing') ?? 0);
  const chips = (Object.keys(STATE_COLOURS) as CertificateState[])
    .filter((st) => (counts.get(st) ?? 0) > 0)
    .map((st) => `<span class="chip state-${st}" data-state="${st}">${counts.get(st)} ${STATE_WORDS[st]}</span>`)
    .join(' ');
  const css = [
    'body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#1b1b1b;background:#fafafa}',
    'h1{font-size:1.4em;margin:0 0 .2em}',
    '.meta{color:#555;margin:.2em 0 1em}',
    'table{border-collapse:collapse;width:100%;background:#fff}',
    'th,td{text-align:left;padding:.45em .6em;border-bottom:1px solid #ddd;vertical-align:top}',
    'th{background:#f0f0f0;font-weight:600}',
    'small{color:#555;word-break:break-all}',
    '.badge{font-weight:700;text-transform:uppercase;font-size:.85em}',
    '.chip{display:inline-block;padding:.15em .6em;border-radius:1em;margin-right:.3em;font-weight:600}',
    '.error{color:#8a1010}',
    ...(Object.keys(STATE_COLOURS) as CertificateState[]).flatMap((st) => [
      `tr.state-${st},.chip.state-${st}{background-color:${STATE_COLOURS[st]}}`,
      `tr.state-${st} td:first-child{border-left:6px solid ${STATE_ACCENTS[st]}}`,
      `tr.state-${st} .badge{color:${STATE_ACCENTS[st]}}`,
    ]),
  ].join('\n');
  const rows = s.certificates.length
    ? s.certificates.map((c) => row(c, now)).join('\n')
    : '<tr class="empty"><td colspan="5">No certificates: check the configuration.</td></tr>';
  const title = `staplekeeper: ${s.certificates.length} certificate(s)${attention ? `, ${attention} need attention` : ''}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="${refreshSeconds}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
${css}
</style>
</head>
<body>
<h1>staplekeeper</h1>
<p class="summary">${chips || 'no certificates'}</p>
<p class="meta">As of ${escapeHtml(s.now)} · ${s.alive ? 'running' : '<strong class="error">NOT RUNNING</strong>'}${s.inProgress ? ` · ${s.inProgress} in progress` : ''}${s.queued ? ` · ${s.queued} queued` : ''}${s.hostsInBackoff ? ` · ${s.hostsInBackoff} responder host(s) in backoff` : ''} · version ${escapeHtml(s.version)}, PID ${s.pid} · ${escapeHtml(s.source)} · refreshes every ${refreshSeconds} s · <a href="status">JSON</a> · <a href="metrics">metrics</a></p>
<table id="certificates">
<thead><tr><th>Certificate</th><th>State</th><th>Staple valid for</th><th>Next attempt</th><th>Last result</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</body>
</html>
`;
}
