/**
 * Signals that arrive before the command is ready for them.
 *
 * Node's default actions are dangerous during start-up: SIGHUP and SIGUSR2
 * terminate the process (a daemon signalled by logrotate or a deploy
 * script 0.1 s after it started would die with 129/140), and SIGUSR1 makes
 * Node open its inspector on 127.0.0.1:9229 — a debugger any local user can
 * attach to, to run code as the daemon's user. Loading the program takes
 * 0.1–0.3 s, so the handlers are installed by the very first statement of
 * each executable (bin/staplekeeper, bin/ocspbot, bin/ocsprenewer and the
 * one-file build's entry), before anything is imported: they only queue the
 * signal. This module hands the queue over:
 *
 * - to a daemon ({@link takeEarlySignals}, called by `DaemonSignals` once
 *   its own handlers are in place): a queued SIGTERM/SIGINT stops it, the
 *   others are ignored as during the initial check;
 * - to every other command ({@link releaseEarlySignals}): SIGHUP, SIGUSR2,
 *   SIGTERM and SIGINT get their default action back, and one that was
 *   queued is raised again (the process ends as it would have); SIGUSR1
 *   stays ignored for the life of the process, so it never opens the
 *   inspector.
 *
 * The only window left is Node's own bootstrap, before any JavaScript runs.
 */

/** The signals held from the first statement on. */
export const EARLY_SIGNALS: readonly NodeJS.Signals[] = ['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGTERM', 'SIGINT'];

/** Where the executables leave the queue (a global: they may not import anything first). */
const KEY = Symbol.for('staplekeeper.earlySignals');

interface EarlyState {
  queued: NodeJS.Signals[];
  hold: (sig: NodeJS.Signals) => void;
}

type Holder = { [KEY]?: EarlyState };

/** Installs the queueing handlers (idempotent); the executables do the same inline. */
export function installEarlySignals(): void {
  const g = globalThis as Holder;
  if (g[KEY]) return;
  const queued: NodeJS.Signals[] = [];
  const hold = (sig: NodeJS.Signals): void => void queued.push(sig);
  for (const sig of EARLY_SIGNALS) process.on(sig, hold);
  g[KEY] = { queued, hold };
}

function detach(): NodeJS.Signals[] {
  const g = globalThis as Holder;
  const state = g[KEY];
  if (!state) return [];
  delete g[KEY];
  for (const sig of EARLY_SIGNALS) process.off(sig, state.hold);
  return state.queued;
}

/**
 * For a daemon whose own handlers are installed: removes the queueing
 * handlers and returns the signals received so far, in order.
 */
export function takeEarlySignals(): NodeJS.Signals[] {
  return detach();
}

const ignoreUsr1 = (): void => undefined;

/**
 * For a command that is not a daemon: gives SIGHUP, SIGUSR2, SIGTERM and
 * SIGINT their default action back and raises again the first of them that
 * arrived; SIGUSR1 stays ignored (never the inspector).
 */
export function releaseEarlySignals(): void {
  const queued = detach();
  if (!process.listeners('SIGUSR1').includes(ignoreUsr1)) process.on('SIGUSR1', ignoreUsr1);
  const fatal = queued.find((s) => s !== 'SIGUSR1');
  if (fatal && process.listenerCount(fatal) === 0) process.kill(process.pid, fatal);
}
