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
 * ~10 MB less peak RSS at 10,000 for the same CPU time.
 *
 * From then on the run verifies and allocates much more, most of it
 * short-lived: the semi-spaces grow again as V8 would have them (fewer
 * scavenges, less promoted), but the old generation grows by at most 25 %
 * between full collections instead of V8's own factor, which let a cold
 * check of 100,000 hold ~2.4× its live heap (~100 MB live, ~240 MB of heap)
 * and a cold 10,000 ~30 MB more than it needs. Measured on 2 cores
 * (docs/PERFORMANCE.md, "Cold runs at 100,000"): cold 10,000 ~184 → ~157 MB,
 * cold 100,000 ~420–515 → ~300–350 MB, for the same CPU time within the
 * machine's noise (a few more full collections, ~0.1 s at 10,000).
 *
 * V8 reads both flags each time it sizes the heap, so setting them while
 * running takes effect at the next collection. They change when garbage is
 * collected, never what a run decides.
 */
import v8 from 'node:v8';

/** Until a worker starts: young generation at its initial size, old generation at most 2× its live size. */
export const HELD_FLAGS = ['--semi-space-growth-factor=1', '--heap-growing-percent=100'] as const;

/** Once a worker started: the young generation grows as V8's default (factor 2), the old by at most 25 %. */
export const RELEASED_FLAGS = ['--semi-space-growth-factor=2', '--heap-growing-percent=25'] as const;

let held = false;

/**
 * Holds the heap's growth (see the module comment) until the process starts
 * a worker thread. `setFlags` is V8's (tests pass their own).
 */
export function holdHeapGrowth(setFlags: (flag: string) => void = (f) => v8.setFlagsFromString(f)): void {
  if (held) return;
  held = true;
  for (const flag of HELD_FLAGS) setFlags(flag);
  process.once('worker', () => {
    for (const flag of RELEASED_FLAGS) setFlags(flag);
  });
}
