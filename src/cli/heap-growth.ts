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
 * scavenges, less promoted). When the live heap is large by then (a big
 * configuration: ≥ 64 MB), the old generation grows by at most 25 % between
 * full collections instead of V8's own factor, which let a cold check of
 * 100,000 hold ~2.4× its live heap (~100 MB live, ~240 MB of heap); measured
 * on 2 cores (docs/PERFORMANCE.md, "Cold runs at 100,000"): 289 MB peak and
 * 17.7 s, against 423 MB and 45.6 s with V8's factor. A smaller run keeps
 * V8's factor: the bound cost a cold 10,000 ~15 % more CPU (more full
 * collections) to save ~30 MB of a ~185 MB peak.
 *
 * V8 reads both flags each time it sizes the heap, so setting them while
 * running takes effect at the next collection. They change when garbage is
 * collected, never what a run decides.
 */
import v8 from 'node:v8';

/** Until a worker starts: young generation at its initial size, old generation at most 2× its live size. */
export const HELD_FLAGS = ['--semi-space-growth-factor=1', '--heap-growing-percent=100'] as const;

/** Once a worker started with a large live heap: the young generation grows as V8's default (factor 2), the old by at most 25 %. */
export const RELEASED_FLAGS = ['--semi-space-growth-factor=2', '--heap-growing-percent=25'] as const;

/** Once a worker started with a small live heap: V8's own values (growth factor 2, V8 computes the old generation's factor). */
export const RELEASED_SMALL_FLAGS = ['--semi-space-growth-factor=2', '--heap-growing-percent=0'] as const;

/**
 * The live heap above which the old generation's growth stays bounded: a
 * cold check of 100,000 has ~100 MB live when its worker starts (bounded:
 * ~289 MB peak instead of ~423 MB, and faster: 17.7 s instead of 45.6 s on
 * 2 cores), one of 10,000 ~20 MB (V8's factor: ~15 % less CPU for ~30 MB
 * more peak, docs/PERFORMANCE.md "Cold runs at 100,000").
 */
export const BOUNDED_FROM_BYTES = 64 * 1024 * 1024;

let held = false;

/**
 * Holds the heap's growth (see the module comment) until the process starts
 * a worker thread, then releases it as {@link RELEASED_FLAGS} or, with a
 * live heap under {@link BOUNDED_FROM_BYTES}, {@link RELEASED_SMALL_FLAGS}.
 * `setFlags` is V8's and `liveBytes` the heap in use (tests pass their own).
 */
export function holdHeapGrowth(
  setFlags: (flag: string) => void = (f) => v8.setFlagsFromString(f),
  liveBytes: () => number = () => v8.getHeapStatistics().used_heap_size,
): void {
  if (held) return;
  held = true;
  for (const flag of HELD_FLAGS) setFlags(flag);
  process.once('worker', () => {
    for (const flag of liveBytes() >= BOUNDED_FROM_BYTES ? RELEASED_FLAGS : RELEASED_SMALL_FLAGS) setFlags(flag);
  });
}
