/**
 * The batch step shared by `run` and the daemon (batch/step.ts): the lock is
 * held while the targets are processed and the marks recorded, released
 * before the outputs; HAProxy and the hooks get this batch's outcomes; a
 * failed delivery is reported, never thrown; a dry run touches nothing.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defineConfig, defineSettings, type SettingsInput } from '../../src/config/index.js';
import { acquireLock, LOCK_NAME } from '../../src/batch/lock.js';
import { hookItem, runBatchStep, type DeliveryFailure } from '../../src/batch/step.js';
import type { HookCommand } from '../../src/config/types.js';
import type { TargetOutcome } from '../../src/pipeline/context.js';
import { marksPath } from '../../src/revocation/marks.js';
import { createMemoryStore } from '../../src/testing/index.js';
import { tempDir, cleanUp } from '../helpers/temp.js';

let dir: string;

beforeEach(async () => {
  dir = await tempDir('sk-step-');
});
afterEach(cleanUp);

const shell = (command: string): HookCommand => ({ kind: 'shell', command: [command], timeoutMs: 10_000 });

function outcome(id: string, result: TargetOutcome['result'], extra: Partial<TargetOutcome> = {}): TargetOutcome {
  return { id, certPath: join(dir, `${id}.pem`), staplePath: join(dir, `${id}.der`), result, notices: [], ...extra };
}

function configWith(input: Omit<SettingsInput, 'ocspFolder'>) {
  return defineConfig({ settings: defineSettings({ ocspFolder: dir, ...input }), targets: [] });
}

const revokedOutcome = (): TargetOutcome =>
  outcome('gone', 'failed', {
    error: { code: 'OCSP_REVOKED', message: 'revoked' },
    revoked: { source: 'ocsp', time: '2026-01-02T03:04:05.000Z', certificate: 'ab'.repeat(32) },
  });

describe('runBatchStep', () => {
  it('holds the lock while processing and recording marks, releases it before the hooks, and hands each hook its items', async () => {
    // each hook says whether the lock file was there when it ran, and what it was given
    const hook = (name: string) =>
      shell(
        `{ if [ -e ${LOCK_NAME} ]; then echo locked; else echo free; fi; cat; } > ${join(dir, `${name}.out`)}; echo ran-${name}`,
      );
    const config = configWith({
      hooks: { onChange: hook('change'), onFailure: hook('failure'), onRevoked: hook('revoked') },
    });
    const store = createMemoryStore();
    const ran: Array<[string, number, string]> = [];
    const failures: DeliveryFailure[] = [];
    let lockSeen = false;
    const batch = [
      outcome('a', 'updated', { staple: { status: 'good' } as TargetOutcome['staple'] }),
      outcome('b', 'unchanged'),
      revokedOutcome(),
    ];
    const got = await runBatchStep({
      config,
      store,
      now: () => new Date('2026-01-03T00:00:00Z'),
      onHookRan: (event, count, stdout) => ran.push([event, count, stdout]),
      onFailure: (f) => failures.push(f),
      process: async (lock) => {
        lockSeen = lock !== undefined && existsSync(join(dir, LOCK_NAME));
        return batch;
      },
    });
    expect(got).toBe(batch);
    expect(lockSeen).toBe(true);
    expect(failures).toEqual([]);
    expect(ran).toEqual([
      ['on_change', 1, 'ran-change'],
      ['on_failure', 1, 'ran-failure'],
      ['on_revoked', 1, 'ran-revoked'],
    ]);
    const [state, json] = (await readFile(join(dir, 'change.out'), 'utf8')).split('\n');
    expect(state).toBe('free');
    expect(JSON.parse(json ?? '')).toEqual({ event: 'on_change', items: [hookItem(batch[0] as TargetOutcome)] });
    expect((await readFile(join(dir, 'revoked.out'), 'utf8')).split('\n')[0]).toBe('free');
    // the revoked answer was marked (with the lock held), through the step's store
    const marks = JSON.parse(store.readSync(marksPath(dir))?.toString('utf8') ?? '{}') as { marks?: object };
    expect(Object.keys(marks.marks ?? {})).toEqual(['gone']);
    expect(existsSync(join(dir, LOCK_NAME))).toBe(false);
  });

  it('reports a failed push and a failed hook to onFailure without throwing', async () => {
    const config = configWith({
      haproxy: [{ socket: join(dir, 'no-such.sock'), certificates: [] }],
      hooks: { onChange: shell('exit 3') },
    });
    const a = outcome('a', 'updated', { staple: { status: 'good' } as TargetOutcome['staple'] });
    const store = createMemoryStore([[a.staplePath, Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x00])]]);
    const failures: DeliveryFailure[] = [];
    await runBatchStep({
      config,
      store,
      now: () => new Date(),
      onFailure: (f) => failures.push(f),
      process: async () => [a],
    });
    expect(failures.map((f) => [f.event, f.code])).toEqual([
      ['haproxy', 'PUSH_FAILED'],
      ['on_change', 'HOOK_FAILED'],
    ]);
    expect(failures[0]?.message).toContain('[a]');
  });

  it('a dry run takes no lock, records no marks and delivers nothing', async () => {
    const out = join(dir, 'hook.out');
    const config = configWith({ hooks: { onFailure: shell(`echo ran > ${out}`) } });
    const store = createMemoryStore();
    let given: unknown = 'unset';
    await runBatchStep({
      config,
      store,
      now: () => new Date(),
      dryRun: true,
      onFailure: () => undefined,
      process: async (lock) => {
        given = lock;
        return [revokedOutcome()];
      },
    });
    expect(given).toBeUndefined();
    expect(existsSync(out)).toBe(false);
    expect(store.files.size).toBe(0);
  });

  it('throws when the lock cannot be taken, without processing anything', async () => {
    const held = await acquireLock(dir, 1_000);
    const waits: string[] = [];
    let processed = false;
    try {
      const err = await runBatchStep({
        config: configWith({ lockTimeoutMs: 300 }),
        store: createMemoryStore(),
        now: () => new Date(),
        onLockWait: (m) => waits.push(m),
        onFailure: () => undefined,
        process: async () => {
          processed = true;
          return [];
        },
      }).then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      );
      expect(err?.code).toBe('LOCK_TIMEOUT');
    } finally {
      await held.release();
    }
    expect(processed).toBe(false);
    expect(waits).toEqual([`waiting for another staplekeeper (PID ${process.pid}) to finish with ${dir}`]);
  });

  it('releases the lock when processing throws, and delivers nothing', async () => {
    const out = join(dir, 'hook.out');
    const config = configWith({ hooks: { onFailure: shell(`echo ran > ${out}`) } });
    await expect(
      runBatchStep({
        config,
        store: createMemoryStore(),
        now: () => new Date(),
        onFailure: () => undefined,
        process: async () => {
          throw new Error('boom');
        },
      }),
    ).rejects.toThrow('boom');
    expect(existsSync(join(dir, LOCK_NAME))).toBe(false);
    expect(existsSync(out)).toBe(false);
  });
});
