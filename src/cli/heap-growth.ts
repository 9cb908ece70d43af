/**
 * V8's heap growth for a command-line process. A warm check (every verdict
 * from the staple-folder cache) allocates little that lives, but V8 sizes
 * its heap for a program that allocates much:
 *
 * - It starts each of the young generation's two semi-spaces at 1 MB and
 *   doubles them, up to 16 MB, as allocations survive scavenges; a warm
 *   check of 10,000 certificates (every record and outcome survives one)
 *   grows them to the maximum: 32 MB of resident memory the run never needs.
 * - After a full collection it lets the old generation grow by a factor it
 *   computes (up to 4× the live size for a small heap): a warm check of
 *   10,000 ended with ~44 MB of old generation for ~17 MB live.
 *
 * Until a check thread starts (the first signature to verify: a cold run, a
 * renewal), the semi-spaces are kept at their initial size and the old
 * generation grows by at most 2× between full collections: ~15 MB and
 * ~10 MB less peak RSS at 10,000 for the same CPU time. From then on V8's own
 * policy applies again, because a run that verifies allocates much more and
 * is faster with it (docs/PERFORMANCE.md, "Memory").
 *
 * V8 reads both flags each time it sizes the heap, so setting them while
 * running takes effect at the next collection. They change when garbage is
 * collected, never what a run decides.
 */
import v8 from 'node:v8';

/** V8's own values: growth factor 2 (Node 20's V8), heap growing percent 0 (V8 computes the factor). */
const V8_DEFAULTS = ['--semi-space-growth-factor=2', '--heap-growing-percent=0'];

let held = false;

/** Holds the heap's growth (see the module comment) until the process starts a worker thread. */
export function holdHeapGrowth(): void {
  if (held) return;
  held = true;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  v8.setFlagsFromString('--heap-growing-percent=100');
  process.once('worker', () => {
    for (const flag of V8_DEFAULTS) v8.setFlagsFromString(flag);
  });
}
