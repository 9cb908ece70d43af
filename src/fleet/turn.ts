/**
 * The fleet's turn in the pipeline: what a node does for one certificate
 * before (and instead of) asking the responder. pipeline/process.ts calls
 * {@link fleetTurn} at one point and acts on its answer; everything about
 * leases, waiting and fallbacks lives here, behind the {@link Fleet}
 * contract (fleet/contract.ts).
 *
 * For a staple that is due:
 * 1. Look in the fleet. A staple there that verifies here, is better than the
 *    one on disk and is not itself due is taken: no request.
 * 2. Otherwise take the lease and fetch (the pipeline publishes afterwards).
 *    Right after getting the lease the fleet is looked at once more: a node
 *    that published and released just before is not fetched again.
 * 3. When another node holds the lease: `run` waits here for its publication
 *    (`wait: 'block'`); the daemon returns `pending` and hears the
 *    publication through its subscription (`wait: 'defer'`). A lease that
 *    vanishes without a publication (its holder died) is taken over; after
 *    `fleet.waitMs` without a publication the node fetches by itself.
 * 4. When the store is down, a `fetch: true` node fetches directly; a
 *    `fetch: false` node keeps its staple and says so.
 *
 * For a staple that is not due, only with `apply` (a publication arrived,
 * the daemon's start and sweep): take a better staple from the fleet.
 */
import type { Fleet, FleetKey, FleetStaple, Lease } from './contract.js';

/** What the pipeline's verification says about a candidate from the fleet. */
export type Verdict<T> =
  | { ok: true; value: T }
  /** `unusable`: it does not verify (garbage, another certificate's); else valid but not better or itself due. */
  | { ok: false; unusable: boolean; reason: string };

/** Input of {@link fleetTurn}. */
export interface TurnInput<T> {
  fleet: Fleet;
  key: FleetKey;
  targetId: string;
  /** The policy says renew. */
  due: boolean;
  /** Renew regardless (run --force, SIGUSR2): the fleet is not asked first, the lease still is. */
  force: boolean;
  /** Also take a better staple when not due. */
  apply: boolean;
  wait: 'block' | 'defer';
  /** Verifies candidate bytes here: good, valid now, better than the staple on disk; when `due`, not itself due. */
  accept(der: Buffer, due: boolean): Promise<Verdict<T>>;
  notice(message: string): void;
  now(): number;
}

/** What the pipeline does next. */
export type TurnResult<T> =
  /** Write `value` (from the fleet) locally: no request. */
  | { kind: 'take'; value: T; from: FleetStaple }
  /** Fetch from the responder; publish afterwards (under `lease` when there is one). */
  | { kind: 'fetch'; lease?: Lease; replaceStored?: string; direct?: string }
  /** Another node is fetching; look again at `retryAt` (ms) unless its publication arrives first. */
  | { kind: 'pending'; retryAt: number; reason: string }
  /** fetch: false and nothing usable: keep the staple on disk. */
  | { kind: 'keep'; code: 'FLEET_UNAVAILABLE' | 'FLEET_NO_STAPLE'; message: string }
  /** Nothing to do (not due, nothing better in the fleet). */
  | { kind: 'none' };

/** Since when each deferred certificate has been waiting for another node (per fleet). */
const waiting = new WeakMap<Fleet, Map<FleetKey, number>>();

function waitingSince(fleet: Fleet): Map<FleetKey, number> {
  let m = waiting.get(fleet);
  if (!m) waiting.set(fleet, (m = new Map()));
  return m;
}

/** The fleet's answer for one certificate (see the module comment). Never throws. */
export async function fleetTurn<T>(input: TurnInput<T>): Promise<TurnResult<T>> {
  const { fleet, key } = input;
  fleet.manage(key, input.targetId);
  let replaceStored: string | undefined;

  /** Looks in the fleet: a staple to take, or notes why not. */
  const look = async (due: boolean): Promise<TurnResult<T> | 'down' | undefined> => {
    const found = await fleet.lookup(key);
    if (found.kind === 'down') return 'down';
    if (found.kind === 'garbage') {
      input.notice(`the fleet's entry for this certificate is unusable (${found.detail}); it will be replaced`);
      replaceStored = found.storedThisUpdate;
      return undefined;
    }
    if (found.kind === 'none') return undefined;
    const verdict = await input.accept(found.staple.der, due);
    if (verdict.ok) {
      fleet.count('hits');
      return { kind: 'take', value: verdict.value, from: found.staple };
    }
    if (verdict.unusable) {
      input.notice(
        `the fleet's staple for this certificate is not usable here (${verdict.reason}); it will be replaced`,
      );
      replaceStored = found.staple.storedThisUpdate;
    } else if (due) {
      input.notice(`the fleet's staple is not better: ${verdict.reason}`);
    }
    return undefined;
  };

  if (!input.due) {
    if (!input.apply) return { kind: 'none' };
    const r = await look(false);
    return r === 'down' || r === undefined ? { kind: 'none' } : r;
  }

  const downMessage = (): string =>
    `the fleet (${fleet.health().redis}) cannot be reached${fleet.health().lastError ? `: ${fleet.health().lastError}` : ''}`;
  const direct = (why: string): TurnResult<T> => {
    waitingSince(fleet).delete(key);
    fleet.count('direct');
    input.notice(`${why}; fetching directly`);
    return { kind: 'fetch', direct: why, ...(replaceStored !== undefined ? { replaceStored } : {}) };
  };
  const keep = (code: 'FLEET_UNAVAILABLE' | 'FLEET_NO_STAPLE', message: string): TurnResult<T> => ({
    kind: 'keep',
    code,
    message,
  });

  if (!input.force) {
    const r = await look(true);
    if (r === 'down') {
      if (!fleet.fetch)
        return keep('FLEET_UNAVAILABLE', `${downMessage()}; fetch is false: the staple on disk is kept`);
      return direct(downMessage());
    }
    if (r !== undefined) {
      waitingSince(fleet).delete(key);
      return r;
    }
  }

  const deadline = input.now() + fleet.waitMs;
  for (;;) {
    if (!fleet.fetch) {
      const held = await fleet.leaseHeld(key);
      if (held === 'down')
        return keep('FLEET_UNAVAILABLE', `${downMessage()}; fetch is false: the staple on disk is kept`);
      if (!held) {
        return keep(
          'FLEET_NO_STAPLE',
          'the fleet holds no usable staple for this certificate and no node is fetching one; fetch is false: the staple on disk is kept',
        );
      }
    } else {
      const lease = await fleet.lease(key);
      if (lease === 'down') return direct(downMessage());
      if (lease !== 'busy') {
        // a node may have published and released just before: do not fetch again
        if (!input.force) {
          const r = await look(true);
          if (r !== undefined && r !== 'down') {
            await lease.release();
            waitingSince(fleet).delete(key);
            return r;
          }
        }
        waitingSince(fleet).delete(key);
        return { kind: 'fetch', lease, ...(replaceStored !== undefined ? { replaceStored } : {}) };
      }
    }
    // another node holds the lease
    if (input.wait === 'defer') {
      const since = waitingSince(fleet);
      const first = since.get(key) ?? input.now();
      since.set(key, first);
      if (fleet.fetch && input.now() - first >= fleet.waitMs) {
        return direct(
          `no publication from the node fetching this certificate within ${Math.round(fleet.waitMs / 1000)} s`,
        );
      }
      return {
        kind: 'pending',
        retryAt: first + fleet.waitMs,
        reason: 'another node is fetching this staple; waiting for its publication',
      };
    }
    const left = deadline - input.now();
    if (left <= 0) {
      if (!fleet.fetch) {
        return keep(
          'FLEET_NO_STAPLE',
          `no publication within ${Math.round(fleet.waitMs / 1000)} s; fetch is false: the staple on disk is kept`,
        );
      }
      return direct(
        `no publication from the node fetching this certificate within ${Math.round(fleet.waitMs / 1000)} s`,
      );
    }
    const woke = await fleet.waitFor(key, left);
    if (woke === 'down') {
      if (!fleet.fetch)
        return keep('FLEET_UNAVAILABLE', `${downMessage()}; fetch is false: the staple on disk is kept`);
      return direct(downMessage());
    }
    if (woke === 'published' || woke === 'free') {
      const r = await look(true);
      if (r !== undefined && r !== 'down') return r;
    }
    // 'free' (its holder died) or a publication that was not better: try again (take the lease)
  }
}
