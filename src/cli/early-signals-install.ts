/**
 * Imported first by the one-file build's entry (scripts/bundle-entry.ts): the
 * bundle evaluates its modules in import order, so this installs the queueing
 * signal handlers before any other module's code runs (early-signals.ts).
 */
import { installEarlySignals } from './early-signals.js';

installEarlySignals();
