/**
 * One RFC 6455 client-side rule set for both backend legs: the case table of
 * helpers/backend-frame-cases.ts against a real Sluice on the Node socket leg (SLUICE_NATIVE=0) and on
 * the native leg (SLUICE_NATIVE=1; skipped when the addon is not built), whatever SLUICE_NATIVE the
 * test run itself has.
 */
import { createRequire } from 'node:module';
import { runFrameCases } from './helpers/backend-frame-cases.js';

// Compiled to dist/test/, the addon stays under <repo>/native/. Loading it here (not through
// native/index.js, which SLUICE_NATIVE=0 turns off) tells whether Sluice can use it.
let nativeSkip: string | false = false;
try {
  createRequire(import.meta.url)('../../native/build/Release/sluice_upstream.node');
} catch (error) {
  nativeSkip = `native addon unavailable (${(error as Error).message}); build it with npm run build:native`;
}

runFrameCases('Node socket leg', { SLUICE_NATIVE: '0' });
runFrameCases('native leg', { SLUICE_NATIVE: '1' }, nativeSkip);
