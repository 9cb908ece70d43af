/**
 * What the daemon's attempts run on: the HTTP transport of the running
 * configuration and the engine context (pipeline/context.ts) built from it
 * with the daemon's own caches, which live as long as the daemon: the
 * verdict cache beside the staples (none for a caller's own store), the
 * signature verifier with its thread, and the pass memo dropped whenever the
 * daemon goes idle. A reload builds a new context, and a new transport for a
 * new configuration; the old transport is closed once no batch uses it.
 */
import { contextFor, crlWatchFor, transportFor } from '../batch/run.js';
import type { LoadedConfig } from '../config/types.js';
import type { Fleet } from '../fleet/contract.js';
import type { HttpTransport } from '../io/http.js';
import type { StapleStore } from '../io/store.js';
import type { EngineContext } from '../pipeline/context.js';
import { PassMemo } from '../pipeline/pass-memo.js';
import { SignatureVerifier } from '../pipeline/signature-verifier.js';
import { VerdictCache } from '../pipeline/verdict-cache.js';
import type { DaemonLogger } from './entry-state.js';

/** Options of a {@link DaemonEngine}. */
export interface DaemonEngineOptions {
  /** A transport to use instead of the configuration's (tests); never closed here. */
  transport?: HttpTransport | undefined;
  store: StapleStore;
  /** The caller passed its own store: no verdict cache file beside its staples. */
  ownStore: boolean;
  env: NodeJS.ProcessEnv;
  now: () => Date;
  log: DaemonLogger;
}

export class DaemonEngine {
  private current: HttpTransport | undefined;
  private retired: HttpTransport[] = [];
  private context: EngineContext | undefined;
  private crlInterval: number | undefined;
  /** The verdict cache beside the staples (none for a caller's own store): written when idle and at stop. */
  private readonly verdicts: VerdictCache | undefined;
  /** Signature checks remembered and made ahead on a thread, for the daemon's lifetime. */
  private readonly signatures = new SignatureVerifier({ thread: true });
  /** What a burst of work shares; dropped when the daemon goes idle (pipeline/pass-memo.ts). */
  private readonly pass: PassMemo;

  constructor(private readonly o: DaemonEngineOptions) {
    this.verdicts = o.ownStore ? undefined : new VerdictCache({ env: o.env });
    this.pass = new PassMemo({ onIdle: () => this.verdicts?.flush() });
  }

  /** The transport of the running configuration. */
  get transport(): HttpTransport {
    if (!this.current) throw new Error('DaemonEngine: use() was not called');
    return this.current;
  }

  /** The engine context of the running configuration. */
  get ctx(): EngineContext {
    if (!this.context) throw new Error('DaemonEngine: use() was not called');
    return this.context;
  }

  /** How often a `crl` certificate's CRL is looked at again; undefined while CRL watch is off. */
  get crlIntervalMs(): number | undefined {
    return this.crlInterval;
  }

  /**
   * Builds the context for `config` (and `fleet`). `fresh`: a configuration
   * other than the running one, which gets its own transport.
   */
  use(config: LoadedConfig, fleet: Fleet | undefined, fresh: boolean): void {
    if (this.o.transport) this.current = this.o.transport;
    else if (!this.current || fresh) {
      if (this.current) this.retired.push(this.current);
      this.current = transportFor(config);
    }
    const now = this.o.now;
    const ctx = contextFor(config, this.current, this.o.store, now);
    // CRL watch is on in the daemon unless `crl.watch: false`; each CRL is looked at again every crl.interval
    this.crlInterval = undefined;
    if (config.settings.crl.watch !== false) {
      ctx.crl = crlWatchFor(config, this.current, this.o.store, now, (m) => this.o.log({ level: 'warn', msg: m }));
      this.crlInterval = config.settings.crl.intervalMs;
    }
    ctx.signatures = this.signatures;
    ctx.pass = this.pass;
    if (this.verdicts) ctx.verdicts = this.verdicts;
    if (fleet) {
      ctx.fleet = fleet;
      ctx.fleetWait = 'defer';
    }
    this.context = ctx;
  }

  /** Closes the transports a reload replaced (call when no batch is running). */
  closeRetired(): void {
    const old = this.retired;
    this.retired = [];
    for (const t of old) void t.close().catch(() => undefined);
  }

  /** At stop, once the work is done: writes the verdict cache and stops the signature thread. */
  async finish(): Promise<void> {
    this.verdicts?.flush();
    await this.signatures.close();
  }

  /** At stop, last: closes every transport the engine opened. */
  async closeTransports(): Promise<void> {
    const own = [...this.retired, ...(this.current && !this.o.transport ? [this.current] : [])];
    this.retired = [];
    await Promise.all(own.map((t) => t.close()));
  }
}
