/**
 * fleet/turn.ts, the decisions before the responder, against an in-memory
 * fleet (the Redis store itself is tested in test/integration/fleet-redis.test.ts):
 * take a better staple, fetch under the lease, look again after getting it,
 * defer to the holder and fall back after the wait bound, block and take
 * over a vanished lease, a store that is down, fetch: false.
 */
import { describe, expect, it } from 'vitest';
import type { Fleet, FleetLookup, Lease } from '../../src/fleet/contract.js';
import { fleetTurn, type TurnInput, type Verdict } from '../../src/fleet/turn.js';

interface FakeState {
  entry: FleetLookup;
  leaseHolder: string | undefined;
  up: boolean;
  fetch: boolean;
  waitMs: number;
  /** What waitFor answers, in order. */
  wakes: Array<'published' | 'free' | 'timeout' | 'down'>;
  /** Applied to the state when waitFor answers. */
  onWake?: (s: FakeState) => void;
  leases: number;
}

function fake(state: Partial<FakeState> = {}): { fleet: Fleet; s: FakeState } {
  const s: FakeState = {
    entry: { kind: 'none' },
    leaseHolder: undefined,
    up: true,
    fetch: true,
    waitMs: 10_000,
    wakes: [],
    leases: 0,
    ...state,
  };
  const fleet: Fleet = {
    get fetch() {
      return s.fetch;
    },
    get waitMs() {
      return s.waitMs;
    },
    async lookup() {
      return s.up ? s.entry : { kind: 'down' };
    },
    async lease(key) {
      if (!s.up) return 'down';
      if (s.leaseHolder !== undefined) return 'busy';
      s.leaseHolder = 'me';
      s.leases++;
      const l: Lease = {
        key,
        token: 'me',
        release: async () => {
          if (s.leaseHolder === 'me') s.leaseHolder = undefined;
        },
      };
      return l;
    },
    async leaseHeld() {
      return s.up ? s.leaseHolder !== undefined : 'down';
    },
    async waitFor() {
      const w = s.wakes.shift() ?? 'timeout';
      s.onWake?.(s);
      return w;
    },
    async publish() {
      return 'published';
    },
    health: () => ({
      up: s.up,
      redis: 'redis://r/0',
      prefix: 'p:',
      fetch: s.fetch,
      since: '',
      lastError: s.up ? null : 'ECONNREFUSED',
      hits: 0,
      published: 0,
      direct: 0,
    }),
    count: () => undefined,
    manage: () => undefined,
    subscribe: () => () => undefined,
    close: async () => undefined,
  };
  return { fleet, s };
}

const staple = (der: string): FleetLookup => ({
  kind: 'staple',
  staple: {
    der: Buffer.from(der),
    thisUpdate: 1,
    nextUpdate: 2,
    status: 'good',
    fetchedBy: 'web1/42',
    fetchedAt: 3,
    storedThisUpdate: '1',
  },
});

/** Accepts candidates whose bytes are "good"; "old" is valid but not better; anything else does not verify. */
const accept = async (der: Buffer): Promise<Verdict<string>> => {
  const t = der.toString();
  if (t === 'good') return { ok: true, value: t };
  if (t === 'old') return { ok: false, unusable: false, reason: 'not newer' };
  return { ok: false, unusable: true, reason: 'OCSP_MALFORMED' };
};

function input(fleet: Fleet, over: Partial<TurnInput<string>> = {}, clock = { t: 0 }): TurnInput<string> {
  return {
    fleet,
    key: 'k',
    targetId: 'a',
    due: true,
    force: false,
    apply: false,
    wait: 'block',
    accept,
    notice: () => undefined,
    now: () => clock.t,
    ...over,
  };
}

describe('fleetTurn', () => {
  it('takes a better staple from the fleet: no lease, no fetch', async () => {
    const { fleet, s } = fake({ entry: staple('good') });
    const r = await fleetTurn(input(fleet));
    expect(r.kind).toBe('take');
    expect(s.leases).toBe(0);
  });

  it('fetches under the lease when the fleet has nothing better, naming an unusable entry to replace', async () => {
    const { fleet } = fake({ entry: staple('garbage') });
    const r = await fleetTurn(input(fleet));
    expect(r).toMatchObject({ kind: 'fetch', replaceStored: '1' });
    expect(r.kind === 'fetch' && r.lease?.token).toBe('me');
  });

  it('looks again right after getting the lease, and gives it back when another node just published', async () => {
    const { fleet, s } = fake();
    let looks = 0;
    const lookup = fleet.lookup.bind(fleet);
    fleet.lookup = async (k) => (++looks === 2 ? staple('good') : lookup(k));
    const r = await fleetTurn(input(fleet));
    expect(r.kind).toBe('take');
    expect(s.leaseHolder).toBeUndefined();
  });

  it('a forced renewal skips the fleet and fetches under the lease', async () => {
    const { fleet } = fake({ entry: staple('good') });
    expect((await fleetTurn(input(fleet, { force: true }))).kind).toBe('fetch');
  });

  it('not due: nothing, unless asked to apply a better staple', async () => {
    const { fleet } = fake({ entry: staple('good') });
    expect((await fleetTurn(input(fleet, { due: false }))).kind).toBe('none');
    expect((await fleetTurn(input(fleet, { due: false, apply: true }))).kind).toBe('take');
    const { fleet: older } = fake({ entry: staple('old') });
    expect((await fleetTurn(input(older, { due: false, apply: true }))).kind).toBe('none');
  });

  it('defer: another holder makes it pending until the wait bound, then it fetches directly', async () => {
    const { fleet } = fake({ leaseHolder: 'other', waitMs: 1_000 });
    const clock = { t: 5_000 };
    const first = await fleetTurn(input(fleet, { wait: 'defer' }, clock));
    expect(first).toMatchObject({ kind: 'pending', retryAt: 6_000 });
    clock.t = 5_500;
    expect((await fleetTurn(input(fleet, { wait: 'defer' }, clock))).kind).toBe('pending');
    clock.t = 6_000;
    const late = await fleetTurn(input(fleet, { wait: 'defer' }, clock));
    expect(late).toMatchObject({ kind: 'fetch' });
    expect(late.kind === 'fetch' && late.direct).toMatch(/no publication .* within 1 s/);
  });

  it('block: waits for the publication and takes it', async () => {
    const { fleet, s } = fake({ leaseHolder: 'other', wakes: ['published'] });
    s.onWake = (st) => {
      st.entry = staple('good');
      st.leaseHolder = undefined;
    };
    expect((await fleetTurn(input(fleet))).kind).toBe('take');
  });

  it('block: a lease that vanishes without a publication is taken over', async () => {
    const { fleet, s } = fake({ leaseHolder: 'dead', wakes: ['free'] });
    s.onWake = (st) => (st.leaseHolder = undefined);
    const r = await fleetTurn(input(fleet));
    expect(r.kind).toBe('fetch');
    expect(r.kind === 'fetch' && r.lease).toBeTruthy();
  });

  it('block: after the wait bound it fetches directly', async () => {
    const clock = { t: 0 };
    const { fleet, s } = fake({ leaseHolder: 'slow', wakes: ['timeout'], waitMs: 1_000 });
    s.onWake = () => (clock.t = 1_000);
    const r = await fleetTurn(input(fleet, {}, clock));
    expect(r).toMatchObject({ kind: 'fetch' });
    expect(r.kind === 'fetch' && r.lease).toBeFalsy();
  });

  it('the store down: fetch: true fetches directly; fetch: false keeps its staple (FLEET_UNAVAILABLE)', async () => {
    const { fleet } = fake({ up: false });
    const r = await fleetTurn(input(fleet));
    expect(r.kind === 'fetch' && r.direct).toMatch(/the fleet \(redis:\/\/r\/0\) cannot be reached: ECONNREFUSED/);
    const { fleet: reader } = fake({ up: false, fetch: false });
    expect(await fleetTurn(input(reader))).toMatchObject({ kind: 'keep', code: 'FLEET_UNAVAILABLE' });
  });

  it('fetch: false: nothing in the fleet and nobody fetching is FLEET_NO_STAPLE; a holder is waited for', async () => {
    const { fleet } = fake({ fetch: false });
    expect(await fleetTurn(input(fleet))).toMatchObject({ kind: 'keep', code: 'FLEET_NO_STAPLE' });
    const { fleet: waiting } = fake({ fetch: false, leaseHolder: 'other' });
    expect((await fleetTurn(input(waiting, { wait: 'defer' }))).kind).toBe('pending');
  });
});
