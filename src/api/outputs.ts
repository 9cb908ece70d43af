/**
 * The `outputs` namespace of the library: what happens after a staple
 * changed, besides the store (docs/ARCHITECTURE.md "Adding an output"):
 * HAProxy's runtime API and the operator's hooks.
 */
export {
  pushToHaproxy,
  pushStaple,
  sendHaproxyCommand,
  HAPROXY_STATE_NAME,
  type HaproxyPushItem,
  type HaproxyPushOptions,
  type HaproxyPushResult,
  type HaproxyPushReport,
} from '../outputs/haproxy.js';
export { runHook, type HookItem, type HookResult } from '../outputs/hooks.js';
