/**
 * Fleet mode (docs/fleet.md): several staplekeeper nodes with the same
 * certificates fetch each staple once and share it through Redis. The
 * pipeline sees only the contract of fleet/contract.ts; ioredis is loaded
 * only when a configuration has a `fleet:` section.
 */
import type { FleetSettings } from '../config/types.js';
import type { Fleet } from './contract.js';

export type {
  Fleet,
  FleetHealth,
  FleetKey,
  FleetLookup,
  FleetStaple,
  Lease,
  StapleOutput,
  StapleSource,
} from './contract.js';
export { fleetKeyOf } from './key.js';
export { fleetTurn, type TurnInput, type TurnResult, type Verdict } from './turn.js';

/** Options of {@link openFleet}. */
export interface OpenFleetOptions {
  /** The HTTP timeout of the settings: a node waits about twice this for another's publication. */
  httpTimeoutMs: number;
  /** Overrides the wait (ms). */
  waitMs?: number;
  /** Overrides the lease lifetime (ms). */
  leaseMs?: number;
  /** How long to wait for the first connection (ms, default 2 s). */
  connectWaitMs?: number;
  onHealth?: (up: boolean, detail: string) => void;
}

/**
 * How long a node waits for the publication of the node holding the lease
 * before fetching itself: two whole exchanges plus 5 s (25 s with the default
 * 10 s timeout). Bounded, so a slow or stuck node delays the others by at
 * most this once.
 */
export function fleetWaitMs(httpTimeoutMs: number): number {
  return 2 * httpTimeoutMs + 5_000;
}

/** Connects to the fleet of `settings` (never fails: a store that is down makes a fleet that says so). */
export async function openFleet(settings: FleetSettings, options: OpenFleetOptions): Promise<Fleet> {
  const { createRedisFleet } = await import('./redis.js');
  const env = process.env;
  // tests and the benchmark shorten the bounds; operators have no reason to
  const waitMs = options.waitMs ?? numberFrom(env.STAPLEKEEPER_FLEET_WAIT_MS) ?? fleetWaitMs(options.httpTimeoutMs);
  const leaseMs = options.leaseMs ?? numberFrom(env.STAPLEKEEPER_FLEET_LEASE_MS);
  return await createRedisFleet(settings, {
    waitMs,
    ...(leaseMs !== undefined ? { leaseMs } : {}),
    ...(options.connectWaitMs !== undefined ? { connectWaitMs: options.connectWaitMs } : {}),
    ...(options.onHealth ? { onHealth: options.onHealth } : {}),
  });
}

function numberFrom(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  return Number(text);
}
