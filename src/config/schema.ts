/**
 * The shape of the configuration file, as zod schemas, and the translation of
 * zod's issues into positioned, operator-readable problems.
 *
 * The schemas check shapes and single values (types, ranges, durations, URLs)
 * and convert values (durations to milliseconds, hooks to {@link HookCommand});
 * everything that needs the file system or several keys at once (paths,
 * scans, duplicate identifiers, responder overrides by domain) is checked in
 * load.ts, where the positions of both places are known.
 */
import { z } from 'zod';
import { parseDuration } from './duration.js';
import { closestMatch } from './suggest.js';
import { formatKeyPath, type ConfigProblem, type KeyPath, type YamlSource } from './yaml-source.js';
import { DEFAULT_HOOK_TIMEOUT_MS, type HookCommand } from './types.js';

export { DEFAULT_HOOK_TIMEOUT_MS };

/** How a value looks to the operator, for "expected X, got Y". */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number') return `the number ${value}`;
  if (typeof value === 'boolean') return `${value}`;
  if (typeof value === 'object') return 'a mapping';
  return typeof value;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
  record: 'a mapping',
};

/**
 * The parse-wide zod error map: plain words instead of zod's defaults
 * ("expected a whole number, got the string "4"").
 */
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type': {
      const expected = EXPECTED[String(iss.expected)] ?? String(iss.expected);
      return `expected ${expected}, got ${describeValue(iss.input)}`;
    }
    case 'invalid_value':
      return `expected one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(iss.input)}`;
    case 'too_small':
      if (iss.origin === 'string' || iss.origin === 'array') return 'must not be empty';
      return `must be ${iss.inclusive === false ? 'greater than' : 'at least'} ${String(iss.minimum)}, got ${describeValue(iss.input)}`;
    case 'too_big':
      return `must be ${iss.inclusive === false ? 'less than' : 'at most'} ${String(iss.maximum)}, got ${describeValue(iss.input)}`;
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------- values

const nonEmptyString = z.string().min(1);

/** An ocspbot duration string, converted to milliseconds. */
const duration = z
  .string({
    error: (iss) =>
      typeof iss.input === 'number'
        ? `expected a duration with a unit, e.g. "${iss.input}s" or "${iss.input}m", got the number ${iss.input}`
        : iss.input === undefined
          ? undefined
          : `expected a duration such as "3d" or "2 hours 5 minutes", got ${describeValue(iss.input)}`,
  })
  .transform((text, ctx) => {
    try {
      return parseDuration(text);
    } catch (e) {
      ctx.addIssue((e as Error).message);
      return z.NEVER;
    }
  });

/** A duration that must be longer than zero (timeouts, sweep intervals: zero would mean a busy loop). */
const positiveDuration = duration.refine((ms) => ms > 0, { error: 'must be longer than 0 seconds' });

const positiveInt = z.number().int().min(1);

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** A Redis URL for `fleet.redis`: redis:// or rediss://, a host, an optional password and database number. */
function redisUrlProblem(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'expected a redis:// or rediss:// URL such as "redis://127.0.0.1:6379/0"';
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return 'expected a redis:// or rediss:// URL';
  if (url.hostname === '') return 'the Redis URL names no host';
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,5}$/.test(db)) return `the database in the Redis URL must be a number, got "${db}"`;
  if (url.search !== '' || url.hash !== '') return 'the Redis URL must not carry a query or a fragment';
  return undefined;
}

const redisUrl = z.string().superRefine((text, ctx) => {
  const problem = redisUrlProblem(text);
  // the value is not repeated: it may hold a password
  if (problem !== undefined) ctx.addIssue(problem);
});

const httpUrl = z.string().refine(isHttpUrl, {
  error: (iss) => `expected an http:// or https:// URL, got ${describeValue(iss.input)}`,
});

/** A responder override value: a URL or `disabled`. */
const responderValue = z.string().refine((s) => s === 'disabled' || isHttpUrl(s), {
  error: (iss) => `expected an http:// or https:// URL or "disabled", got ${describeValue(iss.input)}`,
});

/** `ocsp_responder_uri`: ocspbot's URL or `certificate`, plus our `disabled`. */
const responderUri = z.string().refine((s) => s === 'certificate' || s === 'disabled' || isHttpUrl(s), {
  error: (iss) =>
    `expected an http:// or https:// URL, "certificate" (use the certificate's AIA) or "disabled", got ${describeValue(iss.input)}`,
});

const REFRESH_HELP = 'expected a fraction from 0.1 to 0.95 (0.5), or a percentage from 10 to 95 (50 or "50%")';

/**
 * `refresh_at`: ocsprenewer's T1. A number above 1 is a percentage, like
 * ocsprenewer's `-timer-t1`; a string may carry a `%` sign.
 */
const refreshAt = z.union([z.number(), z.string()], { error: REFRESH_HELP }).transform((value, ctx) => {
  let fraction: number;
  if (typeof value === 'number') {
    fraction = value > 1 ? value / 100 : value;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(value);
    if (m === null) {
      ctx.addIssue(`${REFRESH_HELP}, got ${describeValue(value)}`);
      return z.NEVER;
    }
    const n = Number(m[1]);
    fraction = m[2] === '%' || n > 1 ? n / 100 : n;
  }
  if (!(fraction >= 0.1 && fraction <= 0.95)) {
    ctx.addIssue(`${REFRESH_HELP}, got ${describeValue(value)}`);
    return z.NEVER;
  }
  return fraction;
});

const HOOK_HELP =
  'expected a command: a string (run by sh -c), a list of strings (run without a shell), or a mapping {command, timeout}';

const argv = z.array(nonEmptyString).min(1);

function toHook(command: string | string[], timeoutMs = DEFAULT_HOOK_TIMEOUT_MS): HookCommand {
  return typeof command === 'string'
    ? { kind: 'shell', command: [command], timeoutMs }
    : { kind: 'argv', command, timeoutMs };
}

/** A hook: shell string, argv list, or `{command, timeout}`. */
const hook = z
  .union(
    [
      nonEmptyString,
      argv,
      z.strictObject({
        command: z.union([nonEmptyString, argv], { error: HOOK_HELP }),
        timeout: positiveDuration.optional(),
      }),
    ],
    { error: HOOK_HELP },
  )
  .transform((value): HookCommand =>
    typeof value === 'string' || Array.isArray(value) ? toHook(value) : toHook(value.command, value.timeout),
  );

/** `host:port` for the daemon's status listener; IPv6 hosts in brackets. */
const hostPort = z.string().refine(
  (s) => {
    const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(s);
    return m !== null && Number(m[2]) <= 65535;
  },
  { error: (iss) => `expected host:port such as "127.0.0.1:9100" or "[::1]:9100", got ${describeValue(iss.input)}` },
);

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1000,
  kib: 1024,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/** A size: a whole number of bytes, or a string such as "64MiB" or "500 KB"; converted to bytes. */
const byteSize = z.union([positiveInt, z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = m ? BYTE_UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || unit === undefined || Number(m[1]) <= 0) {
    ctx.addIssue({ code: 'custom', message: `expected a size such as "64MiB" or "500KB", got ${describeValue(v)}` });
    return z.NEVER;
  }
  return Math.round(Number(m[1]) * unit);
});

// ---------------------------------------------------------------- sections

/** One `domains` entry (ocspbot keys; `chain`/`rootchain` optional, issuer discovery can find the issuer). */
const domainSchema = z.strictObject({
  cert: nonEmptyString,
  chain: nonEmptyString.optional(),
  rootchain: nonEmptyString.optional(),
  ocsp: nonEmptyString,
  ocsp_responder_uri: responderUri.optional(),
});

/** One `scan_keys` entry with ocspbot's keys; defaults are applied in load.ts. */
const scanSchema = z.strictObject({
  folder: z.string().optional(),
  recursive: z.boolean().optional(),
  cert_mask: nonEmptyString.optional(),
  chain_mask: nonEmptyString.optional(),
  rootchain_mask: nonEmptyString.optional(),
  ocsp_mask: nonEmptyString.optional(),
});

const domainsSchema = z.record(z.string(), domainSchema).nullable().optional();
const scanKeysSchema = z.array(scanSchema).nullable().optional();

/** The main configuration file: every ocspbot 0.9.3 key plus staplekeeper's. */
export const mainSchema = z.strictObject({
  // ocspbot 0.9.3
  ocsp_folder: z.string().optional(),
  minimum_validity: duration.optional(),
  minimum_validity_percentage: z.number().min(0).max(100).optional(),
  parallel_threads: positiveInt.optional(),
  stop_on_error: z.boolean().optional(),
  make_backups: z.boolean().optional(),
  openssl_executable: z.string().nullable().optional(),
  domains: domainsSchema,
  scan_keys: scanKeysSchema,
  includes: z.array(nonEmptyString).nullable().optional(),
  output_log: nonEmptyString.optional(),
  error_log: nonEmptyString.optional(),
  // staplekeeper
  refresh_at: refreshAt.optional(),
  responders: z.record(z.string(), responderValue).nullable().optional(),
  http: z
    .strictObject({
      timeout: positiveDuration.optional(),
      method: z.enum(['auto', 'get', 'post']).optional(),
      proxy: httpUrl.optional(),
      user_agent: nonEmptyString.optional(),
      follow_redirects_across_hosts: z.boolean().optional(),
    })
    .optional(),
  concurrency: positiveInt.optional(),
  per_host_concurrency: positiveInt.optional(),
  ca_dirs: z.array(nonEmptyString).nullable().optional(),
  backups: z.strictObject({ keep: positiveInt.optional() }).optional(),
  hooks: z
    .strictObject({
      on_change: hook.optional(),
      on_failure: hook.optional(),
      on_revoked: hook.optional(),
    })
    .optional(),
  on_revoked_write: z.boolean().optional(),
  overwrite_non_ocsp: z.boolean().optional(),
  lock_timeout: duration.optional(),
  haproxy: z
    .array(
      z.strictObject({
        socket: nonEmptyString,
        certificates: z.array(nonEmptyString).optional(),
      }),
    )
    .nullable()
    .optional(),
  daemon: z
    .strictObject({
      sweep_interval: positiveDuration.optional(),
      watch: z.boolean().optional(),
      status: z.strictObject({ listen: hostPort.optional() }).optional(),
    })
    .optional(),
  crl: z
    .strictObject({
      watch: z.boolean().optional(),
      interval: positiveDuration.optional(),
      max_size: byteSize.optional(),
      timeout: positiveDuration.optional(),
    })
    .optional(),
  fleet: z
    .strictObject({
      redis: redisUrl,
      prefix: nonEmptyString.optional(),
      fetch: z.boolean().optional(),
    })
    .optional(),
});

/** An included file: only `domains` and `scan_keys` (ocspbot's documented include semantics). */
export const includeSchema = z.strictObject({
  domains: domainsSchema,
  scan_keys: scanKeysSchema,
});

/** The parsed main file, values converted. */
export type RawMainConfig = z.output<typeof mainSchema>;
/** The parsed include file. */
export type RawIncludeConfig = z.output<typeof includeSchema>;
/** One parsed `domains` entry. */
export type RawDomain = z.output<typeof domainSchema>;
/** One parsed `scan_keys` entry. */
export type RawScan = z.output<typeof scanSchema>;

// ---------------------------------------------------------------- issues → problems

/** Looks through wrappers that do not change which keys an object allows. */
function unwrap(schema: unknown): unknown {
  for (;;) {
    if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable || schema instanceof z.ZodDefault) {
      schema = schema.unwrap();
    } else if (schema instanceof z.ZodPipe) {
      schema = schema.in;
    } else {
      return schema;
    }
  }
}

/** The schema of the value at `keyPath`, found by walking the schema like the data. */
function schemaAt(root: unknown, keyPath: KeyPath): unknown {
  let schema = unwrap(root);
  for (const seg of keyPath) {
    if (schema instanceof z.ZodObject) schema = (schema.shape as Record<string, unknown>)[String(seg)];
    else if (schema instanceof z.ZodRecord) schema = schema.valueType;
    else if (schema instanceof z.ZodArray) schema = schema.element;
    else if (schema instanceof z.ZodUnion) {
      schema = (schema.options as readonly unknown[]).map(unwrap).find((o) => o instanceof z.ZodObject);
      if (schema instanceof z.ZodObject) schema = (schema.shape as Record<string, unknown>)[String(seg)];
    } else return undefined;
    schema = unwrap(schema);
  }
  if (schema instanceof z.ZodUnion) {
    return (schema.options as readonly unknown[]).map(unwrap).find((o) => o instanceof z.ZodObject);
  }
  return schema;
}

/** The keys allowed in the mapping at `keyPath` of `root`. */
export function knownKeysAt(root: unknown, keyPath: KeyPath): string[] {
  const schema = schemaAt(root, keyPath);
  return schema instanceof z.ZodObject ? Object.keys(schema.shape as object) : [];
}

/** "unknown key `x`; did you mean `y`?", listing the allowed keys when there are few. */
export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const suggestion = closestMatch(key, known);
  if (suggestion !== undefined) return `unknown key \`${key}\`; did you mean \`${suggestion}\`?`;
  if (known.length > 0 && known.length <= 8) {
    return `unknown key \`${key}\` (allowed here: ${known.join(', ')})`;
  }
  return `unknown key \`${key}\``;
}

interface FlatIssue {
  code: string;
  path: Array<string | number>;
  message: string;
  keys?: string[];
}

/**
 * zod reports a failed union as one issue holding every branch's failures.
 * When exactly one branch got past the type check (the operator clearly wrote
 * that form, e.g. a hook mapping with a bad `timeout`), its deeper issues are
 * the useful ones; otherwise the union's own message lists the accepted forms.
 */
function flatten(issue: z.core.$ZodIssue, prefix: Array<string | number>): FlatIssue[] {
  const here = [...prefix, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
  if (issue.code === 'invalid_union') {
    const engaged = issue.errors.filter(
      (branch) => !branch.every((i) => i.path.length === 0 && i.code === 'invalid_type'),
    );
    const only = engaged.length === 1 ? engaged[0] : undefined;
    if (only !== undefined) return only.flatMap((i) => flatten(i, here));
  }
  const flat: FlatIssue = { code: issue.code, path: here, message: issue.message };
  if (issue.code === 'unrecognized_keys') flat.keys = issue.keys;
  return [flat];
}

function valueAt(data: unknown, keyPath: KeyPath): unknown {
  let value = data;
  for (const seg of keyPath) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string | number, unknown>)[seg];
  }
  return value;
}

/** Options for {@link validate}. */
export interface ValidateOptions {
  /** For an include file: keys of the main file get "not allowed in an include file". */
  include?: boolean;
}

/** The maps keyed by names (domain identifiers, responder URLs and identifiers). */
const NAME_MAPS = ['domains', 'responders'] as const;
/** What `__proto__` is called while zod validates (its records drop that key). */
const PROTO_ESCAPE = '\u0000__proto__';

function renameKey(obj: object, from: string, to: string): Record<string, unknown> {
  const out = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of Object.entries(obj)) out[k === from ? to : k] = v;
  return out;
}

/** `data` with an own `__proto__` key of each name map renamed, so that zod keeps it. */
function escapeNameKeys(data: unknown): unknown {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return data;
  let out: Record<string, unknown> | undefined;
  for (const m of NAME_MAPS) {
    const v = (data as Record<string, unknown>)[m];
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.hasOwn(v, '__proto__')) {
      out ??= { ...(data as Record<string, unknown>) };
      out[m] = renameKey(v, '__proto__', PROTO_ESCAPE);
    }
  }
  return out ?? data;
}

/** The validated value with each name map as a null-prototype object and `__proto__` restored. */
function unescapeNameKeys(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const v = value as Record<string, unknown>;
  for (const m of NAME_MAPS) {
    const map = v[m];
    if (typeof map === 'object' && map !== null && !Array.isArray(map))
      v[m] = renameKey(map, PROTO_ESCAPE, '__proto__');
  }
  return value;
}

/**
 * Validates `data` (the plain data of `source`) against `schema`, returning
 * either the converted value or positioned problems, in document order.
 */
export function validate<S extends z.ZodType>(
  schema: S,
  source: YamlSource,
  data: unknown,
  options: ValidateOptions = {},
): { ok: true; value: z.output<S> } | { ok: false; problems: ConfigProblem[] } {
  // names are keys: a domain called `__proto__` must survive validation (docs/SECURITY.md)
  const result = schema.safeParse(escapeNameKeys(data), { error: issueMessage });
  if (result.success) return { ok: true, value: unescapeNameKeys(result.data) as z.output<S> };
  for (const i of result.error.issues) {
    (i as { path: PropertyKey[] }).path = i.path.map((k) => (k === PROTO_ESCAPE ? '__proto__' : k));
  }
  const problems: ConfigProblem[] = [];
  const issues = result.error.issues.flatMap((i) => flatten(i, []));
  // A misspelt required key gives two issues: "unknown `comand`" and "missing
  // `command`". The first says it all, so the second is dropped.
  const suggested = new Set<string>();
  for (const issue of issues) {
    if (issue.code !== 'unrecognized_keys') continue;
    const known = knownKeysAt(schema, issue.path);
    for (const key of issue.keys ?? []) {
      const suggestion = closestMatch(key, known);
      if (suggestion !== undefined) suggested.add(formatKeyPath([...issue.path, suggestion]));
    }
  }
  for (const issue of issues) {
    const missing =
      (issue.code === 'invalid_type' || issue.code === 'invalid_union') &&
      valueAt(data, issue.path) === undefined &&
      !source.has(issue.path);
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys ?? []) {
        let message: string;
        if (options.include === true && issue.path.length === 0 && key in mainSchema.shape) {
          message = `\`${key}\` is not allowed in an included file, only \`domains\` and \`scan_keys\` are; move it to the main configuration file`;
        } else {
          message = unknownKeyMessage(key, knownKeysAt(schema, issue.path));
        }
        problems.push(source.problem([...issue.path, key], message, true));
      }
    } else if (missing) {
      if (suggested.has(formatKeyPath(issue.path))) continue;
      const key = issue.path[issue.path.length - 1];
      problems.push(source.problem(issue.path, `required key \`${String(key)}\` is missing`));
    } else {
      problems.push(source.problem(issue.path, issue.message));
    }
  }
  problems.sort((a, b) => a.line - b.line || a.col - b.col);
  return { ok: false, problems };
}
