/**
 * Every exit code of the commands, defined once with its meaning. The
 * command line (src/cli), the batch step's `exitCodeOf` (batch/run.ts) and
 * the monitoring check's report (status/check.ts) all take their numbers
 * from here; each command's `--help` prints its own line of this table.
 *
 * | code  | meaning                                                               | commands                      |
 * | ----- | --------------------------------------------------------------------- | ----------------------------- |
 * | 0     | success (`run`: nothing renewed)                                      | all                           |
 * | 1     | the command did not do its job (one error line says why)             | fetch, inspect, daemon        |
 * | 1–250 | that many staples renewed (250: 250 or more)                         | run, ocspbot                  |
 * | 252   | bad arguments (outside 1–250: a typo never reads as renewals)        | all but check and ocsprenewer |
 * | 253   | the configuration is invalid (also a missing `ocsp_folder`)          | run, ocspbot                  |
 * | 254   | the configuration or the log file cannot be read, or is not YAML     | run, ocspbot                  |
 * | 255   | a staple not retrieved, a certificate revoked, a hook failed, or the lock held by another run | run, ocspbot |
 *
 * Two commands keep codes of their own where their convention differs, and
 * only there: `check` ({@link CHECK_EXIT}, the monitoring-plugin codes) and
 * the ocsprenewer drop-in ({@link OCSPRENEWER_EXIT}, the Go tool's).
 */

/** The exit codes of `fetch`, `inspect`, `run`, `daemon` and the ocspbot drop-in (the table above). */
export const EXIT = {
  /** Success; for `run`, nothing was renewed. */
  OK: 0,
  /** `fetch`, `inspect`, `daemon`: the command did not do its job. */
  FAILURE: 1,
  /** `run`, ocspbot: 1 to this is the number of staples renewed (this: that many or more). */
  RENEWED_MAX: 250,
  /** Bad arguments (every command but `check` and the ocsprenewer drop-in). */
  USAGE: 252,
  /** `run`, ocspbot: the configuration is invalid. */
  CONFIG: 253,
  /** `run`, ocspbot: the configuration or the log file cannot be read, or is not YAML. */
  YAML: 254,
  /** `run`, ocspbot: a staple was not retrieved, a certificate is revoked, a hook failed, or the lock is held. */
  RETRIEVAL: 255,
} as const;

/**
 * `check` differs: a monitoring plugin exits with its state (Nagios plugin
 * API), and bad arguments or an unreadable configuration are UNKNOWN (3),
 * not 252: the plugin could not do its job.
 */
export const CHECK_EXIT = { ok: 0, warning: 1, critical: 2, unknown: 3 } as const;

/**
 * The ocsprenewer drop-in differs where the Go ocsprenewer does: bad flags
 * exit 2 (Go's flag package), any failure 1 (docs/migrating.md).
 */
export const OCSPRENEWER_EXIT = { OK: 0, FAILURE: 1, USAGE: 2 } as const;
