/**
 * Loader of the native upstream addon (see README.md): the addon's functions, or null when the
 * binary was not built (or SLUICE_NATIVE=0), so callers fall back to the JavaScript upstream leg.
 * Loading it in each worker thread gives that thread its own connections, buffers and loop.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Why onClose fired; the same numbers as `enum close_kind` in src/upstream.h. */
export const CloseKind = Object.freeze({
  Frame: 0,
  Eof: 1,
  Error: 2,
  Protocol: 3,
  Oversize: 4,
  Timeout: 5,
  Unresponsive: 6,
});

/** Bits of a frame's flags in the `frames` table besides its opcode (FRAME_FIN, FRAME_IN_BLOCK in src/upstream.h). */
export const FrameFlag = Object.freeze({ Fin: 0x10, InBlock: 0x20 });

/** @type {Error | null} */
export let loadError = null;

/** @type {import('./index.js').NativeUpstream | null} */
let upstream = null;
if (process.env.SLUICE_NATIVE === '0') {
  loadError = new Error('native upstream disabled by SLUICE_NATIVE=0');
} else {
  try {
    upstream = require('./build/Release/sluice_upstream.node');
  } catch (error) {
    loadError = /** @type {Error} */ (error);
  }
}

export default upstream;
