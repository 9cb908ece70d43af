/**
 * The name of a certificate in the fleet: what names it on the wire, its
 * CertID (RFC 6960 §4.1.1), never a local path. One hash algorithm is used
 * for every key, SHA-256, whatever CertID hash a node sends to its
 * responder, so every node computes the same key for the same certificate.
 */
import type { Certificate } from '../core/certs.js';
import { computeCertId } from '../core/certid.js';
import type { FleetKey } from './contract.js';

/** `sha256:<issuerNameHash>:<issuerKeyHash>:<serial>`, all lower-case hex. */
export function fleetKeyOf(cert: Certificate, issuer: Certificate): FleetKey {
  const id = computeCertId(cert, issuer, 'sha256');
  return `sha256:${id.issuerNameHash.toString('hex')}:${id.issuerKeyHash.toString('hex')}:${id.serial.toString('hex')}`;
}

/** True when `text` has the shape of a {@link FleetKey} (publications carry one). */
export function isFleetKey(text: string): boolean {
  return /^sha256:[0-9a-f]{64}:[0-9a-f]{64}:[0-9a-f]{1,80}$/.test(text);
}
