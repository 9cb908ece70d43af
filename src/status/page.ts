/**
 * The status page (`GET /`): one self-contained HTML document an operator
 * reads at a glance, for one certificate or a hundred thousand.
 *
 * Layout, top to bottom:
 * - a summary bar: a count per state (each one a filter button), the most
 *   urgent certificate and when its staple stops being usable, and the
 *   responder hosts in backoff;
 * - a filter box (matches ids, paths, states and errors) and the pager;
 * - a compact table, one line per certificate, most urgent first (by state,
 *   then by the time its staple has left, then by id in natural order:
 *   site2 before site10). Long paths and errors are cut with an ellipsis; the
 *   full text is in the cell's tooltip, and a failed attempt's full error is
 *   one click away (`<details>`).
 *
 * The first page of rows is rendered by the server, so the page reads
 * without scripts; a small inline script (allowed by a per-response nonce in
 * the Content-Security-Policy, see status-server.ts) takes the whole list from
 * an embedded JSON block and renders filtered pages of {@link PAGE_SIZE}
 * rows, so 10,000 certificates stay responsive. Nothing is loaded from
 * anywhere: the document is the only request. The filter lives in the URL
 * fragment, so the 30-second reload keeps it.
 *
 * States are data: {@link STATES} holds one entry per state (order = urgency,
 * label, colours, whether it needs attention). Adding a state is one entry.
 * Rows carry `data-id`, `data-state` and `data-seconds-left` for tests and
 * scrapers.
 */
import type { ErrorCode } from '../core/errors.js';
import { usableAt } from '../core/usability.js';
import type { FleetHealth } from '../fleet/contract.js';
import { PAGE_SCRIPT, pageCss } from './page-assets.js';
import type { NextAttemptReason } from '../pipeline/backoff.js';
import type { StapleSummary, TargetOutcome } from '../pipeline/context.js';

/** One state of a certificate at a glance. */
export interface StateInfo {
  /** The stable name (JSON `/status`, `staplekeeper_certificates{state}`, `data-state`). */
  readonly state: string;
  /** The word shown on the page. */
  readonly label: string;
  /** Row and chip background. */
  readonly background: string;
  /** Left border and badge colour. */
  readonly accent: string;
  /** Counted in "need attention" (page title, summary). */
  readonly attention: boolean;
  /** One sentence for the legend (tooltip of the chip). */
  readonly meaning: string;
}

/**
 * Every state, most urgent first. The order is the sort order of the table;
 * neutral states (nothing to do for staplekeeper) come last.
 */
export const STATES = [
  {
    state: 'revoked',
    label: 'revoked',
    background: '#f2c4f0',
    accent: '#8b1a89',
    attention: true,
    meaning: 'the responder says the certificate is revoked: replace the certificate',
  },
  {
    state: 'expired',
    label: 'expired',
    background: '#ffc9c9',
    accent: '#c62828',
    attention: true,
    meaning: 'the staple on disk is no longer usable and no new one could be fetched',
  },
  {
    state: 'never-fetched',
    label: 'never fetched',
    background: '#dcd6ff',
    accent: '#4a3aa8',
    attention: true,
    meaning: 'no staple has been obtained for it yet',
  },
  {
    state: 'failing',
    label: 'failing',
    background: '#ffd9a8',
    accent: '#c2540a',
    attention: true,
    meaning: 'renewals fail, but the staple on disk still works',
  },
  {
    state: 'due',
    label: 'due',
    background: '#fff3c4',
    accent: '#8a6700',
    attention: false,
    meaning: 'a check or renewal is pending',
  },
  {
    state: 'good',
    label: 'good',
    background: '#dff5e3',
    accent: '#2e7d40',
    attention: false,
    meaning: 'a fresh staple is on disk',
  },
  {
    state: 'no-ocsp-url',
    label: 'no OCSP URL',
    background: '#e4ebf2',
    accent: '#4f6275',
    attention: false,
    meaning:
      'the certificate names no OCSP responder: nothing to staple; revocation is published by CRL (watched when crl.watch is on) or not at all',
  },
  {
    state: 'disabled',
    label: 'disabled',
    background: '#ececec',
    accent: '#6b6b6b',
    attention: false,
    meaning: 'OCSP is disabled for it in the configuration',
  },
] as const satisfies readonly StateInfo[];

/** The state of a certificate at a glance (status page, `/status`, `staplekeeper_certificates{state}`). */
export type CertificateState = (typeof STATES)[number]['state'];

/** Every state name, most urgent first. */
export const CERTIFICATE_STATES: readonly CertificateState[] = STATES.map((s) => s.state);

const STATE_BY_NAME = new Map<string, StateInfo & { rank: number }>(STATES.map((s, rank) => [s.state, { ...s, rank }]));

function stateInfo(state: string): StateInfo & { rank: number } {
  return (
    STATE_BY_NAME.get(state) ?? {
      state,
      label: state,
      background: '#ffffff',
      accent: '#333333',
      attention: false,
      meaning: state,
      rank: STATES.length,
    }
  );
}

/** Row background per state. */
export const STATE_COLOURS: Readonly<Record<CertificateState, string>> = Object.fromEntries(
  STATES.map((s) => [s.state, s.background]),
) as Record<CertificateState, string>;

/** How many rows one page of the table shows. */
export const PAGE_SIZE = 100;

/** What `/status` reports for one certificate. */
export interface CertificateStatus {
  id: string;
  certPath: string;
  staplePath: string;
  /** See {@link STATES}. */
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
  /** How revocation is published (core/triage.ts): ocsp, crl or none; null until the certificate was loaded. */
  mechanism?: 'ocsp' | 'crl' | 'none' | null;
  /** The certificate is must-staple (RFC 7633). */
  mustStaple?: boolean;
  /** The certificate's CRL distribution points. */
  crlUrls?: string[];
  /** The last CRL verdict of a `crl` certificate (CRL watch), if any. */
  crlStatus?: 'good' | 'revoked' | 'unavailable' | null;
  /** When the responder or the CRL says revoked (written or not): the revocation time and reason. */
  revocationTime?: string | null;
  revocationReason?: string | null;
  /** The one notice of a certificate with nothing to staple (and its CRL state), else null. */
  note?: string | null;
}

/** A responder host the daemon leaves alone for now. */
export interface HostInBackoff {
  host: string;
  /** Until when. */
  until: string;
  /** Consecutive failures. */
  failures: number;
}

/** One finished attempt of the daemon, for metrics. */
export interface AttemptEvent {
  id: string;
  outcome: TargetOutcome;
  /** True when the attempt talked to a responder (a renewal was due or forced). */
  fetched: boolean;
  /** Fleet mode: the staple came from the fleet instead of a responder. */
  fleetHit?: boolean;
  seconds: number;
}

/** Listens to the daemon (the metrics module is one). */
export interface DaemonObserver {
  onAttempt?(event: AttemptEvent): void;
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
  /** Fleet mode (docs/fleet.md): how the fleet is; absent without one. */
  fleet?: FleetHealth;
  /** Those hosts, soonest release first (absent in snapshots of older versions). */
  backoff?: HostInBackoff[];
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
  /** The error code of the last attempt, if it failed. */
  lastCode?: ErrorCode;
  /** The last answer (responder or CRL) said revoked, whether it was written or not. */
  revoked?: boolean;
  /** No responder (triage `crl` or `none`) and not must-staple: nothing to staple (neutral). */
  noOcsp?: boolean;
}

/**
 * The state at a glance:
 * - `revoked`: the staple on disk or the last answer says revoked;
 * - `no-ocsp-url`: no usable staple, and the certificate names no responder
 *   (neutral: nothing staplekeeper can fetch);
 * - `expired`: a staple was on disk but is no longer usable (the server has
 *   nothing good to staple: RFC 6960 §2.4 and RFC 6066 §8);
 * - `never-fetched`: it was tried, and no staple has been obtained yet;
 * - `failing`: renewals fail but the staple still works;
 * - `due`: a check or renewal is pending (also before the first look at it);
 * - `good` otherwise; `disabled` when OCSP is off for it.
 */
export function certificateState(f: StateFacts, now: Date): CertificateState {
  if (f.disabled) return 'disabled';
  if (f.revoked || f.staple?.status === 'revoked' || f.lastCode === 'OCSP_REVOKED' || f.lastCode === 'CRL_REVOKED')
    return 'revoked';
  if (f.noOcsp) return 'no-ocsp-url';
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
  if (!usable) {
    if (f.lastCode === 'NO_OCSP_URL') return 'no-ocsp-url';
    if (f.staple !== undefined) return 'expired';
    return f.attempted ? 'never-fetched' : 'due';
  }
  if (f.consecutiveFailures > 0) return 'failing';
  if (!f.attempted || (f.nextRefresh && f.nextRefresh.getTime() <= now.getTime())) return 'due';
  return 'good';
}

const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'variant' });

/** Compares ids in natural order: `site2` before `site10`. */
export function naturalCompare(a: string, b: string): number {
  const c = collator.compare(a, b);
  if (c !== 0) return c;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** When a certificate's staple stops being usable (ISO), or null without one: see core/usability.ts. */
function untilOf(c: CertificateStatus): string | null {
  return c.usableUntil ?? c.nextUpdate;
}

/** {@link untilOf} as a time (-Infinity without a staple). */
function endOf(c: CertificateStatus): number {
  const end = untilOf(c);
  return end === null ? -Infinity : Date.parse(end);
}

/** Sorts certificates most urgent first: by state, then by the time their staple has left, then by id (natural order). */
export function byUrgency(a: CertificateStatus, b: CertificateStatus): number {
  const r = stateInfo(a.state).rank - stateInfo(b.state).rank;
  if (r !== 0) return r;
  const ea = endOf(a);
  const eb = endOf(b);
  if (ea !== eb) return ea < eb ? -1 : 1;
  return naturalCompare(a.id, b.id);
}

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

/** `in 3d 4h` or `2h ago`. */
function relative(ms: number): string {
  return ms >= 0 ? `in ${humanDuration(ms)}` : `${humanDuration(ms)} ago`;
}

/** The longest error text shown in a row before the rest goes behind "more". */
const ERROR_SHORT = 90;

/** One row as the page's script receives it (short keys: 10,000 rows are a few MB). */
interface RowData {
  /** id */
  i: string;
  /** state */
  s: string;
  /** certificate path */
  c: string;
  /** staple path */
  p: string;
  /** usable until, relative ("in 2d 3h", "3h ago", "—") */
  u: string;
  /** usable until, absolute (tooltip) */
  ua: string;
  /** seconds left (null: no staple) */
  l: number | null;
  /** next attempt */
  n: string;
  /** last result or error, short */
  e: string;
  /** the full error (empty when it fits in `e`) */
  f: string;
  /** the row shows an error */
  x: 0 | 1;
}

function usable(c: CertificateStatus, now: number): { text: string; title: string; seconds: number | null } {
  const until = untilOf(c);
  if (until === null) {
    const text = c.state === 'disabled' || c.state === 'no-ocsp-url' ? '—' : 'no staple';
    return { text, title: text === '—' ? '' : 'no valid staple on disk', seconds: null };
  }
  const left = Date.parse(until) - now;
  return {
    text: c.status === 'revoked' ? 'not usable (revoked)' : relative(left),
    title: `usable until ${until}`,
    seconds: Math.round(left / 1000),
  };
}

function nextText(c: CertificateStatus, now: number): string {
  if (c.inProgress) return 'in progress';
  if (c.nextAttempt === null) return c.state === 'disabled' ? '—' : 'queued';
  const at = Date.parse(c.nextAttempt) - now;
  const why = c.nextAttemptReason ? ` (${c.nextAttemptReason})` : '';
  return at <= 0 ? `now${why}` : `in ${humanDuration(at)}${why}`;
}

function lastText(c: CertificateStatus): { text: string; error: boolean } {
  if (c.lastResult === null)
    return { text: c.inProgress ? 'first attempt in progress' : 'not checked yet', error: false };
  if (c.lastResult === 'failed') {
    const n = c.consecutiveFailures > 1 ? ` (${c.consecutiveFailures} failures in a row)` : '';
    return { text: `${c.lastCode ?? 'error'}: ${c.lastError ?? ''}${n}`, error: true };
  }
  if (c.note) return { text: c.note, error: c.crlStatus === 'unavailable' };
  return { text: c.lastResult === 'updated' ? 'updated' : c.lastResult, error: false };
}

function rowData(c: CertificateStatus, now: number): RowData {
  const u = usable(c, now);
  const last = lastText(c);
  const long = last.text.length > ERROR_SHORT;
  return {
    i: c.id,
    s: c.state,
    c: c.certPath,
    p: c.staplePath,
    u: u.text,
    ua: u.title,
    l: u.seconds,
    n: nextText(c, now),
    e: long ? `${last.text.slice(0, ERROR_SHORT - 1)}…` : last.text,
    f: long ? last.text : '',
    x: last.error ? 1 : 0,
  };
}

/**
 * One table row as HTML. The page's script has a copy of this function
 * ({@link PAGE_SCRIPT}); both produce the same markup.
 */
function rowHtml(r: RowData): string {
  const e = escapeHtml;
  const info = stateInfo(r.s);
  const last = r.f
    ? `<details><summary>${e(r.e)}</summary>${e(r.f)}</details>`
    : `<span title="${e(r.e)}">${e(r.e)}</span>`;
  return (
    `<tr class="cert state-${e(r.s)}" data-id="${e(r.i)}" data-state="${e(r.s)}"${r.l === null ? '' : ` data-seconds-left="${r.l}"`}>` +
    `<td class="id" title="${e(`${r.i}\ncertificate: ${r.c}\nstaple: ${r.p}`)}">${e(r.i)}</td>` +
    `<td class="state"><span class="badge">${e(info.label)}</span></td>` +
    `<td class="left" title="${e(r.ua)}">${e(r.u)}</td>` +
    `<td class="next" title="${e(r.n)}">${e(r.n)}</td>` +
    `<td class="last${r.x ? ' error' : ''}">${last}</td>` +
    '</tr>'
  );
}

/** JSON safe inside a `<script>` element. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** Options of {@link renderStatusPage}. */
export interface RenderOptions {
  /** Seconds between reloads (default 30). */
  refreshSeconds?: number;
  /**
   * The CSP nonce of this response (base64). Without one the page has no
   * script: it shows the first page of rows and reloads with a meta refresh.
   */
  nonce?: string;
}

/** Renders the page for a snapshot (certificates already sorted by urgency). */
export function renderStatusPage(s: DaemonSnapshot, options: RenderOptions | number = {}): string {
  const opts: RenderOptions = typeof options === 'number' ? { refreshSeconds: options } : options;
  const refreshSeconds = opts.refreshSeconds ?? 30;
  const nonce = opts.nonce;
  const e = escapeHtml;
  const now = Date.parse(s.now);
  const certs = s.certificates;
  const counts = new Map<string, number>();
  for (const c of certs) counts.set(c.state, (counts.get(c.state) ?? 0) + 1);
  let attention = 0;
  for (const [st, n] of counts) if (stateInfo(st).attention) attention += n;
  const known = new Set<string>(CERTIFICATE_STATES);
  const extra = [...counts.keys()].filter((st) => !known.has(st));
  const chips = [...CERTIFICATE_STATES, ...extra]
    .filter((st) => (counts.get(st) ?? 0) > 0)
    .map((st) => {
      const info = stateInfo(st);
      return `<button type="button" class="chip state-${e(st)}" data-state="${e(st)}" aria-pressed="false" title="${e(info.meaning)}"><span class="n">${counts.get(st)}</span> ${e(info.label)}</button>`;
    })
    .join('');

  const facts: string[] = [];
  const urgent = certs.find((c) => stateInfo(c.state).rank < stateInfo('no-ocsp-url').rank);
  if (urgent) {
    const info = stateInfo(urgent.state);
    const when =
      urgent.state === 'revoked'
        ? 'replace the certificate'
        : untilOf(urgent) === null
          ? 'no usable staple'
          : endOf(urgent) <= now
            ? `staple stopped being usable ${humanDuration(endOf(urgent) - now)} ago (${untilOf(urgent)})`
            : `staple usable for ${humanDuration(endOf(urgent) - now)} more, until ${untilOf(urgent)}`;
    facts.push(
      `<span class="urgent" data-id="${e(urgent.id)}">Most urgent: <b title="${e(urgent.certPath)}">${e(urgent.id)}</b> (${e(info.label)}): ${e(when)}</span>`,
    );
  }
  const backoff = s.backoff ?? [];
  if (s.hostsInBackoff > 0) {
    const shown = backoff
      .slice(0, 4)
      .map((h) => `${h.host} until ${h.until.slice(11, 19)}Z (${h.failures} failure${h.failures === 1 ? '' : 's'})`);
    if (backoff.length > 4) shown.push(`${backoff.length - 4} more`);
    facts.push(
      `<span class="backoff">Responder hosts in backoff: <b>${s.hostsInBackoff}</b>${shown.length ? ` — ${e(shown.join(', '))}` : ''}</span>`,
    );
  } else {
    facts.push('<span class="backoff">Responder hosts in backoff: none</span>');
  }
  if (s.fleet) facts.push(fleetFact(s.fleet, e));
  if (s.inProgress || s.queued) facts.push(`<span>${s.inProgress} in progress, ${s.queued} queued</span>`);

  const rows = certs.map((c) => rowData(c, now));
  const firstPage = rows.slice(0, PAGE_SIZE);
  const body = firstPage.length
    ? firstPage.map(rowHtml).join('\n')
    : '<tr class="empty"><td colspan="5">No certificates: check the configuration.</td></tr>';
  const labels = Object.fromEntries([...CERTIFICATE_STATES, ...extra].map((st) => [st, stateInfo(st).label]));
  const title = `staplekeeper: ${certs.length} certificate(s)${attention ? `, ${attention} need attention` : ''}`;
  const nonceAttr = nonce ? ` nonce="${e(nonce)}"` : '';
  const script = nonce
    ? `<script type="application/json" id="sk-data">${scriptJson({ refresh: refreshSeconds, pageSize: PAGE_SIZE, labels, rows })}</script>
<script${nonceAttr}>
${PAGE_SCRIPT}
</script>`
    : '';
  const refreshMeta = `<meta http-equiv="refresh" content="${refreshSeconds}">`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
${nonce ? `<noscript>${refreshMeta}</noscript>` : refreshMeta}
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>${e(title)}</title>
<style${nonceAttr}>
${pageCss(STATES)}
</style>
</head>
<body>
<header><h1>staplekeeper</h1><p class="meta">${certs.length} certificate(s) as of ${e(s.now)} · ${s.alive ? 'running' : '<strong class="error">NOT RUNNING</strong>'} · version ${e(s.version)}, PID ${s.pid} · <span title="${e(s.source)}">${e(s.source.length > 60 ? `${s.source.slice(0, 59)}…` : s.source)}</span> · <a href="status">JSON</a> · <a href="metrics">metrics</a></p></header>
<section class="summary" id="summary">
<div class="chips">${chips || 'no certificates'}<button type="button" id="all" class="needjs">show all</button></div>
<p class="facts">${facts.join(' · ')}</p>
</section>
<div class="controls">
<input type="search" id="filter" class="needjs" placeholder="Filter: id, path, state or error (words must all match)" aria-label="filter certificates" autocomplete="off">
<button type="button" id="prev" class="needjs">‹ previous</button><span id="shown" class="needjs"></span><button type="button" id="next" class="needjs">next ›</button>
<label class="needjs"><input type="checkbox" id="auto" checked> reload every ${refreshSeconds} s</label>
<span class="nojs">${certs.length > PAGE_SIZE ? `Showing the ${PAGE_SIZE} most urgent of ${certs.length}; the full list is in <a href="status">JSON</a>.` : ''} Reloads every ${refreshSeconds} s.</span>
</div>
<table id="certificates">
<colgroup><col class="c-id"><col class="c-state"><col class="c-left"><col class="c-next"><col class="c-last"></colgroup>
<thead><tr><th>Certificate</th><th>State</th><th>Usable until</th><th>Next attempt</th><th>Last result</th></tr></thead>
<tbody>
${body}
</tbody>
</table>
${script}
</body>
</html>
`;
}

/** Fleet mode (docs/fleet.md): one line saying whether the fleet works, and what it saved. */
function fleetFact(f: FleetHealth, esc: (s: string) => string): string {
  const counts = `${f.hits} from the fleet, ${f.published} fetched and published, ${f.direct} fetched directly`;
  if (f.up) {
    return `<span class="fleet" data-fleet="up">Fleet: <b>up</b> (${esc(f.redis)}${f.fetch ? '' : ', fetch: false'}) — ${esc(counts)}</span>`;
  }
  const what = f.fetch ? 'renewing directly' : 'fetch is false: keeping the staples on disk';
  return `<span class="fleet" data-fleet="down">Fleet: <b>DEGRADED</b> — ${esc(f.redis)} cannot be reached since ${esc(f.since)} (${esc(f.lastError ?? 'no answer')}); ${what} — ${esc(counts)}</span>`;
}
