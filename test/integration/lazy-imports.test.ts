/**
 * A check that fetches nothing does not load the request encoder: importing
 * the engine's run, the ocsprenewer drop-in and the fleet keys loads no
 * @peculiar module (PERFORMANCE.md, Start-up). Needs `npm run build` first.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');

describe('start-up imports', () => {
  it('run, the drop-ins and the fleet keys load no @peculiar module until a request is made', () => {
    const modules = [
      'batch/run.js',
      'pipeline/process.js',
      'fleet/key.js',
      'cli/ocsprenewer.js',
      'discovery/ocsprenewer.js',
    ];
    const script = `import { createRequire } from 'node:module';
${modules.map((m) => `await import(${JSON.stringify(path.join(ROOT, 'dist', m))});`).join('\n')}
const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('@peculiar'));
process.stdout.write(JSON.stringify(loaded));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
    // and the encoder does load them when asked (the check above would see them)
    const r2 = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module';
await import(${JSON.stringify(path.join(ROOT, 'dist', 'core', 'request.js'))});
process.stdout.write(String(Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('@peculiar')).length));`,
      ],
      { encoding: 'utf8' },
    );
    expect(Number(r2.stdout)).toBeGreaterThan(0);
  });
});
