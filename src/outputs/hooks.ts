/**
 * Hooks: commands run after a run (`on_change`, `on_failure`, `on_revoked`).
 *
 * An argument array runs without a shell; a plain string runs with `sh -c`
 * because the operator asked for one. No value from a certificate or a
 * responder is ever put into the command line: the changed items reach the
 * hook as environment variables and as JSON on its standard input.
 */
import { spawn } from 'node:child_process';
import { StapleError } from '../core/errors.js';
import type { HookCommand } from '../config/types.js';

/** Bytes of stdout (the first) and stderr (the last) kept from a hook. */
const MAX_OUTPUT = 65536;
/** How long to wait for a hook's output after it exited. */
const OUTPUT_GRACE_MS = 500;

/** One item passed to a hook. */
export interface HookItem {
  id: string;
  certPath: string;
  staplePath: string;
  result: string;
  error?: { code: string; message: string };
  revoked?: { time?: string; reason?: string; source?: 'ocsp' | 'crl'; url?: string; certificate?: string };
  nextUpdate?: string;
}

/** What a hook run produced. */
export interface HookResult {
  event: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/**
 * Runs one hook. Throws `HOOK_FAILED` when it cannot start, exits non-zero,
 * or runs past its timeout (it is then killed).
 */
export async function runHook(
  event: 'on_change' | 'on_failure' | 'on_revoked',
  hook: HookCommand,
  items: HookItem[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<HookResult> {
  const [file, ...args] = hook.kind === 'shell' ? ['/bin/sh', '-c', hook.command[0] ?? ''] : hook.command;
  if (!file) throw new StapleError('HOOK_FAILED', `${event}: empty command`);
  const env: NodeJS.ProcessEnv = {
    ...(options.env ?? process.env),
    STAPLEKEEPER_EVENT: event,
    STAPLEKEEPER_COUNT: String(items.length),
    STAPLEKEEPER_IDS: items.map((i) => i.id).join('\n'),
    STAPLEKEEPER_STAPLES: items.map((i) => i.staplePath).join('\n'),
    STAPLEKEEPER_CERTS: items.map((i) => i.certPath).join('\n'),
  };
  const input = `${JSON.stringify({ event, items })}\n`;
  return await new Promise<HookResult>((resolvePromise, reject) => {
    const child = spawn(file, args, { env, cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    let grace: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += d;
    });
    // the end of stderr is what explains a failure: keep the last bytes, not the first
    child.stderr.on('data', (d: string) => {
      stderr += d;
      if (stderr.length > 2 * MAX_OUTPUT) stderr = stderr.slice(-MAX_OUTPUT);
    });
    child.stdin.on('error', () => undefined); // a hook that ignores stdin may close it early
    child.stdin.end(input);
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-(child.pid as number), 'SIGKILL'); // the whole process group: sh and its children
      } catch {
        child.kill('SIGKILL');
      }
    }, hook.timeoutMs);

    const finish = (exitCode: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      if (stderr.length > MAX_OUTPUT) stderr = stderr.slice(-MAX_OUTPUT);
      const result: HookResult = { event, exitCode, signal, timedOut, stdout, stderr };
      if (timedOut) {
        reject(
          new StapleError('HOOK_FAILED', `${event}: "${file}" ran longer than ${hook.timeoutMs} ms and was killed`, {
            details: { ...result },
          }),
        );
      } else if (exitCode !== 0) {
        const tail = stderr.trim().split('\n').slice(-1)[0] ?? '';
        reject(
          new StapleError(
            'HOOK_FAILED',
            `${event}: "${file}" exited with ${exitCode ?? signal}${tail ? `: ${tail}` : ''}`,
            {
              details: { ...result },
            },
          ),
        );
      } else {
        resolvePromise(result);
      }
    };
    child.on('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      reject(new StapleError('HOOK_FAILED', `${event}: cannot run "${file}": ${e.message}`, { cause: e }));
    });
    // 'close' comes once the hook has exited and its output pipes are closed. A
    // daemon the hook started in its own session may hold them open for ever:
    // after the exit, its remaining output gets a short grace, then we stop reading.
    child.on('exit', (exitCode, signal) => {
      grace = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(exitCode, signal);
      }, OUTPUT_GRACE_MS);
    });
    child.on('close', finish);
  });
}
