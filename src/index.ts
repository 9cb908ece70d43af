/**
 * staplekeeper: the library. Keeps OCSP stapling responses fresh and correct.
 *
 * The front door is a handful of functions: {@link attachStapling} (staple
 * in your own Node TLS server), {@link runOnce} (one pass over a
 * configuration, as `staplekeeper run`), {@link startDaemon} (the
 * long-running service), {@link checkStaples} (judge the staples on disk,
 * as `staplekeeper check`), {@link loadConfig} and {@link defineSettings} /
 * {@link defineConfig} (a configuration from YAML or from code), and
 * {@link StapleError} with its stable {@link ERROR_CODES}.
 *
 * The rest is in namespaces: `ocsp` (the protocol: certificates, request,
 * response, verification, refresh policy, usability, fetching), `io` (clock,
 * HTTP transport, staple store, lock), `config`, `outputs` (HAProxy push,
 * hooks) and `testing` (an in-memory store and a fake transport). The
 * layers are described in docs/ARCHITECTURE.md; the command line is not part
 * of the library.
 *
 * @packageDocumentation
 */
import { StapleDaemon, type DaemonOptions } from './daemon/daemon.js';

export { VERSION, USER_AGENT } from './version.js';

// ---------------------------------------------------------------- front door
export {
  StapleError,
  ERROR_CODES,
  isStapleError,
  toStapleError,
  type ErrorCode,
  type StapleErrorOptions,
} from './core/errors.js';
export {
  loadConfig,
  defineSettings,
  defineConfig,
  type SettingsInput,
  type LoadConfigOptions,
  type LoadedConfig,
  type Settings,
  type TargetConfig,
  type ScanConfig,
  type HookCommand,
  type HaproxyTarget,
} from './config/index.js';
export { runOnce, type RunOptions, type RunReport } from './batch/run.js';
export {
  checkStaples,
  type CheckLevel,
  type CheckState,
  type CertCheck,
  type CheckReport,
  type CheckOptions,
} from './status/check.js';
export {
  attachStapling,
  type StaplingOptions,
  type StaplingHandle,
  type StaplingStatus,
  type StaplingEvent,
} from './embed/stapling.js';
export {
  StapleDaemon,
  type DaemonOptions,
  type DaemonLogger,
  type DaemonObserver,
  type DaemonSource,
  type LogEvent,
  type AttemptEvent,
  type DaemonSnapshot,
  type CertificateStatus,
  type CertificateState,
} from './daemon/daemon.js';
export type { TargetOutcome, StapleSummary } from './pipeline/context.js';
export type { Clock } from './io/clock.js';
export type { HttpTransport } from './io/http.js';
export type { StapleStore } from './io/store.js';

/**
 * Starts the daemon (`staplekeeper daemon` in your process): discovers the
 * certificates of `options.source`, proves the staple folders writable, opens
 * the status service and the watchers, and keeps every staple fresh until
 * `stop()`. Build the source with `sourceFromConfig(config)`.
 *
 * @throws StapleError `FILE_WRITE` for an unwritable folder, `CONFIG_INVALID`
 *   for an unusable listen address; nothing is left running then.
 */
export function startDaemon(options: DaemonOptions): Promise<StapleDaemon> {
  return StapleDaemon.start(options);
}
export { sourceFromConfig } from './daemon/daemon.js';

// ---------------------------------------------------------------- namespaces
export * as ocsp from './api/ocsp.js';
export * as io from './api/io.js';
export * as config from './config/index.js';
export * as outputs from './api/outputs.js';
export * as testing from './testing/index.js';

// ------------------------------------------------ names of the first releases
// Kept at the top level because the README's Library section used them; the
// same functions are in the namespaces above.
export {
  loadCertificates,
  computeCertId,
  buildRequest,
  verifyResponse,
  assertGood,
  decideRefresh,
  fetchResponse,
  IssuerResolver,
  processTarget,
} from './api/ocsp.js';
export { createHttpTransport, createFileStore } from './api/io.js';
