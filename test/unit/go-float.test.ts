/**
 * `parseGoFloat`: Go's strconv.ParseFloat syntax, which ocsprenewer's
 * `-timer-t1` goes through (flag.Float64Var). Cases from Go's own table
 * (strconv/atof_test.go) and the values of docs/migrating.md's ocsprenewer differences.
 */
import { describe, expect, it } from 'vitest';
import { parseGoFloat } from '../../src/cli/ocsprenewer.js';

describe('parseGoFloat', () => {
  it.each([
    ['0.5', 0.5],
    ['.5', 0.5],
    ['5.', 5],
    ['+5e-1', 0.5],
    ['-0.25', -0.25],
    ['1E3', 1000],
    ['0x1p-1', 0.5],
    ['0X.8P0', 0.5],
    ['0x1.8p1', 3],
    ['-0x1p-2', -0.25],
    ['0x_1_2.3_4_5p+1_2', 74565],
    ['1_23.50_0_0e+1_2', 1.235e14],
    ['0x1.fffffffffffff7fffp1023', 1.7976931348623157e308],
    ['1e-400', 0],
    ['0x1p-1080', 0],
    ['inf', Infinity],
    ['+INF', Infinity],
    ['-Infinity', -Infinity],
  ])('%s → %d', (text, value) => {
    expect(parseGoFloat(text)).toBe(value);
  });

  it('nan (any case) is NaN', () => {
    expect(parseGoFloat('NaN')).toBeNaN();
    expect(parseGoFloat('nan')).toBeNaN();
  });

  it.each(['1e400', '-1e400', '0x1p1024', '0x2p1023'])('%s is out of range', (text) => {
    expect(parseGoFloat(text)).toBe('value out of range');
  });

  it.each([
    '',
    'half',
    '0x1',
    '0x',
    '0xp1',
    '1e',
    '1e+',
    '.',
    '.e1',
    '+nan',
    '-nan',
    'infin',
    'infinityy',
    ' 0.5',
    '0.5 ',
    '-_123.5e+12',
    '_123.5e+12',
    '1__23.5e+12',
    '123_.5e+12',
    '123._5e+12',
    '123.5_e+12',
    '123.5e_+12',
    '123.5e+_12',
    '123.5e+12_',
    '-_0x12.345p+12',
    '0x12.345p+12_',
    '1.5.2',
    '0b101',
  ])('%j is a parse error', (text) => {
    expect(parseGoFloat(text)).toBe('parse error');
  });
});
