// Types for responder.mjs (hand-written; `.d.mts` because NodeNext types `./responder.mjs` from it).
import type { ChildProcess } from 'node:child_process';
import type { Pki, SignerMode } from './pki.mjs';

export interface StartResponderOptions {
  pki: Pki;
  /** Default: the port of `pki.ocspUrl` when it is a loopback URL with a port, else any free port. */
  port?: number;
  /** Default `pki.signer`; or any certificate and key files (e.g. to test an unauthorised signer). */
  signer?: SignerMode | { cert: string; key: string };
  /** nextUpdate = thisUpdate + nmin minutes; default 4320 (3 days). */
  nmin?: number;
  /** Leave nextUpdate out of the responses. */
  noNextUpdate?: boolean;
  /** Copy the responder's output to this process's stderr. */
  log?: boolean;
  /** More `openssl ocsp` options, e.g. `['-badsig']`, `['-rcid', 'sha256']`, `['-resp_no_certs']`. */
  extraArgs?: string[];
}

export interface Responder {
  /** `http://127.0.0.1:PORT`, without a path (OpenSSL's GET handling needs the base64 right after the first `/`). */
  url: string;
  port: number;
  process: ChildProcess;
  /** Request lines received so far, e.g. `GET /MEQw... HTTP/1.1`; reload() pokes are left out. */
  requests: string[];
  /** What the responder printed so far (the last 256 KiB of stdout and stderr). */
  output(): string;
  /** Makes it answer from the current index.txt from the next request on (done for you by addLeaf/revokeLeaf). */
  reload(): Promise<void>;
  /** SIGTERM, SIGKILL after 2 s; resolves once the process has exited. Safe to call twice. */
  stop(): Promise<void>;
}

/** A port that was free on 127.0.0.1 a moment ago. */
export declare function freePort(): Promise<number>;

/** Starts `openssl ocsp` for the PKI and resolves once it is listening. */
export declare function startResponder(opts: StartResponderOptions): Promise<Responder>;
