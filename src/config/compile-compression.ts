/**
 * Compiles the client-leg compression of each entry point: its own `entryPoints.<name>.websocket` keys over
 * the global `websocket` ones, with a warning for a key that can have no effect.
 */
import { keyPath, type Problems } from './errors.js';
import { defaultOf } from './schema.js';
import type { CompressionSpec } from './snapshot.js';
import type { CompressionConfig } from './validate.js';

export function compileCompression(global: CompressionConfig | undefined, own: CompressionConfig | undefined, entryPoint: string, problems: Problems): CompressionSpec {
  const pick = <K extends keyof CompressionConfig>(key: K): NonNullable<CompressionConfig[K]> =>
    (own?.[key] ?? global?.[key] ?? defaultOf(`websocket.${key}`)) as NonNullable<CompressionConfig[K]>;
  const spec: CompressionSpec = {
    mode: pick('compression'),
    threshold: pick('compressionThreshold'),
    dedicatedCompressor: pick('dedicatedCompressor'),
    decompressor: pick('decompressor'),
  };
  // Only an entry point's own keys are checked here: the global ones apply to entry points in every mode.
  if (own?.dedicatedCompressor !== undefined && spec.mode !== 'dedicated') {
    problems.warn(
      keyPath(keyPath(keyPath('entryPoints', entryPoint), 'websocket'), 'dedicatedCompressor'),
      `has no effect: this entry point's compression is '${spec.mode}' (expected compression: dedicated)`,
    );
  }
  return spec;
}
