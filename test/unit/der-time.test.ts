/**
 * decodeTime reads the common time forms on a fast path (no string, no
 * regular expression). This compares it, over generated inputs, with the
 * general reading it falls back to, so that the fast path accepts exactly the
 * same times and gives the same instants.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DerReader, TAG, decodeTime, decodeTimeGeneral, encodeTlv } from '../../src/core/der.js';
import { isStapleError } from '../../src/core/errors.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);

/** A time read by `decode`: its instant, or 'error' for a (coded) rejection. */
function read(decode: typeof decodeTime, tag: number, s: string): number | 'error' {
  const der = encodeTlv(tag, Buffer.from(s, 'latin1'));
  try {
    return decode(der, new DerReader(der).next()).getTime();
  } catch (e) {
    expect(isStapleError(e, 'OCSP_MALFORMED')).toBe(true);
    return 'error';
  }
}

/** The general reading, which decodeTime falls back to for anything but the common forms. */
const oracle = (tag: number, s: string): number | 'error' => read(decodeTimeGeneral, tag, s);
const ours = (tag: number, s: string): number | 'error' => read(decodeTime, tag, s);

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/** Field values: mostly in range, some just beyond a limit, some not digits. */
const field = (min: number, max: number, w: number): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 12, arbitrary: fc.integer({ min, max }).map((n) => pad(n, w)) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: max + 2 }).map((n) => pad(n, w)) },
    { weight: 1, arbitrary: fc.stringMatching(new RegExp(`^[0-9a /+-]{${w}}$`)) },
  );

const timeText = fc
  .record({
    year4: fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.constantFrom(0, 99, 100, 1900, 2000, 2024, 2100, 2400)),
    month: field(1, 12, 2),
    day: field(1, 31, 2),
    hour: field(0, 23, 2),
    minute: field(0, 59, 2),
    second: field(0, 59, 2),
    frac: fc.option(fc.stringMatching(/^[0-9]{0,4}$/), { nil: undefined }),
    z: fc.oneof(
      { weight: 8, arbitrary: fc.constant('Z') },
      { weight: 1, arbitrary: fc.constantFrom('z', '+0000', '') },
    ),
  })
  .map((r) => ({ body: `${r.month}${r.day}${r.hour}${r.minute}${r.second}`, ...r }));

describe('decodeTime: the fast path agrees with the general reading', () => {
  it('UTCTime', () => {
    let valid = 0;
    fc.assert(
      fc.property(timeText, (t) => {
        const s = `${pad(t.year4 % 100, 2)}${t.body}${t.z}`;
        const expected = oracle(TAG.UTC_TIME, s);
        if (expected !== 'error') valid++;
        expect(ours(TAG.UTC_TIME, s)).toBe(expected);
      }),
      { numRuns: RUNS },
    );
    // the generator reaches the accepting side too, not only rejections
    expect(valid).toBeGreaterThan(RUNS / 10);
  });

  it('GeneralizedTime, with and without fractions', () => {
    fc.assert(
      fc.property(timeText, (t) => {
        const s = `${pad(t.year4, 4)}${t.body}${t.frac === undefined ? '' : `.${t.frac}`}${t.z}`;
        expect(ours(TAG.GENERALIZED_TIME, s)).toBe(oracle(TAG.GENERALIZED_TIME, s));
      }),
      { numRuns: RUNS },
    );
  });

  it('leap days and month ends', () => {
    for (const y of [1900, 2000, 2023, 2024, 2100, 2400]) {
      for (const md of ['0229', '0228', '0230', '0431', '0430', '1231', '1232', '1301', '0001', '0100']) {
        const g = `${y}${md}000000Z`;
        expect(ours(TAG.GENERALIZED_TIME, g)).toBe(oracle(TAG.GENERALIZED_TIME, g));
        const u = `${pad(y % 100, 2)}${md}235959Z`;
        expect(ours(TAG.UTC_TIME, u)).toBe(oracle(TAG.UTC_TIME, u));
      }
    }
  });

  it('any bytes', () => {
    fc.assert(
      fc.property(fc.constantFrom(TAG.UTC_TIME, TAG.GENERALIZED_TIME), fc.uint8Array({ maxLength: 20 }), (tag, b) => {
        const s = Buffer.from(b).toString('latin1');
        expect(ours(tag, s)).toBe(oracle(tag, s));
      }),
      { numRuns: RUNS },
    );
  });
});
