/**
 * The fast reading of a plain `domains` block (config/fast-domains.ts) gives
 * exactly what the parser gives: the same value, the same position for every
 * domain key; and anything it does not read exactly is left to the parser.
 * Whole loads with and without it are compared by every configuration test
 * (it is on for every load), and here on generated files.
 */
import { describe, expect, it } from 'vitest';
import { splitDomains } from '../../src/config/fast-domains.js';
import { parseValidated } from '../../src/config/parse.js';

function both(text: string, role: 'main' | 'include' = 'main') {
  const full = parseValidated('/x/c.yaml', 'c.yaml', text, role, false);
  let fast;
  try {
    fast = parseValidated('/x/c.yaml', 'c.yaml', text, role, true);
  } catch (e) {
    fast = e;
  }
  return { full, fast };
}

function expectSame(text: string, role: 'main' | 'include' = 'main'): boolean {
  let full;
  try {
    full = parseValidated('/x/c.yaml', 'c.yaml', text, role, false);
  } catch (e) {
    // a YAML error: the fast reading must throw the same
    expect(() => parseValidated('/x/c.yaml', 'c.yaml', text, role, true)).toThrow((e as Error).message);
    return false;
  }
  const fast = parseValidated('/x/c.yaml', 'c.yaml', text, role, true);
  if (!('value' in full)) {
    expect('value' in fast).toBe(false);
    expect(fast.problems).toEqual(full.problems);
    return false;
  }
  expect('value' in fast).toBe(true);
  if (!('value' in fast)) return false;
  expect(fast.value).toEqual(full.value);
  for (const id of Object.keys(full.value.domains ?? {})) {
    expect(fast.source.position(['domains', id], true)).toEqual(full.source.position(['domains', id], true));
    expect(fast.source.origin(['domains', id], true)).toBe(full.source.origin(['domains', id], true));
  }
  for (const k of Object.keys(full.value)) {
    if (k === 'domains') continue;
    expect(fast.source.position([k], true)).toEqual(full.source.position([k], true));
  }
  return splitDomains(text) !== undefined;
}

const domain = (id: string, extra = ''): string =>
  `  ${id}:\n    cert: certs/${id}.pem\n    chain: chain.pem\n${extra}    ocsp: ${id}.der\n`;

describe('the fast reading of a plain domains block', () => {
  it('reads the generated form exactly as the parser does (main and included files, keys before and after)', () => {
    const block = `domains:\n${Array.from({ length: 50 }, (_, i) => domain(`d${i}.example.com`)).join('')}`;
    expect(expectSame(`ocsp_folder: staples\n${block}stop_on_error: true\n`)).toBe(true);
    expect(expectSame(block)).toBe(true);
    expect(expectSame(`${block}# the end\nrefresh_at: 0.5\n`)).toBe(true);
    expect(expectSame(block, 'include')).toBe(true);
    expect(
      expectSame(
        `${domain('a').replace('    chain: chain.pem\n', '    rootchain: /r/root.pem\n')}`.replace(/^/, 'domains:\n'),
      ),
    ).toBe(true);
  });

  it('leaves every other form to the parser, with identical results', () => {
    const base = (body: string, after = ''): string => `ocsp_folder: staples\ndomains:\n${body}${after}`;
    const cases = [
      base(`${domain('a')}\n${domain('b')}`), // a blank line inside
      base(`${domain('a')}# note\n${domain('b')}`), // a comment at column 0 inside
      base(`${domain('a')}  # note\n${domain('b')}`),
      base(domain('a').replace('certs/a.pem', '"certs/a.pem"')),
      base(domain('a').replace('chain.pem', "'chain.pem'")),
      base(domain('true')),
      base(domain('yes')),
      base(domain('null')),
      base(domain('123')),
      base(domain('1e3')),
      base(domain('0x1f')),
      base(domain('__proto__')),
      base(domain('a').replace('a.der', 'y')),
      base(domain('a').replace('a.der', 'on')),
      base(domain('a').replace('a.der', '12')),
      base(domain('a').replace('a.der', '.inf')),
      base(`${domain('a')}${domain('a')}`), // a duplicate id
      base(domain('a', '    chain: other.pem\n')), // a duplicate field
      base(domain('a', '    ocsp_responder_uri: http://127.0.0.1:9/\n')),
      base(domain('a', '    bogus: x\n')),
      base('  a:\n    cert: c.pem\n'), // no ocsp
      base('  a:\n    ocsp: a.der\n'), // no cert
      base('  a:\n'),
      base('   a:\n    cert: c.pem\n    ocsp: a.der\n'), // other indentation
      base('  a:\n\tcert: c.pem\n'),
      base(domain('a').replace(/\n/g, '\r\n')),
      base(domain('a'), 'domains:\n' + domain('b')), // the key twice
      base(domain('a'), 'x: [1,\n  2]\n'),
      base(domain('a'), 'bogus_key: 1\n'), // a problem elsewhere
      `%YAML 1.1\n---\n${base(domain('a').replace('a.der', 'y'))}`,
      `x: |\n  text\n${base(domain('a'))}`,
      base(`${domain('a')}  b: {cert: c.pem, ocsp: b.der}\n`),
      base(domain('a'), '  - oops\n'),
      `domains: \n${domain('a')}`,
      `domains: # c\n${domain('a')}`,
      `domains:\n${domain('a')}` + '---\nsecond: doc\n',
      `ocsp_folder: [\ndomains:\n${domain('a')}]\n`,
    ];
    for (const text of cases) {
      expectSame(text);
    }
  });

  it('agrees with the parser on random mixtures of plain and unusual lines', () => {
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const odd = [
      '',
      '# c',
      '  # c',
      '   x: y',
      "    cert: 'q'",
      '    ocsp: 1',
      '  true:',
      '    chain: no',
      'x: 1',
      '\t',
    ];
    let fastUsed = 0;
    for (let round = 0; round < 300; round++) {
      const lines = ['ocsp_folder: staples', 'domains:'];
      const n = 1 + rnd(6);
      for (let i = 0; i < n; i++) {
        const id = `d${rnd(8)}.example`;
        lines.push(`  ${id}:`, `    cert: certs/${id}.pem`);
        if (rnd(2)) lines.push('    chain: chain.pem');
        if (rnd(5)) lines.push(`    ocsp: ${id}.der`);
        if (rnd(6) === 0) lines.push(odd[rnd(odd.length)] as string);
      }
      if (rnd(2)) lines.push('stop_on_error: true');
      if (expectSame(`${lines.join('\n')}\n`)) fastUsed++;
    }
    expect(fastUsed).toBeGreaterThan(20);
  });

  it('the fast reading is not used unless everything holds', () => {
    expect(both('domains:\n  a:\n    cert: c\n    ocsp: o\n').fast).toBeDefined();
    expect(splitDomains('domains:\n  a:\n    cert: c\n')).toBeUndefined();
    expect(splitDomains('domains:\n  a:\n    cert: c\n    ocsp: o\n')).toBeDefined();
  });
});
