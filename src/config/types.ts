/**
 * The validated, resolved configuration: what `run`, `daemon` and `check` work
 * from. Produced by `loadConfig` (config/load.ts) from an ocspbot-compatible
 * YAML file; every path here is already absolute.
 */

/** Hooks are killed after this long unless `timeout` says otherwise. */
export const DEFAULT_HOOK_TIMEOUT_MS = 30_000;

/** How a hook is run: an argument array (no shell) or a shell string (`sh -c`). */
export interface HookCommand {
  /** `argv` for an array in YAML; `shell` for a plain string. */
  kind: 'argv' | 'shell';
  /** The argument vector (kind argv) or a one-element array holding the shell string. */
  command: string[];
  /** Milliseconds before the hook is killed. Default 30 000. */
  timeoutMs: number;
}

/** A HAProxy runtime API target (docs/servers.md): push renewed staples over its socket. */
export interface HaproxyTarget {
  /** Path of the stats/master socket (unix), or `host:port` for a TCP socket. */
  socket: string;
  /** Target ids (domain identifiers) whose staples are pushed; empty = all. */
  certificates: string[];
}

/** One certificate whose staple staplekeeper maintains. */
export interface TargetConfig {
  /** The domain identifier (from `domains`, or `{domain}` of a scan, with its subfolder). */
  id: string;
  /** Absolute path of the certificate (PEM bundle or DER). */
  certPath: string;
  /** Absolute path of the chain file (issuer first), if any. */
  chainPath?: string;
  /** Absolute path of the root chain file, if any (used as trust anchors / issuer search). */
  rootchainPath?: string;
  /**
   * Absolute path of the staple file to maintain: `ocsp` (or the scan's
   * `ocsp_mask`) with its placeholders filled (`{cert}`, `{cert_dir}`,
   * `{cert_name}`, `{cert_stem}`, `{domain}`; see `OUTPUT_PLACEHOLDERS` in
   * load.ts), resolved against `ocsp_folder` unless absolute.
   */
  staplePath: string;
  /**
   * Responder override: a URL, `'certificate'` (use the AIA, the default), or
   * `'disabled'` (do not maintain this staple).
   */
  responder: string | 'certificate' | 'disabled';
  /** Where this target came from, for messages: `file:line:col`. */
  origin: string;
}

/** Settings shared by all targets. */
export interface Settings {
  /** ocspbot `minimum_validity` in milliseconds, if set. */
  minimumValidityMs?: number;
  /** ocspbot `minimum_validity_percentage` (0–100), if set. */
  minimumValidityPercentage?: number;
  /** ocsprenewer-style T1 fraction (0.1–0.95); used when neither ocspbot key is set. Default 0.5. */
  refreshAt: number;
  /** Overall concurrency (default 16; `parallel_threads` sets it). */
  concurrency: number;
  /** Concurrency per responder host (default 8). */
  perHostConcurrency: number;
  stopOnError: boolean;
  makeBackups: boolean;
  /** Backups kept per staple; undefined = keep all (ocspbot behaviour). */
  backupsKeep?: number;
  /** Absolute ocsp_folder. */
  ocspFolder: string;
  http: {
    timeoutMs: number;
    method: 'auto' | 'get' | 'post';
    proxy?: string;
    userAgent?: string;
    /** Follow responder redirects to another host (default false). */
    followRedirectsAcrossHosts?: boolean;
  };
  /** Responder overrides keyed by AIA URL (exact string) → URL or 'disabled'. */
  responderUrlOverrides: Record<string, string>;
  /**
   * Responder overrides keyed by target id → URL or 'disabled' (the `responders`
   * keys that name a domain). Already applied to `LoadedConfig.targets`; kept so
   * that a daemon re-scan (`scanFolder`) applies them to what it finds.
   */
  responderIdOverrides: Record<string, string>;
  /** Absolute directories of CA certificates for issuer discovery. */
  caDirs: string[];
  hooks: {
    onChange?: HookCommand;
    onFailure?: HookCommand;
    onRevoked?: HookCommand;
  };
  /** Write a revoked response over a good staple (default false). */
  onRevokedWrite: boolean;
  /** Replace an existing non-empty file at a staple path that is not an OCSP response (default false; never a certificate or key). */
  overwriteNonOcsp?: boolean;
  /** Milliseconds to wait for the staple-folder lock (default 60 000). */
  lockTimeoutMs: number;
  /** Log file templates (with `{year}` … `{second}` placeholders), absolute, if set. */
  outputLog?: string;
  errorLog?: string;
  haproxy: HaproxyTarget[];
  daemon: {
    sweepIntervalMs: number;
    watch: boolean;
    statusListen?: string;
  };
  /** Fleet mode (docs/fleet.md): share staples through Redis; absent when not configured. */
  fleet?: FleetSettings;
  /**
   * CRL watch for certificates without a responder (issue 13): `watch`
   * undefined means the command's default (on in `daemon` and `check`, off
   * in `run` unless `--crl`).
   */
  crl: {
    watch?: boolean;
    /** How often the daemon looks at a CRL again (default 1 h). */
    intervalMs: number;
    /** Body cap of a CRL download (default 64 MiB). */
    maxBytes: number;
    /** Whole-download timeout (default 60 s). */
    timeoutMs: number;
  };
  /** Notes to show the operator (e.g. `openssl_executable` is ignored). */
  notes: string[];
}

/** The `fleet:` section (docs/fleet.md). */
export interface FleetSettings {
  /** redis:// or rediss:// URL, possibly with a password (never logged as is). */
  redis: string;
  /** Prefix of every key and channel (default `staplekeeper:`). */
  prefix: string;
  /** False: never contact a responder, only take staples from the fleet (default true). */
  fetch: boolean;
}

/** The whole loaded configuration. */
export interface LoadedConfig {
  /** Absolute path of the main configuration file; absent for one built in code (`defineConfig`). */
  file?: string;
  settings: Settings;
  targets: TargetConfig[];
  /** Folders that a daemon should watch (scan_keys folders), absolute, with their scan definitions. */
  scans: ScanConfig[];
  /**
   * Problems that did not stop the load, one `file:line:col key: …` line each
   * (only with the `ocspbot` load option: a missing include folder).
   */
  warnings?: string[];
}

/** One `scan_keys` entry, resolved. */
export interface ScanConfig {
  folder: string;
  recursive: boolean;
  certMask: string;
  chainMask: string;
  rootchainMask: string;
  /** May use the output placeholders besides `{domain}`; see `scanTargets` in load.ts. */
  ocspMask: string;
  origin: string;
}
