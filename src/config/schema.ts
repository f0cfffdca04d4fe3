/**
 * Every key Sluice accepts, with its type, default and meaning, declared in one place: this is the reference
 * that validate.ts walks and docs/configuration.md mirrors (a test checks the two agree). Traefik keys that
 * Sluice does not support are listed too, so they are refused by name instead of as unknown keys.
 */
import { formatSize } from './duration.js';
import { discoverySchema, hashSchema, healthCheckSchema, passiveHealthCheckSchema, stickySchema } from './schema-balancing.js';
import { accessLogSchema, adminSchema, logSchema } from './schema-observability.js';
import { fanoutSchema } from './schema-fanout.js';

export type { ScalarType, ScalarSchema, ObjectSchema, MapSchema, ListSchema, Schema, Documented } from './schema-types.js';
import type { ObjectSchema, ScalarSchema, Schema } from './schema-types.js';
import { NOT_YET, notYet } from './schema-types.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** uWebSockets.js keeps payload and backpressure limits in 32-bit integers; 1 GiB stays well inside. */
const MAX_BUFFER_BYTES = 1024 * MiB;

/** TLS settings Traefik takes from ACME or TLS options; Sluice serves the certificates of `tls.certificates`. */
const TLS_REFUSED = {
  options: 'TLS versions and ciphers are Node.js defaults (TLS 1.2 and 1.3)',
  certResolver: 'ACME is not built in (expected certificates in tls.certificates)',
  domains: 'certificate names are read from the files in tls.certificates',
} as const;

const tlsOnRouterOrEntryPoint = (doc: string): ObjectSchema => ({
  kind: 'object',
  doc,
  acceptsBoolean: true,
  fields: {},
  refused: TLS_REFUSED,
});

/** Traefik's entryPoints.<name>.transport.lifeCycle: how the entry point stops on SIGTERM. */
const lifeCycle: ObjectSchema = {
  kind: 'object',
  doc: 'How this entry point stops on SIGTERM (Traefik\'s keys and meaning; /ready turns 503 at once).',
  fields: {
    requestAcceptGraceTimeout: {
      kind: 'scalar',
      type: 'duration',
      defaultValue: 0,
      defaultText: '0s',
      doc: 'Time the entry point keeps accepting new connections after SIGTERM, so the load balancer in front sees /ready fail first.',
    },
    graceTimeOut: {
      kind: 'scalar',
      type: 'duration',
      defaultValue: 10_000,
      defaultText: '10s (shutdown.gracePeriod when set)',
      doc: 'Window over which the open WebSockets are closed with 1001, spread evenly with jitter, before Sluice exits.',
    },
  },
};

const entryPoint: ObjectSchema = {
  kind: 'object',
  doc: 'One listener.',
  fields: {
    address: {
      kind: 'scalar',
      type: 'address',
      required: true,
      doc: 'Where to listen: ":8080" (all interfaces), "127.0.0.1:8080" or "[::1]:8080"; port 1-65535.',
    },
    http: {
      kind: 'object',
      doc: 'HTTP settings of this entry point.',
      fields: {
        tls: tlsOnRouterOrEntryPoint(
          'Present (`{}`) = this entry point terminates TLS with the certificates of tls.certificates.',
        ),
      },
      refused: notYet(
        ...['redirections', 'middlewares', 'encodeQuerySemicolons', 'sanitizePath', 'maxHeaderBytes'],
        'encodedCharacters',
      ),
    },
    transport: {
      kind: 'object',
      doc: 'Connection handling of this entry point.',
      fields: { lifeCycle },
      refused: notYet('respondingTimeouts', 'keepAliveMaxRequests', 'keepAliveMaxTime'),
    },
  },
  refused: {
    ...notYet('proxyProtocol', 'forwardedHeaders', 'http2', 'http3', 'udp', 'allowACMEByPass'),
    ...notYet('reusePort', 'observability'),
    asDefault: 'routers without entryPoints attach to every entry point of their kind',
  },
};

const router: ObjectSchema = {
  kind: 'object',
  doc: 'Matches requests with a rule and sends them to a service.',
  fields: {
    rule: {
      kind: 'scalar',
      type: 'string',
      required: true,
      expects: 'a rule like "Host(`example.com`) && PathPrefix(`/ws`)"',
      doc: "Traefik rule: Host, HostRegexp, Path, PathPrefix, PathRegexp, Header(s), Query, ClientIP, Method with &&, || , ! and parentheses.",
    },
    service: {
      kind: 'scalar',
      type: 'string',
      required: true,
      expects: 'the name of a service in http.services',
      doc: 'Name of a service in http.services (a `@file` suffix is accepted and ignored).',
    },
    entryPoints: {
      kind: 'list',
      item: { kind: 'scalar', type: 'string', doc: 'Name of an entry point.' },
      nonEmpty: 'entry point name (or no entryPoints key, meaning all)',
      doc: 'Entry points this router listens on; a TLS router attaches to the TLS ones, a plain router to the plain ones.',
      defaultText: 'all entry points',
    },
    priority: {
      kind: 'scalar',
      type: 'integer',
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
      doc: 'Higher wins when several rules match; 0 means the default, as in Traefik.',
      defaultText: 'length of the rule',
    },
    tls: tlsOnRouterOrEntryPoint(
      'Present (`{}` or `true`) = the router serves HTTPS/WSS; the entry points it lists become TLS entry points.',
    ),
  },
  refused: { middlewares: NOT_YET, observability: NOT_YET, ruleSyntax: 'Sluice reads the Traefik v3 rule syntax' },
};

const server: ObjectSchema = {
  kind: 'object',
  doc: 'One backend.',
  fields: {
    url: {
      kind: 'scalar',
      type: 'url',
      required: true,
      doc: 'ws://, wss://, http:// or https:// with a host; default port 80/443; a path is prefixed to every request path.',
    },
    weight: {
      kind: 'scalar',
      type: 'integer',
      min: 0,
      max: 1_000_000,
      defaultValue: 1,
      defaultText: '1',
      doc: "Share of new connections relative to the pool's other servers; 0 = none (roundrobin, leastconn and hash all honour it).",
    },
  },
  refused: { preservePath: NOT_YET },
};



const service: ObjectSchema = {
  kind: 'object',
  doc: 'A pool of backends.',
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
          defaultText: 'true',
          doc: "Forward the client's Host header; false sends the backend's host instead.",
        },
        serversTransport: {
          kind: 'scalar',
          type: 'string',
          doc: 'Name of an entry in http.serversTransports.',
          defaultText: 'default (see http.serversTransports)',
        },
        strategy: {
          kind: 'scalar',
          type: 'strategy',
          doc: "Sluice: 'leastconn', 'roundrobin' or 'hash' (Traefik's 'wrr' is read as roundrobin, 'hrw' as hash).",
          defaultText: 'loadBalancer.strategy',
        },
        retries: {
          kind: 'scalar',
          type: 'integer',
          min: 0,
          max: 100,
          doc: 'Sluice: attempts on other backends after a failed connect or a 5xx answer to the upgrade.',
          defaultText: 'loadBalancer.retries',
        },
        sticky: stickySchema,
        healthCheck: healthCheckSchema,
        passiveHealthCheck: passiveHealthCheckSchema,
        hash: hashSchema,
        slowStart: {
          kind: 'scalar',
          type: 'duration',
          doc: "Sluice: time over which a backend that came up (or was discovered) ramps from no share to its full share.",
          defaultText: 'loadBalancer.slowStart',
        },
        drainWindow: {
          kind: 'scalar',
          type: 'duration',
          min: 1,
          doc: 'Sluice: window over which connections of a backend marked down (onDown: drain), gone from DNS or removed by a reload are closed with 1012, paced.',
          defaultText: 'loadBalancer.drainWindow',
        },
        onRemove: {
          kind: 'scalar',
          type: 'choice',
          choices: ['drain', 'keep'],
          expects: "'drain' or 'keep'",
          doc: "Sluice: what a reload that removes a backend from this pool does to its open WebSockets: 'drain' (close with 1012, paced over drainWindow) or 'keep' (they stay until they close).",
          defaultText: 'loadBalancer.onRemove',
        },
        discovery: discoverySchema,
      },
      refused: notYet('responseForwarding'),
    },
  },
  refused: { weighted: NOT_YET, mirroring: NOT_YET, failover: NOT_YET },
  refusedAreKinds: true,
};

const serversTransport: ObjectSchema = {
  kind: 'object',
  doc: 'How Sluice connects to backends.',
  fields: {
    insecureSkipVerify: {
      kind: 'scalar',
      type: 'boolean',
      defaultValue: false,
      defaultText: 'false',
      doc: "Accept any backend certificate (wss/https backends); for tests only.",
    },
    rootCAs: {
      kind: 'list',
      item: { kind: 'scalar', type: 'string', doc: 'PEM file path, relative to the config file.' },
      doc: "PEM files of the CAs that sign backend certificates, relative to the config file's directory.",
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
          defaultText: '5s (Traefik: 30s)',
          min: 1,
          doc: 'Time allowed to open the TCP (and TLS) connection to a backend.',
        },
      },
      refused: notYet('responseHeaderTimeout', 'idleConnTimeout', 'readIdleTimeout', 'pingTimeout'),
    },
  },
  refused: notYet('certificates', 'maxIdleConnsPerHost', 'disableHTTP2', 'peerCertURI', 'spiffe'),
};

const certificateFiles = {
  certFile: {
    kind: 'scalar',
    type: 'string',
    required: true,
    expects: 'the path of a PEM certificate file',
    doc: "PEM certificate (chain), relative to the config file's directory.",
  },
  keyFile: {
    kind: 'scalar',
    type: 'string',
    required: true,
    expects: 'the path of a PEM private key file',
    doc: "PEM private key, relative to the config file's directory.",
  },
} as const satisfies Record<string, ScalarSchema>;

/** A WebSocket buffer or message limit: bytes from 1 to MAX_BUFFER_BYTES, its default shown as written. */
function bufferSize(defaultBytes: number, doc: string): ScalarSchema {
  const text = formatSize(defaultBytes);
  return { kind: 'scalar', type: 'size', min: 1, max: MAX_BUFFER_BYTES, defaultValue: defaultBytes, defaultText: text, doc };
}

export const CONFIG_SCHEMA: ObjectSchema = {
  kind: 'object',
  doc: 'A Sluice configuration file.',
  fields: {
    entryPoints: {
      kind: 'map',
      entry: 'entry point',
      value: entryPoint,
      required: true,
      doc: 'Listeners, by name.',
    },
    http: {
      kind: 'object',
      doc: 'Routing (Traefik dynamic configuration).',
      fields: {
        routers: { kind: 'map', entry: 'router', value: router, doc: 'Routers, by name.' },
        services: { kind: 'map', entry: 'service', value: service, doc: 'Services, by name.' },
        serversTransports: {
          kind: 'map',
          entry: 'servers transport',
          value: serversTransport,
          doc: "Backend connection settings, by name; one named 'default' replaces the built-in default.",
        },
      },
      refused: { middlewares: NOT_YET },
    },
    tls: {
      kind: 'object',
      doc: 'Certificates served by TLS entry points.',
      fields: {
        certificates: {
          kind: 'list',
          doc: 'Certificates, chosen by SNI from the names they carry.',
          item: {
            kind: 'object',
            doc: 'One certificate and its key.',
            fields: certificateFiles,
            refused: { stores: "every certificate goes to the one 'default' store" },
          },
        },
        stores: {
          kind: 'object',
          doc: "Certificate stores; only 'default' exists.",
          fields: {
            default: {
              kind: 'object',
              doc: 'The default store.',
              fields: {
                defaultCertificate: {
                  kind: 'object',
                  doc: 'Served when no certificate matches the SNI.',
                  defaultText: 'the first of tls.certificates',
                  fields: certificateFiles,
                },
              },
              refused: { defaultGeneratedCert: 'ACME is not built in' },
            },
          },
        },
      },
      refused: { options: TLS_REFUSED.options },
    },
    workers: {
      kind: 'scalar',
      type: 'integer',
      min: 1,
      max: 1024,
      doc: 'Sluice: worker threads (each runs its own listeners); the --workers flag wins.',
      defaultText: 'os.availableParallelism()',
    },
    loadBalancer: {
      kind: 'object',
      doc: 'Sluice: defaults for every service.',
      fields: {
        strategy: {
          kind: 'scalar',
          type: 'strategy',
          defaultValue: 'leastconn',
          defaultText: 'leastconn',
          doc: "'leastconn' (fewest active connections per weight, counted across all workers), 'roundrobin' (smooth weighted) or 'hash' (consistent, bounded load).",
        },
        retries: {
          kind: 'scalar',
          type: 'integer',
          min: 0,
          max: 100,
          defaultValue: 2,
          defaultText: '2',
          doc: 'Attempts on other backends after a failed connect or a 5xx answer to the upgrade.',
        },
        slowStart: {
          kind: 'scalar',
          type: 'duration',
          defaultValue: 0,
          defaultText: '0s (off)',
          doc: 'Time over which a backend that came up ramps from no share of new connections to its full share.',
        },
        drainWindow: {
          kind: 'scalar',
          type: 'duration',
          min: 1,
          defaultValue: 10_000,
          defaultText: '10s',
          doc: 'Window over which the connections of a backend marked down (onDown: drain), gone from DNS or removed by a reload are closed, paced.',
        },
        onRemove: {
          kind: 'scalar',
          type: 'choice',
          choices: ['drain', 'keep'],
          defaultValue: 'drain',
          defaultText: 'drain',
          expects: "'drain' or 'keep'",
          doc: "What a reload that removes a backend does to its open WebSockets: 'drain' (1012, paced over drainWindow) or 'keep'.",
        },
        stickySecret: {
          kind: 'scalar',
          type: 'string',
          doc: 'Secret that signs sticky cookies; replicas that share it honour each other\'s cookies.',
          defaultText: 'env SLUICE_STICKY_SECRET, else random per process (logged)',
        },
      },
    },
    dns: {
      kind: 'object',
      doc: 'Sluice: the resolver used by discovery: dns.',
      fields: {
        servers: {
          kind: 'list',
          item: { kind: 'scalar', type: 'string', doc: 'A resolver address, "IP" or "IP:port".' },
          doc: 'DNS servers to ask, "10.0.0.10" or "127.0.0.1:5353".',
          defaultText: "the system's (/etc/resolv.conf)",
        },
      },
    },
    websocket: {
      kind: 'object',
      doc: 'Sluice: WebSocket limits and timeouts.',
      fields: {
        maxMessageSize: bufferSize(16 * MiB,
          'Largest message accepted on either leg; a larger one closes the connection with 1009.'),
        clientHighWaterMark: bufferSize(256 * KiB,
          "Client send buffer above which Sluice stops reading that client's backend (backpressure)."),
        clientMaxBuffer: bufferSize(32 * MiB,
          'Hard cap of a client send buffer; past it the client is closed with 1013. At least maxMessageSize.'),
        upstreamWriteBudget: bufferSize(32 * MiB,
          'Backend socket write buffer past which the client is closed with 1013. At least maxMessageSize.'),
        idleTimeout: {
          kind: 'scalar',
          type: 'duration',
          defaultValue: 120_000,
          defaultText: '120s',
          doc: 'Time without traffic before the client is pinged, then closed; 0 disables; else whole seconds from 8s to 960s.',
        },
        handshakeTimeout: {
          kind: 'scalar',
          type: 'duration',
          min: 1,
          defaultValue: 10_000,
          defaultText: '10s',
          doc: 'Time allowed for the backend to answer the upgrade.',
        },
      },
    },
    admin: adminSchema,
    log: logSchema,
    accessLog: accessLogSchema,
    fanout: fanoutSchema,
    shutdown: {
      kind: 'object',
      doc: 'Sluice: graceful shutdown (deprecated: use entryPoints.<name>.transport.lifeCycle).',
      fields: {
        gracePeriod: {
          kind: 'scalar',
          type: 'duration',
          defaultText: 'none',
          doc: 'Deprecated alias of entryPoints.<name>.transport.lifeCycle.graceTimeOut for every entry point that sets none (a warning says so).',
        },
      },
    },
    providers: {
      kind: 'object',
      doc: "Traefik's static configuration: where the dynamic configuration (routers, services, middlewares, TLS) is read from.",
      fields: {
        file: {
          kind: 'object',
          optIn: true,
          doc: "Traefik's file provider: one file or a directory of .yaml/.yml/.toml files, merged; watched when watch is true.",
          fields: {
            filename: {
              kind: 'scalar',
              type: 'string',
              doc: "A dynamic configuration file, relative to this file's directory.",
            },
            directory: {
              kind: 'scalar',
              type: 'string',
              doc: "A directory of dynamic configuration files (.yaml, .yml, .toml; others are ignored), relative to this file's directory.",
            },
            watch: {
              kind: 'scalar',
              type: 'boolean',
              defaultValue: true,
              defaultText: 'true',
              doc: 'Reload when a dynamic file changes (as in Traefik, on by default); reloads never touch a live connection.',
            },
          },
          refused: { debugLogGeneratedTemplate: 'Sluice does not template configuration files' },
        },
      },
      refused: {
        ...notYet('docker', 'swarm', 'kubernetesIngress', 'kubernetesGateway', 'consulCatalog', 'nomad', 'ecs'),
        ...notYet('consul', 'etcd', 'zooKeeper', 'redis', 'http', 'plugin'),
        kubernetesCRD: 'Sluice reads IngressRoute manifests from files, not from the Kubernetes API',
        providersThrottleDuration: 'Sluice coalesces a burst of file changes into one reload by itself',
      },
    },
  },
  refused: {
    ...notYet('tcp', 'udp', 'tracing', 'experimental', 'global'),
    ...notYet('hostResolver', 'spiffe', 'core'),
    api: 'the JSON API and the dashboard are served on admin.address (/api/*, /dashboard)',
    metrics: 'Prometheus metrics are always served on admin.address (/metrics)',
    ping: 'liveness and readiness are served on admin.address (/health, /ready)',
    certificatesResolvers: TLS_REFUSED.certResolver,
    serversTransport: '(expected http.serversTransports.default)',
  },
};

/** One row of the reference: a key path (`<name>` for user-chosen names, `[]` for list items). */
export interface SchemaEntry {
  readonly path: string;
  readonly schema: Schema;
}

/** Every accepted key, depth first in declaration order; the docs test checks each appears in the docs. */
export function* schemaEntries(schema: Schema = CONFIG_SCHEMA, path = ''): Generator<SchemaEntry> {
  if (path !== '') yield { path, schema };
  if (schema.kind === 'object') {
    for (const [key, field] of Object.entries(schema.fields)) yield* schemaEntries(field, join(path, key));
  } else if (schema.kind === 'map') {
    yield* schemaEntries(schema.value, join(path, '<name>'));
  } else if (schema.kind === 'list' && schema.item.kind !== 'scalar') {
    yield* schemaEntries(schema.item, `${path}[]`);
  }
}

/** Every Traefik key refused by name, with its path in the same notation as schemaEntries. */
export function* refusedEntries(schema: Schema = CONFIG_SCHEMA, path = ''): Generator<string> {
  if (schema.kind === 'object') {
    for (const key of Object.keys(schema.refused ?? {})) yield join(path, key);
    for (const [key, field] of Object.entries(schema.fields)) yield* refusedEntries(field, join(path, key));
  } else if (schema.kind === 'map') {
    yield* refusedEntries(schema.value, join(path, '<name>'));
  } else if (schema.kind === 'list') {
    yield* refusedEntries(schema.item, `${path}[]`);
  }
}

function join(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

/**
 * The declared default of a scalar key, by dotted path (`<name>` for map entries), so code that needs a
 * default reads it from here rather than repeating the number.
 */
export function defaultOf(path: string): unknown {
  let schema: Schema = CONFIG_SCHEMA;
  for (const key of path.split('.')) {
    if (schema.kind === 'map' && key === '<name>') schema = schema.value;
    else if (schema.kind === 'object' && schema.fields[key] !== undefined) schema = schema.fields[key];
    else throw new Error(`no key '${path}' in the config schema`);
  }
  if (schema.kind !== 'scalar' || schema.defaultValue === undefined) throw new Error(`key '${path}' has no default`);
  return schema.defaultValue;
}
