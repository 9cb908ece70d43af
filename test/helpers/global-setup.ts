/**
 * Runs once per test run: the CLI's configuration cache (config/config-cache.ts)
 * goes to a temporary folder, not to ~/.cache, and is removed at the end.
 * Every CLI test then exercises the cache (child processes inherit the
 * variable; test/helpers/cli-harness.ts passes it on).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'staplekeeper-test-cache-'));
  process.env.STAPLEKEEPER_CACHE_DIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
