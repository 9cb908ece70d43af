/**
 * V8's young generation for a command-line process. V8 starts each of its
 * two semi-spaces at 1 MB and doubles them, up to 16 MB, as allocations
 * survive; a warm check of 10,000 certificates (every verdict from the
 * staple-folder cache, every record and outcome surviving a scavenge once)
 * grows them to the maximum: 32 MB of resident memory that the run never
 * needs, a third of its peak RSS. Until a check thread starts (the first
 * signature to verify: a cold run, a renewal), the semi-spaces are kept at
 * their initial size; from then on V8 grows them as usual, because a run that
 * verifies allocates much more and is faster with them grown
 * (docs/PERFORMANCE.md, "Memory").
 *
 * The growth factor is read by V8 each time it would grow the young
 * generation, so setting it while running takes effect at the next
 * scavenge. It changes when garbage is collected, never what a run decides.
 */
import v8 from 'node:v8';

/** V8's own growth factor (`--semi-space-growth-factor`, 2 in Node 20's V8). */
const DEFAULT_GROWTH = 2;

let held = false;

/** Keeps the young generation at its initial size until the process starts a worker thread. */
export function holdYoungGeneration(): void {
  if (held) return;
  held = true;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  process.once('worker', () => v8.setFlagsFromString(`--semi-space-growth-factor=${DEFAULT_GROWTH}`));
}
