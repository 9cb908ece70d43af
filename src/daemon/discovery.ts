/**
 * Keeping the daemon's set of certificates in line with its source
 * (watch.ts `DaemonSource`): at start, after file changes, at each sweep and
 * at a reload. New certificates are added and checked at once, changed
 * definitions are checked at once, vanished ones are dropped from the
 * schedule; a problem of the source (a missing certificate file, a scan
 * folder that cannot be read) is logged once, until it goes away and comes
 * back. The daemon owns the certificates; this module only asks it to add,
 * replace, drop and queue them ({@link CertificateSet}).
 */
import { dirname } from 'node:path';
import type { TargetConfig } from '../config/types.js';
import { toStapleError } from '../core/errors.js';
import type { DaemonLogger } from './entry-state.js';
import type { DaemonSource, DiscoveryProblem, FileEvent } from './watch.js';
import { proveWritable } from './writable.js';

/** What discovery may do to the daemon's certificates. */
export interface CertificateSet {
  /** The target of a certificate the daemon has, if any. */
  targetOf(id: string): TargetConfig | undefined;
  targets(): Iterable<TargetConfig>;
  add(target: TargetConfig): void;
  replace(target: TargetConfig): void;
  drop(id: string): void;
  /**
   * Queues a check of the certificate (policy decides whether it is renewed);
   * `fleet`: a better staple the fleet holds is taken even when not due.
   */
  check(id: string, fleet?: boolean): void;
  /** Whether the certificate is in failure backoff. */
  failing(id: string): boolean;
}

/** Logs each problem of the source once while it lasts. */
export class ProblemLog {
  private readonly reported = new Set<string>();

  constructor(private readonly log: DaemonLogger) {}

  report(problems: readonly DiscoveryProblem[]): void {
    const now = new Set<string>();
    for (const p of problems) {
      const key = `${p.code}\u0000${p.message}`;
      now.add(key);
      if (this.reported.has(key)) continue;
      this.reported.add(key);
      this.log({ level: 'error', code: p.code, msg: p.message, fields: p.path ? { path: p.path } : {} });
    }
    for (const key of this.reported) if (!now.has(key)) this.reported.delete(key);
  }
}

/** Proves the staple folder and every target's staple folder writable (a missing scan subfolder is created). */
export async function proveStapleFolders(source: DaemonSource, targets: readonly TargetConfig[]): Promise<void> {
  const folder = source.config.settings.ocspFolder;
  await proveWritable([folder, ...targets.map((t) => dirname(t.staplePath))], folder);
}

export function sameTarget(a: TargetConfig, b: TargetConfig): boolean {
  return (
    a.certPath === b.certPath &&
    a.staplePath === b.staplePath &&
    a.chainPath === b.chainPath &&
    a.rootchainPath === b.rootchainPath &&
    a.responder === b.responder
  );
}

/** What {@link rediscover} and {@link handleFileChanges} work with. */
export interface DiscoveryContext {
  source: DaemonSource;
  certificates: CertificateSet;
  problems: ProblemLog;
  log: DaemonLogger;
}

/**
 * Re-runs discovery and brings the set of certificates in line (see the
 * module comment). Returns the ids it queued.
 */
export async function rediscover(c: DiscoveryContext, why: 'change' | 'sweep' | 'reload'): Promise<Set<string>> {
  const found = await c.source.discover();
  c.problems.report(found.problems);
  const queued = new Set<string>();
  const ids = new Set(found.targets.map((t) => t.id));
  const folder = c.source.config.settings.ocspFolder;
  for (const t of found.targets) {
    const known = c.certificates.targetOf(t.id);
    if (known && sameTarget(known, t)) continue;
    // a certificate in a new scan subfolder gets a new staple subfolder, as at start
    await proveWritable([dirname(t.staplePath)], folder).catch((err: unknown) => {
      const x = toStapleError(err);
      c.log({ level: 'error', id: t.id, code: x.code, msg: x.message });
    });
    if (!known) {
      c.certificates.add(t);
      c.log({
        level: 'info',
        id: t.id,
        msg: `new certificate ${t.certPath}; fetching its staple now`,
        fields: { certPath: t.certPath, staplePath: t.staplePath },
      });
    } else {
      c.certificates.replace(t);
      c.log({
        level: 'info',
        id: t.id,
        msg: `certificate definition changed (${t.certPath} → ${t.staplePath}); checking now`,
      });
    }
    c.certificates.check(t.id);
    queued.add(t.id);
  }
  for (const t of [...c.certificates.targets()]) {
    if (ids.has(t.id)) continue;
    c.certificates.drop(t.id);
    c.log({
      level: 'info',
      id: t.id,
      msg: `certificate ${t.certPath} is gone${why === 'reload' ? ' from the configuration' : ''}; no longer scheduled`,
    });
  }
  return queued;
}

/**
 * A burst of file changes: a staple removed behind the daemon's back is
 * fetched again (its own writes are changes and need nothing); a change to a
 * file the source reads re-runs discovery, and a certificate whose files
 * changed is checked at once. Never throws: a failure is logged.
 */
export async function handleFileChanges(c: DiscoveryContext, events: readonly FileEvent[]): Promise<void> {
  try {
    await handleChanges(c, events);
  } catch (e) {
    const err = toStapleError(e);
    c.log({ level: 'error', code: err.code, msg: `handling file changes: ${err.message}` });
  }
}

async function handleChanges(c: DiscoveryContext, events: readonly FileEvent[]): Promise<void> {
  const changed = new Set<string>();
  const byStaple = new Map([...c.certificates.targets()].map((t) => [t.staplePath, t]));
  for (const ev of events) {
    const staple = byStaple.get(ev.path);
    if (staple) {
      if (ev.kind === 'unlink') {
        c.log({ level: 'warn', id: staple.id, msg: `the staple ${ev.path} was removed; fetching a new one now` });
        c.certificates.check(staple.id);
      }
      continue;
    }
    if (c.source.isRelevant(ev.path)) changed.add(ev.path);
  }
  if (changed.size === 0) return;
  const touched = await rediscover(c, 'change');
  for (const t of c.certificates.targets()) {
    if (touched.has(t.id)) continue;
    if ([t.certPath, t.chainPath, t.rootchainPath].some((p) => p !== undefined && changed.has(p))) {
      c.log({ level: 'info', id: t.id, msg: `certificate changed: ${t.certPath}; checking its staple now` });
      c.certificates.check(t.id);
    }
  }
}

/**
 * The periodic sweep (`daemon.sweep_interval`) and a reload: {@link rediscover},
 * then a check of every other certificate that is not in failure backoff
 * (fresh staples cost a file read and a signature check, no network). With
 * `fleet`, the sweep also reconciles: a publication missed meanwhile is taken.
 */
export async function recheckAll(c: DiscoveryContext, why: 'sweep' | 'reload', fleet = false): Promise<void> {
  const queued = await rediscover(c, why);
  for (const t of [...c.certificates.targets()])
    if (!queued.has(t.id) && !c.certificates.failing(t.id)) c.certificates.check(t.id, fleet);
}
