/**
 * `staplekeeper list`: every configured certificate with its triage
 * (core/triage.ts) — the migration report of issue 13: which certificates
 * lose stapling (no responder: `crl` or `none`), and when the last staple
 * on disk stops being usable. Reads files only; never fetches.
 */
import type { LoadedConfig } from '../config/types.js';
import { toStapleError } from '../core/errors.js';
import { mustStapleStranded, triage, type RevocationMechanism } from '../core/triage.js';
import { createFileStore, type StapleStore } from '../io/store.js';
import { readMarks } from '../revocation/marks.js';
import { IssuerResolver } from '../pipeline/issuer.js';
import { forEachLimited } from '../pipeline/limit.js';
import { toTarget } from './run.js';
import { certFingerprint, responderUrls } from '../pipeline/context.js';
import { loadTargetCert, readStapleState } from '../pipeline/judge.js';
import { PassMemo } from '../pipeline/pass-memo.js';

/** One certificate in the list. */
export interface ListedCertificate {
  id: string;
  certPath: string;
  staplePath: string;
  chainPath?: string;
  /** ocsp, crl, none; absent when the certificate could not be loaded. */
  mechanism?: RevocationMechanism;
  mustStaple?: boolean;
  shortLived?: boolean;
  /** The certificate's notAfter. */
  certNotAfter?: string;
  /** The staple on disk: good, revoked, unknown (its certStatus), missing or invalid. */
  staple: 'good' | 'revoked' | 'unknown' | 'missing' | 'invalid' | 'unjudged';
  /** When the staple on disk stops being usable (absent without a valid one). */
  stapleUntil?: string;
  responderUrls: string[];
  crlUrls: string[];
  /** OCSP is disabled for it in the configuration. */
  disabled: boolean;
  /** A revocation recorded by a run or the daemon (revocation/marks.ts). */
  revoked?: { time?: string; reason?: string; source: 'ocsp' | 'crl' };
  /** Why it could not be loaded. */
  error?: string;
  /** One line of advice for the migration report, when there is something to do. */
  advice?: string;
}

/** Lists every target of `config`. Never throws for one certificate. */
export async function listCertificates(
  config: LoadedConfig,
  options: { now?: Date; store?: StapleStore } = {},
): Promise<ListedCertificate[]> {
  const now = options.now ?? new Date();
  const store = options.store ?? createFileStore();
  const resolver = new IssuerResolver({ caDirs: config.settings.caDirs });
  // one pass: chain files read and parsed once
  const memos = { pass: new PassMemo() };
  const marks = readMarks(config.settings.ocspFolder);
  const out: ListedCertificate[] = new Array(config.targets.length);
  await forEachLimited(config.targets, Math.max(1, config.settings.concurrency), async (t, i) => {
    const item: ListedCertificate = {
      id: t.id,
      certPath: t.certPath,
      staplePath: t.staplePath,
      staple: 'unjudged',
      responderUrls: [],
      crlUrls: [],
      disabled: t.responder === 'disabled',
    };
    if (t.chainPath) item.chainPath = t.chainPath;
    out[i] = item;
    const target = toTarget(t);
    let loaded;
    try {
      loaded = await loadTargetCert(target, resolver, memos);
    } catch (e) {
      item.error = `${toStapleError(e).code}: ${toStapleError(e).message}`;
      return;
    }
    const cert = loaded.cert;
    const tri = triage(cert, item.disabled ? [] : responderUrls(target, cert, config.settings.responderUrlOverrides));
    item.mechanism = tri.mechanism;
    item.mustStaple = tri.mustStaple;
    item.shortLived = tri.shortLived;
    item.certNotAfter = cert.notAfter.toISOString();
    item.responderUrls = tri.ocspUrls;
    item.crlUrls = tri.crlUrls;
    const st = await readStapleState(store, t.staplePath, loaded, now, undefined, memos);
    if (st.state.kind === 'missing') item.staple = 'missing';
    else if (st.state.kind === 'invalid') item.staple = 'invalid';
    else {
      item.staple = st.state.facts.status;
      item.stapleUntil = (st.state.facts.usableUntil ?? st.state.facts.nextUpdate).toISOString();
    }
    const m = marks[t.id];
    if (m && m.certificate === certFingerprint(cert)) {
      item.revoked = {
        source: m.source,
        ...(m.time ? { time: m.time } : {}),
        ...(m.reason ? { reason: m.reason } : {}),
      };
    }
    if (item.revoked) item.advice = 'REVOKED: replace the certificate';
    else if (mustStapleStranded(tri)) {
      item.advice = `must-staple without a responder: reissue it without must-staple${item.stapleUntil ? ` before ${item.stapleUntil}` : ' now'}`;
    } else if (tri.mechanism !== 'ocsp' && !item.disabled) {
      item.advice =
        item.staple === 'good' && item.stapleUntil
          ? `loses stapling: the last staple stops being usable at ${item.stapleUntil}; remove ssl_stapling for it then`
          : 'nothing to staple: turn stapling off for it';
    }
  });
  return out;
}

/** The text form: one block per certificate, and a summary of what loses stapling. */
export function formatList(items: ListedCertificate[]): string {
  const lines: string[] = [];
  for (const c of items) {
    const flags = [
      c.disabled ? 'disabled' : (c.mechanism ?? '?'),
      ...(c.mustStaple ? ['must-staple'] : []),
      ...(c.shortLived ? ['short-lived'] : []),
    ];
    lines.push(`${c.id} [${flags.join(', ')}]`);
    lines.push(`  certificate: ${c.certPath}${c.certNotAfter ? ` (expires ${c.certNotAfter})` : ''}`);
    lines.push(`  staple:      ${c.staplePath} (${c.staple}${c.stapleUntil ? `, usable until ${c.stapleUntil}` : ''})`);
    if (c.responderUrls.length > 0) lines.push(`  responder:   ${c.responderUrls.join(', ')}`);
    if (c.crlUrls.length > 0) lines.push(`  CRL:         ${c.crlUrls.join(', ')}`);
    if (c.revoked)
      lines.push(
        `  REVOKED at ${c.revoked.time ?? '?'} (${c.revoked.reason ?? 'unspecified'}), by ${c.revoked.source}`,
      );
    if (c.error) lines.push(`  error:       ${c.error}`);
    if (c.advice) lines.push(`  to do:       ${c.advice}`);
  }
  const losing = items.filter((c) => c.mechanism !== undefined && c.mechanism !== 'ocsp' && !c.disabled);
  const by = (m: string): number => items.filter((c) => c.mechanism === m && !c.disabled).length;
  lines.push('');
  lines.push(
    `${items.length} certificate(s): ${by('ocsp')} ocsp, ${by('crl')} crl, ${by('none')} none; ${items.filter((c) => c.mustStaple).length} must-staple`,
  );
  if (losing.length > 0) {
    lines.push(`${losing.length} lose stapling (no OCSP responder):`);
    for (const c of losing) {
      lines.push(
        `  ${c.id}: ${c.stapleUntil && c.staple === 'good' ? `last staple usable until ${c.stapleUntil}` : 'no usable staple'}${c.mustStaple ? ' — MUST-STAPLE: reissue without must-staple' : ''}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
