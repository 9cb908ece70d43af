/**
 * Signature checks ahead of the rules, on one dedicated thread, in batches.
 *
 * A cold check of 10,000 ECDSA staples makes 20,000 signature checks of
 * ~50 µs each (the leaf's by its issuer, the response's by its signer).
 * Handed one by one to libuv's thread pool, they took the main thread's
 * core from it (four pool threads on two cores) and each cost the main
 * thread a callback. Here, the main thread packs the checks of a turn of the
 * event loop into one message to one worker thread, which verifies them with
 * node:crypto — the same call with the same parameters as the synchronous
 * rule — and answers with one byte per check. The answers are remembered
 * (in the thread's core/signature.ts `SignatureMemo`), so the synchronous rules that follow find them done.
 *
 * Nothing is decided here: a check of the same inputs gives the same answer
 * on either thread, and a check the thread did not answer (it could not
 * start, it died, the algorithm is not one it knows) is simply made by the
 * synchronous rule on the main thread.
 */
import type { KeyObject } from 'node:crypto';
import { debuglog } from 'node:util';
import { Worker } from 'node:worker_threads';
import { SignatureMemo, verifySignature, type VerifyParams } from '../core/signature.js';

/** The worker's code: verify each check of a batch, answer 1 (good), 0 (bad) or 2 (could not check). */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { verify } = require('node:crypto');
const keys = new Map();
parentPort.on('message', (m) => {
  for (const [id, key] of m.keys) keys.set(id, key);
  const bytes = Buffer.from(m.bytes);
  const jobs = m.jobs;
  const n = jobs.length / 7;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * 7;
    const key = keys.get(jobs[o]);
    if (key === undefined) { out[i] = 2; continue; }
    const options = { key };
    if (jobs[o + 2] >= 0) options.padding = jobs[o + 2];
    if (jobs[o + 3] >= 0) options.saltLength = jobs[o + 3];
    const hash = m.hashes[jobs[o + 1]];
    try {
      out[i] = verify(hash, bytes.subarray(jobs[o + 4], jobs[o + 5]), options, bytes.subarray(jobs[o + 5], jobs[o + 6])) ? 1 : 0;
    } catch {
      out[i] = 0;
    }
  }
  parentPort.postMessage({ id: m.id, out }, [out.buffer]);
});
`;

/**
 * Checks per message at most; a turn of the event loop sends what it has.
 * Small batches keep the thread busy while the main thread works through a
 * long synchronous stretch (measured: 16 beat 8, 64 and 256).
 */
const MAX_BATCH = 16;

/**
 * Checks per batch when the thread takes work from a backlog (after an
 * answer, or on an idle turn): nothing waits for them to fill, so fewer,
 * larger messages (measured: 64 beat 16, 32 and 128).
 */
const BACKLOG_BATCH = 64;

/** Batches sent and not answered at most: one being checked, one waiting, the rest stays here. */
const MAX_BATCHES_IN_FLIGHT = 2;

/** Checks the main thread makes itself per idle turn of the event loop while the thread has a backlog. */
const STEAL_PER_TURN = 4;

/** A thread without work for this long is stopped (a new one starts in ~30 ms when needed). */
const IDLE_MS = 5_000;

/** Checks waiting for the thread at most; beyond this a check is left to the main thread. */
const MAX_OUTSTANDING = 1024;

/**
 * `NODE_DEBUG=staplekeeper` shows the thread at work (one line per answered
 * batch) and why it stopped: the one way to see, from outside, that the
 * checks ran there and were not all left to the main thread.
 */
const debug = debuglog('staplekeeper');

interface Job {
  alg: Buffer;
  data: Buffer;
  signature: Buffer;
  key: KeyObject;
  params: VerifyParams;
  done: () => void;
}

/**
 * The check thread: one per signature verifier that asks for it
 * (pipeline/signature-verifier.ts); it remembers its answers in that
 * verifier's memo.
 */
export class CheckThread {
  /** Where answers are remembered (and looked up first). */
  readonly memo: SignatureMemo;
  private worker: Worker | undefined;
  private broken = false;
  /** Keys the current worker has been sent, by id (a new worker starts with none). */
  private keyIds = new WeakMap<KeyObject, number>();
  private nextKeyId = 1;
  private nextBatchId = 1;
  private readonly inFlight = new Map<number, Job[]>();
  private queue: Job[] = [];
  private turnScheduled = false;
  /** Checks queued or sent and not answered yet. */
  private outstanding = 0;
  /** Stops an idle thread, so that a daemon between passes holds no second isolate. */
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(memo: SignatureMemo = new SignatureMemo()) {
    this.memo = memo;
  }

  /** True while a worker thread exists. */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /** Resolves when the check's result is remembered, or when it will be left to the synchronous rule. */
  check(alg: Buffer, data: Buffer, signature: Buffer, key: KeyObject): Promise<void> {
    if (this.broken || this.memo.recall(key, alg, data, signature) !== undefined) return Promise.resolve();
    // far behind: the synchronous rule checks this one on the main thread
    if (this.outstanding >= MAX_OUTSTANDING) return Promise.resolve();
    let params: VerifyParams;
    try {
      params = this.memo.params(alg);
    } catch {
      return Promise.resolve(); // the synchronous rule reports the algorithm
    }
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    return new Promise<void>((done) => {
      this.outstanding++;
      this.queue.push({
        alg,
        data,
        signature,
        key,
        params,
        done: () => {
          this.outstanding--;
          done();
        },
      });
      if (this.queue.length >= MAX_BATCH && this.inFlight.size < MAX_BATCHES_IN_FLIGHT) this.flush();
      this.scheduleTurn();
    });
  }

  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(() => {
      this.turnScheduled = false;
      this.turn();
    });
  }

  /**
   * A turn of the event loop with nothing else to do: keep the thread fed
   * ({@link MAX_BATCHES_IN_FLIGHT} batches), and check a few of the checks it
   * has no room for here, so that the main thread does not wait idle while
   * the thread works through a backlog.
   */
  private turn(): void {
    this.pump();
    for (let i = 0; i < STEAL_PER_TURN && this.queue.length > 0; i++) {
      const j = this.queue.shift() as Job;
      try {
        verifySignature(j.alg, j.data, j.key, j.signature, this.memo); // remembers the result
      } catch {
        // an unusable algorithm or key: the synchronous rule reports it
      }
      j.done();
    }
    if (this.queue.length > 0) this.scheduleTurn();
  }

  /** Sends batches while the thread has room for them. */
  private pump(): void {
    while (this.inFlight.size < MAX_BATCHES_IN_FLIGHT && this.queue.length > 0 && !this.broken) {
      this.flush(BACKLOG_BATCH);
    }
  }

  /** Starts the worker now; it is stopped again if no work comes ({@link IDLE_MS}). */
  prestart(): void {
    if (this.start() !== undefined && this.inFlight.size === 0) {
      this.idleTimer ??= setTimeout(() => this.stopIdle(), IDLE_MS).unref();
    }
  }

  private start(): Worker | undefined {
    if (this.worker !== undefined || this.broken) return this.worker;
    try {
      const w = new Worker(WORKER_SOURCE, { eval: true, stdout: false, stderr: false });
      w.on('message', (m: { id: number; out: Uint8Array }) => this.answer(m.id, m.out));
      w.on('error', (e: Error) => {
        debug('check thread failed: %s', e.message);
        this.fail();
      });
      w.on('exit', (code: number) => {
        debug('check thread exited (%d)', code);
        this.fail();
      });
      w.unref();
      this.worker = w;
      this.keyIds = new WeakMap();
    } catch (e) {
      debug('check thread could not start: %s', e instanceof Error ? e.message : String(e));
      this.broken = true;
    }
    return this.worker;
  }

  /** Sends the oldest checks (at most {@link MAX_BATCH}) as one batch. */
  private flush(max = MAX_BATCH): void {
    if (this.queue.length === 0) return;
    const jobs = this.queue.splice(0, max);
    const w = this.start();
    if (w === undefined) {
      for (const j of jobs) j.done();
      return;
    }
    let size = 0;
    for (const j of jobs) size += j.data.length + j.signature.length;
    const bytes = new Uint8Array(size);
    const keys: Array<[number, KeyObject]> = [];
    // seven numbers per check: key id, hash (index into `hashes`), padding, salt length (-1: none), data start, data end / signature start, signature end
    const packed = new Int32Array(jobs.length * 7);
    const hashes: Array<string | null> = [];
    let at = 0;
    jobs.forEach((j, i) => {
      let id = this.keyIds.get(j.key);
      if (id === undefined) {
        id = this.nextKeyId++;
        this.keyIds.set(j.key, id);
        keys.push([id, j.key]);
      }
      let h = hashes.indexOf(j.params.hash);
      if (h < 0) h = hashes.push(j.params.hash) - 1;
      bytes.set(j.data, at);
      const dataEnd = at + j.data.length;
      bytes.set(j.signature, dataEnd);
      const sigEnd = dataEnd + j.signature.length;
      packed.set(
        [id, h, j.params.keyOptions.padding ?? -1, j.params.keyOptions.saltLength ?? -1, at, dataEnd, sigEnd],
        i * 7,
      );
      at = sigEnd;
    });
    const id = this.nextBatchId++;
    this.inFlight.set(id, jobs);
    if (this.inFlight.size === 1) w.ref();
    try {
      w.postMessage({ id, keys, hashes, jobs: packed, bytes: bytes.buffer }, [bytes.buffer, packed.buffer]);
    } catch {
      this.inFlight.delete(id);
      for (const j of jobs) j.done();
      this.fail();
    }
  }

  private answer(id: number, out: Uint8Array): void {
    const jobs = this.inFlight.get(id);
    if (jobs === undefined) return;
    debug('check thread answered %d checks', jobs.length);
    this.inFlight.delete(id);
    if (this.inFlight.size === 0) {
      this.worker?.unref();
      this.idleTimer ??= setTimeout(() => this.stopIdle(), IDLE_MS).unref();
    }
    jobs.forEach((j, i) => {
      const r = out[i];
      if (r === 0 || r === 1) this.memo.remember(j.key, j.alg, j.data, j.signature, r === 1);
      j.done();
    });
    this.pump();
  }

  private stopIdle(): void {
    this.idleTimer = undefined;
    const w = this.worker;
    if (w === undefined || this.inFlight.size > 0 || this.queue.length > 0) return;
    // not a failure: the next check starts a new thread
    this.worker = undefined;
    w.removeAllListeners('exit');
    w.removeAllListeners('error');
    w.on('error', () => undefined);
    void w.terminate();
  }

  /** Stops the thread; checks still waiting are left to the synchronous rule, later ones too. */
  async close(): Promise<void> {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    const w = this.worker;
    this.fail();
    if (w !== undefined) await w.terminate();
  }

  /** The thread is gone: every waiting check is left to the synchronous rule, and no new one is sent. */
  private fail(): void {
    this.broken = true;
    this.worker = undefined;
    for (const jobs of this.inFlight.values()) for (const j of jobs) j.done();
    this.inFlight.clear();
    for (const j of this.queue) j.done();
    this.queue = [];
  }
}
