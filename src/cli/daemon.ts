/**
 * `staplekeeper daemon`: the long-running renewer in the foreground, for
 * systemd, runit, supervise or a container.
 *
 * Logging suits journald: one line per event, no timestamps (journald adds
 * them), errors and warnings on stderr, the rest on stdout, and when stdout
 * is the journal (`JOURNAL_STREAM` is set) each line starts with its syslog
 * priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug, see
 * sd-daemon(3)) so that `journalctl -p err` works. `--log-format json` prints
 * one JSON object per line (`time`, `level`, `msg`, `id`, `code`, …) for log
 * shippers.
 *
 * Signals (ocsprenewer's, docs/migrating.md, plus reload and stop):
 * SIGUSR1 checks every certificate now per the policy, SIGUSR2 renews every
 * staple now, SIGHUP reloads the configuration (a bad one is reported and
 * the running one kept), SIGTERM/SIGINT stop taking work, let the writes in
 * progress finish and exit 0 within 10 s.
 *
 * Exit codes: 0 after a clean stop, 1 when it cannot start (configuration,
 * unwritable staple folder, listen address in use), 252 for bad arguments.
 */
import { resolve } from 'node:path';
import { loadConfig } from '../config/index.js';
import { toStapleError } from '../core/errors.js';
import type { DaemonLogger, DaemonSource, LogEvent, StapleDaemon } from '../daemon/daemon.js';
import { EXIT } from './common.js';
import { escapeControls } from '../core/text.js';
import type { CliIo } from './io.js';
import { takeEarlySignals } from './early-signals.js';
import { configLoadOptions, loadConfigForCli } from './run.js';

/** Options of `staplekeeper daemon`. */
export interface DaemonCommandOptions {
  config?: string;
  listen?: string;
  logFormat?: 'text' | 'json';
  verbose?: boolean;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  format: 'text' | 'json';
  verbose: boolean;
  /** Prefix text lines with `<N>` syslog priorities (stdout is the journal). */
  journald: boolean;
  /** Time source for JSON `time` (tests). */
  now?: () => Date;
}

const PRIORITY: Record<LogEvent['level'], number> = { error: 3, warn: 4, info: 6, debug: 7 };

/** Formats {@link LogEvent}s as journald-friendly text or JSON lines. */
export function createLogger(io: Pick<CliIo, 'stdout' | 'stderr'>, options: LoggerOptions): DaemonLogger {
  const now = options.now ?? (() => new Date());
  return (e) => {
    if (e.level === 'debug' && !options.verbose) return;
    const stream = e.level === 'error' || e.level === 'warn' ? io.stderr : io.stdout;
    let line: string;
    if (options.format === 'json') {
      const obj: Record<string, unknown> = { time: now().toISOString(), level: e.level, msg: e.msg };
      if (e.id !== undefined) obj.id = e.id;
      if (e.code !== undefined) obj.code = e.code;
      for (const [k, v] of Object.entries(e.fields ?? {})) if (!(k in obj) && v !== undefined) obj[k] = v;
      line = JSON.stringify(obj);
    } else {
      const tag = e.id !== undefined ? `[${e.id}] ` : '';
      const lead =
        e.level === 'error'
          ? `error ${e.code ?? 'INTERNAL'}: `
          : e.level === 'warn'
            ? `warning${e.code ? ` ${e.code}` : ''}: `
            : '';
      // one event, one line: a multi-line message (a config error list) is joined; any other control
      // character (a newline inside a file name, an ESC) is escaped, so a name cannot forge a line
      line = `${options.journald ? `<${PRIORITY[e.level]}>` : ''}${escapeControls(tag)}${lead}${escapeControls(e.msg.replace(/\r?\n/g, ' | '))}`;
    }
    try {
      stream.write(`${line}\n`);
    } catch {
      // a closed stdout must not stop the daemon
    }
  };
}

/** The process-like object signals come from (the real `process`, or a test double). */
export interface SignalSource {
  on(signal: NodeJS.Signals, fn: () => void): unknown;
  off(signal: NodeJS.Signals, fn: () => void): unknown;
}

/**
 * Routes signals to a daemon. Installed before the daemon starts, so that a
 * signal during start-up never takes Node's default action (SIGHUP and
 * SIGUSR2 would kill the process, SIGUSR1 would open the inspector): until
 * {@link DaemonSignals.attach}, SIGTERM/SIGINT are remembered and the others
 * ignored (the initial check is running anyway). `hup` is `reload` for
 * staplekeeper and `check` for ocsprenewer, whose SIGHUP means SIGUSR1.
 */
export class DaemonSignals {
  private daemon: StapleDaemon | undefined;
  private stopSignal: NodeJS.Signals | undefined;
  private onStop: ((s: NodeJS.Signals) => void) | undefined;
  private readonly handlers: Array<[NodeJS.Signals, () => void]>;

  constructor(
    private readonly log: DaemonLogger,
    private readonly hup: 'reload' | 'check',
    private readonly source: SignalSource = process,
  ) {
    const check = (sig: NodeJS.Signals) => (): void => {
      if (!this.daemon || this.stopSignal) return;
      this.log({ level: 'info', msg: `${sig}: checking every certificate now` });
      this.daemon.checkNow();
    };
    this.handlers = [
      ['SIGUSR1', check('SIGUSR1')],
      [
        'SIGUSR2',
        () => {
          if (!this.daemon || this.stopSignal) return;
          this.log({ level: 'info', msg: 'SIGUSR2: renewing every staple now' });
          this.daemon.renewAll();
        },
      ],
      [
        'SIGHUP',
        this.hup === 'check'
          ? check('SIGHUP')
          : () => {
              if (!this.daemon || this.stopSignal) return;
              this.log({ level: 'info', msg: 'SIGHUP: reloading the configuration' });
              void this.daemon.reload();
            },
      ],
      ['SIGTERM', () => this.stop('SIGTERM')],
      ['SIGINT', () => this.stop('SIGINT')],
    ];
    for (const [sig, fn] of this.handlers) this.source.on(sig, fn);
    // the signals that arrived since the executable's first statement: a stop request is kept
    if (this.source === process) {
      for (const sig of takeEarlySignals()) if (sig === 'SIGTERM' || sig === 'SIGINT') this.stop(sig);
    }
  }

  private stop(sig: NodeJS.Signals): void {
    if (this.stopSignal) {
      this.log({ level: 'warn', msg: `${sig} again: already stopping` });
      return;
    }
    this.stopSignal = sig;
    this.onStop?.(sig);
  }

  /** Starts routing signals to `daemon`. */
  attach(daemon: StapleDaemon): void {
    this.daemon = daemon;
  }

  /** Resolves with the signal that asked to stop (at once if one already did). */
  waitForStop(): Promise<NodeJS.Signals> {
    if (this.stopSignal) return Promise.resolve(this.stopSignal);
    return new Promise((r) => (this.onStop = r));
  }

  /** Removes the handlers. */
  uninstall(): void {
    for (const [sig, fn] of this.handlers) this.source.off(sig, fn);
  }
}

/** Longest time from SIGTERM to exit. */
export const STOP_DEADLINE_MS = 9_500;

/**
 * Waits for SIGTERM/SIGINT, then stops the daemon. A hard deadline makes
 * sure the process exits within 10 s even if something hangs (writes are
 * atomic, so an interrupted one leaves the old staple in place).
 */
export async function runUntilStopped(
  daemon: StapleDaemon,
  signals: DaemonSignals,
  log: DaemonLogger,
): Promise<number> {
  signals.attach(daemon);
  const signal = await signals.waitForStop();
  log({ level: 'info', msg: `${signal}: stopping (finishing the work in progress)` });
  const hard = setTimeout(() => {
    log({ level: 'warn', msg: 'could not stop cleanly in time; exiting now (staple writes are atomic)' });
    process.exit(0);
  }, STOP_DEADLINE_MS);
  hard.unref();
  try {
    await daemon.stop();
  } finally {
    clearTimeout(hard);
    signals.uninstall();
  }
  log({ level: 'info', msg: 'stopped' });
  return EXIT.OK;
}

/** Runs `staplekeeper daemon`; returns the exit code once it has stopped. */
export async function daemonCommand(
  opts: DaemonCommandOptions,
  io: CliIo,
  signalSource: SignalSource = process,
): Promise<number> {
  const format = opts.logFormat ?? 'text';
  const log = createLogger(io, {
    format,
    verbose: opts.verbose ?? false,
    journald: format === 'text' && Boolean(io.env.JOURNAL_STREAM),
  });
  const code = await startAndRun(opts, io, log, new DaemonSignals(log, 'reload', signalSource));
  return code;
}

async function startAndRun(
  opts: DaemonCommandOptions,
  io: CliIo,
  log: DaemonLogger,
  signals: DaemonSignals,
): Promise<number> {
  const fail = (code: number): number => {
    signals.uninstall();
    return code;
  };
  if (opts.listen !== undefined) {
    const { parseListen } = await import('../status/server.js');
    try {
      parseListen(opts.listen);
    } catch (e) {
      const err = toStapleError(e);
      log({ level: 'error', code: err.code, msg: `--listen: ${err.message}` });
      return fail(EXIT.USAGE);
    }
  }
  const loaded = await loadConfigForCli(opts.config, io);
  if ('exit' in loaded) {
    log({ level: 'error', code: loaded.error.code, msg: loaded.error.message });
    return fail(1);
  }
  const file = resolve(io.cwd, loaded.config.file ?? '');
  for (const note of loaded.config.settings.notes) log({ level: 'info', msg: `note: ${note}` });
  const { StapleDaemon, sourceFromConfig } = await import('../daemon/daemon.js');
  let daemon: StapleDaemon;
  try {
    daemon = await StapleDaemon.start({
      source: sourceFromConfig(loaded.config),
      reload: async (): Promise<DaemonSource> => sourceFromConfig(await loadConfig(file, configLoadOptions(io))),
      log,
      env: io.env,
      ...(opts.listen !== undefined ? { listen: opts.listen } : {}),
    });
  } catch (e) {
    const err = toStapleError(e);
    log({ level: 'error', code: err.code, msg: `cannot start: ${err.message}` });
    return fail(1);
  }
  return await runUntilStopped(daemon, signals, log);
}
