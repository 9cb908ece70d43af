/**
 * Parsing and validating one configuration file: the YAML parser and the
 * schema, loaded by load.ts only for files that are not in the
 * configuration cache (config/config-cache.ts).
 */
import type { FileRole } from './config-cache.js';
import { FastDomainsSource, splitDomains } from './fast-domains.js';
import type { ConfigProblem, ConfigSource } from './problems.js';
import { includeSchema, mainSchema, validate, type RawIncludeConfig, type RawMainConfig } from './schema.js';
import { YamlSource } from './yaml-source.js';

/** A configuration file read and validated: its source, and its value when it has no problem. */
export type ReadFile<T> =
  { source: ConfigSource; value: T; problems: [] } | { source: ConfigSource; problems: ConfigProblem[] };

/**
 * Parses and validates the text of `file` (shown as `name`). For the main
 * file, duplicate keys are reported alone (validating a file with duplicates
 * would report confusing follow-ups); for an included file, both.
 *
 * @throws StapleError `CONFIG_YAML` for YAML syntax errors.
 */
export function parseValidated(
  file: string,
  name: string,
  text: string,
  role: FileRole,
  fast = false,
): ReadFile<RawMainConfig | RawIncludeConfig> {
  if (fast) {
    const read = fastParseValidated(file, name, text, role);
    if (read !== undefined) return read;
  }
  const source = YamlSource.parse(file, name, text);
  const problems = source.duplicateKeyProblems();
  if (role === 'main' && problems.length > 0) return { source, problems };
  const result =
    role === 'main'
      ? validate(mainSchema, source, source.toJS())
      : validate(includeSchema, source, source.toJS(), { include: true });
  if (!result.ok) return { source, problems: [...problems, ...result.problems] };
  if (problems.length > 0) return { source, problems };
  return { source, value: result.value, problems: [] };
}

/**
 * {@link parseValidated} of a file whose `domains` block is of the plain
 * form config/fast-domains.ts reads: the rest of the file parsed and
 * validated as usual, the block read by lines. Undefined (the caller parses
 * the whole file) unless everything is without a problem.
 */
function fastParseValidated(
  file: string,
  name: string,
  text: string,
  role: FileRole,
): ReadFile<RawMainConfig | RawIncludeConfig> | undefined {
  const block = splitDomains(text);
  if (block === undefined) return undefined;
  let rest: YamlSource;
  try {
    rest = YamlSource.parse(file, name, block.rest);
  } catch {
    return undefined; // the parser of the whole file gives the error
  }
  if (rest.duplicateKeyProblems().length > 0) return undefined;
  const data = rest.toJS() as Record<string, unknown> | null;
  // `domains:` must be a top-level key without a value of its own, on the line the block follows
  if (data === null || typeof data !== 'object' || Array.isArray(data) || !Object.hasOwn(data, 'domains'))
    return undefined;
  if (data.domains !== null || rest.position(['domains'], true).line !== block.keyLine) return undefined;
  const result =
    role === 'main' ? validate(mainSchema, rest, data) : validate(includeSchema, rest, data, { include: true });
  if (!result.ok) return undefined;
  const value = { ...result.value, domains: block.domains } as RawMainConfig | RawIncludeConfig;
  return { source: new FastDomainsSource(rest, block), value, problems: [] };
}
