import { existsSync, readFileSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HookCommand } from '../../src/config/types.js';
import { StapleError } from '../../src/core/errors.js';
import { runHook, type HookItem } from '../../src/outputs/hooks.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

let dir: string;
const strays: number[] = [];

beforeEach(async () => {
  dir = await tempDir('sk-hooks-');
});
afterEach(async () => {
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await cleanUp();
});

const argv = (command: string[], timeoutMs = 5000): HookCommand => ({ kind: 'argv', command, timeoutMs });
const shell = (command: string, timeoutMs = 5000): HookCommand => ({ kind: 'shell', command: [command], timeoutMs });

const items: HookItem[] = [
  {
    id: 'a.example',
    certPath: '/etc/ssl/a.pem',
    staplePath: '/var/ocsp/a.der',
    result: 'updated',
    nextUpdate: '2026-11-27T00:00:00Z',
  },
  {
    id: 'b example $(id)',
    certPath: '/etc/ssl/b.pem',
    staplePath: '/var/ocsp/b.der',
    result: 'failed',
    error: { code: 'HTTP_TIMEOUT', message: 'no answer' },
  },
];

/** True while `pid` runs (a zombie waiting to be reaped counts as gone). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function failure(p: Promise<unknown>): Promise<StapleError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(StapleError);
  expect((e as StapleError).code).toBe('HOOK_FAILED');
  return e as StapleError;
}

describe('runHook', () => {
  it('runs an argument vector without a shell: $(…) in an argument stays text', async () => {
    const r = await runHook(
      'on_change',
      argv(['/bin/echo', '$(touch pwned)', '; touch pwned2', '`touch pwned3`']),
      items,
      { cwd: dir },
    );
    expect(r.stdout).toBe('$(touch pwned) ; touch pwned2 `touch pwned3`\n');
    expect(r).toMatchObject({ event: 'on_change', exitCode: 0, signal: null, timedOut: false });
    expect(await readdir(dir)).toEqual([]);
  });

  it('finds an argv command on PATH', async () => {
    const r = await runHook('on_change', argv(['echo', 'hi']), []);
    expect(r.stdout).toBe('hi\n');
  });

  it('runs a string with sh -c, in the given folder', async () => {
    const r = await runHook(
      'on_failure',
      shell('echo one > out.txt && echo "$STAPLEKEEPER_EVENT" | tr a-z A-Z'),
      items,
      { cwd: dir },
    );
    expect(r.stdout).toBe('ON_FAILURE\n');
    expect(await readFile(join(dir, 'out.txt'), 'utf8')).toBe('one\n');
  });

  it('passes the items as STAPLEKEEPER_* variables and as JSON on stdin', async () => {
    const script =
      'printf "%s\\n--\\n" "$STAPLEKEEPER_EVENT" "$STAPLEKEEPER_COUNT" "$STAPLEKEEPER_IDS" "$STAPLEKEEPER_STAPLES" "$STAPLEKEEPER_CERTS" > env.txt; cat > stdin.json';
    await runHook('on_revoked', argv(['/bin/sh', '-c', script]), items, { cwd: dir });
    const env = (await readFile(join(dir, 'env.txt'), 'utf8')).split('\n--\n');
    expect(env.slice(0, 5)).toEqual([
      'on_revoked',
      '2',
      'a.example\nb example $(id)',
      '/var/ocsp/a.der\n/var/ocsp/b.der',
      '/etc/ssl/a.pem\n/etc/ssl/b.pem',
    ]);
    const stdin = JSON.parse(await readFile(join(dir, 'stdin.json'), 'utf8')) as { event: string; items: HookItem[] };
    expect(stdin).toEqual({ event: 'on_revoked', items });
  });

  it('uses the given environment instead of process.env, plus the STAPLEKEEPER_* variables', async () => {
    process.env.SK_TEST_SHOULD_NOT_LEAK = 'leak';
    try {
      const r = await runHook(
        'on_change',
        shell('echo "[$SK_TEST_SHOULD_NOT_LEAK][$ONLY_HERE][$STAPLEKEEPER_COUNT]"'),
        [],
        {
          env: { PATH: process.env.PATH, ONLY_HERE: 'yes' },
        },
      );
      expect(r.stdout).toBe('[][yes][0]\n');
    } finally {
      delete process.env.SK_TEST_SHOULD_NOT_LEAK;
    }
  });

  it('survives a hook that ignores a large stdin', async () => {
    const many: HookItem[] = Array.from({ length: 3000 }, (_, i) => ({
      id: `site-${i}.example`,
      certPath: `/etc/ssl/site-${i}.pem`,
      staplePath: `/var/ocsp/site-${i}.der`,
      result: 'updated',
    }));
    const r = await runHook('on_change', argv(['/bin/true']), many);
    expect(r.exitCode).toBe(0);
  });

  it('decodes UTF-8 output split across pipe chunks', async () => {
    // 30 000 × "€" (3 bytes each) = 90 000 bytes: the 64 KiB pipe boundary falls inside a character
    const r = await runHook('on_change', argv([process.execPath, '-e', 'process.stdout.write("€".repeat(30000))']), []);
    expect(r.stdout).not.toContain('\uFFFD');
    expect(r.stdout.startsWith('€€€')).toBe(true);
    expect([...r.stdout].every((c) => c === '€')).toBe(true);
  });

  it('a non-zero exit is HOOK_FAILED with the exit code and the last stderr line', async () => {
    const e = await failure(
      runHook('on_failure', shell('echo noise; echo first >&2; echo "reload failed: bad config" >&2; exit 3'), items),
    );
    expect(e.message).toContain('exited with 3');
    expect(e.message).toContain('reload failed: bad config');
    expect(e.message).not.toContain('first');
    expect(e.details).toMatchObject({ exitCode: 3, timedOut: false, stdout: 'noise\n' });
  });

  it('reports the real last stderr line of a hook that writes more than 64 KiB to stderr', async () => {
    const e = await failure(
      runHook(
        'on_change',
        argv([
          '/bin/sh',
          '-c',
          'i=0; while [ $i -lt 3000 ]; do echo "progress line number $i of many"; i=$((i+1)); done >&2; echo "the real reason" >&2; exit 1',
        ]),
        [],
      ),
    );
    expect(e.message).toContain('the real reason');
  });

  it('a hook killed by a signal is HOOK_FAILED naming the signal', async () => {
    const e = await failure(runHook('on_change', shell('kill -TERM $$'), []));
    expect(e.message).toContain('SIGTERM');
    expect(e.details).toMatchObject({ exitCode: null, signal: 'SIGTERM', timedOut: false });
  });

  it('kills a hook that runs past its timeout, and its children, quickly', async () => {
    const t0 = Date.now();
    const e = await failure(
      runHook('on_change', shell('sleep 30 & echo $! > child.pid; sleep 30', 300), [], { cwd: dir }),
    );
    const elapsed = Date.now() - t0;
    expect(e.message).toContain('ran longer than 300 ms and was killed');
    expect(e.details).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2000);
    const child = Number((await readFile(join(dir, 'child.pid'), 'utf8')).trim());
    strays.push(child);
    // the background sleep was in the hook's process group and died with it
    await expect.poll(() => isRunning(child), { timeout: 1000 }).toBe(false);
  });

  it("kills a plain sh -c 'sleep 30' hook on timeout", async () => {
    const t0 = Date.now();
    const e = await failure(runHook('on_change', argv(['sh', '-c', 'sleep 30'], 200), []));
    expect(e.details).toMatchObject({ timedOut: true });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('does not wait for a daemon the hook started in its own session that keeps stdout open', async () => {
    // e.g. a hook that (re)starts a server without redirecting its output
    const t0 = Date.now();
    const r = await runHook('on_change', shell('setsid sleep 30 & echo $! > bg.pid; echo started', 10_000), [], {
      cwd: dir,
    });
    const bg = Number((await readFile(join(dir, 'bg.pid'), 'utf8')).trim());
    strays.push(bg);
    expect(r).toMatchObject({ exitCode: 0, timedOut: false, stdout: 'started\n' });
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('a missing executable is HOOK_FAILED naming it', async () => {
    const e = await failure(runHook('on_change', argv([join(dir, 'no-such-hook'), 'x']), []));
    expect(e.message).toContain('no-such-hook');
    expect(e.message).toContain('cannot run');
    const e2 = await failure(runHook('on_change', argv(['staplekeeper-no-such-command-anywhere']), []));
    expect(e2.message).toContain('staplekeeper-no-such-command-anywhere');
  });

  it('a file that is not executable is HOOK_FAILED', async () => {
    const e = await failure(runHook('on_change', argv([join(dir)]), []));
    expect(e.message).toContain(dir);
  });

  it('an empty command is HOOK_FAILED', async () => {
    const e = await failure(runHook('on_change', argv([]), []));
    expect(e.message).toContain('empty command');
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });
});
