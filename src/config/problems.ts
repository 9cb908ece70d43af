/**
 * What configuration messages are made of: key paths, positioned problems,
 * the names files are shown by, and what the loader needs of a file. Kept
 * apart from the YAML parser so that a load from the configuration cache
 * never loads it.
 */
import path from 'node:path';

/** A path into the configuration: map keys and list indexes. */
export type KeyPath = ReadonlyArray<string | number>;

/** One configuration problem, positioned; also what `--json` reports. */
export interface ConfigProblem {
  /** The file as shown to the operator (relative to the working directory when inside it). */
  file: string;
  /** 1-based line. */
  line: number;
  /** 1-based column. */
  col: number;
  /** The key path, e.g. `domains.example.com.cert` or `scan_keys[0].folder`; empty for the whole file. */
  path: string;
  /** What is wrong, written for the operator. */
  message: string;
}

/**
 * Formats a key path the way the operator reads it: dots between keys, list
 * indexes in brackets (`scan_keys[0].folder`). Domain identifiers keep their
 * dots (`domains.example.com.cert`), as in STYLE.md.
 */
export function formatKeyPath(keyPath: KeyPath): string {
  let out = '';
  for (const seg of keyPath) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

/** `file:line:col key.path: message` (or `file:line:col: message` without a key path). */
export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.col}${p.path === '' ? ':' : ` ${p.path}:`} ${p.message}`;
}

/**
 * How a file is named in messages: relative to the working directory when it
 * lies inside it (short, and what the operator typed), absolute otherwise.
 */
export function displayPath(absolute: string, cwd: string): string {
  const rel = path.relative(cwd, absolute);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : absolute;
}

/** What the loader needs of a configuration file: its names and positions for messages. */
export interface ConfigSource {
  /** Absolute path. */
  readonly file: string;
  /** The name used in messages. */
  readonly name: string;
  /** `file:line:col` of the value at `keyPath` (or of its key, with `key`). */
  origin(keyPath: KeyPath, key?: boolean): string;
  /** Line and column of the value at `keyPath` (or of its key, with `key`). */
  position(keyPath: KeyPath, key?: boolean): { line: number; col: number };
  /** A positioned problem at `keyPath`. */
  problem(keyPath: KeyPath, message: string, key?: boolean): ConfigProblem;
}
