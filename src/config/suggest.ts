/**
 * "Did you mean …?" for configuration keys and identifiers. A typo in a YAML
 * key would otherwise be rejected with no hint, or, worse, silently ignored as
 * ocspbot does; a suggestion turns the error into a one-second fix (lego and
 * cargo do the same).
 */

/**
 * Optimal-string-alignment edit distance: insertions, deletions, substitutions
 * and swaps of two neighbouring characters each cost 1, because swapped
 * letters (`rootchian`) are the most common typo in hand-written keys.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, at(i - 2, j - 2) + 1);
      }
      d[i * cols + j] = best;
    }
  }
  return at(a.length, b.length);
}

/**
 * The candidate closest to `input`, if it is close enough to be a plausible
 * typo: at most a third of the longer word's length (and at least 1) edits,
 * compared case-insensitively. Ties go to the first candidate, so callers list
 * candidates in a meaningful order.
 */
export function closestMatch(input: string, candidates: Iterable<string>): string | undefined {
  const needle = input.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(needle, candidate.toLowerCase());
    const limit = Math.max(1, Math.floor(Math.max(needle.length, candidate.length) / 3));
    if (distance <= limit && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}
