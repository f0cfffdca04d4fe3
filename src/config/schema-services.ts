/**
 * The schema of the backends (part of CONFIG_SCHEMA in schema.ts): a service (`http.services.<name>`), its
 * load balancer and servers, and how Sluice connects to them (`http.serversTransports.<name>`).
 * Declarations are `as const satisfies …` so Checked<> knows every key.
 */
import type { ObjectSchema } from './schema-types.js';
import { NOT_YET, notYet } from './schema-types.js';
import { discoverySchema, hashSchema, healthCheckSchema, passiveHealthCheckSchema, stickySchema } from './schema-balancing.js';
import { backendCompressionField } from './schema-compression.js';
import { admissionSchema, backendMaxConnections } from './schema-limits.js';

const server = {
  kind: 'object',
  doc: 'One backend.',
  fields: {
    url: {
      kind: 'scalar',
      type: 'url',
      required: true,
      doc: '`wss`/`https` mean TLS toward the backend. A path (`ws://10.0.0.1:9000/stream`) is prefixed to every request path, as in Traefik.',
    },
    weight: {
      kind: 'scalar',
      type: 'integer',
      min: 0,
      max: 1_000_000,
      defaultValue: 1,
      doc: "Share of new connections relative to the pool's other servers: `roundrobin` hits the ratios exactly (smooth weighted round robin), `leastconn` compares connections per unit of weight, `hash` bounds each backend by its weighted share. `0`: no new connections.",
    },
  },
  refused: { preservePath: NOT_YET },
} as const satisfies ObjectSchema;

export const serviceSchema = {
  kind: 'object',
  doc: 'A pool of backends; only the `loadBalancer` kind exists.',
  fields: {
    loadBalancer: {
      kind: 'object',
      required: true,
      expects: 'a mapping with servers',
      doc: 'The pool and how to balance over it.',
      fields: {
        servers: {
          kind: 'list',
          item: server,
          nonEmpty: 'server',
          required: true,
          expects: 'a list of servers, each with a url',
          doc: 'The backends, in order.',
        },
        passHostHeader: {
          kind: 'scalar',
          type: 'boolean',
          defaultValue: true,
          doc: "Forward the client's `Host` header; `false` sends the backend's host instead.",
        },
        serversTransport: {
          kind: 'scalar',
          type: 'string',
          doc: 'Name of an entry in `http.serversTransports`.',
          defaultText: '`default`',
        },
        strategy: {
          kind: 'scalar',
          type: 'strategy',
          doc: "Sluice's own key. Traefik's `wrr` is read as `roundrobin`, `hrw` as `hash` (on the client IP); `p2c` is refused.",
          defaultText: '`loadBalancer.strategy`',
        },
        retries: {
          kind: 'scalar',
          type: 'integer',
          min: 0,
          max: 100,
          doc: "Sluice's own key: attempts on other backends after a failed connect, a dial or handshake timeout, or a `5xx` answer to the upgrade; never the same backend twice. The last `5xx` is relayed when no backend is left.",
          defaultText: '`loadBalancer.retries`',
        },
        sticky: stickySchema,
        healthCheck: healthCheckSchema,
        passiveHealthCheck: passiveHealthCheckSchema,
        hash: hashSchema,
        slowStart: {
          kind: 'scalar',
          type: 'duration',
          doc: "Sluice's own key: a backend that came up (health check, end of an ejection, new DNS address) ramps from 1% to its full weight linearly over this time, so a reconnect wave does not land on it all at once. `0s`: off.",
          defaultText: '`loadBalancer.slowStart`',
        },
        drainWindow: {
          kind: 'scalar',
          type: 'duration',
          min: 1,
          doc: "Sluice's own key: the connections of a backend marked down with `onDown: drain`, whose address left DNS, or that a reload removed, are closed with 1012 one by one, evenly (with jitter) over this window.",
          defaultText: '`loadBalancer.drainWindow`',
        },
        onRemove: {
          kind: 'scalar',
          type: 'choice',
          choices: ['drain', 'keep'],
          expects: "'drain' or 'keep'",
          doc: "Sluice's own key: what a reload that removes a backend from this pool does to its open WebSockets: `drain` (1012, paced over `drainWindow`) or `keep` (they stay until they close).",
          defaultText: '`loadBalancer.onRemove`',
        },
        discovery: discoverySchema,
        maxConnections: backendMaxConnections(
          "Sluice's own key: WebSockets each backend of this pool may hold, all workers together; a full backend is skipped for the next one, and when all are full the client gets 503 with Retry-After.",
          { defaultText: '`loadBalancer.maxConnections`' },
        ),
        admission: admissionSchema("Sluice's own key: upgrade admission per backend of this pool, a token bucket shared by all workers; an upgrade finding no token tries the next backend, and when none has one the client gets 503 with a Retry-After that spreads the retries at the admitted rate."),
      },
      refused: notYet('responseForwarding'),
    },
  },
  refused: { weighted: NOT_YET, mirroring: NOT_YET, failover: NOT_YET },
  refusedAreKinds: true,
} as const satisfies ObjectSchema;

export const serversTransportSchema = {
  kind: 'object',
  doc: "How Sluice connects to a service's backends.",
  fields: {
    insecureSkipVerify: {
      kind: 'scalar',
      type: 'boolean',
      defaultValue: false,
      doc: 'Accept any backend certificate (for tests only).',
    },
    rootCAs: {
      kind: 'list',
      item: { kind: 'scalar', type: 'string', doc: 'PEM file path, relative to the config file.' },
      typeText: 'list of file paths',
      doc: 'PEM files of the CAs that sign backend certificates; each must hold a certificate.',
      defaultText: "the system's roots",
    },
    serverName: {
      kind: 'scalar',
      type: 'string',
      doc: 'SNI and certificate name expected from the backend.',
      defaultText: "the backend URL's host",
    },
    forwardingTimeouts: {
      kind: 'object',
      doc: 'Timeouts toward the backend.',
      fields: {
        dialTimeout: {
          kind: 'scalar',
          type: 'duration',
          defaultValue: 5000,
          min: 1,
          doc: "Time to open the TCP (and TLS) connection. **Traefik's default is 30s**; Sluice uses 5s so a dead backend is skipped (with `retries`) before the client gives up.",
        },
        responseHeaderTimeout: {
          kind: 'scalar',
          type: 'duration',
          defaultValue: 0,
          defaultNote: '(none)',
          doc: "HTTP: time allowed for a backend's response head once the request is sent (504 after it); 0 waits as long as it takes.",
        },
        idleConnTimeout: {
          kind: 'scalar',
          type: 'duration',
          min: 1,
          defaultValue: 90_000,
          doc: 'HTTP: how long an idle keep-alive connection to a backend stays open.',
        },
      },
      refused: notYet('readIdleTimeout', 'pingTimeout'),
    },
    maxIdleConnsPerHost: {
      kind: 'scalar',
      type: 'integer',
      min: -1,
      max: 100_000,
      defaultValue: 200,
      doc: 'HTTP: idle keep-alive connections kept per backend (busy ones are not capped); 0 means 200, -1 keeps none.',
    },
    websocketCompression: backendCompressionField,
    sourceAddresses: {
      kind: 'list',
      item: { kind: 'scalar', type: 'string', doc: 'A local IP address, or an IPv4 range `first-last` (at most 4,096 addresses).' },
      typeText: 'list of IPs or IPv4 ranges',
      doc: 'Local addresses connections to the backends (WebSocket and plain HTTP) leave from, in turn (per worker thread), so that one backend address is not limited to the ~28,000 ephemeral ports of one source address. Each address must be configured on a local interface (all of 127.0.0.0/8 is, on Linux). A backend gets only addresses of its own family.',
      defaultText: "the kernel's choice",
    },
  },
  refused: notYet('certificates', 'disableHTTP2', 'peerCertURI', 'spiffe'),
} as const satisfies ObjectSchema;
