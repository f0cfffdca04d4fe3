/**
 * The keys of permessage-deflate (RFC 7692) on the client leg (part of CONFIG_SCHEMA in schema.ts): the same
 * four keys sit under `websocket` (the defaults of every entry point) and under `entryPoints.<name>.websocket`
 * (one entry point's own, each falling back to the global key). uWebSockets.js fixes compression per app, so a
 * change to any of them opens a new app for that entry point on reload (src/worker/listeners.ts).
 */
import type { ObjectSchema, ScalarSchema } from './schema-types.js';

/** uWebSockets.js's DEDICATED_COMPRESSOR_<size>: the size is the compressor's memory per connection. */
export const DEDICATED_COMPRESSORS = ['3KB', '4KB', '8KB', '16KB', '32KB', '64KB', '128KB', '256KB'] as const;
/** uWebSockets.js's SHARED_DECOMPRESSOR, or DEDICATED_DECOMPRESSOR_<size> (the size is the window). */
export const DECOMPRESSORS = ['shared', '512B', '1KB', '2KB', '4KB', '8KB', '16KB', '32KB'] as const;
export const COMPRESSION_MODES = ['off', 'shared', 'dedicated'] as const;

/** uWebSockets.js keeps payload limits in 32-bit integers; 1 GiB stays well inside. */
const MAX_THRESHOLD = 1024 * 1024 * 1024;

function compressionFields(perEntryPoint: boolean): Record<string, ScalarSchema> {
  const fallback = (key: string, text: string): Pick<ScalarSchema, 'defaultText'> => ({ defaultText: perEntryPoint ? `websocket.${key}` : text });
  const withDefault = <T>(value: T): { defaultValue?: T } => (perEntryPoint ? {} : { defaultValue: value });
  return {
    compression: {
      kind: 'scalar',
      type: 'choice',
      choices: COMPRESSION_MODES,
      expects: "'off', 'shared' or 'dedicated'",
      ...withDefault('off'),
      ...fallback('compression', 'off'),
      doc:
        "permessage-deflate toward clients that offer it: 'off', 'shared' (one compressor per worker thread, no memory per connection, " +
        "no context kept between messages) or 'dedicated' (a compressor per connection that keeps its window between messages: smaller frames, more memory).",
    },
    compressionThreshold: {
      kind: 'scalar',
      type: 'size',
      min: 0,
      max: MAX_THRESHOLD,
      ...withDefault(1024),
      ...fallback('compressionThreshold', '1KiB'),
      doc: 'Messages to a client smaller than this are sent uncompressed (deflate costs more than it saves on small messages); 0 compresses every message.',
    },
    dedicatedCompressor: {
      kind: 'scalar',
      type: 'choice',
      choices: DEDICATED_COMPRESSORS,
      expects: `one of ${DEDICATED_COMPRESSORS.map((c) => `'${c}'`).join(', ')}`,
      ...withDefault('32KB'),
      ...fallback('dedicatedCompressor', '32KB'),
      doc: "With compression: dedicated, uWebSockets.js's DEDICATED_COMPRESSOR_<size>: the compressor's memory per connection (3KB: 512-byte window … 256KB: 32 KiB window).",
    },
    decompressor: {
      kind: 'scalar',
      type: 'choice',
      choices: DECOMPRESSORS,
      expects: `one of ${DECOMPRESSORS.map((c) => `'${c}'`).join(', ')}`,
      ...withDefault('shared'),
      ...fallback('decompressor', 'shared'),
      doc: "How client messages are inflated: 'shared' (one inflater per worker; clients are asked not to keep context between messages) or uWebSockets.js's DEDICATED_DECOMPRESSOR_<window> (a window per connection, about 23 KB more each).",
    },
  };
}

/** `websocket.compression*` and friends: the defaults of every entry point. */
export const globalCompressionFields = compressionFields(false);

/** `entryPoints.<name>.websocket`: one entry point's compression, overriding the global keys. */
export const entryPointWebSocketSchema: ObjectSchema = {
  kind: 'object',
  doc: "Sluice: this entry point's client-leg compression (each key defaults to the global websocket key).",
  fields: compressionFields(true),
};

/** `http.serversTransports.<name>.websocketCompression`. */
export const backendCompressionField: ScalarSchema = {
  kind: 'scalar',
  type: 'boolean',
  defaultValue: false,
  defaultText: 'false',
  doc: 'Sluice: offer permessage-deflate to the backends of services using this transport and inflate what they compress (backend leg); off by default since the backend leg is usually a private network where compression only costs CPU twice.',
};
