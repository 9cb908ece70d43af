/**
 * The configuration module: an ocspbot-compatible YAML file in, a validated
 * {@link LoadedConfig} with absolute paths out. The engine and the CLI import
 * from here only, never from the files behind it.
 */
export type { HaproxyTarget, HookCommand, LoadedConfig, ScanConfig, Settings, TargetConfig } from './types.js';
export { parseDuration } from './duration.js';
export {
  DEFAULT_CONFIG_NAMES,
  OPENSSL_NOTE,
  findDefaultConfig,
  loadConfig,
  scanTargets,
  expandOutputTemplate,
  OUTPUT_PLACEHOLDERS,
  type LoadConfigOptions,
} from './load.js';
export { configCacheDir } from './config-cache.js';
export { DEFAULTS, configFolder, defineConfig, defineSettings, type SettingsInput } from './settings.js';
export { DEFAULT_MASKS, scanFolder, type ScanOptions } from './scan.js';
export { DEFAULT_HOOK_TIMEOUT_MS } from './types.js';
export { formatProblem, type ConfigProblem } from './problems.js';
