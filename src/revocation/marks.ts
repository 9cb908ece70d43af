/**
 * Revocation marks: what a run or the daemon learnt about revoked
 * certificates, kept on disk so that `check`, `list` and a restarted daemon
 * know it too — also when the revoked answer was not written over the staple
 * (`on_revoked_write: false`, the default) or came from a CRL (there is no
 * staple at all).
 *
 * One file per configuration, `<ocsp_folder>/.staplekeeper-revoked.json`:
 * `{ "format": "staplekeeper-revoked", "version": 1, "marks": { id: mark } }`.
 * A mark names the certificate by the SHA-256 of its DER, so a certificate
 * replaced in place is no longer revoked for anyone reading the mark.
 *
 * Contract:
 * - {@link readMarks} never throws: a missing, unreadable or damaged file is
 *   no marks (a mark only ever adds a CRITICAL; losing one is reported by the
 *   next answer).
 * - {@link updateMarks} is called with the staple-folder lock held; it
 *   writes through the store's atomic writer (io/store.ts), so a reader sees
 *   the old file or the new one, never a part.
 * - A mark is set by a verified revoked answer (responder or CRL) and removed
 *   by a verified good one for the same target; nothing else changes it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StapleStore } from '../io/store.js';

/** The marks file inside `ocsp_folder`. */
export const MARKS_FILE_NAME = '.staplekeeper-revoked.json';

const FORMAT = 'staplekeeper-revoked';
const VERSION = 1;

/** One revoked certificate. */
export interface RevocationMark {
  /** SHA-256 of the certificate DER, lower-case hex. */
  certificate: string;
  /** Where the answer came from. */
  source: 'ocsp' | 'crl';
  /** revocationTime of the answer, ISO. */
  time?: string;
  /** CRLReason name, e.g. `keyCompromise`. */
  reason?: string;
  /** The responder or CRL URL. */
  url?: string;
  /** When staplekeeper learnt it, ISO. */
  seenAt: string;
}

/** Marks by target id (a null-prototype object: ids are keys). */
export type Marks = Record<string, RevocationMark>;

function emptyMarks(): Marks {
  return Object.create(null) as Marks;
}

function isMark(v: unknown): v is RevocationMark {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  const optStr = (x: unknown): boolean => x === undefined || typeof x === 'string';
  return (
    typeof o.certificate === 'string' &&
    /^[0-9a-f]{64}$/.test(o.certificate) &&
    (o.source === 'ocsp' || o.source === 'crl') &&
    optStr(o.time) &&
    optStr(o.reason) &&
    optStr(o.url) &&
    typeof o.seenAt === 'string'
  );
}

/** The path of the marks file of a configuration. */
export function marksPath(ocspFolder: string): string {
  return join(ocspFolder, MARKS_FILE_NAME);
}

/** Reads the marks of `ocspFolder`; no marks when the file is missing or damaged. */
export function readMarks(ocspFolder: string): Marks {
  const marks = emptyMarks();
  let text: string;
  try {
    text = readFileSync(marksPath(ocspFolder), 'utf8');
  } catch {
    return marks;
  }
  try {
    const doc = JSON.parse(text) as { format?: unknown; version?: unknown; marks?: unknown };
    if (doc.format !== FORMAT || doc.version !== VERSION || typeof doc.marks !== 'object' || doc.marks === null)
      return marks;
    for (const [id, m] of Object.entries(doc.marks as Record<string, unknown>)) if (isMark(m)) marks[id] = m;
  } catch {
    // a damaged file is no marks
  }
  return marks;
}

/** A change to the marks: set (a revoked answer) or clear (a good answer) per target id. */
export interface MarkChange {
  id: string;
  /** The new mark; undefined clears the target's mark. */
  mark?: RevocationMark;
}

/**
 * Applies changes to the marks file (with the staple-folder lock held).
 * Writes only when something changed. Returns the marks now on disk.
 */
export async function updateMarks(ocspFolder: string, changes: MarkChange[], store: StapleStore): Promise<Marks> {
  const marks = readMarks(ocspFolder);
  let changed = false;
  for (const c of changes) {
    const old = marks[c.id];
    if (c.mark) {
      if (!old || old.certificate !== c.mark.certificate || old.time !== c.mark.time || old.reason !== c.mark.reason) {
        marks[c.id] = c.mark;
        changed = true;
      }
    } else if (old) {
      delete marks[c.id];
      changed = true;
    }
  }
  if (changed) {
    const body = `${JSON.stringify({ format: FORMAT, version: VERSION, marks: { ...marks } }, null, 1)}\n`;
    // a state file, not a staple: the store's "only OCSP responses are replaced" rule does not apply to it
    await store.write(marksPath(ocspFolder), Buffer.from(body, 'utf8'), { overwriteNonOcsp: true });
  }
  return marks;
}

/** What {@link markChanges} reads of an outcome (pipeline/context.ts `TargetOutcome`). */
export interface MarkableOutcome {
  id: string;
  result: string;
  revoked?: { time?: string; reason?: string; source?: 'ocsp' | 'crl'; url?: string; certificate?: string };
  staple?: { status: string };
  crl?: { status: string };
}

/**
 * The mark changes a batch of outcomes asks for: a revoked answer sets the
 * target's mark; a freshly fetched good staple or a good CRL verdict clears
 * it. Outcomes that learnt nothing new (kept, failed, skipped) change nothing.
 */
export function markChanges(outcomes: readonly MarkableOutcome[], now: Date): MarkChange[] {
  const out: MarkChange[] = [];
  for (const o of outcomes) {
    const r = o.revoked;
    if (r?.certificate && r.source) {
      const mark: RevocationMark = { certificate: r.certificate, source: r.source, seenAt: now.toISOString() };
      if (r.time) mark.time = r.time;
      if (r.reason) mark.reason = r.reason;
      if (r.url) mark.url = r.url;
      out.push({ id: o.id, mark });
    } else if ((o.result === 'updated' && o.staple?.status === 'good') || o.crl?.status === 'good') {
      out.push({ id: o.id });
    }
  }
  return out;
}
