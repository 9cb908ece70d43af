/**
 * Text output that a file name cannot forge. Paths, domain ids, URLs and
 * messages (which quote them) come from the file system, the configuration
 * and responders; printed as they are, a certificate named
 * `a\n[other] renewed` would add a line that looks like staplekeeper's own.
 * Every text line (run, ocspbot, daemon logs, check, fetch, inspect) goes
 * through {@link escapeControls}; JSON output is escaped by JSON itself.
 */

/** C0 controls, DEL and C1 controls (U+0080–U+009F). */
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/g;

const NAMED: Readonly<Record<string, string>> = Object.assign(Object.create(null) as Record<string, string>, {
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
});

/**
 * Replaces every control character (C0, DEL, C1) by a visible escape:
 * `\n`, `\r`, `\t`, or `\xNN` (`\u00NN` above 0xff cannot occur). Printable
 * text, including non-ASCII letters, is unchanged. Pure.
 */
export function escapeControls(s: string): string {
  CONTROLS.lastIndex = 0;
  if (!CONTROLS.test(s)) return s;
  CONTROLS.lastIndex = 0;
  return s.replace(CONTROLS, (c) => NAMED[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * {@link escapeControls} for a message whose own lines are meant (a list of
 * configuration errors): each line is escaped, the newlines between them are
 * kept. Only for text the operator's own files produce.
 */
export function escapeLines(s: string): string {
  return s.split('\n').map(escapeControls).join('\n');
}
