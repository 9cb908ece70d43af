/**
 * Parsing and validating one configuration file: the YAML parser and the
 * schema, loaded by load.ts only for files that are not in the
 * configuration cache (config/cache.ts).
 */
import type { FileRole } from './cache.js';
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
): ReadFile<RawMainConfig | RawIncludeConfig> {
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
