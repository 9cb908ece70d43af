/**
 * Settings built in code: {@link defineSettings} is the one home of the
 * defaults. The YAML loader (load.ts) hands it what the file says; the
 * ocsprenewer drop-in and library callers hand it what they know, with no
 * configuration file at all ({@link defineConfig}).
 */
import { dirname, resolve } from 'node:path';
import type { LoadedConfig, ScanConfig, Settings, TargetConfig } from './types.js';

/** Defaults of the keys staplekeeper adds (ocspbot's own defaults are in ocspbot's README). */
export const DEFAULTS = {
  refreshAt: 0.5,
  concurrency: 16,
  perHostConcurrency: 8,
  httpTimeoutMs: 10_000,
  httpMethod: 'auto',
  lockTimeoutMs: 60_000,
  sweepIntervalMs: 60 * 60_000,
  watch: true,
  fleetPrefix: 'staplekeeper:',
  crlIntervalMs: 60 * 60_000,
  crlMaxBytes: 64 * 1024 * 1024,
  crlTimeoutMs: 60_000,
} as const;

/** What {@link defineSettings} takes: `ocspFolder`, and any setting to change from its default. */
export type SettingsInput = Partial<Omit<Settings, 'ocspFolder' | 'http' | 'daemon' | 'hooks' | 'fleet' | 'crl'>> & {
  /** CRL watch (issue 13): interval, size cap, timeout; `watch` unset = each command's default. */
  crl?: Partial<Settings['crl']>;
  /** The staple folder (resolved to an absolute path). */
  ocspFolder: string;
  http?: Partial<Settings['http']>;
  daemon?: Partial<Settings['daemon']>;
  hooks?: Settings['hooks'];
  /** Fleet mode (docs/fleet.md): `redis` is required, `prefix` and `fetch` have defaults. */
  fleet?: { redis: string; prefix?: string | undefined; fetch?: boolean | undefined };
};

/**
 * Complete settings from `input`, every missing key at its default. Keys
 * given as `undefined` count as missing. The overall `concurrency` defaults
 * as ocspbot's would: 1 with `stopOnError` (one at a time, nothing after a
 * failure), else at least `perHostConcurrency` (so the overall limit never
 * caps the per-host one) and at least 16.
 */
export function defineSettings(input: SettingsInput): Settings {
  const perHostConcurrency = input.perHostConcurrency ?? DEFAULTS.perHostConcurrency;
  const stopOnError = input.stopOnError ?? false;
  const settings: Settings = {
    refreshAt: input.refreshAt ?? DEFAULTS.refreshAt,
    concurrency: input.concurrency ?? (stopOnError ? 1 : Math.max(DEFAULTS.concurrency, perHostConcurrency)),
    perHostConcurrency,
    stopOnError,
    makeBackups: input.makeBackups ?? false,
    ocspFolder: resolve(input.ocspFolder),
    http: {
      timeoutMs: input.http?.timeoutMs ?? DEFAULTS.httpTimeoutMs,
      method: input.http?.method ?? DEFAULTS.httpMethod,
    },
    responderUrlOverrides: { ...input.responderUrlOverrides },
    responderIdOverrides: { ...input.responderIdOverrides },
    caDirs: (input.caDirs ?? []).map((d) => resolve(d)),
    hooks: {},
    onRevokedWrite: input.onRevokedWrite ?? false,
    lockTimeoutMs: input.lockTimeoutMs ?? DEFAULTS.lockTimeoutMs,
    haproxy: [...(input.haproxy ?? [])],
    daemon: {
      sweepIntervalMs: input.daemon?.sweepIntervalMs ?? DEFAULTS.sweepIntervalMs,
      watch: input.daemon?.watch ?? DEFAULTS.watch,
    },
    crl: {
      intervalMs: input.crl?.intervalMs ?? DEFAULTS.crlIntervalMs,
      maxBytes: input.crl?.maxBytes ?? DEFAULTS.crlMaxBytes,
      timeoutMs: input.crl?.timeoutMs ?? DEFAULTS.crlTimeoutMs,
    },
    notes: [...(input.notes ?? [])],
  };
  if (input.crl?.watch !== undefined) settings.crl.watch = input.crl.watch;
  // optional keys are present only when set, so that settings compare equal however they were made
  if (input.minimumValidityMs !== undefined) settings.minimumValidityMs = input.minimumValidityMs;
  if (input.minimumValidityPercentage !== undefined) {
    settings.minimumValidityPercentage = input.minimumValidityPercentage;
  }
  if (input.backupsKeep !== undefined) settings.backupsKeep = input.backupsKeep;
  if (input.overwriteNonOcsp !== undefined) settings.overwriteNonOcsp = input.overwriteNonOcsp;
  if (input.http?.proxy !== undefined) settings.http.proxy = input.http.proxy;
  if (input.http?.userAgent !== undefined) settings.http.userAgent = input.http.userAgent;
  if (input.http?.followRedirectsAcrossHosts === true) settings.http.followRedirectsAcrossHosts = true;
  if (input.hooks?.onChange !== undefined) settings.hooks.onChange = input.hooks.onChange;
  if (input.hooks?.onFailure !== undefined) settings.hooks.onFailure = input.hooks.onFailure;
  if (input.hooks?.onRevoked !== undefined) settings.hooks.onRevoked = input.hooks.onRevoked;
  if (input.outputLog !== undefined) settings.outputLog = resolve(input.outputLog);
  if (input.errorLog !== undefined) settings.errorLog = resolve(input.errorLog);
  if (input.daemon?.statusListen !== undefined) settings.daemon.statusListen = input.daemon.statusListen;
  if (input.fleet !== undefined) {
    settings.fleet = {
      redis: input.fleet.redis,
      prefix: input.fleet.prefix ?? DEFAULTS.fleetPrefix,
      fetch: input.fleet.fetch ?? true,
    };
  }
  return settings;
}

/**
 * A configuration built in code, for `runOnce` and the daemon: settings
 * (complete them with {@link defineSettings}) and targets, with no
 * configuration file behind it.
 */
export function defineConfig(config: {
  settings: Settings;
  targets: TargetConfig[];
  scans?: ScanConfig[];
  file?: string;
}): LoadedConfig {
  const out: LoadedConfig = { settings: config.settings, targets: config.targets, scans: config.scans ?? [] };
  if (config.file !== undefined) out.file = resolve(config.file);
  return out;
}

/** Where hooks run and relative things are found: the configuration file's folder, else the staple folder. */
export function configFolder(config: LoadedConfig): string {
  return config.file !== undefined ? dirname(config.file) : config.settings.ocspFolder;
}
