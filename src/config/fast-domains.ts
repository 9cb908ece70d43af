/**
 * A fast reading of a large `domains` block. The `yaml` parser builds a
 * document of nodes, tokens and ranges for every line; for 100,000 domains
 * (400,000 lines) that is most of a load and of its memory. Most large
 * configurations are generated, one domain after another in the same plain
 * form:
 *
 *     domains:
 *       example.com:
 *         cert: certs/example.com.pem
 *         chain: chain.pem
 *         ocsp: example.com.der
 *
 * {@link splitDomains} reads exactly that form, and nothing else, by lines:
 * a top-level `domains:` line, then, up to the next line at column 0, only
 * lines `  <id>:` and `    <cert|chain|rootchain|ocsp>: <value>` where ids and
 * values are plain scalars that YAML can only read as the same string
 * (a letter, `_` or `/` first, then letters, digits and `._/-`; never a word
 * YAML reads as a boolean or null). Every entry has `cert` and `ocsp`, no
 * field twice, no id twice. Anything else — a comment, a blank line, quotes,
 * other indentation, a tab, CRLF, a field it does not know — and the whole
 * file goes to the parser as before.
 *
 * The rest of the file is still parsed by `yaml`, without the block's lines
 * (the positions it gives after them are moved down by as many), and must show
 * `domains:` as a top-level key with no value on the same line. Then the value
 * is the schema's value of the rest with the block's domains, which is what
 * the schema gives for them (strings, non-empty, known keys: nothing to
 * transform). Positions: the key of each domain is known; asking for any
 * other position inside the block throws {@link NeedsParser}, and the loader
 * then loads again with the parser, so every message is the parser's, word
 * for word. test/unit/fast-domains.test.ts compares both readings.
 */
import { NeedsParser } from './config-cache.js';
import type { ConfigProblem, ConfigSource, KeyPath } from './problems.js';

/** What {@link splitDomains} found. */
export interface DomainsBlock {
  /** The text without the block's lines (the `domains:` line kept). */
  rest: string;
  /** How many lines the block had: lines of `rest` after `keyLine` were this many lines further down. */
  cutLines: number;
  /** 1-based line of `domains:`. */
  keyLine: number;
  /** The domains, in file order, as the schema gives them (a null-prototype record of plain objects). */
  domains: Record<string, Record<string, string>>;
  /** The line of each domain's key (its column is always {@link KEY_COLUMN}): a number each, not a pair. */
  keyLines: Record<string, number>;
}

const PLAIN = /^[A-Za-z_/][A-Za-z0-9_./-]*$/;
/** Words YAML (1.2 core, and the 1.1 booleans the loader adds) reads as something other than a string. */
const RESERVED = /^(?:null|true|false|yes|no|on|off|y|n)$/i;
const FIELDS = new Set(['cert', 'chain', 'rootchain', 'ocsp']);
/** The column of a domain's key (`  <id>:`). */
const KEY_COLUMN = 3;
/** Fields most domains share the value of (one chain file for thousands of domains): one string per value. */
const SHARED_FIELDS = new Set(['chain', 'rootchain']);

function plain(s: string): boolean {
  return PLAIN.test(s) && !RESERVED.test(s) && s !== '__proto__';
}

/**
 * Finds a `domains` block of the plain form (see the module comment).
 * Returns undefined when there is none, it is small, or anything in it is
 * not of that form.
 */
export function splitDomains(text: string): DomainsBlock | undefined {
  // no directive (`%YAML 1.1` would read other words as booleans)
  if (text.startsWith('%') || text.includes('\n%')) return undefined;
  // exactly one line starting `domains:`, and it is just that
  const first = text.startsWith('domains:') ? 0 : text.indexOf('\ndomains:') + 1;
  if (first < 0 || (first === 0 && !text.startsWith('domains:'))) return undefined;
  if (text.indexOf('\ndomains:', first) >= 0 || !text.startsWith('domains:\n', first)) return undefined;
  const start = first;
  const keyLine = countLines(text, start) + 1;
  const blockStart = start + 'domains:\n'.length;
  const domains = Object.create(null) as Record<string, Record<string, string>>; // as the schema gives them
  const keyLines = Object.create(null) as Record<string, number>;
  const shared = new Map<string, string>();
  let current: Record<string, string> | undefined;
  let line = keyLine;
  let p = blockStart;
  let count = 0;
  const complete = (d: Record<string, string> | undefined): boolean =>
    d === undefined || (d.cert !== undefined && d.ocsp !== undefined);
  while (p < text.length && text.charCodeAt(p) === 0x20) {
    let e = text.indexOf('\n', p);
    if (e < 0) e = text.length;
    line++;
    count++;
    const l = text.slice(p, e);
    if (l.startsWith('    ')) {
      // a field of the current domain
      if (current === undefined) return undefined;
      const colon = l.indexOf(': ', 4);
      if (colon < 0) return undefined;
      const key = l.slice(4, colon);
      const value = l.slice(colon + 2);
      if (!FIELDS.has(key) || Object.hasOwn(current, key) || !plain(value)) return undefined;
      if (SHARED_FIELDS.has(key)) {
        const known = shared.get(value);
        if (known === undefined && shared.size < 4096) shared.set(value, value);
        current[key] = known ?? value;
      } else {
        current[key] = value;
      }
    } else {
      // `  <id>:`
      if (l.charCodeAt(2) === 0x20 || !l.endsWith(':')) return undefined;
      const id = l.slice(2, -1);
      if (!plain(id) || Object.hasOwn(domains, id) || !complete(current)) return undefined;
      current = {};
      domains[id] = current;
      keyLines[id] = line;
    }
    p = e + 1;
  }
  if (!complete(current) || current === undefined || count === 0) return undefined;
  // the lines after the block follow `domains:` directly (a text ending inside the block ends after it)
  const rest = text.slice(0, blockStart) + text.slice(Math.min(p, text.length));
  return { rest, cutLines: count, keyLine, domains, keyLines };
}

function countLines(text: string, end: number): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < end; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/**
 * The source of a file read with {@link splitDomains}: the parser's source
 * of the rest for everything outside the block, the domain keys' positions
 * inside it, and {@link NeedsParser} for anything else there.
 */
export class FastDomainsSource implements ConfigSource {
  constructor(
    private readonly rest: ConfigSource,
    private readonly block: Pick<DomainsBlock, 'keyLines' | 'keyLine' | 'cutLines'>,
  ) {}

  /** A line of the rest as a line of the file. */
  private line(line: number): number {
    return line > this.block.keyLine ? line + this.block.cutLines : line;
  }

  get file(): string {
    return this.rest.file;
  }

  get name(): string {
    return this.rest.name;
  }

  origin(keyPath: KeyPath, key = false): string {
    const { line, col } = this.position(keyPath, key);
    return `${this.name}:${line}:${col}`;
  }

  position(keyPath: KeyPath, key = false): { line: number; col: number } {
    if (keyPath[0] !== 'domains' || keyPath.length === 1) {
      const { line, col } = this.rest.position(keyPath, key);
      return { line: this.line(line), col };
    }
    const line = keyPath.length === 2 && key ? this.block.keyLines[keyPath[1] as string] : undefined;
    if (line === undefined) throw new NeedsParser();
    return { line, col: KEY_COLUMN };
  }

  problem(keyPath: KeyPath, message: string, key = false): ConfigProblem {
    if (keyPath[0] !== 'domains') {
      const p = this.rest.problem(keyPath, message, key);
      return { ...p, line: this.line(p.line) };
    }
    // every problem inside the block is reported from the parser's reading
    throw new NeedsParser();
  }
}
