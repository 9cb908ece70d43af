/**
 * Durations as ocspbot 0.9.3 writes them (`minimum_validity: 3d`,
 * `2 hours 5 minutes 10 seconds`, `1w 3d 5h`), used for every duration in the
 * configuration and for the `check --warn/--crit` options, so that an operator
 * learns one syntax.
 */
import { StapleError } from '../core/errors.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;

/** Every unit ocspbot accepts, with its length in milliseconds. */
const UNITS: ReadonlyMap<string, number> = new Map([
  ['s', SECOND],
  ['sec', SECOND],
  ['second', SECOND],
  ['seconds', SECOND],
  ['m', MINUTE],
  ['min', MINUTE],
  ['minute', MINUTE],
  ['minutes', MINUTE],
  ['h', HOUR],
  ['hour', HOUR],
  ['hours', HOUR],
  ['d', DAY],
  ['day', DAY],
  ['days', DAY],
  ['w', WEEK],
  ['week', WEEK],
  ['weeks', WEEK],
]);

const UNIT_HELP = 's, m, h, d or w (or sec, min, hour, day, week and their plurals)';

/**
 * One `<number><unit>` token, with optional blanks between the number and the
 * unit; leading separators (blanks or commas) are skipped. The unit is any
 * run of non-digit, non-separator characters, so that an unknown unit (`5y`)
 * is reported by name instead of as unreadable text.
 */
const TOKEN = /[\s,]*(\d+(?:\.\d+)?)?[ \t]*([^\s\d,.]*)/y;

function invalid(text: string, why: string): StapleError {
  return new StapleError('CONFIG_INVALID', `invalid duration ${JSON.stringify(text)}: ${why}`);
}

/**
 * Parses an ocspbot duration into milliseconds.
 *
 * Accepted: a sequence of `N unit` tokens, where the unit is one of
 * `s|sec|second|seconds|m|min|minute|minutes|h|hour|hours|d|day|days|w|week|weeks`,
 * with or without a blank between number and unit and with or without blanks
 * between tokens (`3d`, `90m`, `1w 3d 5h`, `1h30m`, `2 hours 5 minutes 10 seconds`).
 * Token values add up. Decimal numbers are allowed (`1.5h`).
 *
 * Rejected, with a message naming the offending token:
 * - a bare number (`3600`): ocspbot rejects it, and guessing seconds would hide
 *   a mistake of someone who meant minutes;
 * - unknown or upper-case units (`3D`, `1M`): `M` could mean months to a reader,
 *   so it is not silently read as minutes;
 * - an empty string.
 *
 * @throws StapleError `CONFIG_INVALID`
 */
export function parseDuration(text: string): number {
  if (text.trim() === '') throw invalid(text, `it is empty; write e.g. "3d" or "2 hours 5 minutes"`);
  let total = 0;
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < text.length) {
    const start = TOKEN.lastIndex;
    const m = TOKEN.exec(text);
    if (m === null) throw invalid(text, `cannot read ${JSON.stringify(text.slice(start).trim())}`);
    const [whole, num, unit = ''] = m;
    if (whole.trim() === '' && TOKEN.lastIndex >= text.length) break; // trailing blanks
    const token = whole.replace(/^[\s,]+/, '');
    if (num === undefined) {
      throw invalid(
        text,
        UNITS.has(unit)
          ? `the unit ${JSON.stringify(unit)} has no number in front of it`
          : `cannot read ${JSON.stringify(text.slice(start).trim())} (expected a number and a unit such as "3d")`,
      );
    }
    if (unit === '') {
      throw invalid(
        text,
        `the number ${num} has no unit; write e.g. "${num}s", "${num}m" or "${num}h" (units: ${UNIT_HELP})`,
      );
    }
    const factor = UNITS.get(unit);
    if (factor === undefined) {
      throw invalid(text, `unknown unit ${JSON.stringify(unit)} in ${JSON.stringify(token)} (units: ${UNIT_HELP})`);
    }
    total += Number(num) * factor;
  }
  const ms = Math.round(total);
  if (!Number.isSafeInteger(ms)) throw invalid(text, 'it is too long');
  return ms;
}
