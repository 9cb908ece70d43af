/**
 * `staplekeeper check` in fleet mode: the staples on disk are judged as
 * always, and the fleet is asked once whether it answers. A degraded fleet
 * is a WARNING (never worse: local staples keep being served and renewed),
 * said in the status line and the perfdata (`fleet_up=0`).
 */
import type { FleetSettings } from '../config/types.js';
import type { CheckReport } from '../status/check.js';
import type { FleetHealth } from './contract.js';
import { openFleet } from './index.js';

/** Connects to the fleet once (at most ~2 s) and says how it is. */
export async function probeFleet(settings: FleetSettings, httpTimeoutMs: number): Promise<FleetHealth> {
  const fleet = await openFleet(settings, { httpTimeoutMs });
  try {
    return fleet.health();
  } finally {
    await fleet.close();
  }
}

/** The report with the fleet's health folded in (see the module comment). */
export function withFleet(report: CheckReport, health: FleetHealth): CheckReport & { fleet: FleetHealth } {
  const cut = report.line.indexOf(' | ');
  const head = cut < 0 ? report.line : report.line.slice(0, cut);
  const perf = cut < 0 ? '' : report.line.slice(cut + 3);
  const fleetPerf = `fleet_up=${health.up ? 1 : 0}`;
  if (health.up) {
    return { ...report, fleet: health, line: `${head} | ${perf ? `${perf} ` : ''}${fleetPerf}` };
  }
  // WARNING outranks OK and UNKNOWN (status/check.ts), never CRITICAL
  const level = report.level === 'critical' ? 'critical' : 'warning';
  const exitCode = level === 'warning' ? 1 : report.exitCode;
  const said = `fleet degraded: ${health.redis} cannot be reached (${health.lastError ?? 'no answer'})`.replaceAll(
    '|',
    '/',
  );
  const text = head.replace(/^STAPLEKEEPER \S+ - /, '');
  return {
    ...report,
    level,
    exitCode,
    fleet: health,
    line: `STAPLEKEEPER ${level.toUpperCase()} - ${text}; ${said} | ${perf ? `${perf} ` : ''}${fleetPerf}`,
  };
}
