/**
 * Suites that need a program from outside npm (nginx, HAProxy, Chromium).
 * On a developer's machine without it, `npm test` skips the suite and says
 * what to install, so the README's `npm ci && npm test` works on a fresh
 * clone; in CI (`CI` set, as `.ci/run` is run), a missing program is not a
 * reason to skip: the suite runs and fails with the same advice, so CI can
 * never lose these tests silently. STAPLEKEEPER_SKIP_SERVER_TESTS=1 skips
 * them anywhere.
 */

/** True when a suite needing `program` (found or not) should be skipped here; says why once. */
export function skipWithout(program: string, found: boolean, install: string): boolean {
  if (process.env.STAPLEKEEPER_SKIP_SERVER_TESTS === '1') return true;
  if (found || process.env.CI) return false;
  console.warn(`${program} is not installed: skipping its end-to-end tests (${install}; .ci/run installs it)`);
  return true;
}

/** Fails a suite's setup when `program` is missing (CI), with the same advice. */
export function assertInstalled(program: string, found: boolean, install: string): void {
  if (!found) {
    throw new Error(
      `${program} is not installed: ${install} (.ci/run installs it); STAPLEKEEPER_SKIP_SERVER_TESTS=1 skips this test`,
    );
  }
}
