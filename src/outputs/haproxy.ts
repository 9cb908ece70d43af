/**
 * Handing staples to a running HAProxy without a reload (docs/servers.md):
 * `set ssl ocsp-response <base64 DER>` on its runtime API socket.
 *
 * HAProxy reads `<crt file>.ocsp` only at start-up; at run time it accepts a
 * replacement over the stats socket (`stats socket <path> level admin`) or
 * the master CLI (`-S`, commands routed with `@1`). It checks what it gets as
 * at start-up (CertID of a loaded certificate, one SingleResponse, status not
 * unknown, nextUpdate present) and answers `OCSP Response updated!`.
 * HAProxy 2.6 updates only certificates that had a `.ocsp` file when it
 * started, so that file must exist first (see docs/servers.md).
 *
 * What has been pushed is remembered per socket and certificate as the
 * SHA-256 of the staple bytes in a small state file in the staple folder.
 * A staple is pushed when its bytes differ from the last successful push, so
 * a failed push (HAProxy down, socket missing) is simply pushed again at the
 * next run or sweep, and a staple renewed by another process (a daemon, a
 * second cron job) reaches HAProxy too.
 *
 * A staple only gets better (core/compare.ts), at HAProxy too: with the hash,
 * the state file keeps the window of what was pushed (thisUpdate,
 * usable-until, number of answers, CertID). Different bytes for the same
 * certificate that are not better than what HAProxy has (a staple file
 * restored from an old backup, copied over by another tool, a multi-answer
 * response) are not pushed; they are reported in `kept`. Exactly the same
 * bytes may be pushed again (`force`, after a HAProxy restart).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { HaproxyTarget } from '../config/types.js';
import { compareStaples, keptMessage, rankOfBytes, type StapleBytesRank } from '../core/compare.js';
import { StapleError, toStapleError } from '../core/errors.js';
import { createFileStore, type StapleStore } from '../io/store.js';
import type { TargetOutcome } from '../pipeline/context.js';
import { stapleBytes } from '../pipeline/judge.js';

/** The state file, kept in the staple folder. */
export const HAPROXY_STATE_NAME = '.staplekeeper-haproxy.json';

/** A staple that may be pushed: its target id and file. */
export interface HaproxyPushItem {
  id: string;
  staplePath: string;
}

/** Options of {@link pushToHaproxy}. */
export interface HaproxyPushOptions {
  /**
   * Folder of the state file (use the staple folder, `settings.ocspFolder`).
   * Without it nothing is remembered and every given staple is pushed.
   */
  stateDir?: string;
  /** Push even the staples whose bytes were already pushed. */
  force?: boolean;
  /** Per command: connect, send and read the answer (default 5 s). */
  timeoutMs?: number;
  store?: StapleStore;
  /** Told about each successful push. */
  onNotice?: (message: string) => void;
}

/** The outcome of one staple on one socket. */
export interface HaproxyPushResult {
  socket: string;
  id: string;
  staplePath: string;
  /** What HAProxy answered, or why nothing reached it. */
  message: string;
}

/** What {@link pushToHaproxy} did. */
export interface HaproxyPushReport {
  pushed: HaproxyPushResult[];
  failed: HaproxyPushResult[];
  /** Staples not pushed because they are not better than what was pushed to that socket before. */
  kept: HaproxyPushResult[];
  /** Staples skipped because exactly these bytes were already pushed to that socket. */
  unchanged: number;
}

interface PushState {
  version: 1;
  /** socket → target id → SHA-256 hex of the staple bytes last pushed successfully. */
  pushed: Record<string, Record<string, string>>;
  /** socket → target id → the window of what was pushed (absent in state files of older versions). */
  windows?: Record<string, Record<string, PushedWindow>>;
}

/** What is remembered of a pushed staple, for the monotonic rule. */
interface PushedWindow {
  /** CertID of its first answer (a different certificate is never compared). */
  cid: string;
  /** thisUpdate, nextUpdate, usable-until (ms) and the number of answers. */
  tu: number;
  nu: number;
  uu: number;
  n: number;
  status: 'good' | 'revoked' | 'unknown';
}

function windowOf(r: StapleBytesRank): PushedWindow {
  return {
    cid: r.certId,
    tu: r.thisUpdate.getTime(),
    nu: r.nextUpdate.getTime(),
    uu: (r.usableUntil ?? r.nextUpdate).getTime(),
    n: r.answers ?? 1,
    status: r.status,
  };
}

function isWindow(w: unknown): w is PushedWindow {
  if (typeof w !== 'object' || w === null) return false;
  const x = w as Record<string, unknown>;
  return (
    typeof x.cid === 'string' &&
    [x.tu, x.nu, x.uu, x.n].every((v) => typeof v === 'number' && Number.isFinite(v)) &&
    (x.status === 'good' || x.status === 'revoked' || x.status === 'unknown')
  );
}

function isOutcome(x: HaproxyPushItem | TargetOutcome): x is TargetOutcome {
  return 'result' in x && 'notices' in x;
}

/**
 * Only staples known to be good are pushed: for a run's outcomes, those
 * whose staple verified as good (freshly written, or kept and still valid).
 */
function eligible(items: ReadonlyArray<HaproxyPushItem | TargetOutcome>): HaproxyPushItem[] {
  const out: HaproxyPushItem[] = [];
  for (const x of items) {
    if (isOutcome(x) && x.staple?.status !== 'good') continue;
    out.push({ id: x.id, staplePath: x.staplePath });
  }
  return out;
}

/** `host:port` (IPv6 in brackets) means TCP; anything else is a unix socket path (HAProxy's `unix@` prefix is accepted). */
export function parseSocketAddress(socket: string): { path: string } | { host: string; port: number } {
  if (socket.startsWith('unix@')) return { path: socket.slice(5) };
  const m = /^(?:ipv[46]@)?(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(socket);
  if (m && !socket.includes('/')) return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  return { path: socket };
}

/**
 * Sends one command to a HAProxy runtime API socket and returns the whole
 * answer. HAProxy closes the connection after a command in non-interactive
 * mode, which ends the answer.
 */
export async function sendHaproxyCommand(socket: string, command: string, timeoutMs = 5000): Promise<string> {
  const addr = parseSocketAddress(socket);
  return await new Promise<string>((resolvePromise, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (e?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      if (e) reject(e);
      else resolvePromise(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(() => finish(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
    const conn: Socket = 'path' in addr ? connect(addr.path) : connect(addr.port, addr.host);
    conn.on('connect', () => conn.end(`${command}\n`));
    conn.on('data', (d: Buffer) => {
      size += d.length;
      if (size > 1024 * 1024) finish(new Error('the answer is larger than 1 MiB'));
      else chunks.push(d);
    });
    conn.on('error', (e: NodeJS.ErrnoException) => finish(new Error(e.code ? `${e.code} ${e.message}` : e.message)));
    conn.on('close', () => finish());
  });
}

/** True when HAProxy accepted the response. */
function accepted(answer: string): boolean {
  return /OCSP Response updated/i.test(answer);
}

/** Pushes one staple (DER) to one socket; resolves with HAProxy's answer, throws `PUSH_FAILED`. */
export async function pushStaple(socket: string, der: Buffer, timeoutMs = 5000): Promise<string> {
  const command = `set ssl ocsp-response ${der.toString('base64')}`;
  let answer: string;
  try {
    answer = await sendHaproxyCommand(socket, command, timeoutMs);
    // The master CLI knows no `set ssl`: route the command to the current worker.
    if (!accepted(answer) && /unknown command/i.test(answer))
      answer = await sendHaproxyCommand(socket, `@1 ${command}`, timeoutMs);
  } catch (e) {
    throw new StapleError('PUSH_FAILED', `cannot talk to HAProxy at ${socket}: ${(e as Error).message}`, { cause: e });
  }
  const text = answer
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .join(' ');
  if (!accepted(answer)) {
    throw new StapleError('PUSH_FAILED', `HAProxy at ${socket} refused the staple: ${text || '(empty answer)'}`, {
      details: { answer },
    });
  }
  return text;
}

async function readState(dir: string | undefined): Promise<PushState> {
  const empty: PushState = { version: 1, pushed: {} };
  if (!dir) return empty;
  try {
    const data = JSON.parse(await readFile(join(dir, HAPROXY_STATE_NAME), 'utf8')) as Partial<PushState>;
    if (data && typeof data.pushed === 'object' && data.pushed !== null) {
      const state: PushState = { version: 1, pushed: data.pushed };
      if (typeof data.windows === 'object' && data.windows !== null) state.windows = data.windows;
      return state;
    }
  } catch {
    // missing or damaged: everything counts as not pushed, which only costs a push
  }
  return empty;
}

/**
 * Replaces the state file atomically with the file store's write (temporary
 * file named with its marker, fsync, rename), so that a temporary file left
 * by an interrupted process is cleaned up like a staple's.
 */
async function writeState(dir: string, state: PushState): Promise<void> {
  await mkdir(dir, { recursive: true });
  // a state file, not a staple: the store's "only OCSP responses are replaced" rule does not apply to it
  await createFileStore().write(join(dir, HAPROXY_STATE_NAME), Buffer.from(`${JSON.stringify(state, null, 2)}\n`), {
    overwriteNonOcsp: true,
  });
}

/**
 * Pushes staples to every configured HAProxy socket: for each socket, the
 * staples of its `certificates` (all when the list is empty) whose bytes
 * differ from what was last pushed there. Never throws: failures are in the
 * report (and are retried at the next call, since they are not recorded).
 *
 * `staples` may be a run's {@link TargetOutcome}s (only staples that verified
 * as good are pushed) or plain `{ id, staplePath }` items.
 */
export async function pushToHaproxy(
  targets: readonly HaproxyTarget[],
  staples: ReadonlyArray<HaproxyPushItem | TargetOutcome>,
  options: HaproxyPushOptions = {},
): Promise<HaproxyPushReport> {
  const report: HaproxyPushReport = { pushed: [], failed: [], kept: [], unchanged: 0 };
  if (targets.length === 0) return report;
  const items = eligible(staples);
  if (items.length === 0) return report;
  const store = options.store ?? createFileStore();
  const timeoutMs = options.timeoutMs ?? 5000;
  const state = await readState(options.stateDir);
  let changed = false;
  const bytes = new Map<string, Promise<Buffer | undefined>>();
  const load = (item: HaproxyPushItem): Promise<Buffer | undefined> => {
    let p = bytes.get(item.staplePath);
    if (!p) {
      p = store.read(item.staplePath).then((d) => (d === undefined ? undefined : stapleBytes(d, item.staplePath)));
      bytes.set(item.staplePath, p);
    }
    return p;
  };
  for (const target of targets) {
    const wanted = new Set(target.certificates);
    const mine = target.certificates.length === 0 ? items : items.filter((i) => wanted.has(i.id));
    const done = (state.pushed[target.socket] ??= {});
    // null-prototype maps: a certificate named `__proto__` or `constructor` is an ordinary key
    const allWindows = (state.windows = Object.assign(Object.create(null), state.windows) as Record<
      string,
      Record<string, PushedWindow>
    >);
    const windows = (allWindows[target.socket] = Object.assign(
      Object.create(null),
      allWindows[target.socket],
    ) as Record<string, PushedWindow>);
    for (const item of mine) {
      const result: HaproxyPushResult = {
        socket: target.socket,
        id: item.id,
        staplePath: item.staplePath,
        message: '',
      };
      try {
        const der = await load(item);
        if (der === undefined) continue; // no staple yet: nothing to hand over
        const hash = createHash('sha256').update(der).digest('hex');
        if (!options.force && done[item.id] === hash) {
          report.unchanged++;
          continue;
        }
        const rank = rankOfBytes(der);
        const prev = windows[item.id];
        if (done[item.id] !== hash && rank && isWindow(prev) && prev.cid === rank.certId) {
          const before = {
            status: prev.status,
            thisUpdate: new Date(prev.tu),
            nextUpdate: new Date(prev.nu),
            usableUntil: new Date(prev.uu),
            answers: prev.n,
          };
          const verdict = compareStaples(before, rank);
          if (!verdict.better) {
            result.message = `[${item.id}] not pushed to HAProxy at ${target.socket}: ${keptMessage(before, rank, verdict.reason, 'the staple HAProxy was given')}`;
            report.kept.push(result);
            options.onNotice?.(result.message);
            continue;
          }
        }
        result.message = await pushStaple(target.socket, der, timeoutMs);
        done[item.id] = hash;
        if (rank) windows[item.id] = windowOf(rank);
        changed = true;
        report.pushed.push(result);
        options.onNotice?.(`[${item.id}] pushed the staple to HAProxy at ${target.socket}`);
      } catch (e) {
        const err = toStapleError(e, 'PUSH_FAILED');
        result.message = `[${item.id}] ${err.message}; the push is retried at the next run`;
        report.failed.push(result);
      }
    }
  }
  if (changed && options.stateDir) {
    try {
      await writeState(options.stateDir, state);
    } catch (e) {
      // the pushes happened; forgetting them only means pushing them again next time
      options.onNotice?.(
        `cannot record the HAProxy pushes in ${join(options.stateDir, HAPROXY_STATE_NAME)}: ${(e as Error).message}`,
      );
    }
  }
  return report;
}
