/**
 * The signature verifier of an engine context: a memo of the signature
 * checks already made (core/signature.ts `SignatureMemo`) and, when asked,
 * the signature thread that makes checks ahead of the rules
 * (pipeline/signature-thread.ts).
 *
 * Contract: it never changes an answer. Every rule still calls
 * verifySignature; the memo only returns what the same check of the same
 * bytes under the same key returned before (here or on the thread), and a
 * check the thread did not answer is made on the main thread.
 *
 * Who has one: `run`, `check` and the drop-ins (the CLI creates one with the
 * thread, which starts at the first check, so a warm run all from the verdict
 * cache never starts it) and the daemon (one for its lifetime). A
 * library caller of processTarget or runOnce has none unless it passes one:
 * every signature is then checked where it is needed.
 */
import type { KeyObject } from 'node:crypto';
import { SignatureMemo } from '../core/signature.js';
import { CheckThread } from './signature-thread.js';

/** Options of a {@link SignatureVerifier}. */
export interface SignatureVerifierOptions {
  /** Run checks ahead on a worker thread (default false: the memo only). */
  thread?: boolean;
}

/** A signature memo, and optionally the thread that fills it ahead of need. */
export class SignatureVerifier {
  /** Checks made, by key and exact inputs; pass it to the core rules. */
  readonly memo: SignatureMemo;
  private readonly thread: CheckThread | undefined;

  constructor(options: SignatureVerifierOptions = {}) {
    this.memo = new SignatureMemo();
    this.thread = options.thread ? new CheckThread(this.memo) : undefined;
  }

  /** True when checks are made ahead on a thread. */
  get threaded(): boolean {
    return this.thread !== undefined;
  }

  /**
   * Makes a check ahead on the thread and remembers the result. Never
   * rejects; resolves once the result is remembered or left to the caller's
   * synchronous check (at once without a thread).
   */
  checkAhead(alg: Buffer, data: Buffer, signature: Buffer, key: KeyObject): Promise<void> {
    return this.thread ? this.thread.check(alg, data, signature, key) : Promise.resolve();
  }

  /** Stops the thread (checks still waiting are left to the synchronous rules). The memo stays usable. */
  async close(): Promise<void> {
    await this.thread?.close();
  }
}
