/**
 * Prints the closing `N passed, N failed` line that CI reads, after vitest's own report.
 *
 * A test that did not run because a hook of its suite failed (a beforeAll
 * that found nginx missing in CI, say) counts as failed, not skipped; so does
 * a test file that failed to load, and an error outside any test.
 */
import type { Reporter, TestCase, TestModule } from 'vitest/node';

/**
 * True when the suite or file around `t` failed by itself (its hooks, or
 * loading it) — not merely because another test in it failed, so that tests
 * left out by `-t` or `skipIf` beside a failing one stay skipped.
 */
function failedAround(t: TestCase): boolean {
  for (let p: TestCase['parent'] | undefined = t.parent; p !== undefined;) {
    if (p.errors().length > 0) return true;
    p = p.type === 'module' ? undefined : p.parent;
  }
  return false;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const m of testModules) {
      let tests = 0;
      for (const t of m.children.allTests()) {
        tests++;
        const s = t.result().state;
        if (s === 'passed') passed++;
        else if (s === 'failed' || failedAround(t)) failed++;
        else skipped++;
      }
      if (tests === 0 && m.state() === 'failed') failed++;
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
