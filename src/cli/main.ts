/**
 * The command line: `cli(argv, io) → exit code`. The library never imports
 * this directory. Heavy modules are imported lazily per command so that
 * `--version` and `run` start fast.
 */
import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../version.js';
import { releaseEarlySignals } from './early-signals.js';
import { CHECK_EXIT } from '../core/exit-codes.js';
import { EXIT, reportError } from './common.js';

/** `--help` text: the exit codes of each command. */
const EXIT_HELP = {
  fetch: `
Exit codes: ${EXIT.OK} the staple was written, ${EXIT.FAILURE} it was not (the file at --out is left
untouched), ${EXIT.USAGE} bad arguments.`,
  inspect: `
Exit codes: ${EXIT.OK} the staple was read (and, with --cert, is valid now), ${EXIT.FAILURE} it is not
valid or could not be read, ${EXIT.USAGE} bad arguments.`,
  run: `
Exit codes (ocspbot's): ${EXIT.OK} nothing renewed, N the number of staples renewed (at
most ${EXIT.RENEWED_MAX}), ${EXIT.RETRIEVAL} retrieval errors (also a failing hook or another run holding the
lock), ${EXIT.YAML} YAML or log-file errors, ${EXIT.CONFIG} configuration errors, ${EXIT.USAGE} bad arguments.`,
  check: `
Exit codes (monitoring plugin): ${CHECK_EXIT.ok} OK, ${CHECK_EXIT.warning} WARNING, ${CHECK_EXIT.critical} CRITICAL, ${CHECK_EXIT.unknown} UNKNOWN (also bad
arguments and an unreadable configuration).`,
  daemon: `
Exit codes: ${EXIT.OK} stopped by SIGTERM or SIGINT, ${EXIT.FAILURE} could not start (configuration,
staple folder, listen address), ${EXIT.USAGE} bad arguments.`,
  top: `
Exit codes: those of each command (staplekeeper <command> --help); bad arguments
exit ${EXIT.USAGE} (check: ${CHECK_EXIT.unknown}).`,
} as const;

/** The environment variables of the commands that load a configuration. */
const CONFIG_ENV_HELP = `
Environment:
  STAPLEKEEPER_CACHE_DIR  folder of the configuration cache (default
                          $XDG_CACHE_HOME/staplekeeper or ~/.cache/staplekeeper;
                          "off" disables it)
  HTTP_PROXY, HTTPS_PROXY, NO_PROXY
                          proxies for responder requests (http.proxy overrides)
  NO_COLOR                no colour on a terminal`;
import type { CliIo } from './io.js';
import { holdHeapGrowth } from './heap-growth.js';

export type { CliIo } from './io.js';

export { EXIT, reportError } from './common.js';

function wantsVerbose(argv: string[]): boolean {
  return argv.includes('--verbose') || argv.includes('-v');
}

/** Runs the staplekeeper CLI and returns the exit code. */
export async function cli(argv: string[], io: CliIo): Promise<number> {
  let code = EXIT.OK as number;
  // bad arguments exit 252 everywhere (outside run's 1-250 "renewed" range), 3 for check (the plugin convention)
  const usageExit: number = argv[0] === 'check' ? CHECK_EXIT.unknown : EXIT.USAGE;
  const program = new Command('staplekeeper')
    .description('Keeps OCSP stapling responses fresh and correct for every TLS certificate you run.')
    .version(VERSION, '-V, --version', 'print the version')
    .helpCommand(true)
    .addHelpText('after', EXIT_HELP.top)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`staplekeeper: ${s.replace(/^error: /, 'error BAD_ARGUMENTS: ')}`),
    });

  program
    .command('fetch')
    .description('fetch, verify and atomically write the staple of one certificate')
    .requiredOption('--cert <file>', 'certificate (PEM bundle or DER); the issuer may follow in the same file')
    .option('--issuer <file>', 'issuer certificate (otherwise found from the bundle, --chain, --ca-dir or AIA)')
    .option('--chain <file>', 'chain file to search for the issuer')
    .option('--ca-dir <dir...>', 'directories of CA certificates to search for the issuer')
    .option('--url <url>', 'responder URL (overrides the certificate AIA)')
    .requiredOption('--out <file>', 'where to write the staple (DER)')
    .addOption(new Option('--method <method>', 'HTTP method').choices(['auto', 'get', 'post']).default('auto'))
    .addOption(new Option('--hash <alg>', 'CertID hash algorithm').choices(['sha1', 'sha256']).default('sha1'))
    .option('--nonce', 'send a nonce and require it back', false)
    .option('--backup', 'also keep a timestamped copy <out>-YYYYMMDD-HHMMSS', false)
    .option(
      '--overwrite',
      'replace --out even when it holds something that is not an OCSP response (never a certificate or key)',
      false,
    )
    .option('--timeout <duration>', 'whole-exchange timeout (e.g. 10s)', '10s')
    .option('--json', 'print the result as JSON', false)
    .option('-v, --verbose', 'more detail, stack traces on errors', false)
    .addHelpText('after', EXIT_HELP.fetch)
    .action(async (opts) => {
      const { fetchCommand } = await import('./fetch.js');
      code = await fetchCommand(opts, io);
    });

  program
    .command('inspect')
    .description('print a stored staple in readable form; with --cert, say whether it is valid now')
    .argument('<file>', 'staple file (DER or PEM "OCSP RESPONSE")')
    .option('--cert <file>', 'the certificate the staple is for')
    .option('--issuer <file>', 'the issuer certificate (otherwise found from the bundle or --chain)')
    .option('--chain <file>', 'chain file to search for the issuer')
    .option('--at <time>', 'judge validity at this ISO time instead of now')
    .option('--json', 'print JSON', false)
    .option('-v, --verbose', 'stack traces on errors', false)
    .addHelpText('after', EXIT_HELP.inspect)
    .action(async (file: string, opts) => {
      const { inspectCommand } = await import('./inspect.js');
      code = await inspectCommand(file, opts, io);
    });

  program
    .command('run')
    .description('check every configured certificate and renew the staples that are due (cron job)')
    .option('-c, --config <file>', 'configuration file (default staplekeeper.yaml, then ocspbot.yaml)')
    .option('--dry-run', 'decide and print, fetch and write nothing', false)
    .option('--force', 'renew every staple now', false)
    .option('--json', 'one JSON object per certificate and a summary object', false)
    .option('-q, --quiet', 'print errors and the summary only', false)
    .option('-v, --verbose', 'more detail, stack traces on errors', false)
    .option('--only <id...>', 'process only these domain identifiers')
    .option('--crl', 'also check the CRLs of certificates without an OCSP responder (crl.watch)')
    .addHelpText('after', EXIT_HELP.run)
    .addHelpText('after', CONFIG_ENV_HELP)
    .action(async (opts) => {
      const { runCommand } = await import('./run.js');
      code = await runCommand(opts, io);
    });

  program
    .command('check')
    .description(
      'monitoring plugin (Nagios/Icinga): judge every staple on disk (never fetches one) and the CRLs of certificates without a responder; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN',
    )
    .option('-c, --config <file>', 'configuration file (default staplekeeper.yaml, then ocspbot.yaml)')
    .option(
      '--warn <duration>',
      'WARNING when a staple stops being usable within this time (default: relative, when less than a quarter of its validity window remains)',
    )
    .option(
      '--crit <duration>',
      'CRITICAL when a staple stops being usable within this time (default: relative, an eighth of its window, at most 1d)',
    )
    .option('--cert-warn <duration>', 'WARNING when a certificate itself expires within this time', '14d')
    .option('--cert-crit <duration>', 'CRITICAL when a certificate itself expires within this time', '3d')
    .option('--no-crl', 'do not download the CRLs of certificates without an OCSP responder (crl.watch)')
    .option('--json', 'print a JSON document with the state of every certificate', false)
    .option('-v, --verbose', 'one more line per certificate after the status line', false)
    .addHelpText('after', EXIT_HELP.check)
    .addHelpText('after', CONFIG_ENV_HELP)
    .action(async (opts) => {
      const { checkCommand } = await import('./check.js');
      code = await checkCommand(opts, io);
    });

  program
    .command('list')
    .description(
      'every configured certificate with its triage (ocsp, crl, none; must-staple), expiry, staple state and URLs: the migration report',
    )
    .option('-c, --config <file>', 'configuration file (default staplekeeper.yaml, then ocspbot.yaml)')
    .option('--json', 'print a JSON document', false)
    .action(async (opts: { config?: string; json: boolean }) => {
      const { loadConfigForCli } = await import('./run.js');
      const loaded = await loadConfigForCli(opts.config, io);
      if ('exit' in loaded) {
        io.stderr.write(`staplekeeper: error ${loaded.error.code}: ${loaded.error.message}\n`);
        code = loaded.exit;
        return;
      }
      const { formatList, listCertificates } = await import('../batch/list.js');
      const items = await listCertificates(loaded.config);
      io.stdout.write(opts.json ? `${JSON.stringify({ certificates: items }, null, 2)}\n` : formatList(items));
    });

  program
    .command('daemon')
    .description('keep every staple fresh as a service: timers, retries with backoff, folder watching, signals')
    .option('-c, --config <file>', 'configuration file (default staplekeeper.yaml, then ocspbot.yaml)')
    .option('--listen <host:port>', 'serve /, /status, /metrics and /healthz here (a port alone means 127.0.0.1)')
    .addOption(new Option('--log-format <format>', 'log line format').choices(['text', 'json']).default('text'))
    .option('-v, --verbose', 'also log fresh staples, schedule decisions and notes', false)
    .addHelpText('after', EXIT_HELP.daemon)
    .addHelpText('after', CONFIG_ENV_HELP)
    .action(async (opts) => {
      const { daemonCommand } = await import('./daemon.js');
      code = await daemonCommand(opts, io);
    });

  try {
    if (argv.length === 0) {
      program.outputHelp();
      return EXIT.OK;
    }
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') {
        return EXIT.OK;
      }
      // monitoring systems read a plugin's standard output, not its errors
      if (argv[0] === 'check')
        io.stdout.write(`STAPLEKEEPER UNKNOWN - invalid arguments: ${e.message.replace(/^error: /, '')}\n`);
      return usageExit;
    }
    reportError(io, e, wantsVerbose(argv));
    return EXIT.FAILURE;
  }
}

/** Entry point of the bin shims. */
export async function runMain(prog: 'staplekeeper' | 'ocspbot' | 'ocsprenewer', argv: string[]): Promise<void> {
  const io: CliIo = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    isTTY: Boolean(process.stdout.isTTY),
  };
  let code: number;
  // a warm run needs no grown heap (heap-growth.ts): ~25 MB less peak RSS at 10,000 certificates
  holdHeapGrowth();
  // Signals queued since the executable's first statement (early-signals.ts): a daemon
  // takes them over with its own handlers; any other command gets the defaults back now.
  if (prog === 'ocspbot') {
    releaseEarlySignals();
    const { ocspbotCli } = await import('./ocspbot.js');
    code = await ocspbotCli(argv, io);
  } else if (prog === 'ocsprenewer') {
    const { ocsprenewerCli, parseGoFlags } = await import('./ocsprenewer.js');
    const parsed = parseGoFlags(argv);
    if (!(parsed.ok && parsed.flags.persist && !parsed.flags.notReally)) releaseEarlySignals();
    code = await ocsprenewerCli(argv, io);
  } else {
    if (argv[0] !== 'daemon') releaseEarlySignals();
    code = await cli(argv, io);
  }
  releaseEarlySignals(); // a daemon that never got to install its handlers
  process.exit(code);
}
