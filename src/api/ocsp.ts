/**
 * The `ocsp` namespace of the library: the protocol, from certificates to a
 * verified response and the decisions about it. Pure parts (core/) and the
 * parts that obtain a response (pipeline/responder.ts, pipeline/issuer.ts,
 * pipeline/process.ts).
 */
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
} from '../core/certs.js';
export {
  computeCertId,
  buildRequest,
  type CertId,
  type CertIdHash,
  type RequestOptions,
  type EncodedRequest,
} from '../core/request.js';
export { parseCaIssuersContent } from '../core/asn1.js';
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
} from '../core/response.js';
export {
  verifyResponse,
  assertGood,
  DEFAULT_SKEW_MS,
  type VerifiedResponse,
  type VerifyOptions,
} from '../core/verify.js';
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
} from '../core/policy.js';
export {
  usableUntil,
  usableAt,
  classifyStaple,
  type StapleHealth,
  type StapleUsability,
  type UsableFacts,
  type ClassifyOptions,
} from '../core/usability.js';
export {
  fetchResponse,
  MAX_GET_URL,
  type FetchOptions,
  type FetchResult,
  type MethodChoice,
} from '../pipeline/responder.js';
export { IssuerResolver, pickLeaf } from '../pipeline/issuer.js';
export type { Target, EngineContext, ProcessOptions, LoadedCert } from '../pipeline/context.js';
export { loadTargetCert, readStapleState } from '../pipeline/judge.js';
export { processTarget } from '../pipeline/process.js';
export { VerdictCache, type VerdictCacheOptions } from '../pipeline/verdict-cache.js';
export { SignatureVerifier, type SignatureVerifierOptions } from '../pipeline/signature-verifier.js';
export { PassMemo } from '../pipeline/pass-memo.js';
