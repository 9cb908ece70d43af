/**
 * The daemon's link to the fleet of `fleet:` (src/fleet, docs/fleet.md):
 * opened at start and again by a reload that changes the section, closed at
 * stop. A store that is down is logged, never fatal. While open it listens:
 * a publication for certificates this daemon manages asks for them at once
 * (to take the staple), and a reconnection after the store was down asks for
 * every certificate (publications missed meanwhile).
 */
import type { Settings } from '../config/types.js';
import type { Fleet } from '../fleet/contract.js';
import type { DaemonLogger } from './entry-state.js';

/** What the link asks of the daemon. */
export interface FleetLinkHooks {
  /** The fleet has staples for these certificates. */
  onStaple(ids: readonly string[]): void;
  /** The store answers again: reconcile every certificate. */
  onReconnect(): void;
}

export class FleetLink {
  private fleet: Fleet | undefined;
  /** The `fleet:` section the open fleet was made from. */
  private key: string | undefined;
  private unsubscribe: (() => void) | undefined;

  /** `given`: a fleet to use instead of opening one (tests); it is never closed here. */
  constructor(
    private readonly log: DaemonLogger,
    private readonly hooks: FleetLinkHooks,
    private readonly given?: Fleet,
  ) {}

  /** The open fleet, if any. */
  get current(): Fleet | undefined {
    return this.fleet;
  }

  /** Opens, replaces or closes the fleet so that it follows `settings.fleet`; unchanged settings keep it. */
  async follow(settings: Settings): Promise<void> {
    const section = settings.fleet;
    const key = section ? JSON.stringify(section) : undefined;
    if (key === this.key && (this.fleet !== undefined || key === undefined)) return;
    await this.close();
    this.key = key;
    if (!section) return;
    const degraded = (redis: string, detail: string): string =>
      `fleet degraded: ${redis} cannot be reached (${detail}); ${section.fetch ? 'fetching directly after a bounded wait' : 'fetch is false: keeping the staples on disk'}`;
    let fleet = this.given;
    if (!fleet) {
      const { openFleet } = await import('../fleet/index.js');
      fleet = await openFleet(section, {
        httpTimeoutMs: settings.http.timeoutMs,
        onHealth: (up, detail) => {
          const redis = fleet?.health().redis ?? 'Redis';
          if (up) this.log({ level: 'info', msg: `fleet: ${redis} answers again` });
          else this.log({ level: 'warn', code: 'FLEET_UNAVAILABLE', msg: degraded(redis, detail) });
        },
      });
    }
    this.fleet = fleet;
    const h = fleet.health();
    if (h.up) {
      this.log({
        level: 'info',
        msg: `fleet: ${h.redis} (prefix ${h.prefix}; ${h.fetch ? 'fetching when due' : 'fetch is false: taking staples from the fleet only'})`,
      });
    } else {
      this.log({ level: 'warn', code: 'FLEET_UNAVAILABLE', msg: degraded(h.redis, h.lastError ?? 'no answer') });
    }
    this.unsubscribe = fleet.subscribe({
      onStaple: (ids) => this.hooks.onStaple(ids),
      onReconnect: () => {
        this.log({ level: 'info', msg: 'fleet: reconciling every certificate with the fleet' });
        this.hooks.onReconnect();
      },
      onDown: () => undefined, // logged by onHealth
    });
  }

  /** Stops listening and closes the fleet (unless it was given). */
  async close(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const f = this.fleet;
    this.fleet = undefined;
    if (f && f !== this.given) await f.close().catch(() => undefined);
  }
}
