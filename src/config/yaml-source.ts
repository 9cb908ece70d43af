/**
 * A parsed YAML configuration file that remembers where every value came from,
 * so that every configuration error can start with `file:line:col key.path:`
 * (STYLE.md; lego names the certificate, we name the line).
 */
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node as YamlNode,
  type Pair as YamlPair,
  type ScalarTag,
} from 'yaml';
import { StapleError } from '../core/errors.js';
import { formatKeyPath, formatProblem, type ConfigProblem, type ConfigSource, type KeyPath } from './problems.js';

export {
  displayPath,
  formatKeyPath,
  formatProblem,
  type ConfigProblem,
  type ConfigSource,
  type KeyPath,
} from './problems.js';

/**
 * `yes`/`no`/`on`/`off` as booleans. ocspbot reads its file with PyYAML (YAML
 * 1.1), where `make_backups: yes` is true; YAML 1.2 would make it the string
 * "yes" and reject a working ocspbot file. Only these words are borrowed from
 * 1.1: its sexagesimal numbers (`1:30` = 90) and timestamps would surprise.
 */
const yaml11Booleans: ScalarTag = {
  tag: 'tag:yaml.org,2002:bool',
  default: true,
  identify: () => false,
  test: /^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$/,
  resolve: (text: string) => /^(?:yes|on)$/i.test(text),
};

/** The string form of a map key, as `toJS()` makes it. */
function keyString(key: unknown): string {
  if (isScalar(key)) return String(key.value ?? '');
  return String(key);
}

interface Located {
  offset: number;
  /** True when the whole path exists in the document. */
  found: boolean;
}

/** One parsed configuration file. */
export class YamlSource implements ConfigSource {
  private constructor(
    /** Absolute path. */
    readonly file: string,
    /** The name used in messages. */
    readonly name: string,
    private readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {}

  /**
   * Parses `text`. Syntax errors throw `CONFIG_YAML` with one
   * `file:line:col: message` line per error, because ocspbot exits -2 (254)
   * for them and cron scripts tell the two classes apart.
   */
  static parse(file: string, name: string, text: string): YamlSource {
    const lines = new LineCounter();
    const doc = parseDocument(text, {
      lineCounter: lines,
      prettyErrors: false,
      // Duplicate keys are reported as configuration errors (with both places) by duplicateKeyProblems().
      uniqueKeys: false,
      customTags: [yaml11Booleans],
    });
    if (doc.errors.length > 0) {
      const problems = doc.errors.map((e): ConfigProblem => {
        const { line, col } = lines.linePos(e.pos[0]);
        return { file: name, line, col, path: '', message: `YAML syntax error: ${e.message.split('\n')[0] ?? ''}` };
      });
      throw new StapleError('CONFIG_YAML', problems.map(formatProblem).join('\n'), {
        details: { file, problems },
      });
    }
    return new YamlSource(file, name, doc, lines);
  }

  /** The plain data of the file; an empty file is an empty mapping. */
  toJS(): unknown {
    if (this.doc.contents === null) return {};
    return this.doc.toJS({ maxAliasCount: 1000 }) as unknown;
  }

  private resolve(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  private static offsetOf(node: unknown): number | undefined {
    const range = (node as YamlNode | null)?.range;
    return range === undefined || range === null ? undefined : range[0];
  }

  /**
   * Finds `keyPath` in the document. With `key`, points at the last key itself
   * (for "unknown key" errors) instead of its value. A path that does not exist
   * (a missing required key) points at the key of its nearest existing parent,
   * which is where the operator has to add it.
   */
  private locate(keyPath: KeyPath, key = false): Located {
    let node: unknown = this.resolve(this.doc.contents);
    let offset = YamlSource.offsetOf(node) ?? 0;
    let parentKeyOffset = offset;
    for (let i = 0; i < keyPath.length; i++) {
      const seg = keyPath[i];
      const last = i === keyPath.length - 1;
      if (isMap(node)) {
        const pair = this.pairIndex(node).get(String(seg));
        if (pair === undefined) return { offset: parentKeyOffset, found: false };
        const keyOffset = YamlSource.offsetOf(pair.key) ?? offset;
        if (last && key) return { offset: keyOffset, found: true };
        parentKeyOffset = keyOffset;
        node = this.resolve(pair.value);
        offset = YamlSource.offsetOf(node) ?? keyOffset;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg];
        if (item === undefined) return { offset, found: false };
        node = this.resolve(item);
        offset = YamlSource.offsetOf(node) ?? offset;
        parentKeyOffset = offset;
      } else {
        return { offset, found: false };
      }
    }
    return { offset, found: true };
  }

  /** The last pair of each key of a mapping (what findLast would find), built once per mapping. */
  private readonly pairIndexes = new WeakMap<object, Map<string, YamlPair<unknown, unknown>>>();
  private pairIndex(node: { items: Array<YamlPair<unknown, unknown>> }): Map<string, YamlPair<unknown, unknown>> {
    let index = this.pairIndexes.get(node);
    if (!index) {
      index = new Map();
      for (const p of node.items) index.set(keyString(p.key), p);
      this.pairIndexes.set(node, index);
    }
    return index;
  }

  /** True when `keyPath` exists in the file. */
  has(keyPath: KeyPath): boolean {
    return this.locate(keyPath).found;
  }

  /** `file:line:col` of the value at `keyPath` (or of its key, with `key`). */
  origin(keyPath: KeyPath, key = false): string {
    const { line, col } = this.position(keyPath, key);
    return `${this.name}:${line}:${col}`;
  }

  /** Line and column of the value at `keyPath` (or of its key, with `key`). */
  position(keyPath: KeyPath, key = false): { line: number; col: number } {
    return this.lines.linePos(this.locate(keyPath, key).offset);
  }

  /** A positioned problem at `keyPath`. */
  problem(keyPath: KeyPath, message: string, key = false): ConfigProblem {
    const { line, col } = this.lines.linePos(this.locate(keyPath, key).offset);
    return { file: this.name, line, col, path: formatKeyPath(keyPath), message };
  }

  /**
   * Duplicate keys in any mapping. YAML forbids them, PyYAML silently keeps
   * the last one; we report both places, and for `domains` say that it is a
   * duplicate domain identifier (an ocspbot configuration error).
   */
  duplicateKeyProblems(): ConfigProblem[] {
    const problems: ConfigProblem[] = [];
    // Aliases are not followed: their content is checked where it is anchored.
    const visit = (node: unknown, at: Array<string | number>): void => {
      if (isMap(node)) {
        const seen = new Map<string, number>();
        for (const pair of node.items) {
          const k = keyString(pair.key);
          const here = YamlSource.offsetOf(pair.key) ?? 0;
          const first = seen.get(k);
          if (first !== undefined) {
            const { line, col } = this.lines.linePos(first);
            const what =
              at.length === 1 && at[0] === 'domains'
                ? `duplicate domain identifier ${JSON.stringify(k)}`
                : `duplicate key ${JSON.stringify(k)}`;
            problems.push(this.problem([...at, k], `${what} (first defined at ${this.name}:${line}:${col})`, true));
            // Point at this occurrence, not the last one (problem() finds the last).
            const p = problems[problems.length - 1];
            if (p !== undefined) Object.assign(p, this.lines.linePos(here));
          } else {
            seen.set(k, here);
          }
          visit(pair.value, [...at, k]);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => visit(item, [...at, i]));
      }
    };
    visit(this.doc.contents, []);
    return problems;
  }
}
