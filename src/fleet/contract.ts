/**
 * The contract between the staple pipeline (pipeline/process.ts) and a fleet:
 * a shared store through which several staplekeeper nodes with the same
 * certificates fetch each staple once (docs/fleet.md).
 *
 * The pipeline sees two small roles:
 *
 * - a {@link StapleSource}, asked *before* the responder: "do you hold a
 *   staple for this certificate?" and "may I fetch it, or is someone else
 *   fetching it already?";
 * - a {@link StapleOutput}, told *after* a fetch: "here is a staple I
 *   fetched and verified".
 *
 * Rules every implementation keeps:
 *
 * 1. Nothing it returns is trusted. A staple from the fleet is only bytes: the
 *    pipeline verifies it with every rule it applies to a response from a
 *    responder (RFC 6960 §3.2 and §4.2.2), for the certificate and issuer it has on
 *    disk, and takes it only when it is better than the staple on disk.
 * 2. No method throws and none blocks longer than its stated bound. When the
 *    store cannot be reached the answer says so (`'down'`, undefined) at once,
 *    and the pipeline carries on as if there were no fleet (a node with
 *    `fetch: true` fetches directly; one with `fetch: false` keeps its staple).
 * 3. A certificate is named by its {@link FleetKey}, derived from its CertID
 *    (fleet/key.ts), never from a local path: servers with different folder
 *    layouts share one entry.
 * 4. A publication never replaces a staple with an older one (compare-and-set
 *    on thisUpdate in the store), so a node whose lease expired while it
 *    worked cannot undo a newer staple.
 */

/** A certificate's name in the fleet: `sha256:<issuerNameHash>:<issuerKeyHash>:<serial>` in hex. */
export type FleetKey = string;

/** A staple as the fleet holds it. Untrusted until verified by the pipeline. */
export interface FleetStaple {
  /** The DER OCSPResponse. */
  der: Buffer;
  /** thisUpdate / nextUpdate as published (ms since the epoch); informative only. */
  thisUpdate: number;
  nextUpdate: number;
  status: string;
  /** The node that fetched it (host name and PID) and when (ms since the epoch). */
  fetchedBy: string;
  fetchedAt: number;
  /** The raw stored thisUpdate field, for compare-and-set when this entry proves unusable. */
  storedThisUpdate: string;
}

/** What the fleet holds for a key: a staple, nothing, something unreadable, or "cannot tell" (down). */
export type FleetLookup =
  | { kind: 'staple'; staple: FleetStaple }
  | { kind: 'none' }
  | { kind: 'garbage'; detail: string; storedThisUpdate: string }
  | { kind: 'down' };

/** The right to fetch one certificate's staple for the whole fleet, for a while. */
export interface Lease {
  readonly key: FleetKey;
  /** The random token that proves this node holds it. */
  readonly token: string;
  /** Gives it up (only if still ours). Never throws. */
  release(): Promise<void>;
}

/** Asked before the responder. */
export interface StapleSource {
  /** What the fleet holds for `key` (bounded by the command timeout). */
  lookup(key: FleetKey): Promise<FleetLookup>;
  /**
   * Takes the lease on `key` (renewed in the background until released):
   * a {@link Lease}, `'busy'` when another node holds it, `'down'` when the
   * store cannot be reached.
   */
  lease(key: FleetKey): Promise<Lease | 'busy' | 'down'>;
  /**
   * Waits for a publication on `key` for at most `ms`. Resolves `'published'`
   * when one arrived (look it up), `'free'` when the lease on it vanished
   * without one (its holder died: try to take it), `'timeout'`, or `'down'`.
   */
  waitFor(key: FleetKey, ms: number): Promise<'published' | 'free' | 'timeout' | 'down'>;
  /** Whether another node holds the lease on `key` right now (`'down'` when unknown). */
  leaseHeld(key: FleetKey): Promise<boolean | 'down'>;
}

/** The facts published with a staple. */
export interface PublishedFacts {
  thisUpdate: Date;
  nextUpdate: Date;
  status: string;
}

/** Told after a fetch. */
export interface StapleOutput {
  /**
   * Publishes a verified staple: stored unless the fleet holds a newer one
   * (or `replaceStored` names the stored thisUpdate of an entry this node
   * found unusable), expiring at nextUpdate, and announced to every
   * subscriber. Releases `lease` when given. Never throws.
   */
  publish(
    key: FleetKey,
    der: Buffer,
    facts: PublishedFacts,
    lease: Lease | undefined,
    replaceStored?: string,
  ): Promise<'published' | 'kept-newer' | 'down'>;
}

/** How the fleet is doing, for logs, `/status`, `/metrics` and `check`. */
export interface FleetHealth {
  /** The store answers. */
  up: boolean;
  /** The store's address, without any password. */
  redis: string;
  prefix: string;
  /** This node fetches from responders itself (fleet.fetch). */
  fetch: boolean;
  /** Since when `up` has its current value (ISO). */
  since: string;
  lastError: string | null;
  /** Staples taken from the fleet instead of a responder. */
  hits: number;
  /** Staples this node fetched from a responder and published. */
  published: number;
  /** Fetches made directly because the fleet was down or silent. */
  direct: number;
}

/** What the pipeline and the daemon hold: both roles, health, subscriptions. */
export interface Fleet extends StapleSource, StapleOutput {
  /** fleet.fetch: false means this node never contacts a responder. */
  readonly fetch: boolean;
  /** How long a node waits for another's publication before fetching itself (ms). */
  readonly waitMs: number;
  health(): FleetHealth;
  /** Counts an event for {@link FleetHealth}. */
  count(what: 'hits' | 'published' | 'direct'): void;
  /** Records that `targetId` is the certificate `key`, so publications on `key` reach it. */
  manage(key: FleetKey, targetId: string): void;
  /**
   * Calls `onStaple` with the target ids managed under a key when a staple
   * is published on it, and `onReconnect` when the store answers again after
   * being down (time to reconcile). Returns the unsubscribe function.
   */
  subscribe(listener: { onStaple(ids: string[]): void; onReconnect(): void; onDown(error: string): void }): () => void;
  close(): Promise<void>;
}
