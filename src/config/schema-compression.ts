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

const MODE_DOC =
  "permessage-deflate toward clients that offer it: 'off', 'shared' (one compressor per worker thread, no memory per connection, " +
  "no context kept between messages) or 'dedicated' (a compressor per connection that keeps its window between messages: smaller frames, more memory).";
const THRESHOLD_DOC = 'Messages to a client smaller than this are sent uncompressed (deflate costs more than it saves on small messages); 0 compresses every message.';
const DEDICATED_DOC = "With compression: dedicated, uWebSockets.js's DEDICATED_COMPRESSOR_<size>: the compressor's memory per connection (3KB: 512-byte window … 256KB: 32 KiB window).";
const DECOMPRESSOR_DOC = "How client messages are inflated: 'shared' (one inflater per worker; clients are asked not to keep context between messages) or uWebSockets.js's DEDICATED_DECOMPRESSOR_<window> (a window per connection, about 23 KB more each).";
const MODE_EXPECTS = "'off', 'shared' or 'dedicated'";
const DEDICATED_EXPECTS = `one of ${DEDICATED_COMPRESSORS.map((c) => `'${c}'`).join(', ')}`;
const DECOMPRESSOR_EXPECTS = `one of ${DECOMPRESSORS.map((c) => `'${c}'`).join(', ')}`;

// Declarations are `as const satisfies …` so that the checked config type (schema-types.ts Checked<>)
// knows each key: the global keys have defaults (always filled in), an entry point's own do not (absent
// means "the global key").

/** `websocket.compression*` and friends: the defaults of every entry point. */
export const globalCompressionFields = {
  compression: { kind: 'scalar', type: 'choice', choices: COMPRESSION_MODES, expects: MODE_EXPECTS, defaultValue: 'off', doc: MODE_DOC },
  compressionThreshold: { kind: 'scalar', type: 'size', min: 0, max: MAX_THRESHOLD, defaultValue: 1024, doc: THRESHOLD_DOC },
  dedicatedCompressor: { kind: 'scalar', type: 'choice', choices: DEDICATED_COMPRESSORS, expects: DEDICATED_EXPECTS, defaultValue: '32KB', doc: DEDICATED_DOC },
  decompressor: { kind: 'scalar', type: 'choice', choices: DECOMPRESSORS, expects: DECOMPRESSOR_EXPECTS, defaultValue: 'shared', doc: DECOMPRESSOR_DOC },
} as const satisfies ObjectSchema['fields'];

/** `entryPoints.<name>.websocket`: one entry point's compression, overriding the global keys. */
export const entryPointWebSocketSchema = {
  kind: 'object',
  doc: "Sluice: this entry point's client-leg compression (each key defaults to the global websocket key).",
  fields: {
    compression: { kind: 'scalar', type: 'choice', choices: COMPRESSION_MODES, expects: MODE_EXPECTS, defaultText: 'websocket.compression', doc: MODE_DOC },
    compressionThreshold: { kind: 'scalar', type: 'size', min: 0, max: MAX_THRESHOLD, defaultText: 'websocket.compressionThreshold', doc: THRESHOLD_DOC },
    dedicatedCompressor: { kind: 'scalar', type: 'choice', choices: DEDICATED_COMPRESSORS, expects: DEDICATED_EXPECTS, defaultText: 'websocket.dedicatedCompressor', doc: DEDICATED_DOC },
    decompressor: { kind: 'scalar', type: 'choice', choices: DECOMPRESSORS, expects: DECOMPRESSOR_EXPECTS, defaultText: 'websocket.decompressor', doc: DECOMPRESSOR_DOC },
  },
} as const satisfies ObjectSchema;

/** `http.serversTransports.<name>.websocketCompression`. */
export const backendCompressionField = {
  kind: 'scalar',
  type: 'boolean',
  defaultValue: false,
  doc: 'Sluice: offer permessage-deflate to the backends of services using this transport and inflate what they compress (backend leg); off by default since the backend leg is usually a private network where compression only costs CPU twice.',
} as const satisfies ScalarSchema;
