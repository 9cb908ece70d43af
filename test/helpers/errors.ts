/**
 * The stable code of the StapleError a call throws (src/core/errors.ts):
 * what most unit tests of bad input assert on.
 */
import { expect } from 'vitest';
import { StapleError } from '../../src/core/errors.js';

/** The code of the StapleError `fn` throws, or undefined when it returns; any other error fails the test. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(StapleError);
    return (e as StapleError).code;
  }
  return undefined;
}

/** {@link codeOf} for a promise. */
export async function codeOfAsync(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(StapleError);
    return (e as StapleError).code;
  }
  return undefined;
}
