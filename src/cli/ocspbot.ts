/**
 * The `ocspbot` drop-in: `ocspbot [config] [-h|-help|--help] [-v|-version|--version]`,
 * default config `ocspbot.yaml`, the ocspbot 0.9.3 exit codes, `[domain] `
 * prefixed lines and the closing `Success|Failure: …` line. An existing
 * ocspbot config, cron line and reload script work unchanged.
 *
 * Where `staplekeeper run` improves on ocspbot, this command keeps what
 * ocspbot's users rely on (docs/migrating.md): its log files start afresh at each run
 * and carry the error and warning lines too; a missing include folder is a
 * warning; a staple path that is a folder is a configuration error (253).
 * The differences that remain on purpose are listed in docs/migrating.md.
 */
import { VERSION } from '../version.js';
import { escapeLines } from '../core/text.js';
import type { CliIo } from './io.js';
import { EXIT } from '../core/exit-codes.js';
import { executeRun, loadConfigForCli } from './run.js';

const HELP = `usage: ocspbot [<config file>] [-h | -help | --help] [-v | -version | --version]

Ensures up-to-date OCSP responses for the certificates of <config file>
(default: ocspbot.yaml). This is staplekeeper's ocspbot-compatible command.

Exit codes: 0 nothing renewed, N the number of renewed responses (at most 250),
255 retrieval errors, 254 YAML or log-file errors, 253 configuration errors,
252 invalid command-line arguments.
`;

/** Runs the ocspbot drop-in; returns the exit code. */
export async function ocspbotCli(argv: string[], io: CliIo): Promise<number> {
  let config: string | undefined;
  for (const a of argv) {
    if (a === '-h' || a === '-help' || a === '--help') {
      io.stdout.write(HELP);
      return EXIT.OK;
    }
    if (a === '-v' || a === '-version' || a === '--version') {
      io.stdout.write(`ocspbot (staplekeeper) ${VERSION}\n`);
      return EXIT.OK;
    }
  }
  for (const a of argv) {
    if (a.startsWith('-') && a !== '-') {
      io.stderr.write(`ocspbot: error BAD_ARGUMENTS: unknown option "${a}"\n${HELP}`);
      return EXIT.USAGE;
    }
    if (config !== undefined) {
      io.stderr.write(
        `ocspbot: error BAD_ARGUMENTS: only one configuration file may be given (got "${config}" and "${a}")\n`,
      );
      return EXIT.USAGE;
    }
    config = a;
  }
  const loaded = await loadConfigForCli(config ?? 'ocspbot.yaml', io, false, { ocspbot: true });
  if ('exit' in loaded) {
    io.stderr.write(`ocspbot: error ${loaded.error.code}: ${escapeLines(loaded.error.message)}\n`);
    return loaded.exit;
  }
  return await executeRun(
    loaded.config,
    {
      dryRun: false,
      force: false,
      json: false,
      quiet: false,
      verbose: false,
      prog: 'ocspbot',
      ocspbot: true,
      // ocspbot fails a certificate without an OCSP URL (exit 255): the drop-in keeps that
      strictOcsp: true,
    },
    io,
  );
}
