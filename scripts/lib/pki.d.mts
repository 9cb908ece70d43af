// Types for pki.mjs (hand-written: the implementation is plain JavaScript so that scripts can run
// it without a build). A `.d.mts`, because TypeScript's NodeNext resolution types `./pki.mjs` from
// `./pki.d.mts` only, never from `./pki.d.ts`.

export type KeyType = 'ec' | 'rsa';
export type LeafStatus = 'good' | 'revoked' | 'unknown';
export type SignerMode = 'delegated' | 'issuer';
/** Revocation reasons `openssl ocsp` understands in index.txt (certificateHold needs more, so is left out). */
export type RevocationReason =
  'unspecified' | 'keyCompromise' | 'CACompromise' | 'affiliationChanged' | 'superseded' | 'cessationOfOperation';

export interface LeafOptions {
  /** File-name stem and CN prefix (CN=<name>.test): letters, digits, `.`, `_`, `-`; not ca/responder/index/openssl. */
  name: string;
  /** Default 'good'. 'unknown': issued by the CA but absent from index.txt. */
  status?: LeafStatus;
  /** Validity in days, default 90; at least 1 (`openssl req` cannot backdate). */
  days?: number;
  /** Leave the OCSP URI out of the AIA extension. */
  noOcspUrl?: boolean;
  /** A CRL distribution point URI (crlDistributionPoints extension). */
  crlUrl?: string;
  /** Add the TLS Feature extension with status_request: must-staple (RFC 7633). */
  mustStaple?: boolean;
  /** A DNS name (default `<name>.test`), or a raw subjectAltName value such as `DNS:a.test,IP:127.0.0.1` when it contains a colon. */
  san?: string;
}

export interface CreatePkiOptions {
  /** Directory to fill; created if missing. */
  dir: string;
  /** 'ec' (P-256, default) or 'rsa' (2048 bits), for every key of the PKI. */
  keyType?: KeyType;
  /** OCSP URI put into the leaves' AIA extension. */
  ocspUrl: string;
  /** caIssuers URI put into the leaves' AIA extension (serve `pki.ca.der` there). */
  caIssuersUrl?: string;
  /** Who signs responses by default: 'delegated' (responder.crt, the default) or 'issuer' (ca.crt). */
  responder?: SignerMode;
  /** Validity of the delegated responder certificate in days, default 365. */
  responderDays?: number;
  /** Default: `good` (good), `revoked` (revoked), `unknown` (unknown). */
  leaves?: LeafOptions[];
}

export interface Leaf {
  name: string;
  /** Leaf certificate only (PEM). */
  cert: string;
  /** Leaf private key (PEM, unencrypted). */
  key: string;
  /** Leaf then CA (PEM). */
  bundle: string;
  /** CA only (PEM): the issuer. */
  chain: string;
  /** CA only (PEM): the root, which here is the issuer too. */
  rootchain: string;
  /** Serial number, uppercase hex, 32 digits. */
  serialHex: string;
  /** Subject as index.txt writes it, e.g. `/CN=good.test`. */
  subject: string;
  notAfter: Date;
  status: LeafStatus;
  /** When status is 'revoked' (whole seconds, as in the responses). */
  revokedAt?: Date;
  /** When status is 'revoked'. */
  revocationReason?: RevocationReason;
}

export interface Pki {
  dir: string;
  keyType: KeyType;
  /** The self-signed root that issues the leaves; `der` is the certificate in DER (for caIssuers). */
  ca: { cert: string; key: string; der: string; subject: string };
  /** The delegated responder certificate (OCSPSigning), always minted. */
  responder: { cert: string; key: string; subject: string };
  /** Default signer for startResponder(). */
  signer: SignerMode;
  /** index.txt, rendered from `leaves` on every change; do not edit it by hand. */
  index: string;
  leaves: Record<string, Leaf>;
  ocspUrl: string;
  caIssuersUrl?: string;
}

/** Mints CA, delegated responder and leaves into `opts.dir` and writes index.txt. */
export declare function createPki(opts: CreatePkiOptions): Promise<Pki>;

/** Mints one more leaf and updates index.txt; running responders on this PKI reload it before this resolves. */
export declare function addLeaf(pki: Pki, leafOpts: LeafOptions): Promise<Leaf>;

/**
 * Marks a leaf revoked (an 'unknown' one too) and updates index.txt; running responders on this
 * PKI reload it before this resolves. A second revocation changes nothing.
 * Defaults: reason keyCompromise, time now.
 */
export declare function revokeLeaf(
  pki: Pki,
  name: string,
  opts?: { reason?: RevocationReason; time?: Date },
): Promise<Leaf>;

/**
 * Issues a CRL with `openssl ca -gencrl` from index.txt (every revoked leaf listed), signed by the
 * CA; DER when `out` ends in `.crl`/`.der`, else PEM. nextUpdate: `hours` (default 24) from now.
 */
export declare function genCrl(pki: Pki, opts: { out: string; hours?: number; crlNumber?: number }): Promise<string>;

/** Runs (and awaits) `listener` after every rewrite of `pki.index`. Returns the unregister function. */
export declare function onIndexChange(pki: Pki, listener: () => Promise<void>): () => void;
