/**
 * staplekeeper: the library. Keeps OCSP stapling responses fresh and correct.
 *
 * The layers: `core` (pure: parsing, verification, policy, errors), `io`
 * (files, HTTP, clock behind small interfaces), `config` (YAML → validated
 * settings) and `engine` (one target, one run). The CLI is not part of the
 * library.
 *
 * @packageDocumentation
 */
export { VERSION, USER_AGENT } from './version.js';
export {
  StapleError,
  ERROR_CODES,
  isStapleError,
  toStapleError,
  type ErrorCode,
  type StapleErrorOptions,
} from './core/errors.js';
export {
  type Certificate,
  type PemBlock,
  parseCertificate,
  loadCertificates,
  decodePem,
  findIssuer,
  isSignedBy,
  couldBeIssuer,
  formatName,
  fingerprint,
  OID_KP_OCSP_SIGNING,
} from './core/certs.js';
export {
  computeCertId,
  buildRequest,
  type CertId,
  type CertIdHash,
  type RequestOptions,
  type EncodedRequest,
} from './core/request.js';
export {
  decodeResponse,
  type DecodedResponse,
  type BasicResponse,
  type SingleResponse,
  type CertStatus,
  type Extension,
  type ResponderId,
  RESPONSE_STATUS_NAMES,
  REVOCATION_REASONS,
} from './core/response.js';
export {
  verifyResponse,
  assertGood,
  DEFAULT_SKEW_MS,
  type VerifiedResponse,
  type VerifyOptions,
} from './core/verify.js';
export {
  decideRefresh,
  refreshPoint,
  DEFAULT_POLICY,
  type RefreshDecision,
  type RefreshPolicy,
  type RefreshReason,
  type StapleFacts,
  type StapleState,
  type CertWindow,
} from './core/policy.js';
export {
  usableUntil,
  usableAt,
  classifyStaple,
  type StapleHealth,
  type StapleUsability,
  type UsableFacts,
} from './core/usability.js';
export { type Clock, systemClock, fixedClock } from './io/clock.js';
export {
  createHttpTransport,
  assertHttpUrl,
  DEFAULT_MAX_BYTES,
  type HttpTransport,
  type HttpRequest,
  type HttpResult,
  type HttpOptions,
} from './io/http.js';
export { createFileStore, cleanStaleTemps, type StapleStore, type WriteOptions, type WriteResult } from './io/store.js';
export {
  fetchResponse,
  getUrlFor,
  MAX_GET_URL,
  type FetchOptions,
  type FetchResult,
  type MethodChoice,
} from './engine/fetch.js';
export { IssuerResolver, pickLeaf } from './engine/issuer.js';
export { parseCaIssuersContent } from './core/asn1.js';
export {
  processTarget,
  loadTargetCert,
  readStapleState,
  type Target,
  type TargetOutcome,
  type EngineContext,
  type ProcessOptions,
  type StapleSummary,
  type LoadedCert,
} from './engine/staple.js';
export { runOnce, exitCodeOf, type RunOptions, type RunReport } from './engine/run.js';
export { runHook, type HookItem, type HookResult } from './engine/hooks.js';
export { acquireLock, type HeldLock } from './engine/lock.js';
export {
  loadConfig,
  findDefaultConfig,
  parseDuration,
  scanFolder,
  scanTargets,
  expandOutputTemplate,
  OUTPUT_PLACEHOLDERS,
} from './config/index.js';
export {
  StapleDaemon,
  proveWritable,
  sourceFromConfig,
  type DaemonOptions,
  type DaemonLogger,
  type DaemonObserver,
  type LogEvent,
  type AttemptEvent,
  type DaemonSnapshot,
  type CertificateStatus,
  type CertificateState,
} from './engine/daemon.js';
export {
  planNextAttempt,
  backoffDelay,
  jitter,
  Schedule,
  HostBackoff,
  type PlannedAttempt,
  type NextAttemptReason,
} from './engine/scheduler.js';
export type { LoadedConfig, Settings, TargetConfig, ScanConfig, HookCommand, HaproxyTarget } from './config/types.js';
export {
  checkStaples,
  checkTarget,
  formatCheckLine,
  CHECK_EXIT,
  DEFAULT_WARN_MS,
  DEFAULT_CRIT_MS,
  type CheckLevel,
  type CheckState,
  type CertCheck,
  type CheckReport,
  type CheckOptions,
} from './engine/check.js';
export {
  pushToHaproxy,
  pushStaple,
  sendHaproxyCommand,
  HAPROXY_STATE_NAME,
  type HaproxyPushItem,
  type HaproxyPushOptions,
  type HaproxyPushResult,
  type HaproxyPushReport,
} from './engine/haproxy.js';
export {
  attachStapling,
  type StaplingOptions,
  type StaplingHandle,
  type StaplingStatus,
  type StaplingEvent,
} from './embed/stapling.js';
