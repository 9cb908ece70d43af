/**
 * `ocsprenewer`: a drop-in for go.pennock.tech/ocsprenewer on staplekeeper's
 * engine (docs/migrating.md). Same flags, same defaults, same file naming;
 * what ocsprenewer left `UNIMPLEMENTED` (fetching and writing staples,
 * persist mode, issuer discovery, directory watching, a periodic sweep, the
 * `-http` status service) works.
 *
 * Flags follow Go's `flag` package, so existing command lines and rc scripts
 * keep working: one or two dashes, `-flag value` or `-flag=value`, boolean
 * flags without a value (or `-flag=false`), flags end at the first argument
 * that is not one, or at `--`. An unknown or malformed flag prints the usage
 * and exits 2, as Go does; `-h`/`-help` prints it and exits 0.
 *
 * Exit codes: 0 success; 1 failure (a certificate failed, the output folder is
 * unusable, a bad `-timer-t1`); 2 unparseable flags.
 */
import { OCSPRENEWER_EXIT } from '../core/exit-codes.js';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { StapleError, toStapleError } from '../core/errors.js';
import type { TargetOutcome } from '../pipeline/context.js';
import { VERSION } from '../version.js';
import { createLogger, DaemonSignals, runUntilStopped } from './daemon.js';
import { escapeControls } from '../core/text.js';
import type { CliIo } from './io.js';

type FlagKind = 'bool' | 'string' | 'float';

interface FlagDef {
  name: string;
  kind: FlagKind;
  key: keyof RenewerFlags;
  usage: string;
}

/** The parsed flags, with ocsprenewer's defaults. */
export interface RenewerFlags {
  persist: boolean;
  ifNeeded: boolean;
  verbose: boolean;
  notReally: boolean;
  version: boolean;
  now: boolean;
  http: string;
  dirs: boolean;
  outDir: string;
  extension: string;
  timerT1: number;
  allowNonOcspInDir: boolean;
  certExtensions: string;
}

const FLAGS: readonly FlagDef[] = [
  {
    name: 'allow-nonocsp-in-dir',
    kind: 'bool',
    key: 'allowNonOcspInDir',
    usage: 'do not error on certs missing OCSP info',
  },
  {
    name: 'cert-extensions',
    kind: 'string',
    key: 'certExtensions',
    usage: 'files in dir-scan with these extensions should be certs',
  },
  { name: 'dirs', kind: 'bool', key: 'dirs', usage: 'arguments are directories containing certs' },
  { name: 'extension', kind: 'string', key: 'extension', usage: 'create proofs in files with this extension' },
  {
    name: 'http',
    kind: 'string',
    key: 'http',
    usage: 'start an HTTP status service, on given host:port spec (persist mode)',
  },
  {
    name: 'if-needed',
    kind: 'bool',
    key: 'ifNeeded',
    usage: 'if not persisting, only renew those which need renewal per timers',
  },
  { name: 'n', kind: 'bool', key: 'notReally', usage: 'short form of -not-really' },
  {
    name: 'not-really',
    kind: 'bool',
    key: 'notReally',
    usage: "don't talk to remote servers and write nothing; print what would be done",
  },
  { name: 'now', kind: 'bool', key: 'now', usage: 'renew immediately in persist mode' },
  { name: 'out-dir', kind: 'string', key: 'outDir', usage: 'place files into given directory' },
  { name: 'p', kind: 'bool', key: 'persist', usage: 'short form of -persist' },
  { name: 'persist', kind: 'bool', key: 'persist', usage: 'run in a loop, renewing as needed' },
  {
    name: 'timer-t1',
    kind: 'float',
    key: 'timerT1',
    usage: 'how far through staple validity period to start trying to renew',
  },
  { name: 'v', kind: 'bool', key: 'verbose', usage: 'short form of -verbose' },
  { name: 'verbose', kind: 'bool', key: 'verbose', usage: 'be more verbose' },
  { name: 'version', kind: 'bool', key: 'version', usage: 'show the version and exit' },
];

/** ocsprenewer's defaults. */
export function defaultFlags(): RenewerFlags {
  return {
    persist: false,
    ifNeeded: false,
    verbose: false,
    notReally: false,
    version: false,
    now: false,
    http: '',
    dirs: false,
    outDir: './',
    extension: '.ocsp',
    timerT1: 0.5,
    allowNonOcspInDir: false,
    certExtensions: '.crt .cert .pem',
  };
}

/** The usage text, formatted as Go's `flag.PrintDefaults`. */
export function usageText(): string {
  const d = defaultFlags();
  const lines = ['Usage of ocsprenewer:'];
  for (const f of FLAGS) {
    lines.push(`  -${f.name}${f.kind === 'string' ? ' string' : f.kind === 'float' ? ' float' : ''}`);
    const def = d[f.key];
    let suffix = '';
    if (f.kind === 'string' && def !== '') suffix = ` (default ${JSON.stringify(def)})`;
    if (f.kind === 'float') suffix = ` (default ${def})`;
    lines.push(`    \t${f.usage}${suffix}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The result of {@link parseGoFlags}. */
export type ParsedFlags =
  | { ok: true; flags: RenewerFlags; args: string[] }
  | { ok: false; help: true }
  | { ok: false; help: false; error: string };

function parseGoBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

/** True when the underscores of `s` stand between digits (or after a base prefix), Go's `underscoreOK`. */
function goUnderscoresOk(s: string): boolean {
  let t = s.startsWith('+') || s.startsWith('-') ? s.slice(1) : s;
  let saw: 'start' | 'digit' | 'underscore' | 'other' = 'start';
  let hex = false;
  if (/^0[bBoOxX]/.test(t)) {
    hex = t[1] === 'x' || t[1] === 'X';
    saw = 'digit';
    t = t.slice(2);
  }
  for (const c of t) {
    if ((c >= '0' && c <= '9') || (hex && /[a-fA-F]/.test(c))) saw = 'digit';
    else if (c === '_') {
      if (saw !== 'digit') return false;
      saw = 'underscore';
    } else {
      if (saw === 'underscore') return false;
      saw = 'other';
    }
  }
  return saw !== 'underscore';
}

/** `m × 2^e` for a hexadecimal mantissa, rounded once (Number(BigInt) rounds to nearest even). */
function scaleBinary(mantissa: bigint, exp: number): number {
  if (mantissa === 0n) return 0;
  // keep 64 significant bits plus a sticky bit so the one rounding is Number()'s
  const bits = mantissa.toString(2).length;
  let m = mantissa;
  let e = exp;
  if (bits > 64) {
    const shift = BigInt(bits - 64);
    const sticky = m & ((1n << shift) - 1n) ? 1n : 0n;
    m = (m >> shift) | sticky;
    e += bits - 64;
  }
  let v = Number(m);
  // scale in steps: 2 ** -1100 alone would already be 0
  while (e > 0) {
    const step = Math.min(e, 1000);
    v *= 2 ** step;
    e -= step;
  }
  while (e < 0) {
    const step = Math.max(e, -1000);
    v *= 2 ** step;
    e -= step;
  }
  return v;
}

/**
 * Parses a float as Go's `strconv.ParseFloat(s, 64)` does, which `flag.Float64Var`
 * uses: decimal (`0.5`, `.5`, `5.`, `5e-1`), hexadecimal with a binary exponent
 * (`0x1p-1`, `0x.8p0`), `inf`/`infinity` with an optional sign and `nan`
 * (any case), and `_` between digits. Returns the number, or the error text of
 * Go's flag package: `parse error` or `value out of range` (a finite literal
 * beyond float64, such as `1e400`).
 */
export function parseGoFloat(s: string): number | 'parse error' | 'value out of range' {
  const special = /^([+-]?)(inf|infinity)$/i.exec(s);
  if (special) return special[1] === '-' ? -Infinity : Infinity;
  if (/^nan$/i.test(s)) return NaN;
  const dec = /^[+-]?(?=\.?[0-9])[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9][0-9_]*)?$/;
  const hex = /^([+-]?)0[xX]((?=\.?[0-9a-fA-F_])[0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?)[pP]([+-]?[0-9][0-9_]*)$/;
  let value: number;
  const h = hex.exec(s);
  if (h) {
    if (s.includes('_') && !goUnderscoresOk(s)) return 'parse error';
    const [, sign, mant = '', expText = ''] = h;
    const digits = mant.replaceAll('_', '');
    const dot = digits.indexOf('.');
    const whole = digits.replace('.', '');
    if (!/[0-9a-fA-F]/.test(whole)) return 'parse error';
    const fracDigits = dot < 0 ? 0 : whole.length - dot;
    // Go caps the exponent it reads at 10000; anything that large over- or underflows anyway
    const exp = Math.max(-100_000, Math.min(100_000, Number(expText.replaceAll('_', ''))));
    value = scaleBinary(BigInt(`0x${whole}`), exp - 4 * fracDigits);
    if (sign === '-') value = -value;
  } else if (dec.test(s) && !/^[+-]?0[xX]/.test(s)) {
    if (s.includes('_') && !goUnderscoresOk(s)) return 'parse error';
    const text = s.replaceAll('_', '');
    if (!/[0-9]/.test(text.split(/[eE]/)[0] ?? '')) return 'parse error';
    value = Number(text);
  } else {
    return 'parse error';
  }
  if (!Number.isFinite(value)) return 'value out of range';
  return value;
}

/** Parses arguments the way Go's `flag` package does (see the module comment). */
export function parseGoFlags(argv: readonly string[]): ParsedFlags {
  const flags = defaultFlags();
  const set = flags as unknown as Record<string, unknown>;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a.length < 2 || !a.startsWith('-')) break;
    let dashes = 1;
    if (a[1] === '-') {
      dashes = 2;
      if (a.length === 2) {
        i++;
        break;
      }
    }
    let name = a.slice(dashes);
    if (name.length === 0 || name.startsWith('-') || name.startsWith('='))
      return { ok: false, help: false, error: `bad flag syntax: ${a}` };
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const def = FLAGS.find((f) => f.name === name);
    if (!def) {
      if (name === 'h' || name === 'help') return { ok: false, help: true };
      return { ok: false, help: false, error: `flag provided but not defined: -${name}` };
    }
    if (def.kind === 'bool') {
      if (value === undefined) set[def.key] = true;
      else {
        const b = parseGoBool(value);
        if (b === undefined)
          return {
            ok: false,
            help: false,
            error: `invalid boolean value ${JSON.stringify(value)} for -${name}: parse error`,
          };
        set[def.key] = b;
      }
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) return { ok: false, help: false, error: `flag needs an argument: -${name}` };
      value = argv[++i] as string;
    }
    if (def.kind === 'float') {
      const n = parseGoFloat(value);
      if (typeof n === 'string')
        return { ok: false, help: false, error: `invalid value ${JSON.stringify(value)} for flag -${name}: ${n}` };
      set[def.key] = n;
    } else {
      set[def.key] = value;
    }
  }
  const args = argv.slice(i);
  // Go would take a flag after the first argument as a file name; say so instead of failing on "no such file"
  const late = args.find(
    (a) => /^--?[a-z]/.test(a) && FLAGS.some((f) => f.name === a.replace(/^--?/, '').split('=')[0]),
  );
  if (late !== undefined) {
    return {
      ok: false,
      help: false,
      error: `flag ${late} after the first file or folder argument: flags must come first (Go flag syntax)`,
    };
  }
  return { ok: true, flags, args };
}

function outcomeLine(o: TargetOutcome, dryRun: boolean): { err: boolean; line: string; verboseOnly: boolean } {
  const tag = `[${o.id}]`;
  if (dryRun) {
    const d = o.decision;
    if (o.result === 'failed')
      return {
        err: true,
        verboseOnly: false,
        line: `${tag} ${o.certPath}: error ${o.error?.code ?? 'INTERNAL'}: ${o.error?.message ?? ''}`,
      };
    if (d?.action === 'renew')
      return { err: false, verboseOnly: false, line: `${tag} would renew ${o.staplePath} (${d.reason}): ${d.detail}` };
    return { err: false, verboseOnly: false, line: `${tag} would keep ${o.staplePath}: ${d?.detail ?? 'fresh'}` };
  }
  switch (o.result) {
    case 'updated':
      return {
        err: false,
        verboseOnly: false,
        line: `${tag} renewed ${o.staplePath}: ${o.staple?.status ?? '?'}, valid until ${o.staple?.nextUpdate ?? '?'} (${o.method ?? ''} ${o.url ?? ''})`,
      };
    case 'unchanged':
      return {
        err: false,
        verboseOnly: true,
        line: `${tag} skipping for not within OCSP timer: ${o.decision?.detail ?? 'fresh'}`,
      };
    case 'skipped':
      return { err: false, verboseOnly: true, line: `${tag} skipped: ${o.notices.at(-1) ?? ''}` };
    default:
      if (o.revoked) {
        return {
          err: true,
          verboseOnly: false,
          line: `${tag} failed: certificate REVOKED at ${o.revoked.time ?? '?'} (reason: ${o.revoked.reason ?? 'unspecified'}); the current staple was kept`,
        };
      }
      return {
        err: true,
        verboseOnly: false,
        line: `${tag} failed on ${JSON.stringify(o.certPath)}: ${o.error?.code ?? 'INTERNAL'}: ${o.error?.message ?? ''}`,
      };
  }
}

/** ocsprenewer creates staples with mode 0600 (Go's os.CreateTemp); an existing staple keeps its mode. */
export const RENEWER_NEW_STAPLE_MODE = 0o600;

async function renewerStore(): Promise<import('../io/store.js').StapleStore> {
  const { createFileStore } = await import('../io/store.js');
  return createFileStore({ newFileMode: RENEWER_NEW_STAPLE_MODE });
}

/** Runs the ocsprenewer drop-in; returns the exit code. */
export async function ocsprenewerCli(argv: string[], io: CliIo): Promise<number> {
  // a file name with a newline or an ESC in it must not forge or hide a line
  const out = (s: string): void => void io.stdout.write(`${escapeControls(s)}\n`);
  const err = (s: string): void => void io.stderr.write(`${escapeControls(s)}\n`);
  const parsed = parseGoFlags(argv);
  if (!parsed.ok) {
    if (parsed.help) {
      io.stderr.write(usageText());
      return OCSPRENEWER_EXIT.OK;
    }
    err(parsed.error);
    io.stderr.write(usageText());
    return OCSPRENEWER_EXIT.USAGE;
  }
  const f = parsed.flags;
  if (f.version) {
    out(`ocsprenewer (staplekeeper ${VERSION}): drop-in replacement for go.pennock.tech/ocsprenewer`);
    return OCSPRENEWER_EXIT.OK;
  }

  const engine = await import('../discovery/ocsprenewer.js');
  const fail = (message: string): number => {
    err(`configuring OCSP renewer failed: ${message}`);
    return OCSPRENEWER_EXIT.FAILURE;
  };
  if (parsed.args.length === 0) return fail('no input paths to examine');
  let timerT1: number;
  try {
    timerT1 = engine.normaliseTimerT1(f.timerT1);
  } catch (e) {
    return fail(toStapleError(e).message);
  }
  const outDir = resolve(io.cwd, f.outDir);
  const settings: Parameters<typeof engine.discoverRenewerTargets>[0] = {
    paths: parsed.args.map((p) => resolve(io.cwd, p)),
    dirs: f.dirs,
    outDir,
    extension: f.extension,
    certExtensions: engine.parseCertExtensions(f.certExtensions),
    timerT1,
    allowNonOcspInDir: f.allowNonOcspInDir,
    // the output folder's discovery cache: a file known to hold a certificate with a responder is not parsed
    // again (discovery/ocsprenewer-cache.ts); -not-really writes nothing, so it only reads it
    discoveryCache: f.notReally ? 'read' : 'write',
  };
  if (f.http) settings.statusListen = f.http;

  // ocsprenewer proves at start that it can write where the staples go
  const isDir = await stat(outDir).then(
    (st) => st.isDirectory(),
    () => false,
  );
  if (!isDir) return fail(`output directory ${JSON.stringify(f.outDir)} does not exist or is not a directory`);
  const { proveWritable } = await import('../daemon/writable.js');
  if (f.notReally) {
    if (!(await engine.canWrite(outDir))) return fail(`output directory ${JSON.stringify(f.outDir)} is not writable`);
  } else {
    try {
      await proveWritable([outDir]);
    } catch (e) {
      return fail(`output directory ${JSON.stringify(f.outDir)}: ${toStapleError(e).message}`);
    }
  }

  const found = await engine.discoverRenewerTargets(settings);
  if (f.verbose) for (const s of found.skipped) out(`skipped ${JSON.stringify(s.path)}: ${s.reason}`);

  if (f.persist && !f.notReally) return await persist(settings, found, f, io);
  if (f.persist) out('-not-really: showing what the first pass would do, then exiting instead of persisting');

  for (const p of found.problems) err(`failure: error ${p.code}: ${p.message}`);
  const { runOnce } = await import('../batch/run.js');
  const { SignatureVerifier } = await import('../pipeline/signature-verifier.js');
  const { VerdictCache } = await import('../pipeline/verdict-cache.js');
  const config = engine.renewerConfig(settings, found.targets);
  let failed = found.problems.length;
  try {
    const offline = {
      send: async (): Promise<never> => {
        throw new StapleError('HTTP_NETWORK', 'no network in -not-really mode');
      },
      close: async () => undefined,
    };
    const report = await runOnce(config, {
      store: await renewerStore(),
      // the verdict cache beside the staples, signatures checked on a thread, as `staplekeeper run`; one
      // process, one pass: records kept as their lines, and outcomes kept brief once printed
      verdicts: new VerdictCache({ env: io.env, oneShot: true }),
      briefOutcomes: true,
      signatures: new SignatureVerifier({ thread: true }),
      // discovery read and hashed every certificate file just now: the staple cache is looked up by those hashes
      certHashes: found.certHashes,
      force: f.persist ? f.now : !f.ifNeeded,
      dryRun: f.notReally,
      ...(f.notReally ? { transport: offline } : {}),
      env: io.env,
      onNotice: (m) => {
        if (f.verbose) err(m);
      },
      onOutcome: (o) => {
        const l = outcomeLine(o, f.notReally);
        if (l.verboseOnly && !f.verbose) return;
        if (l.err) err(l.line);
        else out(l.line);
        if (f.verbose) for (const n of o.notices) out(`[${o.id}]   note: ${n}`);
      },
    });
    failed += report.failed + report.hookErrors.length;
    if (f.verbose || failed > 0) {
      const line = `${report.updated} renewed, ${report.unchanged + report.skipped} unchanged, ${failed} failed`;
      if (failed > 0) err(`renewing failed: ${line}`);
      else out(line);
    }
  } catch (e) {
    const x = toStapleError(e);
    err(`renewing failed: error ${x.code}: ${x.message}`);
    return OCSPRENEWER_EXIT.FAILURE;
  }
  return failed > 0 ? OCSPRENEWER_EXIT.FAILURE : OCSPRENEWER_EXIT.OK;
}

async function persist(
  settings: Parameters<typeof import('../discovery/ocsprenewer.js').discoverRenewerTargets>[0],
  found: import('../discovery/ocsprenewer.js').RenewerDiscovery,
  f: RenewerFlags,
  io: CliIo,
): Promise<number> {
  const log = createLogger(io, { format: 'text', verbose: f.verbose, journald: Boolean(io.env.JOURNAL_STREAM) });
  const signals = new DaemonSignals(log, 'check');
  const { StapleDaemon } = await import('../daemon/daemon.js');
  const { renewerSource } = await import('../discovery/ocsprenewer.js');
  try {
    const daemon = await StapleDaemon.start({
      source: renewerSource(settings, found),
      log,
      initialForce: f.now,
      store: await renewerStore(),
      ...(f.http ? { listen: f.http } : {}),
    });
    return await runUntilStopped(daemon, signals, log);
  } catch (e) {
    signals.uninstall();
    const x = toStapleError(e);
    log({ level: 'error', code: x.code, msg: `cannot start: ${x.message}` });
    return OCSPRENEWER_EXIT.FAILURE;
  }
}
