/**
 * The schema of one entry point (`entryPoints.<name>`, part of CONFIG_SCHEMA in schema.ts): its address,
 * HTTP and TLS settings, connection handling and shutdown (transport, lifeCycle), who the client is and its
 * client-leg WebSocket settings. Declarations are `as const satisfies …` so Checked<> knows every key.
 */
import type { ObjectSchema } from './schema-types.js';
import { notYet } from './schema-types.js';
import { tlsOnRouterOrEntryPoint } from './schema-tls.js';
import { entryPointWebSocketSchema } from './schema-compression.js';
import { KiB } from './duration.js';
import { entryPointMaxConnections, forwardedHeadersSchema, proxyProtocolSchema, respondingTimeoutsSchema } from './schema-limits.js';

/** uWebSockets.js drops a connection whose request head passes about 100 KiB without an answer: stay below. */
const MAX_HEADER_BYTES = 64 * KiB;

/** Traefik's entryPoints.<name>.transport.lifeCycle: how the entry point stops on SIGTERM. */
const lifeCycle = {
  kind: 'object',
  doc: "How the entry point stops on SIGTERM (Traefik's keys and meaning). `/ready` turns 503 at once.",
  fields: {
    requestAcceptGraceTimeout: {
      kind: 'scalar',
      type: 'duration',
      defaultValue: 0,
      doc: 'Time the entry point keeps accepting new connections after SIGTERM, so the load balancer in front sees `/ready` fail first.',
    },
    graceTimeOut: {
      kind: 'scalar',
      type: 'duration',
      defaultValue: 10_000,
      defaultNote: '(`shutdown.gracePeriod` when set)',
      doc: 'Window over which its open WebSockets are then closed with 1001, spread evenly with jitter, before Sluice exits. A second signal closes what is left at once.',
    },
  },
} as const satisfies ObjectSchema;

export const entryPointSchema = {
  kind: 'object',
  doc: 'One listener.',
  fields: {
    address: {
      kind: 'scalar',
      type: 'address',
      required: true,
      doc: 'Where to listen. Two entry points may not share a port on the same (or every) host.',
    },
    http: {
      kind: 'object',
      doc: 'HTTP settings of this entry point.',
      fields: {
        tls: tlsOnRouterOrEntryPoint('Present: this entry point terminates TLS with the certificates of `tls.certificates`.'),
        maxHeaderBytes: {
          kind: 'scalar',
          type: 'size',
          min: 1024,
          max: MAX_HEADER_BYTES,
          defaultValue: 32 * KiB,
          defaultNote: '(Traefik: 1MiB)',
          doc: 'Largest request head (request line and headers) accepted; a larger one is answered 431.',
        },
      },
      refused: notYet(
        ...['redirections', 'middlewares', 'encodeQuerySemicolons', 'sanitizePath'],
        'encodedCharacters',
      ),
    },
    transport: {
      kind: 'object',
      doc: 'Connection handling of this entry point.',
      fields: { lifeCycle, respondingTimeouts: respondingTimeoutsSchema },
      refused: notYet('keepAliveMaxRequests', 'keepAliveMaxTime'),
    },
    proxyProtocol: proxyProtocolSchema,
    forwardedHeaders: forwardedHeadersSchema,
    websocket: {
      ...entryPointWebSocketSchema,
      doc: "Sluice: this entry point's client-leg compression (each key defaults to the global websocket key) and connection limit.",
      fields: { ...entryPointWebSocketSchema.fields, maxConnections: entryPointMaxConnections },
    },
  },
  refused: {
    ...notYet('http2', 'http3', 'udp', 'allowACMEByPass'),
    ...notYet('reusePort', 'observability'),
    asDefault: 'routers without entryPoints attach to every entry point of their kind',
  },
} as const satisfies ObjectSchema;
