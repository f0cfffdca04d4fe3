/**
 * Loader of the load generator's native client (src/loadgen*.c, built into the same addon as the
 * upstream leg): its functions, or null when the binary was not built (`loadError` says why). Unlike
 * index.js it ignores SLUICE_NATIVE, which chooses Sluice's upstream leg, not the generator's client.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** @type {Error | null} */
export let loadError = null;

/** @type {import('./loadgen.js').NativeLoadGen | null} */
let loadgen = null;
try {
  loadgen = require('./build/Release/sluice_upstream.node');
} catch (error) {
  loadError = /** @type {Error} */ (error);
}

export default loadgen;
